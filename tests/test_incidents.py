"""The incident record: classification as data, report and dedupe, timeline, RCA, the CLI.

Service tests run on SQLite and PostgreSQL (`settings`). Demo organisation: credit-scoring is
high-risk (owner credit.owner); incident responders are ops.owner and security; compliance@ is
the compliance officer; governance@ the governance lead; ethics@ the ethics committee.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from demo_org import with_demo_organisation
from fakes.slack_api import FakeSlack, fake_slack, slack_settings
from sqlalchemy import func, select

from aims_core.errors import InvalidInput, NotFound
from aims_core.models import (
    AuditEvent,
    Incident,
    IncidentEvent,
    IncidentStatus,
    Notification,
    RegulatoryClock,
)
from aims_core.rules.incident import (
    IncidentPolicyInvalid,
    incident_policy,
    parse_classification,
    parse_clock_rules,
)
from aims_core.services import incidents
from aims_core.services.evidence import append
from aims_core.services.incidents import IncidentIn, RootCauseIn
from aims_core.services.outbox import NotificationOut, notification_out
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork
from notifications.slack import deliver_due

__all__ = ["fake_slack"]  # the fixture, imported for this module's tests

D = "@northwind.example"
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "aims_core" / "data"


@pytest.fixture
def org(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    return with_demo_organisation(request, settings)


def incident_in(**overrides: Any) -> IncidentIn:
    fields: dict[str, Any] = {
        "system": "credit-scoring",
        "title": "Approval rate gap between age groups",
        "summary": "Applicants over 60 approved 18 points less often since Monday's release.",
        "severity": "SEV2",
        "category": "bias",
        "source": "api",
    }
    return IncidentIn(**{**fields, **overrides})


def counts(settings: Settings) -> dict[str, int]:
    with UnitOfWork(settings).read() as uow:
        return {
            m.__tablename__: uow.session.scalar(select(func.count()).select_from(m)) or 0
            for m in (Incident, IncidentEvent, RegulatoryClock, Notification, AuditEvent)
        }


def notes(settings: Settings, incident_id: int) -> list[NotificationOut]:
    """The incident's notifications, oldest first (`recipient` is the email, or None)."""
    with UnitOfWork(settings).read() as uow:
        rows = uow.session.scalars(
            select(Notification)
            .where(Notification.subject == f"incident:{incident_id}")
            .order_by(Notification.id)
        ).all()
        return [notification_out(r, uow.session) for r in rows]


# --- classification as data --------------------------------------------------------------------


def test_shipped_classification_and_clock_rules_load(settings: Settings) -> None:
    policy = incident_policy(settings)
    c = policy.classification
    assert c.severity_ids == ["SEV1", "SEV2", "SEV3", "SEV4"]
    assert {x.id: x.playbook for x in c.categories} == {
        "model-failure": "model-failure",
        "bias-fairness": "bias",
        "adversarial-attack": "adversarial-attack",
        "data-issue": "data-issue",
        "privacy": "privacy",
        "safety": "safety",
        "misuse": "misuse",
    }
    assert c.kind_ids == [
        "death",
        "health",
        "critical-infrastructure",
        "fundamental-rights",
        "property-environment",
        "widespread-infringement",
    ]
    assert [s.id for s in c.resolve_category("adversarial-attack").category.subcategories] == [
        "poisoning",
        "evasion",
        "model-inversion",
    ]
    assert c.severity("sev1").response.acknowledge.human() == "15 min"
    rules = {r.id: r for r in policy.clocks.rules}
    assert rules["eu-ai-act-art73-death"].duration.delta == timedelta(days=10)  # type: ignore[union-attr]
    assert rules["eu-ai-act-art73-urgent"].duration.delta == timedelta(days=2)  # type: ignore[union-attr]
    assert rules["eu-ai-act-art73-general"].duration.delta == timedelta(days=15)  # type: ignore[union-attr]
    assert rules["gdpr-art33-breach"].duration.delta == timedelta(hours=72)  # type: ignore[union-attr]
    assert policy.clocks.defaults.reminders == [0.5, 0.8, 0.95]
    assert policy.clocks.defaults.escalate_to_roles == ["compliance-officer"]


