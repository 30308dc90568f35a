"""Reading approval requests: one, a listing, what a Slack user is, the RACI behind one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session, selectinload

from aims_core.errors import NotFound
from aims_core.models import (
    AISystem,
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStatus,
    Decision,
    Outcome,
    Person,
    RaciActivity,
    as_utc,
)
from aims_core.services.approvals.schemas import ApprovalRequestOut, DecisionOut
from aims_core.services.people import get_person
from aims_core.uow import UnitOfWork, locked

__all__ = [
    "ORG_SCOPE",
    "approved_by",
    "get_request",
    "list_requests",
    "load",
    "locked_or_missing",
    "now",
    "open_requests",
    "person_for_slack_user",
    "raci_of",
    "rejected_by",
    "rejection_reasons",
    "request_out",
    "subject",
    "with_everything",
]

ORG_SCOPE: Final = "org"


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def now() -> datetime:
    return datetime.now(UTC)


def subject(request_id: int) -> str:
    """The audit subject of a request."""
    return f"approval:{request_id}"


def with_everything(q: Select[tuple[ApprovalRequest]]) -> Select[tuple[ApprovalRequest]]:
    """`q` loading what `request_out` reads, in a few queries rather than one per row."""
    return q.options(
        selectinload(ApprovalRequest.approvers).selectinload(ApprovalApprover.person),
        selectinload(ApprovalRequest.decisions).selectinload(Decision.person),
        selectinload(ApprovalRequest.system),
        selectinload(ApprovalRequest.requester),
    )


def request_out(r: ApprovalRequest) -> ApprovalRequestOut:
    decisions = [
        DecisionOut(
            person=d.person.email,
            name=d.person.name,
            outcome=d.outcome,
            comment=d.comment,
            answer=d.answer,
            channel=d.channel,
            actor=d.actor,
            round=d.round,
            decided_at=_aware(d.decided_at),  # type: ignore[arg-type]
        )
        for d in r.decisions
    ]
    return ApprovalRequestOut(
        id=r.id,
        kind=r.kind,
        subject=r.subject,
        activity=r.activity,
        system=r.system.name if r.system else None,
        title=r.title,
        details=r.details,
        status=r.status,
        quorum=r.quorum,
        round=r.round,
        deadline=_aware(r.deadline),
        requester=r.requester.email if r.requester else None,
        requested_by=r.requested_by,
        approvers=[a.person.email for a in r.approvers],
        excluded=dict(r.excluded or {}),
        approvals=[d.person for d in decisions if d.outcome is Outcome.approve],
        rejections=[d.person for d in decisions if d.outcome is Outcome.reject],
        answered_by=[d.person for d in decisions if d.outcome is Outcome.answer],
        decisions=decisions,
        evidence_ids=list(r.evidence_ids or []),
        flow_run_id=r.flow_run_id,
        resume_pending=r.resume_pending,
        created_at=_aware(r.created_at),  # type: ignore[arg-type]
        decided_at=_aware(r.decided_at),
        reminders_sent=r.reminders_sent,
        last_reminded_at=_aware(r.last_reminded_at),
        escalated_at=_aware(r.escalated_at),
    )


def approved_by(request: ApprovalRequest) -> list[str]:
    """The emails of those who approved, in decision order: what a record keeps as its approvers."""
    return [d.person.email for d in request.decisions if d.outcome is Outcome.approve]


def rejected_by(request: ApprovalRequest) -> list[str]:
    """The emails of those who rejected, in decision order."""
    return [d.person.email for d in request.decisions if d.outcome is Outcome.reject]


def rejection_reasons(
    request: ApprovalRequest, *, bare_email_if_no_comment: bool = False
) -> list[str]:
    """`email: comment` per rejection, in decision order: what the requester is told and the
    audit keeps. `decide` refuses a rejection without a comment, so an empty one is a row made
    otherwise; with `bare_email_if_no_comment` (policies, gates) it reads as the email alone,
    as it always has there, and elsewhere as `email: `."""
    return [
        d.person.email
        if bare_email_if_no_comment and not d.comment
        else f"{d.person.email}: {d.comment}"
        for d in request.decisions
        if d.outcome is Outcome.reject
    ]


def load(session: Session, request_id: int) -> ApprovalRequest:
    row = session.scalar(
        with_everything(select(ApprovalRequest)).where(ApprovalRequest.id == request_id)
    )
    if row is None:
        raise NotFound(f"no approval request {request_id} (see `aims approvals list`)", "request")
    return row


def locked_or_missing(uow: UnitOfWork, request_id: int) -> ApprovalRequest:
    """The request row locked until commit (FOR NO KEY UPDATE: rows that merely reference it,
    such as notifications, are not blocked), or NotFound."""
    req = locked(uow.session, ApprovalRequest, request_id, key_share=True)
    if req is None:
        raise NotFound(f"no approval request {request_id}", "request")
    return req


def raci_of(session: Session, activity: str, system: AISystem | None) -> RaciActivity | None:
    """The RACI of an activity: the system's own if it has one, else the organisation-wide one."""
    scopes = [f"system:{system.id}", ORG_SCOPE] if system else [ORG_SCOPE]
    rows = {
        r.scope: r
        for r in session.scalars(
            select(RaciActivity)
            .where(RaciActivity.activity == activity, RaciActivity.scope.in_(scopes))
            .options(selectinload(RaciActivity.members), selectinload(RaciActivity.accountable))
        )
    }
    return next((rows[s] for s in scopes if s in rows), None)


