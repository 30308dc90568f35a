"""The approval service and its CLI channel, on SQLite and PostgreSQL.

Uses the demo organisation: for `stage-gate` on credit-scoring the RACI has ds.lead Responsible,
credit.owner Accountable, compliance and ethics Consulted, governance only Informed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import typer
from pydantic import ValidationError
from records import count
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from aims_core.approval_codes import personal_code
from aims_core.cli import approvals_cmd
from aims_core.cli._base import AimsGroup
from aims_core.db import is_sqlite, session_factory
from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.models import (
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStatus,
    AuditEvent,
    Decision,
    Outcome,
    Person,
)
from aims_core.schemas import RaciIn
from aims_core.services import approvals as ap
from aims_core.services import raci
from aims_core.services.approvals import ApprovalRequestIn, DecisionIn, Refused
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
CEO, GOV, COMPLIANCE, CREDIT_OWNER, DS, ETHICS = (
    f"{n}{D}" for n in ("ceo", "governance", "compliance", "credit.owner", "ds.lead", "ethics")
)
GATE_ROLES = ["compliance-officer", "ethics-committee", "governance-lead"]
SLACK = Actor(who="slack:U0DEMO003", channel="slack")


# --- helpers -----------------------------------------------------------------------------------


def audits(settings: Settings, action: str) -> list[AuditEvent]:
    with session_factory(settings.effective_database_url)() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def person_id(settings: Settings, email: str) -> int:
    with session_factory(settings.effective_database_url)() as s:
        pid = s.scalar(select(Person.id).where(Person.email == email))
        assert pid is not None
        return pid


def gate(**changes: Any) -> ApprovalRequestIn:
    """A validation-to-deployment gate on credit-scoring, asked for by the data scientist."""
    base: dict[str, Any] = {
        "idempotency_key": "gate:credit-scoring:validation-deployment:1",
        "subject": "gate:credit-scoring:validation-deployment",
        "activity": "stage-gate",
        "system": "credit-scoring",
        "title": "Deploy credit-scoring v2 to production",
        "details": "**Risk tier:** high",
        "approver_roles": GATE_ROLES,
        "quorum": 2,
        "requester": DS,
        "deadline": datetime.now(UTC) + timedelta(days=3),
    }
    return ApprovalRequestIn(**(base | changes))


def decision(request_id: int, person: str, outcome: str = "approve", **kw: Any) -> DecisionIn:
    comment = kw.pop("comment", "not fit for deployment" if outcome == "reject" else "")
    return DecisionIn(request_id=request_id, person=person, outcome=outcome, comment=comment, **kw)


@pytest.fixture
def checks() -> Iterator[list[Callable[[Session, Person, ApprovalRequest], str | None]]]:
    """The competence hook list, restored after the test."""
    saved = list(ap.competence_checks)
    yield ap.competence_checks
    ap.competence_checks[:] = saved


# --- eligibility and creation ------------------------------------------------------------------


def test_eligible_are_role_holders_in_the_raci_plus_accountable_minus_requester(
    org: UnitOfWork, actor: Actor
) -> None:
    # System RACI: compliance and ethics hold a role and are Consulted; governance holds a role
    # but is only Informed; credit.owner is Accountable without any of the roles.
    out = ap.create_request(org, gate(requester=None, quorum=1), actor)
    assert sorted(out.approvers) == sorted([COMPLIANCE, ETHICS, CREDIT_OWNER])

    # Without a system the organisation-wide RACI applies: governance is its Accountable.
    org_wide = ap.create_request(
        org, gate(idempotency_key="k-org", system=None, requester=None, quorum=1), actor
    )
    assert sorted(org_wide.approvers) == sorted([COMPLIANCE, ETHICS, GOV])

    # The requester never decides, even when she is Consulted and holds the role.
    asked = ap.create_request(org, gate(idempotency_key="k-req", requester=ETHICS), actor)
    assert sorted(asked.approvers) == sorted([COMPLIANCE, CREDIT_OWNER])
    assert asked.requester == ETHICS

    # An activity without RACI: every holder of the roles.
    no_raci = ap.create_request(
        org,
        gate(idempotency_key="k-none", activity="policy-approval", system=None, requester=None),
        actor,
    )
    assert sorted(no_raci.approvers) == sorted([COMPLIANCE, ETHICS, GOV])


def test_request_fields_codes_and_audit(org: UnitOfWork, settings: Settings, actor: Actor) -> None:
    out = ap.create_request(org, gate(flow_run_id="run-1"), actor)
    assert out.status is ApprovalStatus.open and out.round == 1 and out.quorum == 2
    assert out.system == "credit-scoring" and out.requester == DS and out.flow_run_id == "run-1"
    assert out.deadline is not None and out.deadline.tzinfo is not None
    assert out.approvals == [] and out.rejections == [] and not out.resume_pending
    # Each approver's code counter starts at 0; no code (nor its hash) is stored
    # (tests/test_asks.py looks for them in every column).
    with session_factory(settings.effective_database_url)() as s:
        rows = s.scalars(select(ApprovalApprover).where(ApprovalApprover.request_id == out.id))
        stored = {r.person_id: (r.code_counter, r.wrong_codes, r.ui_locked_at) for r in rows}
    assert stored == {person_id(settings, e): (0, 0, None) for e in out.approvers}
    (event,) = audits(settings, "approval.requested")
    assert event.subject == f"approval:{out.id}" and event.actor == actor.who
    assert event.details["about"] == "gate:credit-scoring:validation-deployment"
    assert sorted(event.details["approvers"]) == sorted(out.approvers)


def test_quorum_larger_than_eligible_is_refused_with_nothing_written(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    with pytest.raises(InvalidInput) as exc:
        ap.create_request(org, gate(quorum=4), actor)  # only compliance, ethics, credit.owner
    assert exc.value.field == "quorum"
    assert "quorum 4" in exc.value.message
    assert all(e in exc.value.message for e in (COMPLIANCE, ETHICS, CREDIT_OWNER))
    with pytest.raises(InvalidInput) as exc:
        ap.create_request(org, gate(quorum=3, requester=ETHICS), actor)
    assert f"not the requester {ETHICS}" in exc.value.message
    assert count(settings, ApprovalRequest) == 0
    assert count(settings, ApprovalApprover) == 0
    assert audits(settings, "approval.requested") == []


def test_unknown_role_system_requester_and_bad_input(org: UnitOfWork, actor: Actor) -> None:
    with pytest.raises(InvalidInput) as exc:
        ap.create_request(org, gate(approver_roles=["chief-vibes-officer"]), actor)
    assert exc.value.field == "approver_roles"
    with pytest.raises(NotFound) as nf:
        ap.create_request(org, gate(system="no-such-system"), actor)
    assert nf.value.field == "system"
    with pytest.raises(NotFound) as nf:
        ap.create_request(org, gate(requester="nobody@northwind.example"), actor)
    assert nf.value.field == "requester"
    with pytest.raises(InvalidInput) as exc:
        ap.create_request(org, gate(evidence_ids=[424242]), actor)
    assert exc.value.field == "evidence_ids"
    with pytest.raises(ValidationError):
        gate(deadline=datetime(2030, 1, 1))  # naive: whose midnight?
    with pytest.raises(ValidationError):
        gate(quorum=0)
    with pytest.raises(ValidationError):
        gate(approver_roles=[])
    with pytest.raises(ValidationError):
        gate(subject="no kind")
    with pytest.raises(ValidationError):
        gate(surprise=True)


def test_create_is_idempotent_on_its_key(org: UnitOfWork, settings: Settings, actor: Actor) -> None:
    first = ap.create_request(org, gate(), actor)
    # A re-run recomputes its deadline: still the same request, nothing written.
    again = ap.create_request(org, gate(deadline=datetime.now(UTC) + timedelta(days=9)), actor)
    assert again.id == first.id and again.deadline == first.deadline
    assert count(settings, ApprovalRequest) == 1
    assert len(audits(settings, "approval.requested")) == 1
    with pytest.raises(Conflict) as exc:
        ap.create_request(org, gate(subject="gate:fraud-detection:x"), actor)
    assert exc.value.field == "idempotency_key"


# --- decisions ---------------------------------------------------------------------------------


def test_two_of_three_quorum(org: UnitOfWork, settings: Settings, actor: Actor) -> None:
    req = ap.create_request(org, gate(requester=None, flow_run_id="run-7"), actor)
    assert len(req.approvers) == 3

    first = ap.decide(org, decision(req.id, COMPLIANCE), SLACK)
    assert first.recorded and first.status is ApprovalStatus.open
    assert (first.approvals, first.quorum) == (1, 2)
    assert not first.resume_needed
    assert ap.get_request(org, req.id).decided_at is None

    second = ap.decide(org, decision(req.id, ETHICS), Actor(who="os:x as ethics", channel="cli"))
    assert second.recorded and second.status is ApprovalStatus.approved
    assert (second.approvals, second.rejections) == (2, 0)
    assert second.resume_needed and second.flow_run_id == "run-7"

    out = ap.get_request(org, req.id)
    assert out.status is ApprovalStatus.approved and out.decided_at is not None
    assert out.resume_pending
    assert sorted(out.approvals) == sorted([COMPLIANCE, ETHICS])
    assert {(d.person, d.channel) for d in out.decisions} == {
        (COMPLIANCE, "slack"),
        (ETHICS, "cli"),
    }
    events = audits(settings, "approval.decided")
    assert [(e.channel, e.details["person"], e.details["status"]) for e in events] == [
        ("slack", COMPLIANCE, "open"),
        ("cli", ETHICS, "approved"),
    ]
    assert events[1].actor == "os:x as ethics"
    # The third approver is too late.
    with pytest.raises(Refused) as exc:
        ap.decide(org, decision(req.id, CREDIT_OWNER), SLACK)
    assert exc.value.reason == "closed"


def test_a_rejection_rejects(org: UnitOfWork, settings: Settings, actor: Actor) -> None:
    req = ap.create_request(org, gate(flow_run_id="run-r"), actor)
    result = ap.decide(org, decision(req.id, COMPLIANCE, "reject", comment="bias untested"), SLACK)
    assert result.recorded and result.status is ApprovalStatus.rejected
    assert (result.approvals, result.rejections) == (0, 1)
    assert result.resume_needed
    out = ap.get_request(org, req.id)
    assert out.rejections == [COMPLIANCE] and out.decisions[0].comment == "bias untested"


def test_reject_needs_a_comment(org: UnitOfWork, settings: Settings, actor: Actor) -> None:
    req = ap.create_request(org, gate(), actor)
    with pytest.raises(InvalidInput) as exc:
        ap.decide(org, decision(req.id, COMPLIANCE, "reject", comment="   "), SLACK)
    assert exc.value.field == "comment"
    assert count(settings, Decision) == 0


def test_identical_redelivery_writes_nothing(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    req = ap.create_request(org, gate(quorum=1, flow_run_id="run-d"), actor)
    first = ap.decide(org, decision(req.id, COMPLIANCE), SLACK)
    assert first.recorded and first.status is ApprovalStatus.approved and first.resume_needed
    # Slack delivers the click twice more, after the request closed: answered OK, nothing written.
    for _ in range(2):
        again = ap.decide(org, decision(req.id, COMPLIANCE), SLACK)
        assert not again.recorded and again.status is ApprovalStatus.approved
        assert again.resume_needed  # still pending: the bridge may try the resume again
    assert count(settings, Decision) == 1
    assert len(audits(settings, "approval.decided")) == 1
    assert audits(settings, "approval.refused") == []


def test_changed_mind_is_refused(org: UnitOfWork, settings: Settings, actor: Actor) -> None:
    req = ap.create_request(org, gate(), actor)
    ap.decide(org, decision(req.id, COMPLIANCE), SLACK)
    with pytest.raises(Refused) as exc:
        ap.decide(org, decision(req.id, COMPLIANCE, "reject"), SLACK)
    assert exc.value.reason == "already-decided"
    assert count(settings, Decision) == 1
    assert ap.get_request(org, req.id).status is ApprovalStatus.open


def _refusal_cases() -> dict[str, Callable[[Settings, int], tuple[DecisionIn, Actor]]]:
    """Each builds a decision on an open 2-of-3 gate (requester ds.lead) that must be refused."""
    ui = Actor(who="prefect-ui", channel="ui")

    def code_of(settings: Settings, rid: int, email: str) -> str:
        key = settings.evidence_key_bytes()
        assert key
        return personal_code(key, rid, person_id(settings, email), 0)

    return {
        "not-eligible": lambda s, rid: (decision(rid, GOV), SLACK),
        "requester": lambda s, rid: (decision(rid, DS), SLACK),
        "unknown-request": lambda s, rid: (decision(rid + 1000, COMPLIANCE), SLACK),
        "unknown-person": lambda s, rid: (decision(rid, "nobody@northwind.example"), SLACK),
        "bad-code:none": lambda s, rid: (decision(rid, COMPLIANCE), ui),
        "bad-code:wrong": lambda s, rid: (decision(rid, COMPLIANCE, code="ABCDE-FGHIJ"), ui),
        "bad-code:other-approver": lambda s, rid: (
            decision(rid, COMPLIANCE, code=code_of(s, rid, ETHICS)),
            ui,
        ),
        "bad-code:other-request": lambda s, rid: (
            decision(rid, COMPLIANCE, code=code_of(s, rid + 1, COMPLIANCE)),
            ui,
        ),
    }


@pytest.mark.parametrize("case", list(_refusal_cases()))
def test_refusals_write_one_audit_event_and_no_decision(
    case: str, org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    req = ap.create_request(org, gate(requester=DS), actor)
    data, who = _refusal_cases()[case](settings, req.id)
    with pytest.raises(Refused) as exc:
        ap.decide(org, data, who)
    assert exc.value.reason == case.split(":")[0]
    assert count(settings, Decision) == 0
    assert audits(settings, "approval.decided") == []
    (event,) = audits(settings, "approval.refused")
    assert event.details["reason"] == exc.value.reason
    assert event.details["person"] == data.person
    assert (event.actor, event.channel) == (who.who, who.channel)
    assert event.subject == f"approval:{data.request_id}"
    assert ap.get_request(org, req.id).status is ApprovalStatus.open


def test_closed_refusal_is_audited(org: UnitOfWork, settings: Settings, actor: Actor) -> None:
    req = ap.create_request(org, gate(quorum=1), actor)
    ap.decide(org, decision(req.id, COMPLIANCE), SLACK)
    with pytest.raises(Refused) as exc:
        ap.decide(org, decision(req.id, ETHICS), SLACK)
    assert exc.value.reason == "closed"
    assert count(settings, Decision) == 1
    (event,) = audits(settings, "approval.refused")
    assert event.details == {
        "reason": "closed",
        "person": ETHICS,
        "channel": "slack",
        "outcome": "approve",
        "message": exc.value.message,
    }


def test_competence_hook_refuses(
    org: UnitOfWork, settings: Settings, actor: Actor, checks: list[Any]
) -> None:
    seen: list[tuple[str, int]] = []

    def ethics_training(session: Session, person: Person, req: ApprovalRequest) -> str | None:
        seen.append((person.email, req.id))
        if person.email == ETHICS:
            return f"{person.email}: AI ethics training expired on 2026-01-31"
        return None

    checks.append(ethics_training)
    req = ap.create_request(org, gate(), actor)
    with pytest.raises(Refused) as exc:
        ap.decide(org, decision(req.id, ETHICS), SLACK)
    assert exc.value.reason == "training" and "expired" in exc.value.message
    assert count(settings, Decision) == 0
    (event,) = audits(settings, "approval.refused")
    assert event.details["reason"] == "training"
    # Someone whose training is current passes the same hook.
    assert ap.decide(org, decision(req.id, COMPLIANCE), SLACK).recorded
    assert seen == [(ETHICS, req.id), (COMPLIANCE, req.id)]


def test_ui_with_the_right_code_is_accepted(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    req = ap.create_request(org, gate(), actor)
    key = settings.evidence_key_bytes()
    assert key
    code = personal_code(key, req.id, person_id(settings, COMPLIANCE), 0)
    typed = " " + code.lower().replace("-", " ") + " "  # as a person might type it
    ui = Actor(who="prefect-ui", channel="ui")
    result = ap.decide(org, decision(req.id, COMPLIANCE, code=typed), ui)
    assert result.recorded and result.approvals == 1
    (d,) = ap.get_request(org, req.id).decisions
    assert (d.person, d.channel) == (COMPLIANCE, "ui")
    # The CLI and Slack need no code.
    assert ap.decide(org, decision(req.id, ETHICS), SLACK).status is ApprovalStatus.approved


def test_concurrent_approvers_reach_the_quorum_exactly_once(
    org: UnitOfWork, settings: Settings, actor: Actor, checks: list[Any]
) -> None:
    """The hook runs inside the locked section and stalls: without the row lock both deciders
    would count only their own approval and the 2-of-3 request would stay open."""
    req = ap.create_request(org, gate(flow_run_id="run-c"), actor)
    checks.append(lambda s, p, r: time.sleep(0.3))
    start = threading.Barrier(2)
    results: dict[str, Any] = {}

    def approve(email: str) -> None:
        start.wait()
        try:
            results[email] = ap.decide(UnitOfWork(settings), decision(req.id, email), SLACK)
        except Exception as exc:  # reported below
            results[email] = exc

    threads = [threading.Thread(target=approve, args=(e,)) for e in (COMPLIANCE, CREDIT_OWNER)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(not isinstance(r, Exception) for r in results.values()), results
    assert sorted(r.approvals for r in results.values()) == [1, 2]
    assert [r.resume_needed for r in results.values()].count(True) == 1
    assert ap.get_request(org, req.id).status is ApprovalStatus.approved
    assert count(settings, Decision) == 2


def test_racing_identical_decision_becomes_recorded_false(
    org: UnitOfWork, settings: Settings, actor: Actor, checks: list[Any]
) -> None:
    """The unique constraint is the last line of defence: an identical decision committed by a
    writer that bypassed the lock turns into recorded=False, not an IntegrityError."""
    if is_sqlite(settings.effective_database_url):
        pytest.skip("SQLite serialises writers: a second writer cannot commit meanwhile")
    req = ap.create_request(org, gate(), actor)
    compliance = person_id(settings, COMPLIANCE)

    def sneak_in(session: Session, person: Person, r: ApprovalRequest) -> str | None:
        if not sneak_in.done:  # type: ignore[attr-defined]
            sneak_in.done = True  # type: ignore[attr-defined]
            with session_factory(settings.effective_database_url)() as other:
                other.add(
                    Decision(
                        request_id=r.id,
                        person_id=compliance,
                        outcome=Outcome.approve,
                        channel="slack",
                        actor="racer",
                        round=1,
                    )
                )
                other.commit()
        return None

    sneak_in.done = False  # type: ignore[attr-defined]
    checks.append(sneak_in)
    result = ap.decide(org, decision(req.id, COMPLIANCE), SLACK)
    assert not result.recorded and result.approvals == 1
    assert count(settings, Decision) == 1


def test_person_for_slack_user(org: UnitOfWork) -> None:
    assert ap.person_for_slack_user(org, "U0DEMO003") == COMPLIANCE
    assert ap.person_for_slack_user(org, "U0NOBODY") is None


def test_open_requests_for_an_approver(org: UnitOfWork, actor: Actor) -> None:
    req = ap.create_request(org, gate(), actor)
    other = ap.create_request(org, gate(idempotency_key="k2", system=None), actor)
    assert [r.id for r in ap.open_requests(org)] == [other.id, req.id]
    ap.decide(org, decision(req.id, COMPLIANCE), SLACK)
    assert [r.id for r in ap.open_requests(org, approver=COMPLIANCE)] == [other.id]
    assert [r.id for r in ap.open_requests(org, approver=CREDIT_OWNER)] == [req.id]
    assert [r.id for r in ap.open_requests(org, approver=GOV)] == [other.id]
    with pytest.raises(NotFound):
        ap.open_requests(org, approver="nobody@northwind.example")


# --- the run behind a request ------------------------------------------------------------------


def test_next_round_moves_once_per_expected_round(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    req = ap.create_request(org, gate(), actor)
    assert ap.next_round(org, req.id, 1) == 2
    assert ap.next_round(org, req.id, 1) == 2  # a re-run asks again: no second bump
    assert ap.next_round(org, req.id, 2) == 3
    assert ap.get_request(org, req.id).round == 3
    assert [e.details["round"] for e in audits(settings, "approval.next-round")] == [2, 3]
    # Decisions carry the round they were made in.
    ap.decide(org, decision(req.id, COMPLIANCE), SLACK)
    assert ap.get_request(org, req.id).decisions[0].round == 3
    with pytest.raises(NotFound):
        ap.next_round(org, req.id + 99, 1)


def test_pending_resumes_and_mark_resumed(org: UnitOfWork, actor: Actor) -> None:
    req = ap.create_request(org, gate(quorum=1), actor)
    no_run = ap.create_request(org, gate(idempotency_key="k-norun", quorum=1), actor)
    ap.attach_flow_run(org, req.id, "run-42")
    ap.attach_flow_run(org, req.id, "run-42")  # idempotent
    assert ap.pending_resumes(org) == []  # nothing decided yet

    r1 = ap.decide(org, decision(req.id, COMPLIANCE), SLACK)
    r2 = ap.decide(org, decision(no_run.id, COMPLIANCE), SLACK)
    assert r1.resume_needed and not r2.resume_needed  # no run waits for the second
    (pending,) = ap.pending_resumes(org)
    assert pending.id == req.id and pending.flow_run_id == "run-42" and pending.resume_pending

    ap.mark_resumed(org, req.id)
    ap.mark_resumed(org, req.id)  # idempotent
    assert ap.pending_resumes(org) == []
    again = ap.decide(org, decision(req.id, COMPLIANCE), SLACK)
    assert not again.recorded and not again.resume_needed
    assert not ap.get_request(org, req.id).resume_pending


def test_reminders_escalation_and_contacts(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    req = ap.create_request(org, gate(), actor)
    # credit-scoring's stage-gate Accountable is credit.owner, whose manager is the CEO; the
    # governance lead is always told.
    assert ap.escalation_contacts(org, req.id) == [CEO, GOV]
    org_wide = ap.create_request(org, gate(idempotency_key="k-o", system=None), actor)
    assert ap.escalation_contacts(org, org_wide.id) == [CEO, GOV]  # A governance -> manager CEO
    # The management-review Accountable is the CEO, who has no manager.
    review = ap.create_request(
        org,
        gate(
            idempotency_key="k-mr",
            subject="review:2026-q1",
            activity="management-review",
            system=None,
            approver_roles=["top-management"],
            quorum=1,
        ),
        actor,
    )
    assert ap.escalation_contacts(org, review.id) == [GOV]
    # An Accountable whose manager is the governance lead: named once.
    raci.set_raci(
        org,
        RaciIn(activity="soa-review", responsible=[COMPLIANCE], accountable=[COMPLIANCE]),
        actor,
    )
    soa = ap.create_request(
        org,
        gate(
            idempotency_key="k-soa",
            subject="soa:2026",
            activity="soa-review",
            system=None,
            approver_roles=["compliance-officer"],
            quorum=1,
        ),
        actor,
    )
    assert ap.escalation_contacts(org, soa.id) == [GOV]

    sched = Actor(who="reconciler", channel="schedule")
    ap.record_reminder(org, req.id, sched)
    ap.record_reminder(org, req.id, sched)
    ap.record_escalation(org, req.id, sched)
    out = ap.get_request(org, req.id)
    assert out.reminders_sent == 2 and out.last_reminded_at is not None
    assert out.escalated_at is not None
    assert len(audits(settings, "approval.reminded")) == 2
    (esc,) = audits(settings, "approval.escalated")
    assert esc.details["contacts"] == [CEO, GOV] and esc.channel == "schedule"


# --- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def aims(settings: Settings) -> Callable[..., Any]:
    """`aims ...` in process: the real root once it registers the approval commands, else a root
    built the same way (AimsGroup turns domain errors into one line and exit 2)."""
    from aims_core.cli import app as real

    if any(c.name == "approve" for c in real.registered_commands):
        root = real
    else:
        root = typer.Typer(cls=AimsGroup, pretty_exceptions_enable=False)
        root.add_typer(approvals_cmd.app, name="approvals")
        root.command("approve")(approvals_cmd.approve)
        root.command("reject")(approvals_cmd.reject)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(root, list(args))

    return invoke


def test_cli_approve_reject_list_show(
    org: UnitOfWork, settings: Settings, actor: Actor, aims: Callable[..., Any]
) -> None:
    req = ap.create_request(org, gate(), actor)
    other = ap.create_request(org, gate(idempotency_key="k2", quorum=1), actor)

    listed = aims("approvals", "list")
    assert listed.exit_code == 0, listed.output
    assert "Deploy credit-scoring v2" in listed.stdout and "0/2" in listed.stdout
    mine = json.loads(aims("approvals", "list", "--mine", CREDIT_OWNER, "--json").stdout)
    assert [r["id"] for r in mine] == [other.id, req.id]

    first = aims("approve", str(req.id), "--as", COMPLIANCE.upper())
    assert first.exit_code == 0, first.output
    assert "waiting: 1 of 2 approvals" in first.stdout
    not_eligible = aims("approve", str(req.id), "--as", GOV)  # only Informed in this RACI
    assert not_eligible.exit_code == 2 and "not an eligible approver" in not_eligible.stderr
    second = aims("approve", str(req.id), "--as", ETHICS, "--comment", "fairness report ok")
    assert second.exit_code == 0, second.output
    assert "approved (2 of 2)" in second.stdout
    repeat = aims("approve", str(req.id), "--as", ETHICS)
    assert repeat.exit_code == 0 and "already recorded" in repeat.stdout

    out = ap.get_request(org, req.id)
    assert out.status is ApprovalStatus.approved
    who = {d.person: (d.channel, d.actor) for d in out.decisions}
    assert who[COMPLIANCE][0] == "cli"
    assert who[COMPLIANCE][1].startswith(Actor.cli().who)  # the OS user stands beside...
    assert who[COMPLIANCE][1].endswith(f" as {COMPLIANCE}")  # ...the claimed approver

    # reject: --comment is required, and a blank one is refused by the service.
    missing = aims("reject", str(other.id), "--as", COMPLIANCE)
    assert missing.exit_code == 2
    blank = aims("reject", str(other.id), "--as", COMPLIANCE, "--comment", " ")
    assert blank.exit_code == 2 and "error: comment:" in blank.stderr
    rejected = aims("reject", str(other.id), "--as", COMPLIANCE, "--comment", "no DPIA")
    assert rejected.exit_code == 0, rejected.output
    assert "rejected" in rejected.stdout

    # A refusal is one line on stderr and exit 2, and is audited with the OS user.
    refused = aims("approve", str(other.id), "--as", ETHICS)
    assert refused.exit_code == 2
    assert refused.stderr.strip().splitlines() == [f"error: request {other.id} is already rejected"]
    refusals = audits(settings, "approval.refused")
    assert [(e.channel, e.details["reason"], e.details["person"]) for e in refusals] == [
        ("cli", "not-eligible", GOV),
        ("cli", "closed", ETHICS),
    ]
    assert refusals[1].actor == f"{Actor.cli().who} as {ETHICS}"

    shown = aims("approvals", "show", str(req.id))
    assert shown.exit_code == 0, shown.output
    assert "approved, 2/2 approvals" in shown.stdout
    assert COMPLIANCE in shown.stdout and "cli" in shown.stdout
    assert "fairness report ok" in shown.stdout
    data = json.loads(aims("approvals", "show", str(req.id), "--json").stdout)
    assert data["status"] == "approved" and sorted(data["approvals"]) == sorted(
        [COMPLIANCE, ETHICS]
    )
    closed = json.loads(aims("approvals", "list", "--status", "all", "--json").stdout)
    assert {r["id"]: r["status"] for r in closed} == {req.id: "approved", other.id: "rejected"}
    assert json.loads(aims("approvals", "list", "--json").stdout) == []
    missing_req = aims("approvals", "show", "999")
    assert missing_req.exit_code == 2 and "error: request:" in missing_req.stderr