def test_category_forms_resolve_to_the_stored_form(settings: Settings) -> None:
    c = incident_policy(settings).classification
    assert c.resolve_category("Model failure").stored == "model-failure"
    assert c.resolve_category("bias").stored == "bias-fairness"
    assert c.resolve_category("adversarial/evasion").stored == "adversarial-attack/evasion"
    assert c.resolve_category("drift").stored == "data-issue/drift"
    assert c.resolve_category("drift").playbook == "data-issue"
    with pytest.raises(InvalidInput) as bad:
        c.resolve_category("aliens")
    assert bad.value.field == "category" and "model-failure" in bad.value.message
    with pytest.raises(InvalidInput, match="not a subcategory of privacy"):
        c.resolve_category("privacy/evasion")


BAD_CLASSIFICATION = """
severities:
  - id: SEV1
    title: Critical
    response: {acknowledge: {minutes: 15}, contain: {hours: 0}}
    notify_roles: [incident-responder, on-call-wizard]
  - id: SEV1
    title: Again
    response: {acknowledge: {hours: 1}}
  - id: P1
    title: Wrong name
    response: {acknowledge: {hours: 1}}
categories:
  - {id: model-failure, title: Model failure, playbook: model-failure, colour: red}
  - {id: bias-fairness, title: Bias, playbook: bias, aliases: [model-failure]}
  - id: data-issue
    title: Data
    playbook: Data Issue
serious_incident:
  kinds:
    - {id: death, title: Death, keywords: [death]}
  category_rules:
    - {categories: [bias-fairness], suggests: martian-invasion}
    - {categories: [nope], severities: [SEV9], suggests: death}
"""


def test_bad_classification_file_names_every_problem() -> None:
    with pytest.raises(IncidentPolicyInvalid) as bad:
        parse_classification(BAD_CLASSIFICATION, "bad.yaml")
    # The schema problems come first (and stop the cross checks until they are fixed) ...
    problems = bad.value.problems
    assert any("severities.0.response.contain" in p and "longer than zero" in p for p in problems)
    assert any(p.startswith("severities.2.id") for p in problems)
    assert any(p.startswith("categories.0.colour") for p in problems)
    assert any(p.startswith("categories.2.playbook") for p in problems)
    assert "bad.yaml" in str(bad.value) and f"{len(problems)} problems" in str(bad.value)

    fixed = (
        BAD_CLASSIFICATION.replace("contain: {hours: 0}", "contain: {hours: 4}")
        .replace("id: P1", "id: SEV3")
        .replace(", colour: red", "")
        .replace("playbook: Data Issue", "playbook: data-issue")
    )
    with pytest.raises(IncidentPolicyInvalid) as bad:
        parse_classification(fixed, "bad.yaml")
    # ... then every cross-reference problem at once.
    problems = bad.value.problems
    assert any("duplicate id(s) SEV1" in p for p in problems)
    assert any("unknown role 'on-call-wizard'" in p for p in problems)
    assert any("'model-failure' already names category model-failure" in p for p in problems)
    assert any("unknown serious-incident kind 'martian-invasion'" in p for p in problems)
    assert any("unknown category 'nope'" in p for p in problems)
    assert any("unknown severity 'SEV9'" in p for p in problems)
    assert len(problems) == 6


def test_bad_clock_rules_name_every_problem(settings: Settings) -> None:
    classification = incident_policy(settings).classification
    text = """
defaults:
  reminders: [0.8, 0.5, 1.2]
  escalate_to_roles: [chief-worrier]
rules:
  - id: art73
    label: Art. 73
    start: serious-confirmed
    serious_kinds: [death, alien-abduction]
    duration: {days: 10}
    duration_from_severity: contain
    effective_from: 2026-08-02
    effective_until: 2026-01-01
  - id: art73
    label: again
    start: reported
    serious_kinds: [death]
    effective_from: 2026-08-02
  - id: sla-ack
    label: ack
    start: reported
    duration_from_severity: update_every
    effective_from: 2024-01-01
    when: [{severities: [SEV5], categories: [bias-fairness/evasion]}]
"""
    with pytest.raises(IncidentPolicyInvalid) as bad:
        parse_clock_rules(text, classification, "clocks.yaml")
    problems = bad.value.problems
    expected = [
        "rules: duplicate id(s) art73",
        "defaults.reminders: each fraction must be between 0 and 1",
        "defaults.reminders: fractions must be increasing",
        "defaults.escalate_to_roles: unknown role 'chief-worrier'",
        "rules.0.serious_kinds: unknown serious-incident kind 'alien-abduction'",
        "rules.0: give exactly one of duration, duration_from_severity",
        "rules.0.effective_until: before effective_from",
        "rules.1.serious_kinds: only with `start: serious-confirmed`",
        "rules.1: give exactly one of duration, duration_from_severity",
        "rules.2.when.0.categories: unknown category 'bias-fairness/evasion'",
        "rules.2.when.0.severities: unknown severity 'SEV5'",
    ]
    for e in expected:
        assert any(p.startswith(e) for p in problems), (e, problems)
    # SEV4 has no `update_every` target, and the rule applies to every severity it names (none
    # valid here) or to all when it names none: only the unknown SEV5 is listed, so no hole.
    assert len(problems) == len(expected)