def get_request(uow: UnitOfWork, request_id: int) -> ApprovalRequestOut:
    with uow.read():
        return request_out(load(uow.session, request_id))


def list_requests(
    uow: UnitOfWork,
    *,
    status: ApprovalStatus | None = None,
    approver: str | None = None,
    undecided_only: bool = False,
) -> list[ApprovalRequestOut]:
    """Requests, newest first; `approver` keeps those the person is eligible for, and
    `undecided_only` those the person has not answered yet."""
    with uow.read():
        s = uow.session
        q = with_everything(select(ApprovalRequest)).order_by(ApprovalRequest.id.desc())
        if status is not None:
            q = q.where(ApprovalRequest.status == status)
        if approver is not None:
            person = get_person(s, approver, "approver")
            q = q.where(
                exists().where(
                    ApprovalApprover.request_id == ApprovalRequest.id,
                    ApprovalApprover.person_id == person.id,
                )
            )
            if undecided_only:
                q = q.where(
                    ~exists().where(
                        Decision.request_id == ApprovalRequest.id,
                        Decision.person_id == person.id,
                    )
                )
        return [request_out(r) for r in s.scalars(q)]


def request_by_key(uow: UnitOfWork, idempotency_key: str) -> ApprovalRequestOut | None:
    """The ask a flow opened under this key (e.g. `incident-7-serious-confirmation`), if any."""
    with uow.read():
        row = uow.session.scalar(
            with_everything(select(ApprovalRequest)).where(
                ApprovalRequest.idempotency_key == idempotency_key
            )
        )
        return request_out(row) if row is not None else None


def open_requests(uow: UnitOfWork, *, approver: str | None = None) -> list[ApprovalRequestOut]:
    """Open requests; with `approver`, those still waiting for that person's answer."""
    return list_requests(
        uow, status=ApprovalStatus.open, approver=approver, undecided_only=approver is not None
    )


def ask_header(uow: UnitOfWork, request_id: int) -> tuple[str, str, int]:
    """(kind, subject, round) of an ask: what a Slack modal submission needs before deciding,
    in one row's read (the whole ask, `get_request`, loads its answerers and decisions too)."""
    with uow.read():
        row = uow.session.execute(
            select(ApprovalRequest.kind, ApprovalRequest.subject, ApprovalRequest.round).where(
                ApprovalRequest.id == request_id
            )
        ).one_or_none()
    if row is None:
        raise NotFound(f"no approval request {request_id} (see `aims approvals list`)", "request")
    return str(row.kind), str(row.subject), int(row.round)


def person_for_slack_user(uow: UnitOfWork, slack_user_id: str) -> str | None:
    """The email of the person with this Slack user id; `decide` then checks what they may do."""
    with uow.read():
        return uow.session.scalar(
            select(Person.email).where(Person.slack_user_id == slack_user_id.strip())
        )
