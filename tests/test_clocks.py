"""Regulatory clocks: Art. 73 deadlines from `aware_at`, reminders at fractions, escalation.

Time is moved with `now=`, never by sleeping. Incidents here are SEV4 model failures unless a
test says otherwise, so no report-time clock (internal SLA, GDPR) runs beside the one under test.
Demo organisation: compliance@ (U0DEMO003) is the compliance officer and legal; credit.owner
(U0DEMO004) owns credit-scoring; governance@ is the governance lead.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from demo_org import with_demo_organisation
from fakes.slack_api import FakeSlack, fake_slack, slack_settings
from sqlalchemy import delete, func, select

from aims_core.errors import InvalidInput, NotFound
from aims_core.models import (
    AuditEvent,
    ClockStatus,
    Notification,
    Person,
    PersonRole,
)
from aims_core.services import clocks, incidents
from aims_core.services.clocks import (
    KIND_CLOCK_OVERDUE,
    KIND_CLOCK_REMINDER,
    ClockOut,
    reminder_at,
)
from aims_core.services.evidence import append
from aims_core.services.incidents import IncidentOut
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork
from notifications.slack import SlackDelivery

__all__ = ["fake_slack"]  # the fixture, imported for this module's tests

D = "@northwind.example"
COMPLIANCE, OWNER, GOV = f"compliance{D}", f"credit.owner{D}", f"governance{D}"
DAY = timedelta(days=1)
US = timedelta(microseconds=1)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def org(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    return with_demo_organisation(request, settings)


def report(
    settings: Settings, actor: Actor, *, aware_ago: timedelta = DAY, **overrides: Any
) -> IncidentOut:
    fields: dict[str, Any] = {
        "system": "credit-scoring",
        "title": "Scores drift after the feed change",
        "severity": "SEV4",
        "category": "model-failure",
        "aware_at": datetime.now(UTC) - aware_ago,
        **overrides,
    }
    return incidents.report(UnitOfWork(settings), fields, actor, notify=False).incident


def confirm(settings: Settings, actor: Actor, incident_id: int, kind: str) -> list[ClockOut]:
    return incidents.confirm_serious(UnitOfWork(settings), incident_id, kind, actor)


def rows(settings: Settings, kind: str) -> list[tuple[str, str]]:
    """(idempotency key, recipient email) of the notifications of one kind."""
    with UnitOfWork(settings).read() as uow:
        found = uow.session.execute(
            select(Notification.idempotency_key, Person.email)
            .join(Person, Person.id == Notification.recipient_id)
            .where(Notification.kind == kind)
            .order_by(Notification.id)
        ).all()
        return [(k, e) for k, e in found]


def clock(settings: Settings, clock_id: int, now: datetime | None = None) -> ClockOut:
    return clocks.get_clock(UnitOfWork(settings), clock_id, now=now)


def audit_count(settings: Settings, action: str) -> int:
    with UnitOfWork(settings).read() as uow:
        return (
            uow.session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
            )
            or 0
        )


# --- starting clocks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "rule", "days"),
    [
        ("death", "eu-ai-act-art73-death", 10),
        ("critical-infrastructure", "eu-ai-act-art73-urgent", 2),
        ("widespread-infringement", "eu-ai-act-art73-urgent", 2),
        ("health", "eu-ai-act-art73-general", 15),
        ("fundamental-rights", "eu-ai-act-art73-general", 15),
        ("property-environment", "eu-ai-act-art73-general", 15),
    ],
)
def test_confirming_a_serious_incident_starts_its_clock_from_aware_at(
    org: Settings, actor: Actor, kind: str, rule: str, days: int
) -> None:
    out = report(org, actor, aware_ago=timedelta(hours=30))
    assert out.clocks == []
    (c,) = confirm(org, actor, out.id, kind)
    assert c.rule == rule and c.status is ClockStatus.running
    assert c.started_at == out.aware_at  # from awareness, not from the confirmation
    assert c.deadline == out.aware_at + timedelta(days=days)
    assert c.time_left_seconds is not None
    assert abs(c.time_left_seconds - (days * 86400 - 30 * 3600)) < 60
    rec = incidents.get_incident(UnitOfWork(org), out.id)
    assert rec.serious_kind == kind and rec.serious_confirmed_at is not None
    assert [e.kind for e in rec.timeline][-2:] == ["serious-confirmed", "clock-started"]
    # The reporters (compliance, legal) and the owner are told what is due when.
    told = {e for _, e in rows(org, "incident-serious")}
    assert told == {COMPLIANCE, OWNER}


def test_confirmation_is_idempotent_and_a_graver_kind_adds_its_clock(
    org: Settings, actor: Actor
) -> None:
    out = report(org, actor)
    (general,) = confirm(org, actor, out.id, "health")
    before = incidents.get_incident(UnitOfWork(org), out.id)
    (again,) = confirm(org, actor, out.id, "Health")
    assert again.id == general.id
    after = incidents.get_incident(UnitOfWork(org), out.id)
    assert after.timeline == before.timeline
    assert audit_count(org, "incident.serious-confirmed") == 1

    (death,) = confirm(org, actor, out.id, "death")  # the person has since died
    rec = incidents.get_incident(UnitOfWork(org), out.id)
    assert rec.serious_kind == "death"
    assert rec.serious_confirmed_at == before.serious_confirmed_at
    assert {c.rule for c in rec.clocks} == {"eu-ai-act-art73-general", "eu-ai-act-art73-death"}
    assert death.deadline == out.aware_at + 10 * DAY
    assert "was health" in [e for e in rec.timeline if e.kind == "serious-confirmed"][-1].text


def test_unknown_kind_or_incident_writes_nothing(org: Settings, actor: Actor) -> None:
    out = report(org, actor)
    with pytest.raises(InvalidInput) as bad:
        confirm(org, actor, out.id, "embarrassment")
    assert bad.value.field == "kind" and "death" in bad.value.message
    with pytest.raises(NotFound):
        confirm(org, actor, 999, "death")
    assert incidents.get_incident(UnitOfWork(org), out.id).serious_kind is None


def test_effective_dates_are_data(org: Settings, actor: Actor) -> None:
    """Art. 73 applies from 2 August 2026: an incident the organisation knew of before then
    gets no Art. 73 clock (its confirmation is recorded all the same)."""
    before = datetime(2026, 7, 30, 9, 0, tzinfo=UTC)
    out = report(org, actor, aware_ago=datetime.now(UTC) - before)
    assert confirm(org, actor, out.id, "death") == []
    rec = incidents.get_incident(UnitOfWork(org), out.id)
    assert rec.serious_kind == "death"
    assert "no clock rule applies" in rec.timeline[-1].text


def test_report_time_clocks_gdpr_and_internal_sla(org: Settings, actor: Actor) -> None:
    privacy = report(org, actor, category="privacy", severity="SEV4")
    (gdpr,) = privacy.clocks
    assert gdpr.rule == "gdpr-art33-breach" and gdpr.deadline == privacy.aware_at + 72 * (DAY / 24)
    # Personal data named by a label counts too, whatever the category.
    labelled = report(org, actor, labels={"personal_data": "true"})
    assert [c.rule for c in labelled.clocks] == ["gdpr-art33-breach"]
    sev1 = report(org, actor, severity="SEV1")
    (sla,) = sev1.clocks
    assert sla.rule == "internal-sla-contain" and sla.deadline == sev1.aware_at + DAY / 6


# --- reminders and escalation ------------------------------------------------------------------


def test_reminders_fire_exactly_at_the_fractions_once_and_overdue_escalates_once(
    org: Settings, actor: Actor
) -> None:
    out = report(org, actor, aware_ago=timedelta(hours=1))
    (c,) = confirm(org, actor, out.id, "death")
    at = {f: reminder_at(c.started_at, c.deadline, f) for f in (0.5, 0.8, 0.95)}
    assert at[0.5] == c.started_at + 5 * DAY

    assert clocks.tick(org, now=at[0.5] - US).reminders == 0
    first = clocks.tick(org, now=at[0.5])
    assert [(r.clock_id, r.fraction) for r in first.reminded] == [(c.id, 0.5)]
    assert clocks.tick(org, now=at[0.5]).reminders == 0  # the same now: nothing
    assert clocks.tick(org, now=at[0.8] - US).reminders == 0
    assert [r.fraction for r in clocks.tick(org, now=at[0.8]).reminded] == [0.8]
    assert [r.fraction for r in clocks.tick(org, now=at[0.95]).reminded] == [0.95]
    assert clocks.tick(org, now=c.deadline - US).reminders == 0
    assert clock(org, c.id).reminders_fired == [0.5, 0.8, 0.95]

    reminders = rows(org, KIND_CLOCK_REMINDER)
    assert [k.rsplit("-to-", 1)[0] for k, _ in reminders] == [
        f"clock-{c.id}-reminder-{f}" for f in ("0.5", "0.5", "0.8", "0.8", "0.95", "0.95")
    ]
    assert {e for _, e in reminders} == {COMPLIANCE, OWNER}  # compliance + legal, and the owner
    assert rows(org, KIND_CLOCK_OVERDUE) == []

    overdue = clocks.tick(org, now=c.deadline)
    assert overdue.overdue_ids == [c.id] and overdue.escalated_ids == [c.id]
    assert [e for _, e in rows(org, KIND_CLOCK_OVERDUE)] == [COMPLIANCE]
    later = clocks.tick(org, now=c.deadline + 3 * DAY)
    assert (later.reminders, later.overdue_ids, later.escalated_ids) == (0, [], [])
    assert len(rows(org, KIND_CLOCK_OVERDUE)) == 1
    final = clock(org, c.id, now=c.deadline + DAY)
    assert final.status is ClockStatus.overdue and final.escalated_at == c.deadline
    assert final.time_left_seconds == -86400
    kinds = [e.kind for e in incidents.get_incident(UnitOfWork(org), out.id).timeline]
    assert kinds.count("clock-reminder") == 3
    assert kinds[-2:] == ["clock-overdue", "clock-escalated"]
    assert audit_count(org, "incident.clock-reminded") == 3
    assert audit_count(org, "incident.clock-escalated") == 1


def test_a_late_pass_sends_one_reminder_and_records_every_passed_fraction(
    org: Settings, actor: Actor
) -> None:
    out = report(org, actor)
    (c,) = confirm(org, actor, out.id, "critical-infrastructure")
    now = reminder_at(c.started_at, c.deadline, 0.9)
    assert [r.fraction for r in clocks.tick(org, now=now).reminded] == [0.8]
    assert clock(org, c.id).reminders_fired == [0.5, 0.8]
    assert {k.rsplit("-to-", 1)[0] for k, _ in rows(org, KIND_CLOCK_REMINDER)} == {
        f"clock-{c.id}-reminder-0.8"
    }
    # Past the deadline at the first look: overdue and escalated, no reminder any more.
    other = report(org, actor, aware_ago=3 * DAY)
    (late,) = confirm(org, actor, other.id, "widespread-infringement")
    rep = clocks.tick(org, now=datetime.now(UTC))
    assert late.id in rep.overdue_ids and late.id in rep.escalated_ids
    assert all(r.clock_id != late.id for r in rep.reminded)


def test_internal_sla_escalates_to_its_own_role(org: Settings, actor: Actor) -> None:
    out = report(org, actor, severity="SEV1", aware_ago=timedelta(hours=1))
    (sla,) = out.clocks
    rep = clocks.tick(org, now=sla.deadline)
    assert rep.escalated_ids == [sla.id]
    assert [e for _, e in rows(org, KIND_CLOCK_OVERDUE)] == [GOV]


def test_escalation_without_anyone_in_the_role_is_retried(org: Settings, actor: Actor) -> None:
    out = report(org, actor)
    (c,) = confirm(org, actor, out.id, "critical-infrastructure")
    with UnitOfWork(org) as uow:
        uow.session.execute(delete(PersonRole).where(PersonRole.role_id == "compliance-officer"))
        uow.commit()
    rep = clocks.tick(org, now=c.deadline)
    assert rep.overdue_ids == [c.id] and rep.escalated_ids == []
    assert [(f.step, f.id) for f in rep.failures] == [("escalate", c.id)]
    assert "compliance-officer" in rep.failures[0].error
    assert clock(org, c.id).escalated_at is None
    with UnitOfWork(org) as uow:
        person = uow.session.scalar(select(Person).where(Person.email == GOV))
        assert person is not None
        uow.session.add(PersonRole(person_id=person.id, role_id="compliance-officer"))
        uow.commit()
    rep = clocks.tick(org, now=c.deadline + DAY)
    assert rep.escalated_ids == [c.id] and rep.failures == []
    assert [e for _, e in rows(org, KIND_CLOCK_OVERDUE)] == [GOV]


def test_overlapping_passes_act_once(org: Settings, actor: Actor) -> None:
    out = report(org, actor)
    (c,) = confirm(org, actor, out.id, "death")
    now = c.deadline + DAY
    reports = []

    def run() -> None:
        reports.append(clocks.tick(org, now=now))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r.escalated_ids) for r in reports) == 1
    assert sum(len(r.overdue_ids) for r in reports) == 1
    assert len(rows(org, KIND_CLOCK_OVERDUE)) == 1


def test_escalation_reaches_slack_in_the_same_pass(
    org: Settings, actor: Actor, fake_slack: FakeSlack
) -> None:
    s = slack_settings(org, fake_slack)
    out = report(s, actor)
    (c,) = confirm(s, actor, out.id, "death")
    rep = clocks.tick(s, now=c.deadline, delivery=SlackDelivery(s))
    assert rep.delivery is not None and rep.delivery.failed == 0
    dm = fake_slack.dm_channel("U0DEMO003")
    posted = [m for m in fake_slack.messages if m.channel == dm]
    assert any(m.text.startswith(f"Overdue: incident #{out.id}") for m in posted)


# --- met, moved, listed ------------------------------------------------------------------------


def evidence_for(settings: Settings, actor: Actor, incident_id: int, text: str) -> int:
    return append(
        settings,
        {
            "subject": f"incident:{incident_id}",
            "kind": "incident-report",
            "title": text,
            "text": text,
        },
        actor,
    ).id


def test_a_met_clock_is_neither_reminded_nor_escalated(org: Settings, actor: Actor) -> None:
    out = report(org, actor)
    (c,) = confirm(org, actor, out.id, "health")
    ev = evidence_for(org, actor, out.id, "Initial report to the market surveillance authority")
    met = clocks.mark_met(UnitOfWork(org), c.id, actor, ev)
    assert met.status is ClockStatus.met and met.time_left_seconds is None
    assert clocks.mark_met(UnitOfWork(org), c.id, actor, ev).met_at == met.met_at
    rep = clocks.tick(org, now=c.deadline + DAY)
    assert (rep.reminders, rep.overdue_ids, rep.escalated_ids) == (0, [], [])
    assert clocks.running_clocks(UnitOfWork(org)) == []
    assert audit_count(org, "incident.clock-met") == 1
    with pytest.raises(NotFound):
        clocks.mark_met(UnitOfWork(org), 999, actor)
    other = report(org, actor)
    (c2,) = confirm(org, actor, other.id, "health")
    with pytest.raises(InvalidInput) as bad:
        clocks.mark_met(UnitOfWork(org), c2.id, actor, ev)  # evidence of another incident
    assert bad.value.field == "evidence"
    assert clock(org, c2.id).status is ClockStatus.running


def test_aware_at_correction_with_evidence_moves_the_clocks(org: Settings, actor: Actor) -> None:
    out = report(org, actor, severity="SEV1", aware_ago=timedelta(hours=2))
    (death,) = confirm(org, actor, out.id, "death")
    ev = evidence_for(org, actor, out.id, "Hospital email received two days earlier")
    earlier = out.aware_at - 2 * DAY
    rec = incidents.correct_aware_at(UnitOfWork(org), out.id, earlier, ev, actor)
    assert rec.aware_at == earlier
    by_rule = {c.rule: c for c in rec.clocks}
    assert by_rule["eu-ai-act-art73-death"].started_at == earlier
    assert by_rule["eu-ai-act-art73-death"].deadline == earlier + 10 * DAY
    assert by_rule["internal-sla-contain"].deadline == earlier + timedelta(hours=4)
    line = rec.timeline[-1]
    assert line.kind == "aware-at-corrected" and line.data["evidence_id"] == ev
    assert death.deadline - by_rule["eu-ai-act-art73-death"].deadline == 2 * DAY
    # The SLA is long past now: the next pass finds it overdue.
    assert by_rule["internal-sla-contain"].id in clocks.tick(org).overdue_ids

    with pytest.raises(InvalidInput) as bad:  # awareness cannot come after the report
        incidents.correct_aware_at(
            UnitOfWork(org), out.id, out.reported_at + timedelta(minutes=1), ev, actor
        )
    assert bad.value.field == "aware_at"
    with pytest.raises(InvalidInput) as bad:
        incidents.correct_aware_at(UnitOfWork(org), out.id, datetime.now(UTC) + DAY, ev, actor)
    assert bad.value.field == "aware_at"


def test_a_correction_that_moves_the_deadline_ahead_runs_the_clock_again(
    org: Settings, actor: Actor
) -> None:
    out = report(org, actor, aware_ago=3 * DAY)
    (c,) = confirm(org, actor, out.id, "critical-infrastructure")
    assert clocks.tick(org).escalated_ids == [c.id]
    ev = evidence_for(org, actor, out.id, "The earlier alert was another system's")
    rec = incidents.correct_aware_at(UnitOfWork(org), out.id, out.reported_at, ev, actor)
    (moved,) = rec.clocks
    assert moved.deadline == out.reported_at + 2 * DAY
    assert moved.status is ClockStatus.running and moved.escalated_at is None
    rep = clocks.tick(org, now=moved.deadline)
    assert rep.overdue_ids == [c.id] and rep.escalated_ids == [c.id]
    assert len(rows(org, KIND_CLOCK_OVERDUE)) == 2  # one per deadline missed


def test_running_clocks_soonest_first_with_time_left(org: Settings, actor: Actor) -> None:
    a = report(org, actor)
    b = report(org, actor)
    (death,) = confirm(org, actor, a.id, "death")
    (urgent,) = confirm(org, actor, b.id, "critical-infrastructure")
    now = datetime.now(UTC)
    running = clocks.running_clocks(UnitOfWork(org), now=now)
    assert [c.id for c in running] == [urgent.id, death.id]
    assert running[0].time_left_seconds == int((urgent.deadline - now).total_seconds())
    assert running[0].system == "credit-scoring"
    md = clocks.clocks_markdown(running)
    assert "EU AI Act Art. 73(3)" in md and "| 23 h 59 min |" in md


# --- the flow ----------------------------------------------------------------------------------


def test_flow_tasks_call_the_service(org: Settings, actor: Actor) -> None:
    """The flow's steps without a Prefect run (the tasks read settings from AIMS_* env)."""
    from flows.incident_clocks import read_running_clocks, tick_clocks
    from tasks.delivery import deliver_afresh

    out = report(org, actor)
    (c,) = confirm(org, actor, out.id, "death")
    now = reminder_at(c.started_at, c.deadline, 0.5)
    rep = tick_clocks.fn(now)
    assert [r.clock_id for r in rep.reminded] == [c.id]
    # The flow's delivery step. No Slack token: logged; the confirmation's two messages and the
    # two reminders.
    assert deliver_afresh.fn("incident-clocks")["logged"] == 4
    running = read_running_clocks.fn(now)
    assert [x.id for x in running] == [c.id]
    md = clocks.clocks_markdown(running, rep)
    assert "reminded 1" in md and "50%" in md


def test_incident_clocks_flow_publishes_the_running_clocks_e2e(
    engine: Any, org: Settings, actor: Actor
) -> None:
    """The flow run in process against the session's Prefect API (its tasks use this test's
    database through AIMS_*): a pass, and the artifact listing the running clocks."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.logging.handlers import APILogHandler

    from flows.incident_clocks import ARTIFACT_KEY, incident_clocks

    out = report(org, actor, aware_ago=6 * DAY)
    (c,) = confirm(org, actor, out.id, "death")
    rep = incident_clocks()
    assert [(r.clock_id, r.fraction) for r in rep.reminded] == [(c.id, 0.5)]
    APILogHandler().flush()  # the run's logs reach the API before the session's server stops
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])),
            limit=1,
            sort="CREATED_DESC",
        )
    assert "EU AI Act Art. 73(4)" in str(artifact.data) and "3 d 23 h" in str(artifact.data)


def test_the_clock_service_does_not_import_prefect() -> None:
    code = "import sys, aims_core.services.clocks; sys.exit('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