def test_an_organisations_broken_file_stops_reports_with_every_problem(
    org: Settings, actor: Actor
) -> None:
    text = (DATA / "incident_classification.yaml").read_text()
    (org.data_dir / "incident_classification.yaml").write_text(
        text.replace("notify_roles: [incident-responder]", "notify_roles: [on-call]").replace(
            "playbook: misuse", "playbook: Misuse!"
        )
    )
    before = counts(org)
    with pytest.raises(IncidentPolicyInvalid) as bad:
        incidents.report(UnitOfWork(org), incident_in(), actor)
    assert str(org.data_dir) in str(bad.value)
    assert any("categories.6.playbook" in p for p in bad.value.problems)
    assert counts(org) == before


def test_an_organisation_adds_its_own_clock_rule(org: Settings, actor: Actor) -> None:
    text = (DATA / "regulatory_clocks.yaml").read_text()
    (org.data_dir / "regulatory_clocks.yaml").write_text(
        text
        + """
  - id: dora-major-ict
    label: "DORA: initial notification of a major ICT-related incident"
    start: reported
    when: [{categories: [adversarial-attack], severities: [SEV1]}]
    duration: {hours: 4}
    effective_from: 2025-01-17
"""
    )
    out = incidents.report(
        UnitOfWork(org), incident_in(category="evasion", severity="SEV1"), actor, notify=False
    ).incident
    assert {c.rule for c in out.clocks} == {"dora-major-ict", "internal-sla-contain"}
    dora = next(c for c in out.clocks if c.rule == "dora-major-ict")
    assert dora.deadline - dora.started_at == timedelta(hours=4)


# --- the serious-incident rule -----------------------------------------------------------------


def suggest(settings: Settings, **kw: Any) -> list[str]:
    c = incident_policy(settings).classification
    args: dict[str, Any] = {
        "title": "",
        "summary": "",
        "category": "model-failure",
        "severity": "SEV3",
        "tier": "minimal",
        **kw,
    }
    return [s.kind for s in c.suggest_serious(**args)]


def test_serious_rule_suggests_from_text_labels_harm_and_classification(
    settings: Settings,
) -> None:
    assert suggest(settings, title="Patient died after triage model misranked") == ["death"]
    assert suggest(settings, summary="Two people hospitalised") == ["health"]
    assert suggest(settings, harm=["critical-infrastructure"]) == ["critical-infrastructure"]
    assert suggest(settings, labels={"harm": "property-environment, widespread-infringement"}) == [
        "property-environment",
        "widespread-infringement",
    ]
    assert suggest(settings, labels={"description": "Discriminatory denials of credit"}) == [
        "fundamental-rights"
    ]
    # Ordinary operations vocabulary is not a serious incident.
    assert suggest(settings, title="Pod OOM killed, fatal error", summary="deadline studies") == []
    # A label that is not a signal is not read.
    assert suggest(settings, labels={"alertname": "DeathSpiralLatency"}) == []
    # Bias on a high-risk system at SEV1/SEV2 suggests a fundamental-rights infringement.
    bias = {"category": "bias-fairness", "tier": "high"}
    assert suggest(settings, severity="SEV2", **bias) == ["fundamental-rights"]
    assert suggest(settings, severity="SEV3", **bias) == []
    assert suggest(settings, severity="SEV2", category="bias-fairness", tier="minimal") == []


