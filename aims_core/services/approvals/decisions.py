"""Answering an ask: one person's approval, rejection or typed answer, from any channel (Slack,
UI form, CLI).

Each person answers once per ask (a new attempt after a rejection is a new ask); a refusal is
audited even though nothing else is written; the answer is committed before any caller
acknowledges it. The training check is always on: it is called directly here, so no process can
decide without it. A typed answer is validated by its kind's form (`aims_core/ask_forms.py`), the
same model every channel shows. In the Prefect UI the person's personal code proves who answers:
reading a code advances the person's counter for the ask (a read code is dead), and five wrong
codes lock the UI channel for that person and ask (Slack and the CLI still work).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aims_core.approval_codes import code_matches
from aims_core.ask_forms import answer_model
from aims_core.errors import InvalidInput
from aims_core.messages import PERSONAL_CODE_PLACEHOLDER
from aims_core.models import (
    APPROVAL_KIND,
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStatus,
    Decision,
    Outcome,
    Person,
    as_utc,
)
from aims_core.services import directory, outbox
from aims_core.services.approvals.escalation import GOVERNANCE_LEAD
from aims_core.services.approvals.queries import now, subject
from aims_core.services.approvals.schemas import DecisionIn, DecisionResult, Refused
from aims_core.services.inputs import validated
from aims_core.services.people import deactivation_text
from aims_core.services.training.competence import competence_refusal
from aims_core.uow import Actor, UnitOfWork, locked

__all__ = ["MAX_WRONG_CODES", "competence_checks", "decide"]

#: Wrong personal codes after which the UI channel is locked for that person and ask.
MAX_WRONG_CODES = 5

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
    if actor.channel == "ui":
        try:
            _read_ui_code(uow, data, actor)
        except Refused as exc:
            _audit_refusal(uow, data, actor, exc)
            raise
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
    answer = _validated_answer(uow, req, data)
    previous = s.scalar(
        select(Decision).where(Decision.request_id == req.id, Decision.person_id == person.id)
    )
    if previous is not None and (previous.outcome, previous.answer) == (data.outcome, answer):
        return _result(s, req, recorded=False)
    if req.status is not ApprovalStatus.open:
        raise Refused("closed", f"request {req.id} is already {req.status.value}")
    if req.requester_id == person.id:
        raise Refused(
            "requester", f"{person.email} asked for request {req.id} and cannot decide it"
        )
    if person.email in (req.excluded or {}):
        raise Refused(
            "separation",
            f"{person.email} may not answer request {req.id}: {req.excluded[person.email]}",
        )
    if approver is None:
        eligible = ", ".join(a.person.email for a in req.approvers)
        raise Refused(
            "not-eligible",
            f"{person.email} is not an eligible approver of request {req.id} "
            f"(eligible: {eligible})",
        )
    if previous is not None:
        chose = "answered" if previous.outcome is Outcome.answer else f"chose {previous.outcome}"
        raise Refused(
            "already-decided",
            f"{person.email} already {chose} on request {req.id}; an answer cannot be changed",
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
            answer=answer,
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
        req.status = (
            ApprovalStatus.approved if req.kind == APPROVAL_KIND else ApprovalStatus.answered
        )
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
        kind=req.kind,
        outcome=data.outcome.value,
        comment=data.comment.strip(),
        answer=answer,
        round=req.round,
        status=req.status.value,
        approvals=approvals,
        rejections=rejections,
        quorum=req.quorum,
    )
    return _result(s, req, recorded=True, counts=(approvals, rejections))


def _counts(session: Session, request_id: int) -> tuple[int, int]:
    """(answers towards the quorum — approvals or typed answers —, rejections)."""
    outcomes = list(
        session.scalars(select(Decision.outcome).where(Decision.request_id == request_id))
    )
    return len(outcomes) - outcomes.count(Outcome.reject), outcomes.count(Outcome.reject)


def _validated_answer(
    uow: UnitOfWork, req: ApprovalRequest, data: DecisionIn
) -> dict[str, object] | None:
    """An approval takes approve/reject and no answer; another kind takes its form's answer
    (or a rejection where the flow offers one), validated by the same model every channel shows."""
    if req.kind == APPROVAL_KIND:
        if data.outcome is Outcome.answer or data.answer is not None:
            raise InvalidInput(f"request {req.id} is an approval: approve or reject", "outcome")
        return None
    if data.outcome is not Outcome.answer:
        raise InvalidInput(f"request {req.id} asks for an answer, not {data.outcome}", "outcome")
    model = answer_model(uow.settings, req.kind, req.subject)
    return validated(model, data.answer or {}).model_dump(mode="json")


def _read_ui_code(uow: UnitOfWork, data: DecisionIn, actor: Actor) -> None:
    """Read the personal code typed into a UI form naming an eligible answerer, in a
    transaction of its own that commits whatever the outcome: the counter advances (the code
    just read is dead, and the new one is sent to the person privately); a wrong code counts
    towards the lock. Refused when the code is wrong or the UI is locked for them."""
    at = now()
    with uow:
        s = uow.session
        row = s.scalar(
            select(ApprovalApprover)
            .join(Person, Person.id == ApprovalApprover.person_id)
            .where(ApprovalApprover.request_id == data.request_id, Person.email == data.person)
            .with_for_update(of=ApprovalApprover)
        )
        if row is None:
            return  # not an eligible answerer: the decision's own checks say why
        key = uow.settings.evidence_key_bytes()
        right = bool(
            data.code
            and key
            and code_matches(data.code, key, row.request_id, row.person_id, row.code_counter)
        )
        row.code_counter += 1
        was_locked = row.ui_locked_at is not None
        locked_now = False
        if not was_locked and not right:
            row.wrong_codes += 1
            locked_now = row.wrong_codes >= MAX_WRONG_CODES
            if locked_now:
                row.ui_locked_at = at
        req = s.get(ApprovalRequest, row.request_id)
        assert req is not None
        person = row.person
        uow.audit(
            actor,
            "ask.code-read",
            subject(req.id),
            person=person.email,
            right=right,
            wrong_codes=row.wrong_codes,
            locked=row.ui_locked_at is not None,
        )
        if req.status is ApprovalStatus.open:
            _send_new_code(s, req, person, row.code_counter)
        if locked_now:
            _tell_locked(s, req, person)
        uow.commit()
    if was_locked:
        raise Refused(
            "ui-locked",
            f"too many wrong codes: the Prefect UI form is locked for {data.person} on request "
            f"{data.request_id}; answer in Slack or with `aims answer` / `aims approve`",
        )
    if not right:
        raise Refused(
            "bad-code",
            f"the code does not match {data.person}'s personal code for request "
            f"{data.request_id} (a code works once: the newest was sent to them)"
            + (
                "; that was the fifth wrong code: the form is now locked for them"
                if locked_now
                else ""
            ),
        )


def _send_new_code(session: Session, req: ApprovalRequest, person: Person, counter: int) -> None:
    """The person's next code, privately (rendered at delivery from the counter, never stored)."""
    outbox.tell(
        session,
        person,
        key=f"ask-{req.id}-code-{person.id}-{counter}",
        kind="ask-code",
        subject=req.subject,
        thread_key=f"approval-{req.id}-to-{person.id}",
        text=f"A Prefect UI form for request #{req.id} named you; your new personal code",
        blocks=[
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"A Prefect UI form for request #{req.id} was read with your name. "
                    f"Your code there changed; your new personal code: "
                    f"`{PERSONAL_CODE_PLACEHOLDER}` (sent only to you; a code works once).",
                },
            }
        ],
        request_id=req.id,
    )


def _tell_locked(session: Session, req: ApprovalRequest, person: Person) -> None:
    text = (
        f"The Prefect UI form of request #{req.id} ({req.subject}) is locked for {person.email} "
        f"after {MAX_WRONG_CODES} wrong personal codes. Slack and the CLI still work."
    )
    leads = directory.role_holders(session, [GOVERNANCE_LEAD])
    for who in [person, *(p for p in leads if p.id != person.id)]:
        outbox.tell(
            session,
            who,
            key=f"ask-{req.id}-ui-locked-{person.id}-to-{who.id}",
            kind="ask-ui-locked",
            subject=req.subject,
            thread_key=f"ask-{req.id}-ui-locked-{who.id}",
            text=text,
        )


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
            channel=actor.channel,
            outcome=data.outcome.value,
            message=exc.message,
        )
        uow.commit()
