"""CAPA (10.2): the policy as data, the service and its CLI, on SQLite and PostgreSQL.

Time is moved by `now=`, never by sleeping; waking a run is injected (the session's one real
Prefect API belongs to the flow tests, test_capa_e2e.py). Demo organisation: fraud-detection is
owned by ops.owner (manager: the CEO); auditor holds internal-auditor (a verifier role),
governance the governance-lead role (escalations, closure approval).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from records import count
from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.models import AuditEvent, Capa, CapaStatus, Evidence, Notification
from aims_core.ports import UNKNOWN_RUN, ResumeOutcome, Runs, RunStarted, RunState
from aims_core.services import approvals
from aims_core.services import capa as capas
from aims_core.services.approvals import DecisionIn
from aims_core.services.capa import CapaOut, CapaPolicyInvalid
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
OWNER, CEO, GOV, AUDITOR, SECURITY, DS = (
    f"{n}{D}" for n in ("ops.owner", "ceo", "governance", "auditor", "security", "ds.lead")
)
SYSTEM = "fraud-detection"


def tomorrow() -> date:
    """Read at each use: a module-level date goes stale when a run crosses midnight."""
    return date.today() + timedelta(days=1)


H = timedelta(hours=1)


def footprint(settings: Settings) -> tuple[int, ...]:
    return tuple(count(settings, m) for m in (Capa, AuditEvent, Evidence, Notification))


def opened(org: UnitOfWork, actor: Actor, **changes: Any) -> CapaOut:
    data = {"title": "Card-testing bursts not flagged", "owner": OWNER, "system": SYSTEM}
    return capas.open_capa(org, {**data, **changes}, actor)


def to_verification(org: UnitOfWork, actor: Actor, c: CapaOut, *, now: datetime) -> CapaOut:
    """Containment (first attempt only), root cause, one action, done at `now`."""
    if c.status is CapaStatus.containment:
        capas.record_containment(org, c.id, "Rule-based fallback switched on", actor)
    capas.record_root_cause(
        org,
        c.id,
        {
            "whys": ["Bursts were rare in training data"],
            "root_cause": f"No bursts (try {c.attempt})",
        },
        actor,
    )
    c = capas.add_action(
        org, c.id, {"title": "Add burst features", "owner": DS, "due": tomorrow()}, actor
    )
    return capas.complete_action(org, c.current_actions[-1].id, "PR 42 merged", actor, now=now)


def notes(settings: Settings, kind: str) -> list[tuple[str, str]]:
    with get_engine(settings.effective_database_url).connect() as conn:
        return [
            (key, text)
            for key, text in conn.execute(
                select(Notification.idempotency_key, Notification.text)
                .where(Notification.kind == kind)
                .order_by(Notification.id)
            )
        ]


def evidence_kinds(settings: Settings, capa_id: int) -> list[str]:
    with get_engine(settings.effective_database_url).connect() as conn:
        return list(
            conn.scalars(
                select(Evidence.kind)
                .where(Evidence.subject == f"capa:{capa_id}")
                .order_by(Evidence.id)
            )
        )


def audit(settings: Settings, capa_id: int) -> list[str]:
    with get_engine(settings.effective_database_url).connect() as conn:
        return list(
            conn.scalars(
                select(AuditEvent.action)
                .where(
                    AuditEvent.subject == f"capa:{capa_id}", AuditEvent.action.startswith("capa.")
                )
                .order_by(AuditEvent.id)
            )
        )


class FakeRuns(Runs):
    """The Runs port without an engine: runs in the given states (`default` for any other),
    resumes recorded and answered `answer`."""

    def __init__(
        self,
        states: dict[str, RunState | None] | None = None,
        *,
        default: RunState | None = UNKNOWN_RUN,
        answer: ResumeOutcome = ResumeOutcome.resumed,
    ) -> None:
        self.states = states or {}
        self.default = default
        self.answer = answer
        self.resumed: list[tuple[str, dict[str, Any], int, float]] = []

    def start(
        self,
        deployment: str,
        parameters: Any,
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        wait_s: float = 0,
    ) -> RunStarted:
        raise AssertionError(f"nothing here starts a run ({deployment})")

    def resume(
        self, flow_run_id: str, run_input: Any, *, attempts: int = 1, delay: float = 0.5
    ) -> ResumeOutcome:
        self.resumed.append((flow_run_id, dict(run_input), attempts, delay))
        return self.answer

    def state(self, flow_run_id: str) -> RunState | None:
        return self.states.get(flow_run_id, self.default)

    def url(self, flow_run_id: str) -> str:
        return f"http://ui/runs/{flow_run_id}"


# --- the policy --------------------------------------------------------------------------------


def test_shipped_policy_and_an_organisation_override(settings: Settings) -> None:
    policy = capas.capa_policy(settings)
    assert policy.verification.after_days == 30
    assert policy.closure.approver_roles == ["governance-lead", "compliance-officer"]
    assert policy.steps.stand_in_roles == ["governance-lead"]  # besides the owners, who answer
    (settings.data_dir / "capa_policy.yaml").write_text(
        "verification: {after_days: 0, verifier_roles: [internal-auditor]}\n"
        "tracking: {remind_days_before: [3]}\n"
        "closure: {activity: capa-closure, approver_roles: [top-management], quorum: 1}\n"
    )
    policy = capas.capa_policy(settings)
    assert (policy.verification.after_days, policy.closure.approver_roles) == (
        0,
        ["top-management"],
    )
    assert policy.steps.stand_in_roles == []  # not named: only the owners answer the steps


def test_a_bad_policy_names_every_problem(settings: Settings) -> None:
    (settings.data_dir / "capa_policy.yaml").write_text(
        "verification: {after_days: -1, verifier_roles: [auditors]}\n"
        "tracking: {escalation_role: boss}\n"
        "closure: {activity: capa-closure, approver_roles: [], quorum: 0}\n"
    )
    with pytest.raises(CapaPolicyInvalid) as err:
        capas.capa_policy(settings)
    problems = "\n".join(err.value.problems)
    for expected in ("verification.after_days", "closure.approver_roles", "closure.quorum"):
        assert expected in problems
    (settings.data_dir / "capa_policy.yaml").write_text(
        "verification: {after_days: 1, verifier_roles: [auditors]}\n"
        "tracking: {escalation_role: boss}\n"
        "closure: {activity: capa-closure, approver_roles: [legal]}\n"
        "steps: {stand_in_roles: [deputy]}\n"
    )
    with pytest.raises(CapaPolicyInvalid) as err:
        capas.capa_policy(settings)
    assert len(err.value.problems) == 3
    assert "unknown role 'auditors'" in str(err.value)
    assert "tracking.escalation_role: unknown role 'boss'" in str(err.value)
    assert "steps.stand_in_roles: unknown role 'deputy'" in str(err.value)


# --- opening -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"owner": "not-an-email"}, "owner"),
        ({"owner": f"nobody{D}"}, "owner"),
        ({"title": "  "}, "title"),
        ({"system": "no-such-system"}, "system"),
        ({"control_id": "A.99.9"}, "control_id"),
        ({"source": "incident"}, "incident_id"),
        ({"incident_id": 999, "source": "incident"}, "incident_id"),
        ({"verify_after_days": -1}, "verify_after_days"),
        ({"source": "rumour"}, "source"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    org: UnitOfWork, actor: Actor, changes: dict[str, Any], field: str
) -> None:
    from pydantic import ValidationError

    from aims_core.errors import AimsError, from_validation_error

    before = footprint(org.settings)
    with pytest.raises((AimsError, ValidationError)) as err:
        opened(org, actor, **changes)
    exc = err.value
    named = from_validation_error(exc).field if isinstance(exc, ValidationError) else exc.field
    assert field in (named or "")
    assert footprint(org.settings) == before


def test_open_is_idempotent_on_its_key_and_tells_the_owner(org: UnitOfWork, actor: Actor) -> None:
    c = opened(org, actor, idempotency_key="incident-77", control_id="A.6.2.6")
    assert (c.status, c.attempt, c.verify_after_days, c.owner) == (
        CapaStatus.containment,
        1,
        30,
        OWNER,
    )
    assert opened(org, actor, idempotency_key="incident-77").id == c.id
    with pytest.raises(Conflict):
        opened(org, actor, idempotency_key="incident-77", source="audit-finding")
    assert count(org.settings, Capa) == 1
    assert evidence_kinds(org.settings, c.id) == ["capa-record"]
    assert audit(org.settings, c.id) == ["capa.opened"]
    [(_key, text)] = notes(org.settings, "capa-opened")
    assert f"You own CAPA {c.id} on {SYSTEM}" in text
    # Without a key every call opens a new CAPA.
    assert opened(org, actor).id != opened(org, actor).id


def test_containment_given_at_opening_goes_straight_to_root_cause(
    org: UnitOfWork, actor: Actor
) -> None:
    c = opened(org, actor, containment="Model rolled back to v12")
    assert (c.status, c.containment) == (CapaStatus.root_cause, "Model rolled back to v12")
    assert audit(org.settings, c.id) == ["capa.opened", "capa.contained"]


# --- the steps ---------------------------------------------------------------------------------


def test_steps_are_taken_in_order(org: UnitOfWork, actor: Actor) -> None:
    c = opened(org, actor)
    rca = {"whys": ["a"], "root_cause": "b"}
    with pytest.raises(Conflict, match="containment/correction"):
        capas.record_root_cause(org, c.id, rca, actor)
    with pytest.raises(Conflict):
        capas.add_action(org, c.id, {"title": "x", "owner": DS, "due": tomorrow()}, actor)
    with pytest.raises(InvalidInput):
        capas.record_containment(org, c.id, "   ", actor)
    c = capas.record_containment(org, c.id, "Fallback on", actor)
    assert capas.record_containment(org, c.id, "Fallback on", actor).status is c.status
    with pytest.raises(Conflict):
        capas.record_containment(org, c.id, "Something else", actor)
    with pytest.raises(Exception, match="whys"):
        capas.record_root_cause(org, c.id, {"root_cause": "b"}, actor)
    with pytest.raises(Exception, match="fishbone"):
        capas.record_root_cause(org, c.id, {"method": "fishbone", "root_cause": "b"}, actor)
    c = capas.record_root_cause(
        org,
        c.id,
        {"method": "fishbone", "fishbone": {"data": ["no bursts"]}, "root_cause": "b"},
        actor,
    )
    assert c.status is CapaStatus.action_plan
    with pytest.raises(InvalidInput, match="in the past"):
        capas.add_action(
            org, c.id, {"title": "x", "owner": DS, "due": date.today() - timedelta(days=1)}, actor
        )
    with pytest.raises(NotFound):
        capas.add_action(org, c.id, {"title": "x", "owner": f"nobody{D}", "due": tomorrow()}, actor)
    with pytest.raises(NotFound):
        capas.complete_action(org, 9999, "", actor)


def test_verification_is_due_after_the_last_action_and_checks_the_verifier(
    org: UnitOfWork, actor: Actor
) -> None:
    t0 = datetime(2030, 1, 10, 12, tzinfo=UTC)
    c = opened(org, actor, verify_after_days=10)
    capas.record_containment(org, c.id, "Fallback on", actor)
    capas.record_root_cause(org, c.id, {"whys": ["a"], "root_cause": "b"}, actor)
    for title in ("Add burst features", "Retrain"):
        c = capas.add_action(org, c.id, {"title": title, "owner": DS, "due": tomorrow()}, actor)
    first, second = c.current_actions
    c = capas.complete_action(org, first.id, "PR 42", actor, now=t0)
    assert (c.status, c.verification_due_at) == (CapaStatus.tracking, None)
    c = capas.complete_action(org, second.id, "", actor, now=t0 + timedelta(days=2))
    assert c.status is CapaStatus.verification
    assert c.verification_due_at == t0 + timedelta(days=12)
    assert capas.complete_action(org, second.id, "again", actor).verification_due_at == (
        c.verification_due_at
    ), "idempotent"
    assert capas.wait_step(c, t0).kind == "until-due"  # type: ignore[union-attr]

    due = t0 + timedelta(days=12)
    with pytest.raises(Conflict, match="not before"):
        capas.record_verification(org, c.id, True, "ok", actor, verifier=AUDITOR, now=due - 1 * H)
    for verifier, problem in ((None, "who verified"), (SECURITY, "may not verify")):
        with pytest.raises(InvalidInput, match=problem):
            capas.record_verification(org, c.id, True, "ok", actor, verifier=verifier, now=due)
    with pytest.raises(InvalidInput, match="evidence"):
        capas.record_verification(org, c.id, True, " ", actor, verifier=AUDITOR, now=due)
    # The owner does not verify their own fix, even holding a verifier role.
    with org as uow:
        from aims_core.models import Person, PersonRole

        person = uow.session.scalar(select(Person).where(Person.email == OWNER))
        uow.session.add(PersonRole(person_id=person.id, role_id="internal-auditor"))  # type: ignore[union-attr]
        uow.commit()
    with pytest.raises(InvalidInput, match="someone else verifies"):
        capas.record_verification(org, c.id, True, "ok", actor, verifier=OWNER, now=due)
    assert capas.get_capa(org, c.id).verifications == []


def test_a_failed_verification_returns_to_root_cause_and_a_passing_one_awaits_closure(
    org: UnitOfWork, actor: Actor
) -> None:
    now = datetime.now(UTC)
    c = to_verification(org, actor, opened(org, actor, verify_after_days=0), now=now)
    assert capas.wait_step(c, now).prefix == f"capa-{c.id}-a1-v1-verify"  # type: ignore[union-attr]

    c = capas.record_verification(
        org, c.id, False, "Two bursts missed last week", actor, verifier=AUDITOR, now=now
    )
    assert (c.status, c.attempt, c.current_actions, c.root_cause) == (
        CapaStatus.root_cause,
        2,
        [],
        None,
    )
    assert [r.attempt for r in c.root_causes] == [1]
    assert [(v.number, v.attempt, v.effective) for v in c.verifications] == [(1, 1, False)]
    assert capas.wait_step(c).prefix == f"capa-{c.id}-a2-root-cause"  # type: ignore[union-attr]
    [(_key, text)] = notes(org.settings, "capa-verification")
    assert "NOT effective" in text and "attempt 2" in text
    with pytest.raises(Conflict, match="root cause"):
        capas.add_action(org, c.id, {"title": "x", "owner": DS, "due": tomorrow()}, actor)

    c = to_verification(org, actor, c, now=now)
    assert [a.attempt for a in c.actions] == [1, 2]
    assert capas.wait_step(c, now).prefix == f"capa-{c.id}-a2-v2-verify"  # type: ignore[union-attr]
    c = capas.record_verification(
        org, c.id, True, "No burst missed in 30 days", actor, verifier=AUDITOR, now=now
    )
    assert (c.status, c.attempt) == (CapaStatus.awaiting_closure, 2)
    assert capas.wait_step(c) is None
    assert audit(org.settings, c.id) == [
        "capa.opened",
        "capa.contained",
        "capa.root-cause",
        "capa.action-added",
        "capa.action-done",
        "capa.verification-scheduled",
        "capa.verified-ineffective",
        "capa.root-cause",
        "capa.action-added",
        "capa.action-done",
        "capa.verification-scheduled",
        "capa.verified-effective",
    ]
    assert evidence_kinds(org.settings, c.id) == [
        "capa-record",  # the nonconformity
        "capa-record",  # containment
        "root-cause-analysis",
        "capa-record",  # action done
        "capa-record",  # verification 1
        "root-cause-analysis",
        "capa-record",
        "capa-record",  # verification 2
    ]


def test_closure_is_approved_by_the_policy_roles_never_the_owner(
    org: UnitOfWork, actor: Actor
) -> None:
    now = datetime.now(UTC)
    c = to_verification(org, actor, opened(org, actor, verify_after_days=0), now=now)
    c = capas.record_verification(org, c.id, True, "No recurrence", actor, verifier=AUDITOR)
    spec = capas.closure_spec(org, c.id)
    assert (spec.idempotency_key, spec.subject, spec.requester) == (
        f"capa-{c.id}-closure-1",
        f"capa:{c.id}",
        OWNER,
    )
    assert (spec.approver_roles, spec.quorum) == (["governance-lead", "compliance-officer"], 1)
    assert len(spec.evidence_ids) == 3  # analysis, action, verification
    request = approvals.create_request(org, spec, actor)
    assert OWNER not in request.approvers
    with pytest.raises(Conflict, match="not decided"):
        capas.record_closure(org, c.id, actor)

    approvals.decide(
        org, DecisionIn(request_id=request.id, person=GOV, outcome="reject", comment="thin"), actor
    )
    c = capas.record_closure(org, c.id, actor, now=now)
    assert (c.status, c.verification_due_at) == (CapaStatus.verification, now)
    assert (c.verifications[0].closure, c.verifications[0].closure_reasons) == (
        "rejected",
        [f"{GOV}: thin"],
    )
    c = capas.record_verification(org, c.id, True, "60 days clean", actor, verifier=AUDITOR)
    spec = capas.closure_spec(org, c.id)
    assert spec.idempotency_key == f"capa-{c.id}-closure-2"
    request = approvals.create_request(org, spec, actor)
    approvals.decide(org, DecisionIn(request_id=request.id, person=GOV, outcome="approve"), actor)
    c = capas.record_closure(org, c.id, actor)
    assert (c.status, c.closure_request_id) == (CapaStatus.closed, request.id)
    assert capas.record_closure(org, c.id, actor).closed_at == c.closed_at, "idempotent"
    assert evidence_kinds(org.settings, c.id)[-1] == "capa-record"
    with get_engine(org.settings.effective_database_url).connect() as conn:
        record = conn.scalar(
            select(Evidence.content).where(Evidence.idempotency_key == f"capa-{c.id}-closed")
        )
    assert "## Closure: approved by governance@northwind.example" in record
    assert "closure rejected" in record
    assert capas.list_capas(org, open_only=True) == []
    report = capas.report_markdown(org, c.id)
    assert f"## CAPA {c.id}: Card-testing bursts not flagged — CLOSED" in report
    assert "- [x] closure approved, records kept" in report
    assert "| verified-effective |" in report


def test_similar_open_capas_on_the_same_system_or_control(org: UnitOfWork, actor: Actor) -> None:
    a = opened(org, actor, control_id="A.6.2.6")
    b = opened(org, actor, title="Drift alert ignored")
    other = opened(org, actor, system="credit-scoring", control_id="A.6.2.6")
    unrelated = opened(org, actor, system="cv-screening", title="Another")
    assert [c.id for c in capas.similar_open(org, a.id)] == [b.id, other.id]
    assert [c.id for c in capas.similar_open(org, other.id)] == [a.id]
    assert capas.similar_open(org, unrelated.id) == []
    capas.record_containment(org, a.id, "Fallback on", actor)
    c = capas.record_root_cause(org, a.id, {"whys": ["x"], "root_cause": "y"}, actor)
    assert c.root_cause is not None and c.root_cause.similar == [b.id, other.id]
    assert [c.id for c in capas.list_capas(org, system=SYSTEM)] == [b.id, a.id]


# --- tracking: reminders, escalation, verification due -----------------------------------------


def test_action_reminders_before_and_on_the_due_date_and_one_escalation(
    org: UnitOfWork, actor: Actor
) -> None:
    settings = org.settings
    due = date.today() + timedelta(days=10)
    c = opened(org, actor, containment="Fallback on")
    capas.record_root_cause(org, c.id, {"whys": ["a"], "root_cause": "b"}, actor)
    c = capas.add_action(org, c.id, {"title": "Retrain", "owner": DS, "due": due}, actor)
    action = c.current_actions[0]
    day = datetime.combine(due, time.min, UTC)

    assert capas.due_reminders(settings, day - timedelta(days=8)).reminded_ids == []
    for n, at in enumerate((day - timedelta(days=7), day - timedelta(days=1), day), 1):
        assert capas.due_reminders(settings, at - timedelta(minutes=1)).reminded_ids == []
        assert capas.due_reminders(settings, at).reminded_ids == [action.id]
        assert capas.due_reminders(settings, at).reminded_ids == [], "once at the same now"
        assert capas.get_capa(org, c.id).actions[0].reminders_sent == n
    reminders = notes(settings, "capa-reminder")
    assert [k for k, _ in reminders] == [f"capa-action-{action.id}-reminder-{n}" for n in (1, 2, 3)]
    assert "is due today" in reminders[-1][1]

    end = datetime.combine(due, time(23, 59, 59), UTC)
    assert capas.due_reminders(settings, end - timedelta(seconds=1)).escalated_ids == []
    report = capas.due_reminders(settings, end)
    assert report.escalated_ids == [action.id]
    for later in (end, end + 5 * H, end + timedelta(days=30)):
        assert capas.due_reminders(settings, later).escalated_ids == []
    escalations = notes(settings, "capa-escalation")
    # ds.lead's manager (credit.owner) and the governance lead.
    assert sorted(k for k, _ in escalations) == sorted(
        f"capa-action-{action.id}-escalation-to-{pid}"
        for pid in _ids(settings, f"credit.owner{D}", GOV)
    )
    assert "was due" in escalations[0][1]
    assert audit(settings, c.id).count("capa.action-escalated") == 1

    # Done: nothing more about it.
    capas.complete_action(org, action.id, "done", actor)
    assert capas.due_reminders(settings, end + timedelta(days=60)).model_dump(
        include={"reminded_ids", "escalated_ids"}
    ) == {"reminded_ids": [], "escalated_ids": []}


def _ids(settings: Settings, *emails: str) -> list[int]:
    from aims_core.models import Person

    with get_engine(settings.effective_database_url).connect() as conn:
        return list(conn.scalars(select(Person.id).where(Person.email.in_(emails))))


def test_a_late_planned_action_gets_the_latest_reminder_only(org: UnitOfWork, actor: Actor) -> None:
    c = opened(org, actor, containment="Fallback on")
    capas.record_root_cause(org, c.id, {"whys": ["a"], "root_cause": "b"}, actor)
    c = capas.add_action(org, c.id, {"title": "Hotfix", "owner": DS, "due": tomorrow()}, actor)
    now = datetime.combine(tomorrow() - timedelta(days=1), time(9), UTC)
    assert capas.due_reminders(org.settings, now).reminded_ids == [c.current_actions[0].id]
    assert [k for k, _ in notes(org.settings, "capa-reminder")] == [
        f"capa-action-{c.current_actions[0].id}-reminder-2"
    ]


def test_escalation_with_nobody_to_tell_is_a_failure_not_a_record(
    org: UnitOfWork, actor: Actor
) -> None:
    (org.settings.data_dir / "capa_policy.yaml").write_text(
        "verification: {after_days: 0}\n"
        "tracking: {remind_days_before: []}\n"
        "closure: {activity: capa-closure, approver_roles: [governance-lead]}\n"
    )
    c = opened(org, actor, containment="Fallback on")
    capas.record_root_cause(org, c.id, {"whys": ["a"], "root_cause": "b"}, actor)
    c = capas.add_action(org, c.id, {"title": "Fix", "owner": CEO, "due": tomorrow()}, actor)
    report = capas.due_reminders(org.settings, datetime.now(UTC) + timedelta(days=5))
    assert report.escalated_ids == []
    assert [(f.step, f.id) for f in report.failures] == [("escalate", c.current_actions[0].id)]
    assert "nobody to escalate to" in report.failures[0].error
    assert capas.get_capa(org, c.id).current_actions[0].escalated_at is None


def test_due_verifications_are_announced_once_and_their_runs_woken(
    org: UnitOfWork, actor: Actor
) -> None:
    t0 = datetime.now(UTC)
    c = to_verification(org, actor, opened(org, actor, verify_after_days=5), now=t0)
    capas.attach_run(org, c.id, "00000000-0000-0000-0000-000000000001", actor)
    woken: list[int] = []

    def wake(settings: Settings, capa: CapaOut) -> ResumeOutcome:
        woken.append(capa.id)
        return ResumeOutcome.resumed if len(woken) == 1 else ResumeOutcome.nothing_to_do

    settings = org.settings
    runs = FakeRuns()  # not asked: `wake` stands in for it
    assert (
        capas.wake_due_verifications(
            settings, t0 + timedelta(days=4), runs=runs, wake=wake
        ).announced_ids
        == []
    )
    assert woken == []
    due = t0 + timedelta(days=5)
    report = capas.tick(settings, due, runs=runs, wake=wake)
    assert (report.announced_ids, report.woken_ids) == ([c.id], [c.id])
    told = notes(settings, "capa-verification-due")
    # The owner and the verifier-role holders (auditor, contract auditor, compliance, governance).
    assert len(told) == 5 and all(k.startswith(f"capa-{c.id}-v1-due-") for k, _ in told)
    again = capas.tick(settings, due, runs=runs, wake=wake)
    assert (again.announced_ids, again.woken_ids) == ([], [])
    assert len(notes(settings, "capa-verification-due")) == 5
    assert audit(settings, c.id).count("capa.verification-due") == 1
    assert capas.wait_step(capas.get_capa(org, c.id), due).kind == "verification"  # type: ignore[union-attr]
    assert runs.resumed == []


def test_the_default_wake_resumes_only_a_run_sleeping_until_the_verification_date(
    org: UnitOfWork, actor: Actor
) -> None:
    t0 = datetime.now(UTC)
    sleeping, asking, running, ended, unknown, unreachable = (
        f"00000000-0000-0000-0000-00000000000{n}" for n in range(1, 7)
    )
    ids: dict[str, int] = {}
    for run in (sleeping, asking, running, ended, unknown, unreachable):
        c = to_verification(org, actor, opened(org, actor, verify_after_days=0), now=t0)
        capas.attach_run(org, c.id, run, actor)
        ids[run] = c.id
    runs = FakeRuns(
        {
            sleeping: RunState(
                name="Suspended", paused=True, pause_key=f"capa-{ids[sleeping]}-a1-v1-until-due"
            ),
            asking: RunState(
                name="Suspended", paused=True, pause_key=f"capa-{ids[asking]}-a1-v1-verify"
            ),
            running: RunState(name="Running"),
            ended: RunState(name="Completed", final=True, completed=True),
            unreachable: None,
        }
    )
    report = capas.tick(org.settings, t0, runs=runs)
    assert runs.resumed == [(sleeping, {}, 1, 0)]
    assert report.woken_ids == [ids[sleeping]]
    assert report.ended_ids == [ids[ended], ids[unknown]]
    assert report.deferred_ids == [ids[unreachable]]
    assert report.announced_ids == sorted(ids.values())
    assert report.failures == []
    assert report.summary() == "reminded 0, escalated 0, verification due 6, woken 1, deferred 1"


# --- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def engine_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """The CLI's two doors to the engine, recorded instead of taken."""
    from aims_core.cli import engine

    calls: dict[str, list[Any]] = {"start": [], "wake": []}

    def start_run(deployment: str, parameters: dict[str, Any], **kw: Any) -> tuple[str, str, str]:
        calls["start"].append((deployment, parameters, kw))
        return "11111111-1111-1111-1111-111111111111", kw["name"], "http://ui/run"

    class Woken(FakeRuns):
        def resume(self, flow_run_id: str, run_input: Any, **kw: Any) -> ResumeOutcome:
            calls["wake"].append(str(flow_run_id))
            return ResumeOutcome.resumed

    monkeypatch.setattr(engine, "start_run", start_run)
    monkeypatch.setattr(engine, "runs", lambda: Woken(default=None))
    return calls