# --- report --------------------------------------------------------------------------------------


def test_report_records_classifies_and_queues_the_first_messages(
    org: Settings, actor: Actor
) -> None:
    aware = datetime.now(UTC) - timedelta(hours=2)
    res = incidents.report(UnitOfWork(org), incident_in(aware_at=aware), actor)
    out = res.incident
    assert res.created
    assert (out.system, out.system_tier, out.severity, out.category, out.playbook) == (
        "credit-scoring",
        "high",
        "SEV2",
        "bias-fairness",
        "bias",
    )
    assert out.status is IncidentStatus.open and out.aware_at == aware
    assert out.serious_suggested == ["fundamental-rights"] and out.serious_kind is None
    assert [e.kind for e in out.timeline] == ["reported", "serious-suggested", "clock-started"]
    (sla,) = out.clocks
    assert sla.rule == "internal-sla-contain" and sla.deadline == aware + timedelta(hours=24)
    assert "SEV2: within 1 day" in sla.label

    rows = notes(org, out.id)
    people = sorted(r.recipient for r in rows if r.recipient)
    # SEV2 roles (incident-responder, governance-lead), bias's ethics committee, the owner.
    assert people == sorted(
        f"{n}{D}" for n in ("ops.owner", "security", "governance", "ethics", "credit.owner")
    )
    assert [r.target for r in rows if r.recipient is None] == ["default"]  # SEV2 posts too
    text = rows[0].text
    for part in ("SEV2", "bias-fairness", "credit-scoring", "18 points", aware.strftime("%H:%M")):
        assert part in text
    assert f"aims incident confirm-serious {out.id} --kind fundamental-rights" in text
    assert all(r.kind == "incident-opened" for r in rows)

    (audit,) = audits(org, "incident.reported", out.id)
    assert audit["severity"] == "SEV2" and audit["serious_suggested"] == ["fundamental-rights"]
    again = incidents.get_incident(UnitOfWork(org), out.id)
    assert again.model_dump(exclude={"clocks"}) == out.model_dump(exclude={"clocks"})


def audits(settings: Settings, action: str, incident_id: int) -> list[dict[str, Any]]:
    with UnitOfWork(settings).read() as uow:
        return [
            {"actor": e.actor, **e.details}
            for e in uow.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == action, AuditEvent.subject == f"incident:{incident_id}")
                .order_by(AuditEvent.id)
            )
        ]


def test_no_notification_without_notify_and_sev4_tells_only_the_owner(
    org: Settings, actor: Actor
) -> None:
    quiet = incidents.report(UnitOfWork(org), incident_in(), actor, notify=False).incident
    assert notes(org, quiet.id) == []
    low = incidents.report(
        UnitOfWork(org), incident_in(severity="sev4", category="model-failure"), actor
    ).incident
    assert [r.recipient for r in notes(org, low.id) if r.recipient] == [f"credit.owner{D}"]
    assert low.clocks == []  # no SLA clock for SEV4, no GDPR clock for a model failure


def test_first_notification_reaches_slack_after_delivery(
    org: Settings, actor: Actor, fake_slack: FakeSlack
) -> None:
    fake_slack.add_channel("C0INCIDENTS")
    s = slack_settings(org, fake_slack, slack_channel="C0INCIDENTS")
    out = incidents.report(
        UnitOfWork(s), incident_in(severity="SEV1", title="Scoring returns 0 for everyone"), actor
    ).incident
    report = deliver_due(s)
    assert report.failed == 0 and report.sent == len(notes(s, out.id))
    channel_posts = [m for m in fake_slack.messages if m.channel == "C0INCIDENTS"]
    assert len(channel_posts) == 1
    assert channel_posts[0].text.startswith(f"SEV1 bias-fairness incident #{out.id}")
    assert channel_posts[0].blocks[0]["text"]["text"].startswith("SEV1 bias-fairness:")
    compliance_dm = fake_slack.dm_channel("U0DEMO003")  # SEV1 tells the compliance officer
    assert compliance_dm and any(m.channel == compliance_dm for m in fake_slack.messages)


