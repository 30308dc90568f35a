"""Deciding: one person's approval or rejection, from any channel (Slack, UI form, CLI).

Each person decides once; a refusal is audited even though nothing else is written; the
decision is committed before any caller acknowledges it. The training check is always on: it is
called directly here, so no process can decide without it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aims_core.approval_codes import code_matches
from aims_core.errors import InvalidInput
from aims_core.models import (
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStatus,
    Decision,
    Outcome,
    Person,
    as_utc,
)
from aims_core.services.approvals.queries import now, subject
from aims_core.services.approvals.schemas import DecisionIn, DecisionResult, Refused
from aims_core.services.people import deactivation_text
from aims_core.services.training.competence import competence_refusal
from aims_core.uow import Actor, UnitOfWork, locked

__all__ = ["competence_checks", "decide"]

#: Further checks that may veto a decision for the person's competence, after the built-in
#: training check (`training.competence_refusal`, always called). Each returns a refusal text,
#: or None when the person may decide. Runs inside the decision's transaction, after the request
#: row is locked. Nothing in the product registers one: they are for tests.
competence_checks: list[Callable[[Session, Person, ApprovalRequest], str | None]] = []


def decide(
    uow: UnitOfWork, data: DecisionIn, actor: Actor, *, at: datetime | None = None
) -> DecisionResult:
    """Record one person's decision, or refuse it (and audit the refusal) with nothing decided.
    `at`: when it was decided (a past business date); default now. The checks are today's.

    The request row is locked first, so concurrent approvers queue and the last one sees every
    earlier approval; the unique (request, person) constraint catches whatever slips past.
    """
    if data.outcome is Outcome.reject and not data.comment.strip():
        raise InvalidInput("a rejection needs a comment saying why", "comment")
    for attempt in (1, 2):
        try:
            with uow:
                result = _decide_locked(uow, data, actor, as_utc(at) if at else now())
                if result.recorded:
                    uow.commit()
            return result
        except Refused as exc:
            _audit_refusal(uow, data, actor, exc)
            raise
        except IntegrityError:
            # A racing identical decision committed first: the retry finds it (recorded=False)
            # or, if it differs, refuses with already-decided.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _decide_locked(uow: UnitOfWork, data: DecisionIn, actor: Actor, at: datetime) -> DecisionResult:
    s = uow.session
    # NO KEY UPDATE: rows that merely reference the request (notifications) are not blocked.
    req = locked(s, ApprovalRequest, data.request_id, key_share=True)
    if req is None:
        raise Refused("unknown-request", f"no approval request {data.request_id}")
    person = s.scalar(select(Person).where(Person.email == data.person))
    if person is None:
        raise Refused("unknown-person", f"no person with email '{data.person}'")
    if not person.active:
        # Named, so the leaver (or whoever clicked for them) learns why, not just "not eligible".
        raise Refused(
            "deactivated",
            f"{deactivation_text(s, person)}: not eligible to decide request {req.id}",
        )
    approver = s.get(ApprovalApprover, (req.id, person.id))
    # The UI cannot tell who typed the form: only this approver's code for this request counts.
    if (
        actor.channel == "ui"
        and approver is not None
        and not (data.code and code_matches(data.code, approver.code_hash))
    ):
        raise Refused(
            "bad-code",
            f"the code does not match {person.email}'s personal code for request {req.id}",
        )
    previous = s.scalar(
        select(Decision).where(Decision.request_id == req.id, Decision.person_id == person.id)
    )
    if previous is not None and previous.outcome is data.outcome:
        return _result(s, req, recorded=False)
    if req.status is not ApprovalStatus.open:
        raise Refused("closed", f"request {req.id} is already {req.status.value}")
    if req.requester_id == person.id:
        raise Refused(
            "requester", f"{person.email} asked for request {req.id} and cannot decide it"
        )
    if approver is None:
        eligible = ", ".join(a.person.email for a in req.approvers)
        raise Refused(
            "not-eligible",
            f"{person.email} is not an eligible approver of request {req.id} "
            f"(eligible: {eligible})",
        )
    if previous is not None:
        raise Refused(
            "already-decided",
            f"{person.email} already chose {previous.outcome.value} on request {req.id}; "
            "a decision cannot be changed",
        )
    problem = competence_refusal(s, person, req, uow.settings)
    for check in competence_checks:
        problem = problem or check(s, person, req)
    if problem:
        raise Refused("training", problem)

    s.add(
        Decision(
            request_id=req.id,
            person_id=person.id,
            outcome=data.outcome,
            comment=data.comment.strip(),
            channel=actor.channel,
            actor=actor.who,
            round=req.round,
            decided_at=at,
        )
    )
    s.flush()
    approvals, rejections = _counts(s, req.id)
    if rejections:
        req.status = ApprovalStatus.rejected
    elif approvals >= req.quorum:
        req.status = ApprovalStatus.approved
    if req.status is not ApprovalStatus.open:
        req.decided_at = at
        req.resume_pending = req.flow_run_id is not None
    s.flush()
    uow.audit(
        actor,
        "approval.decided",
        subject(req.id),
        about=req.subject,
        person=person.email,
        outcome=data.outcome.value,
        comment=data.comment.strip(),
        round=req.round,
        status=req.status.value,
        approvals=approvals,
        rejections=rejections,
        quorum=req.quorum,
    )
    return _result(s, req, recorded=True, counts=(approvals, rejections))


def _counts(session: Session, request_id: int) -> tuple[int, int]:
    outcomes = list(
        session.scalars(select(Decision.outcome).where(Decision.request_id == request_id))
    )
    return outcomes.count(Outcome.approve), outcomes.count(Outcome.reject)


def _result(
    session: Session,
    req: ApprovalRequest,
    *,
    recorded: bool,
    counts: tuple[int, int] | None = None,
) -> DecisionResult:
    approvals, rejections = counts or _counts(session, req.id)
    return DecisionResult(
        request_id=req.id,
        recorded=recorded,
        status=req.status,
        approvals=approvals,
        rejections=rejections,
        quorum=req.quorum,
        resume_needed=(
            req.status is not ApprovalStatus.open
            and req.resume_pending
            and req.flow_run_id is not None
        ),
        flow_run_id=req.flow_run_id,
        round=req.round,
    )


def _audit_refusal(uow: UnitOfWork, data: DecisionIn, actor: Actor, exc: Refused) -> None:
    """The refusal outlives the rolled-back decision: its own transaction, committed."""
    with uow:
        uow.audit(
            actor,
            "approval.refused",
            subject(data.request_id),
            reason=exc.reason,
            person=data.person,
            outcome=data.outcome.value,
            message=exc.message,
        )
        uow.commit()