def test_cli_open_without_the_engine_records_the_capa_and_says_so(
    org: UnitOfWork, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aims_core.cli import engine

    def down(*args: Any, **kw: Any) -> Any:
        raise engine.EngineNotRunning("the engine is not running (test)", field="engine")

    monkeypatch.setattr(engine, "start_run", down)
    result = run_cli(
        "capa", "open", "--title", "Drift ignored", "--owner", OWNER, "--system", SYSTEM
    )
    assert result.exit_code == 0, result.output
    assert "opened CAPA 1: Drift ignored" in result.output
    assert "CAPA 1 is recorded, but its run was not started" in result.output
    assert "`aims capa start 1`" in result.output
    listed = json.loads(run_cli("capa", "list", "--open", "--json").output)
    assert [(c["id"], c["status"], c["flow_run_id"]) for c in listed] == [(1, "containment", None)]


def test_cli_bad_input_is_one_line_and_writes_nothing(org: UnitOfWork, run_cli: Any) -> None:
    before = footprint(org.settings)
    for args, message in (
        (("--owner", "nope"), "error: owner: 'nope' is not an email address"),
        (("--owner", OWNER, "--incident", "5"), "error: incident_id: no incident 5"),
        (("--owner", OWNER, "--control", "Z.1"), "error: control_id: no clause or control"),
    ):
        result = run_cli("capa", "open", "--title", "x", *args)
        assert result.exit_code == 2, result.output
        assert message in result.output
    assert footprint(org.settings) == before
    result = run_cli("capa", "show", "42")
    assert (result.exit_code, "error: capa: no CAPA 42" in result.output) == (2, True)


def test_cli_walks_the_steps_and_wakes_the_run_when_a_step_is_complete(
    org: UnitOfWork, run_cli: Any, engine_calls: dict[str, list[Any]]
) -> None:
    (org.settings.data_dir / "capa_policy.yaml").write_text(
        "verification: {after_days: 0, verifier_roles: [internal-auditor]}\n"
        "tracking: {remind_days_before: [1]}\n"
        "closure: {activity: capa-closure, approver_roles: [governance-lead]}\n"
    )
    opened_ = run_cli(
        "capa", "open", "--title", "Bursts missed", "--owner", OWNER, "--system", SYSTEM
    )
    assert opened_.exit_code == 0, opened_.output
    assert "started run capa 1: Bursts missed (11111111-" in opened_.output
    [(deployment, parameters, kw)] = engine_calls["start"]
    assert (deployment, parameters) == ("capa/capa", {"capa_id": 1})
    assert kw == {"name": "capa 1: Bursts missed", "tags": ["capa", SYSTEM, "manual"]}

    def step(*args: str, wakes: bool) -> str:
        before = len(engine_calls["wake"])
        result = run_cli("capa", *args)
        assert result.exit_code == 0, result.output
        assert len(engine_calls["wake"]) == before + wakes, (args, result.output)
        return result.output

    assert "now root-cause" in step("containment", "1", "--text", "Fallback on", wakes=True)
    bad = run_cli("capa", "rca", "1", "--cause", "nonsense", "--root-cause", "x")
    assert (bad.exit_code, "error: cause: 'nonsense' is not CATEGORY=TEXT" in bad.output) == (
        2,
        True,
    )
    out = step("rca", "1", "--cause", "data=no bursts", "--root-cause", "Gap", wakes=True)
    assert "root cause recorded (attempt 1)" in out
    due = str(tomorrow())
    out = step("action", "1", "--title", "Features", "--owner", DS, "--due", due, wakes=True)
    assert f"action 1 planned for {DS}, due {due}" in out
    step("action", "1", "--title", "Retrain", "--owner", DS, "--due", due, wakes=False)
    step("done", "1", "--evidence", "PR 42", wakes=False)
    assert "now verification" in step("done", "2", wakes=True)
    refused = run_cli(
        "capa", "verify", "1", "--ineffective", "--evidence", "Recurred", "--as", OWNER
    )
    assert (refused.exit_code, "may not verify" in refused.output) == (2, True)
    out = step(
        "verify", "1", "--ineffective", "--evidence", "Recurred", "--as", AUDITOR, wakes=True
    )
    assert "NOT effective: back to root cause; now root-cause" in out

    shown = run_cli("capa", "show", "1")
    assert "status:       root-cause (attempt 2)" in shown.output
    assert "next:         root cause (attempt 2)" in shown.output
    data = json.loads(run_cli("capa", "show", "1", "--json").output)
    assert (data["attempt"], len(data["actions"]), data["similar_open"]) == (2, 2, [])
    markdown = run_cli("capa", "show", "1", "--markdown").output
    assert "- [x] react: contain and correct" in markdown
    assert "| verified-ineffective | tester@example.org | test |" not in markdown  # CLI actor
    assert "| verified-ineffective |" in markdown
    tick = run_cli("capa", "tick")
    assert tick.exit_code == 0, tick.output
    assert tick.output.startswith("CAPA tracking: reminded 0, escalated 0")