def test_five_repeats_of_an_alert_open_one_incident(org: Settings, actor: Actor) -> None:
    results = [
        incidents.report(
            UnitOfWork(org),
            incident_in(fingerprint="a1b2c3", source="alertmanager", labels={"n": str(n)}),
            actor,
        )
        for n in range(5)
    ]
    assert [r.created for r in results] == [True, False, False, False, False]
    assert len({r.incident.id for r in results}) == 1
    out = results[-1].incident
    repeats = [e for e in out.timeline if e.kind == "alert-repeat"]
    assert [e.text.split(" of ")[0] for e in repeats] == [f"repeat {n}" for n in (1, 2, 3, 4)]
    assert repeats[-1].data["labels"] == {"n": "4"}
    assert len(incidents.list_incidents(UnitOfWork(org))) == 1
    # The first messages went out once, for the first report only.
    assert len(notes(org, out.id)) == 6
    assert len(audits(org, "incident.repeat", out.id)) == 4

    # Another system's alert with the same fingerprint is another incident; so is the same
    # alert once the incident is closed.
    other = incidents.report(
        UnitOfWork(org), incident_in(system="fraud-detection", fingerprint="a1b2c3"), actor
    )
    assert other.created
    incidents.set_status(UnitOfWork(org), out.id, "closed", actor)
    again = incidents.report(UnitOfWork(org), incident_in(fingerprint="a1b2c3"), actor)
    assert again.created and again.incident.id not in (out.id, other.incident.id)


def test_concurrent_repeats_still_open_one_incident(org: Settings, actor: Actor) -> None:
    results: list[incidents.ReportResult] = []
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            data = incident_in(fingerprint="fp-burst", labels={"n": str(n)})
            results.append(incidents.report(UnitOfWork(org), data, actor, notify=False))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.created for r in results) == [False, False, False, False, True]
    assert len({r.incident.id for r in results}) == 1


def test_a_repeat_that_says_worse_adds_the_suggestion(org: Settings, actor: Actor) -> None:
    first = incidents.report(
        UnitOfWork(org), incident_in(category="model-failure", fingerprint="fp-9"), actor
    ).incident
    assert first.serious_suggested == []
    rep = incidents.report(
        UnitOfWork(org),
        incident_in(category="model-failure", fingerprint="fp-9", harm=["death"]),
        actor,
    ).incident
    assert rep.serious_suggested == ["death"]
    assert "likely serious: death" in rep.timeline[-1].text


def test_resolved_alert_adds_to_the_timeline_and_does_not_close(
    org: Settings, actor: Actor
) -> None:
    out = incidents.report(UnitOfWork(org), incident_in(fingerprint="fp-r"), actor).incident
    alert = {"status": "resolved", "endsAt": "2026-11-24T10:00:00Z", "labels": {"x": "y"}}
    resolved = incidents.resolve_alert(UnitOfWork(org), "fp-r", actor, alert)
    assert resolved is not None and resolved.id == out.id
    assert resolved.status is IncidentStatus.open
    assert resolved.timeline[-1].kind == "alert-resolved"
    assert resolved.timeline[-1].data["endsAt"] == "2026-11-24T10:00:00Z"
    # Alertmanager re-sends resolutions: the same one writes nothing.
    again = incidents.resolve_alert(UnitOfWork(org), "fp-r", actor, alert)
    assert again is not None and len(again.timeline) == len(resolved.timeline)
    assert incidents.resolve_alert(UnitOfWork(org), "never-seen", actor) is None
    # A model (the intake's IncidentIn) is accepted as the alert data too.
    model = incidents.resolve_alert(UnitOfWork(org), "fp-r", actor, incident_in(fingerprint="fp-r"))
    assert model is not None and model.timeline[-1].data["fingerprint"] == "fp-r"


@pytest.mark.parametrize(
    ("overrides", "field", "error"),
    [
        ({"severity": "SEV9"}, "severity", InvalidInput),
        ({"category": "aliens"}, "category", InvalidInput),
        ({"system": "no-such-system"}, "system", NotFound),
        ({"title": "  "}, "title", InvalidInput),
        ({"aware_at": "2099-01-01T00:00:00Z"}, "aware_at", InvalidInput),
        ({"source": "pager"}, "source", InvalidInput),
        ({"colour": "red"}, "colour", InvalidInput),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    org: Settings, actor: Actor, overrides: dict[str, Any], field: str, error: type[Exception]
) -> None:
    before = counts(org)
    data = {
        "system": "credit-scoring",
        "title": "t",
        "severity": "SEV2",
        "category": "bias",
        **overrides,
    }
    with pytest.raises(error) as bad:
        incidents.report(UnitOfWork(org), data, actor)
    assert bad.value.field == field  # type: ignore[attr-defined]
    assert counts(org) == before


def test_aware_at_defaults_to_now_and_a_small_skew_is_clamped(org: Settings) -> None:
    before = datetime.now(UTC)
    ahead = incident_in(aware_at=before + timedelta(seconds=30))
    assert ahead.aware_at is not None and ahead.aware_at <= datetime.now(UTC)
    naive = incident_in(aware_at=datetime(2026, 11, 1, 12, 0))
    assert naive.aware_at == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert incident_in(source="drill").is_drill


# --- timeline, run, status ---------------------------------------------------------------------


def test_timeline_lines_are_idempotent_on_their_key(org: Settings, actor: Actor) -> None:
    out = incidents.report(UnitOfWork(org), incident_in(), actor, notify=False).incident
    a = incidents.add_timeline(
        UnitOfWork(org), out.id, "containment", "rolled back", actor, idempotency_key="k-1"
    )
    b = incidents.add_timeline(
        UnitOfWork(org), out.id, "containment", "rolled back", actor, idempotency_key="k-1"
    )
    assert a == b
    incidents.add_timeline(UnitOfWork(org), out.id, "note", "no key, new line", actor)
    timeline = incidents.get_incident(UnitOfWork(org), out.id).timeline
    assert [e.kind for e in timeline][-2:] == ["containment", "note"]
    assert len(audits(org, "incident.timeline", out.id)) == 2
    with pytest.raises(InvalidInput) as bad:
        incidents.add_timeline(UnitOfWork(org), out.id, "note", " ", actor)
    assert bad.value.field == "text"
    with pytest.raises(NotFound):
        incidents.add_timeline(UnitOfWork(org), 999, "note", "x", actor)


def test_attach_run_and_status_changes(org: Settings, actor: Actor) -> None:
    out = incidents.report(
        UnitOfWork(org), incident_in(severity="SEV1"), actor, notify=False
    ).incident
    run = incidents.attach_run(UnitOfWork(org), out.id, "run-123", actor)
    assert run.flow_run_id == "run-123"
    incidents.attach_run(UnitOfWork(org), out.id, "run-123", actor)  # the same: no new line
    assert [e.kind for e in incidents.get_incident(UnitOfWork(org), out.id).timeline].count(
        "run"
    ) == 1

    contained = incidents.set_status(
        UnitOfWork(org), out.id, "contained", actor, note="rolled back"
    )
    (sla,) = contained.clocks
    assert sla.status == "met" and sla.time_left_seconds is None
    assert "status open → contained: rolled back" in [e.text for e in contained.timeline]
    closed = incidents.set_status(UnitOfWork(org), out.id, IncidentStatus.closed, actor)
    with UnitOfWork(org).read() as uow:
        assert uow.session.get(Incident, out.id).closed_at is not None  # type: ignore[union-attr]
    assert closed.status is IncidentStatus.closed
    assert incidents.list_incidents(UnitOfWork(org), open_only=True) == []
    reopened = incidents.set_status(UnitOfWork(org), out.id, "investigating", actor)
    assert reopened.status is IncidentStatus.investigating
    with pytest.raises(InvalidInput) as bad:
        incidents.set_status(UnitOfWork(org), out.id, "solved", actor)
    assert bad.value.field == "status"


def test_list_filters_by_system_and_open(org: Settings, actor: Actor) -> None:
    a = incidents.report(UnitOfWork(org), incident_in(), actor, notify=False).incident
    b = incidents.report(
        UnitOfWork(org), incident_in(system="fraud-detection"), actor, notify=False
    ).incident
    assert [i.id for i in incidents.list_incidents(UnitOfWork(org))] == [b.id, a.id]
    assert [i.id for i in incidents.list_incidents(UnitOfWork(org), system="fraud-detection")] == [
        b.id
    ]
    with pytest.raises(NotFound):
        incidents.list_incidents(UnitOfWork(org), system="nope")


def test_drills_are_marked_and_closing_one_stops_its_clocks(org: Settings, actor: Actor) -> None:
    drill = incidents.report(
        UnitOfWork(org), incident_in(source="drill", severity="SEV1"), actor
    ).incident
    assert drill.is_drill
    assert all(r.text.startswith("[DRILL] ") for r in notes(org, drill.id))
    incidents.confirm_serious(UnitOfWork(org), drill.id, "fundamental-rights", actor)
    closed = incidents.set_status(UnitOfWork(org), drill.id, "closed", actor)
    statuses = {c.rule: c.status.value for c in closed.clocks}
    assert statuses == {"internal-sla-contain": "met", "eu-ai-act-art73-general": "stopped"}
    # A drill and a real alert never share an incident.
    real = incidents.report(UnitOfWork(org), incident_in(fingerprint="fp-d"), actor)
    rehearsal = incidents.report(
        UnitOfWork(org), incident_in(fingerprint="fp-d", source="drill"), actor
    )
    assert real.created and rehearsal.created


# --- investigation -----------------------------------------------------------------------------


def test_root_cause_and_lessons(org: Settings, actor: Actor) -> None:
    out = incidents.report(UnitOfWork(org), incident_in(), actor, notify=False).incident
    rca = RootCauseIn(
        whys=[
            "Older applicants were scored lower",
            "The income feature was rescaled",
            "The release skipped the fairness check",
        ],
        fishbone={"process": ["No fairness gate in CI"], "data": ["Pension income missing"]},
    )
    rec = incidents.record_root_cause(UnitOfWork(org), out.id, rca, actor)
    assert rec.root_cause["root_cause"] == "The release skipped the fairness check"
    assert rec.root_cause["fishbone"] == {
        "process": ["No fairness gate in CI"],
        "data": ["Pension income missing"],
    }
    assert rec.root_cause["recorded_by"] == actor.who
    again = incidents.record_root_cause(UnitOfWork(org), out.id, rca.model_dump(), actor)
    assert [e.kind for e in again.timeline].count("root-cause") == 1

    lessons = incidents.record_lessons(
        UnitOfWork(org), out.id, "Fairness check gates release", actor
    )
    assert lessons.lessons == "Fairness check gates release"
    assert lessons.timeline[-1].kind == "lessons"

    for bad, field in [
        ({"whys": []}, "whys"),
        ({"whys": ["1", "2", "3", "4", "5", "6"]}, "whys"),
        ({"whys": ["x"], "fishbone": {"weather": ["rain"]}}, "fishbone"),
        ({"whys": ["x"], "blame": "Bob"}, "blame"),
    ]:
        with pytest.raises(InvalidInput) as err:
            incidents.record_root_cause(UnitOfWork(org), out.id, bad, actor)
        assert err.value.field == field
    with pytest.raises(InvalidInput):
        incidents.record_lessons(UnitOfWork(org), out.id, "  ", actor)


def test_aware_at_correction_needs_evidence_about_the_incident(org: Settings, actor: Actor) -> None:
    out = incidents.report(UnitOfWork(org), incident_in(), actor, notify=False).incident
    other = append(
        org,
        {"subject": "system:credit-scoring", "kind": "incident-report", "title": "x", "text": "x"},
        actor,
    )
    earlier = out.aware_at - timedelta(hours=5)
    before = counts(org)
    with pytest.raises(InvalidInput) as bad:
        incidents.correct_aware_at(UnitOfWork(org), out.id, earlier, other.id, actor)
    assert bad.value.field == "evidence"
    with pytest.raises(NotFound):
        incidents.correct_aware_at(UnitOfWork(org), out.id, earlier, 9999, actor)
    assert counts(org) == before


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_show_list_confirm_rca_lessons(org: Settings, actor: Actor, run_cli: Any) -> None:
    out = incidents.report(
        UnitOfWork(org), incident_in(title="Patient died after triage error"), actor
    ).incident

    shown = run_cli("incident", "show", str(out.id))
    assert shown.exit_code == 0, shown.output
    assert f"Incident #{out.id} [open] SEV2 bias-fairness on credit-scoring" in shown.output
    assert f"confirm-serious {out.id} --kind death|fundamental-rights" in shown.output
    as_json = json.loads(run_cli("incident", "show", str(out.id), "--json").output)
    assert as_json["id"] == out.id and as_json["timeline"][0]["kind"] == "reported"

    listed = run_cli("incident", "list", "--open", "--json")
    assert [i["id"] for i in json.loads(listed.output)] == [out.id]
    assert "credit-scoring" in run_cli("incident", "list").output

    confirmed = run_cli("incident", "confirm-serious", str(out.id), "--kind", "death")
    assert confirmed.exit_code == 0, confirmed.output
    assert "Art. 73(4)" in confirmed.output

    rca = run_cli(
        "incident",
        "rca",
        str(out.id),
        "--why",
        "Triage score too low",
        "--why",
        "Vital signs feature missing",
        "--fishbone-data",
        "Feed outage",
        "--root-cause",
        "No check for missing vitals",
    )
    assert rca.exit_code == 0, rca.output
    lessons = run_cli("incident", "lessons", str(out.id), "--text", "Alert on missing vitals")
    assert lessons.exit_code == 0, lessons.output
    rec = incidents.get_incident(UnitOfWork(org), out.id)
    assert rec.serious_kind == "death"
    assert rec.root_cause["root_cause"] == "No check for missing vitals"
    assert rec.root_cause["fishbone"] == {"data": ["Feed outage"]}
    assert rec.lessons == "Alert on missing vitals"

    clocks = json.loads(run_cli("incidents", "clocks", "--json").output)
    assert {c["rule"] for c in clocks} == {"eu-ai-act-art73-death", "internal-sla-contain"}
    table = run_cli("incidents", "clocks").output
    assert "Art. 73(4)" in table and "9 d 23 h" in table


@pytest.mark.parametrize(
    "args",
    [
        ["incident", "confirm-serious", "{id}", "--kind", "embarrassment"],
        ["incident", "confirm-serious", "999", "--kind", "death"],
        ["incident", "rca", "{id}"],
        [
            "incident",
            "rca",
            "{id}",
            "--why",
            "a",
            "--why",
            "b",
            "--why",
            "c",
            "--why",
            "d",
            "--why",
            "e",
            "--why",
            "f",
        ],
        ["incident", "lessons", "{id}", "--text", " "],
        ["incident", "aware-at", "{id}", "--at", "yesterday", "--evidence", "1"],
        ["incident", "aware-at", "{id}", "--at", "2026-11-01T10:00:00", "--evidence", "1"],
        ["incident", "aware-at", "{id}", "--at", "2026-11-01T10:00:00Z", "--evidence", "999"],
        ["incident", "show", "999"],
        ["incident", "list", "--system", "nope"],
        ["incidents", "clock-met", "999"],
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(
    org: Settings, actor: Actor, run_cli: Any, args: list[str]
) -> None:
    out = incidents.report(UnitOfWork(org), incident_in(), actor, notify=False).incident
    before = counts(org)
    result = run_cli(*[a.replace("{id}", str(out.id)) for a in args])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert counts(org) == before


def test_cli_aware_at_correction_moves_clocks(org: Settings, actor: Actor, run_cli: Any) -> None:
    out = incidents.report(
        UnitOfWork(org), incident_in(severity="SEV1"), actor, notify=False
    ).incident
    ev = append(
        org,
        {
            "subject": f"incident:{out.id}",
            "kind": "incident-report",
            "title": "Customer complaint received at 06:00",
            "text": "Ticket 4711",
        },
        actor,
    )
    new = (out.aware_at - timedelta(hours=3)).replace(microsecond=0)
    result = run_cli(
        "incident", "aware-at", str(out.id), "--at", new.isoformat(), "--evidence", str(ev.id)
    )
    assert result.exit_code == 0, result.output
    rec = incidents.get_incident(UnitOfWork(org), out.id)
    assert rec.aware_at == new and rec.clocks[0].deadline == new + timedelta(hours=4)


def test_the_services_do_not_import_prefect() -> None:
    code = (
        "import sys, aims_core.services.incidents, aims_core.services.clocks, "
        "aims_core.cli.incident_cmd; sys.exit('prefect' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
