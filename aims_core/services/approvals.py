"""Approval requests and decisions: who may decide, how often, and what the outcome is.

Every channel (Slack bridge, Prefect UI resume form, CLI, reconciler) calls this one service, so
the rules live once: the eligible approvers are fixed when the request is made (roles, scoped by
RACI, never the requester); each person decides once; a refusal is audited even though nothing
else is written; the decision is committed before any caller acknowledges it. No Prefect here:
flows learn the outcome by re-reading the request (`resume_needed`, `pending_resumes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from sqlalchemy import Select, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from aims_core.approval_codes import code_hash, code_matches, personal_code
from aims_core.errors import AimsError, Conflict, InvalidInput, NotFound
from aims_core.evidence_schemas import check_subject
from aims_core.models import (
    AISystem,
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStatus,
    Decision,
    Evidence,
    Outcome,
    Person,
    PersonRole,
    RaciActivity,
    RaciKind,
    Role,
    as_utc,
)
from aims_core.schemas import Email, SystemName
from aims_core.services.people import get_person
from aims_core.services.systems import get_system
from aims_core.uow import Actor, UnitOfWork

__all__ = [
    "ApprovalRequestIn",
    "ApprovalRequestOut",
    "DecisionIn",
    "DecisionOut",
    "DecisionResult",
    "Refused",
    "attach_flow_run",
    "competence_checks",
    "create_request",
    "decide",
    "escalation_contacts",
    "get_request",
    "list_requests",
    "mark_resumed",
    "next_round",
    "open_requests",
    "pending_resumes",
    "person_for_slack_user",
    "record_escalation",
    "record_reminder",
]

ORG_SCOPE: Final = "org"
GOVERNANCE_LEAD: Final = "governance-lead"
#: Who is recorded for bookkeeping a flow does when the caller names nobody.
FLOW_ACTOR: Final = Actor(who="aims", channel="flow")
#: RACI kinds whose members may decide (Informed people are told, not asked).
DECIDING_KINDS: Final = (RaciKind.responsible, RaciKind.consulted)

RefusalReason = Literal[
    "not-eligible",
    "requester",
    "training",
    "closed",
    "bad-code",
    "already-decided",
    "unknown-request",
    "unknown-person",
]

#: Further hooks that may veto a decision for the person's competence, after the built-in
#: training check (`training.competence_refusal`). Each returns a refusal text, or None when the
#: person may decide. Runs inside the decision's transaction, after the request row is locked.
competence_checks: list[Callable[[Session, Person, ApprovalRequest], str | None]] = []


class Refused(AimsError):
    """A decision that is not allowed. `reason` is a short stable code callers branch on."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason


# --- boundary models ---------------------------------------------------------------------------


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("one line only (put the rest in details)")
    return value


Slug = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=120, pattern=r"^[a-z0-9][a-z0-9._-]*$"
    ),
]


class ApprovalRequestIn(BaseModel):
    """What a flow (or person) asks to have decided."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    subject: Annotated[str, AfterValidator(check_subject)]
    activity: Slug
    system: Annotated[SystemName | None, BeforeValidator(_blank_to_none)] = None
    title: Annotated[
        str, StringConstraints(min_length=1, max_length=300), AfterValidator(_one_line)
    ]
    details: Annotated[str, StringConstraints(max_length=20_000)] = ""
    approver_roles: list[Annotated[str, BeforeValidator(_lower)]] = Field(min_length=1)
    quorum: int = Field(default=1, ge=1)
    requester: Annotated[Email | None, BeforeValidator(_blank_to_none)] = None
    deadline: AwareDatetime | None = None
    evidence_ids: list[int] = Field(default_factory=list)
    flow_run_id: Annotated[
        Annotated[str, StringConstraints(max_length=64)] | None, BeforeValidator(_blank_to_none)
    ] = None


class DecisionOut(BaseModel):
    person: str
    name: str
    outcome: Outcome
    comment: str
    channel: str
    actor: str
    round: int
    decided_at: datetime


class ApprovalRequestOut(BaseModel):
    id: int
    subject: str
    activity: str
    system: str | None
    title: str
    details: str
    status: ApprovalStatus
    quorum: int
    round: int
    deadline: datetime | None
    requester: str | None
    requested_by: str
    approvers: list[str]
    approvals: list[str]
    rejections: list[str]
    decisions: list[DecisionOut]
    evidence_ids: list[int]
    flow_run_id: str | None
    resume_pending: bool
    created_at: datetime
    decided_at: datetime | None
    reminders_sent: int
    last_reminded_at: datetime | None
    escalated_at: datetime | None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    request_id: int
    person: Annotated[str, BeforeValidator(_lower), StringConstraints(max_length=320)]
    outcome: Outcome
    comment: Annotated[str, StringConstraints(max_length=5_000)] = ""
    code: str | None = None


class DecisionResult(BaseModel):
    request_id: int
    recorded: bool
    status: ApprovalStatus
    approvals: int
    rejections: int
    quorum: int
    resume_needed: bool
    flow_run_id: str | None
    round: int

    def summary(self) -> str:
        """`approved (2 of 2)`, `rejected (1 rejection)`, `waiting: 1 of 2 approvals`."""
        if self.status is ApprovalStatus.approved:
            return f"approved ({self.approvals} of {self.quorum})"
        if self.status is ApprovalStatus.rejected:
            return f"rejected ({self.rejections} rejection{'s' * (self.rejections != 1)})"
        if self.status is ApprovalStatus.open:
            return f"waiting: {self.approvals} of {self.quorum} approvals"
        return self.status.value


# --- helpers -----------------------------------------------------------------------------------


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _now() -> datetime:
    return datetime.now(UTC)


def _subject(request_id: int) -> str:
    return f"approval:{request_id}"


def _with_everything(q: Select[tuple[ApprovalRequest]]) -> Select[tuple[ApprovalRequest]]:
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
            channel=d.channel,
            actor=d.actor,
            round=d.round,
            decided_at=_aware(d.decided_at),  # type: ignore[arg-type]
        )
        for d in r.decisions
    ]
    return ApprovalRequestOut(
        id=r.id,
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
        approvals=[d.person for d in decisions if d.outcome is Outcome.approve],
        rejections=[d.person for d in decisions if d.outcome is Outcome.reject],
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


def _load(session: Session, request_id: int) -> ApprovalRequest:
    row = session.scalar(
        _with_everything(select(ApprovalRequest)).where(ApprovalRequest.id == request_id)
    )
    if row is None:
        raise NotFound(f"no approval request {request_id} (see `aims approvals list`)", "request")
    return row


def _lock(session: Session, request_id: int) -> ApprovalRequest | None:
    """The request row, locked until commit (PostgreSQL); SQLite's write transaction serialises."""
    return session.scalar(
        select(ApprovalRequest)
        .where(ApprovalRequest.id == request_id)
        # NO KEY UPDATE: rows that merely reference the request (notifications) are not blocked.
        .with_for_update(key_share=True)
    )


def _raci(session: Session, activity: str, system: AISystem | None) -> RaciActivity | None:
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


def _eligible(
    session: Session, data: ApprovalRequestIn, system: AISystem | None, requester: Person | None
) -> list[Person]:
    roles = list(dict.fromkeys(data.approver_roles))
    known = set(session.scalars(select(Role.id).where(Role.id.in_(roles))))
    unknown = [r for r in roles if r not in known]
    if unknown:
        catalog = ", ".join(session.scalars(select(Role.id).order_by(Role.id)))
        raise InvalidInput(f"unknown role '{unknown[0]}' (roles: {catalog})", "approver_roles")
    holders = {
        p.id: p
        for p in session.scalars(
            select(Person)
            .join(PersonRole, PersonRole.person_id == Person.id)
            .where(PersonRole.role_id.in_(roles), Person.active.is_(True))
        )
    }
    raci = _raci(session, data.activity, system)
    if raci is not None:
        in_raci = {m.person_id for m in raci.members if m.kind in DECIDING_KINDS}
        holders = {pid: p for pid, p in holders.items() if pid in in_raci}
        if raci.accountable.active:
            holders[raci.accountable.id] = raci.accountable
    if requester is not None:
        holders.pop(requester.id, None)
    people = sorted(holders.values(), key=lambda p: p.id)
    if len(people) < data.quorum:
        where = f"roles {', '.join(roles)}"
        if raci is not None:
            where += f" within the RACI of {data.activity}@{raci.scope}"
        if requester is not None:
            where += f", not the requester {requester.email}"
        who = ", ".join(p.email for p in people) or "nobody"
        raise InvalidInput(
            f"quorum {data.quorum} needs more approvers than are eligible ({len(people)}: "
            f"{who}; {where})",
            "quorum",
        )
    return people


def _key(uow: UnitOfWork) -> bytes:
    key = uow.settings.evidence_key_bytes()
    if not key:
        raise AimsError(
            "no evidence key configured (personal approval codes derive from it): run `aims init` "
            "or set AIMS_EVIDENCE_KEY",
            field="evidence_key",
        )
    return key


# --- requests ----------------------------------------------------------------------------------


def create_request(uow: UnitOfWork, data: ApprovalRequestIn, actor: Actor) -> ApprovalRequestOut:
    """Create the request once per idempotency key; a retry returns the existing one unchanged.

    A retried step may recompute its deadline or wording, so a repeat is matched on the key and
    only a different subject or activity (a real key clash) is a Conflict.
    """
    key = _key(uow)
    try:
        with uow:
            s = uow.session
            existing = _by_key(s, data)
            if existing is not None:
                return request_out(existing)
            system = get_system(s, data.system) if data.system else None
            requester = get_person(s, data.requester, "requester") if data.requester else None
            approvers = _eligible(s, data, system, requester)
            evidence_ids = list(dict.fromkeys(data.evidence_ids))
            if evidence_ids:
                found = set(s.scalars(select(Evidence.id).where(Evidence.id.in_(evidence_ids))))
                missing = [i for i in evidence_ids if i not in found]
                if missing:
                    raise InvalidInput(f"no evidence with id {missing[0]}", "evidence_ids")
            row = ApprovalRequest(
                idempotency_key=data.idempotency_key,
                subject=data.subject,
                activity=data.activity,
                system=system,
                title=data.title,
                details=data.details,
                requester=requester,
                requested_by=actor.who,
                quorum=data.quorum,
                deadline=data.deadline,
                evidence_ids=evidence_ids,
                # str(): `model_copy(update=...)` skips validation, a UUID may arrive here.
                flow_run_id=str(data.flow_run_id) if data.flow_run_id else None,
            )
            s.add(row)
            s.flush()  # the id is part of each personal code
            for p in approvers:
                row.approvers.append(
                    ApprovalApprover(
                        person=p, code_hash=code_hash(personal_code(key, row.id, p.id))
                    )
                )
            s.flush()
            uow.audit(
                actor,
                "approval.requested",
                _subject(row.id),
                about=data.subject,
                activity=data.activity,
                system=data.system,
                title=data.title,
                approvers=[p.email for p in approvers],
                quorum=data.quorum,
                requester=data.requester,
                deadline=data.deadline.isoformat() if data.deadline else None,
                evidence_ids=evidence_ids,
                idempotency_key=data.idempotency_key,
            )
            uow.commit()
            request_id = row.id
    except IntegrityError:
        # A concurrent create with the same key won the race (PostgreSQL): return its request.
        with uow.read():
            existing = _by_key(uow.session, data)
            if existing is None:
                raise
            return request_out(existing)
    return get_request(uow, request_id)


def _by_key(session: Session, data: ApprovalRequestIn) -> ApprovalRequest | None:
    row = session.scalar(
        _with_everything(select(ApprovalRequest)).where(
            ApprovalRequest.idempotency_key == data.idempotency_key
        )
    )
    if row is not None and (row.subject, row.activity) != (data.subject, data.activity):
        raise Conflict(
            f"'{data.idempotency_key}' already names request {row.id} about {row.subject} "
            f"({row.activity})",
            "idempotency_key",
        )
    return row


def get_request(uow: UnitOfWork, request_id: int) -> ApprovalRequestOut:
    with uow.read():
        return request_out(_load(uow.session, request_id))


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
        q = _with_everything(select(ApprovalRequest)).order_by(ApprovalRequest.id.desc())
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


def open_requests(uow: UnitOfWork, *, approver: str | None = None) -> list[ApprovalRequestOut]:
    """Open requests; with `approver`, those still waiting for that person's answer."""
    return list_requests(
        uow, status=ApprovalStatus.open, approver=approver, undecided_only=approver is not None
    )


# --- decisions ---------------------------------------------------------------------------------


def decide(uow: UnitOfWork, data: DecisionIn, actor: Actor) -> DecisionResult:
    """Record one person's decision, or refuse it (and audit the refusal) with nothing decided.

    The request row is locked first, so concurrent approvers queue and the last one sees every
    earlier approval; the unique (request, person) constraint catches whatever slips past.
    """
    if data.outcome is Outcome.reject and not data.comment.strip():
        raise InvalidInput("a rejection needs a comment saying why", "comment")
    for attempt in (1, 2):
        try:
            with uow:
                result = _decide_locked(uow, data, actor)
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


def _decide_locked(uow: UnitOfWork, data: DecisionIn, actor: Actor) -> DecisionResult:
    s = uow.session
    req = _lock(s, data.request_id)
    if req is None:
        raise Refused("unknown-request", f"no approval request {data.request_id}")
    person = s.scalar(select(Person).where(Person.email == data.person))
    if person is None:
        raise Refused("unknown-person", f"no person with email '{data.person}'")
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
    if approver is None or not person.active:
        eligible = ", ".join(a.person.email for a in req.approvers)
        why = "is no longer active" if approver else "is not an eligible approver"
        raise Refused(
            "not-eligible", f"{person.email} {why} of request {req.id} (eligible: {eligible})"
        )
    if previous is not None:
        raise Refused(
            "already-decided",
            f"{person.email} already chose {previous.outcome.value} on request {req.id}; "
            "a decision cannot be changed",
        )
    # The training check is always on, in every process that decides; imported here because
    # training imports the outbox and evidence services (a top-level import would be circular).
    from aims_core.services.training import competence_refusal

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
        )
    )
    s.flush()
    approvals, rejections = _counts(s, req.id)
    if rejections:
        req.status = ApprovalStatus.rejected
    elif approvals >= req.quorum:
        req.status = ApprovalStatus.approved
    if req.status is not ApprovalStatus.open:
        req.decided_at = _now()
        req.resume_pending = req.flow_run_id is not None
    s.flush()
    uow.audit(
        actor,
        "approval.decided",
        _subject(req.id),
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
            _subject(data.request_id),
            reason=exc.reason,
            person=data.person,
            outcome=data.outcome.value,
            message=exc.message,
        )
        uow.commit()


def person_for_slack_user(uow: UnitOfWork, slack_user_id: str) -> str | None:
    """The email of the person with this Slack user id; `decide` then checks what they may do."""
    with uow.read():
        return uow.session.scalar(
            select(Person.email).where(Person.slack_user_id == slack_user_id.strip())
        )


# --- the run behind a request ------------------------------------------------------------------


def _locked_or_missing(uow: UnitOfWork, request_id: int) -> ApprovalRequest:
    req = _lock(uow.session, request_id)
    if req is None:
        raise NotFound(f"no approval request {request_id}", "request")
    return req


def attach_flow_run(
    uow: UnitOfWork, request_id: int, flow_run_id: str, actor: Actor | None = None
) -> None:
    """Remember which run waits for this request (idempotent; a new run id replaces the old)."""
    flow_run_id = flow_run_id.strip()
    if not flow_run_id or len(flow_run_id) > 64:
        raise InvalidInput("a flow run id of 1 to 64 characters", "flow_run_id")
    with uow:
        req = _locked_or_missing(uow, request_id)
        if req.flow_run_id == flow_run_id:
            return
        previous, req.flow_run_id = req.flow_run_id, flow_run_id
        uow.audit(
            actor or FLOW_ACTOR,
            "approval.run-attached",
            _subject(req.id),
            flow_run_id=flow_run_id,
            previous=previous,
        )
        uow.commit()


def next_round(
    uow: UnitOfWork, request_id: int, expected_round: int, actor: Actor | None = None
) -> int:
    """Move to the next wait round, once: a re-run asking again with the old round number finds
    it already moved and gets the current round, so the wait key stays stable."""
    with uow:
        req = _locked_or_missing(uow, request_id)
        if req.round == expected_round:
            req.round = expected_round + 1
            uow.audit(
                actor or FLOW_ACTOR,
                "approval.next-round",
                _subject(req.id),
                round=req.round,
            )
            uow.commit()
        return req.round


def mark_resumed(uow: UnitOfWork, request_id: int, actor: Actor | None = None) -> None:
    """The waiting run was resumed: the reconciler no longer needs to."""
    with uow:
        req = _locked_or_missing(uow, request_id)
        if not req.resume_pending:
            return
        req.resume_pending = False
        uow.audit(
            actor or FLOW_ACTOR,
            "approval.resumed",
            _subject(req.id),
            flow_run_id=req.flow_run_id,
            status=req.status.value,
        )
        uow.commit()


def pending_resumes(uow: UnitOfWork) -> list[ApprovalRequestOut]:
    """Decided requests whose waiting run has not been resumed yet (e.g. Prefect was down)."""
    with uow.read():
        q = _with_everything(select(ApprovalRequest)).where(
            ApprovalRequest.status != ApprovalStatus.open,
            ApprovalRequest.resume_pending.is_(True),
            ApprovalRequest.flow_run_id.is_not(None),
        )
        return [request_out(r) for r in uow.session.scalars(q.order_by(ApprovalRequest.id))]


# --- reminders and escalation ------------------------------------------------------------------


def record_reminder(uow: UnitOfWork, request_id: int, actor: Actor) -> None:
    with uow:
        req = _locked_or_missing(uow, request_id)
        req.last_reminded_at = _now()
        req.reminders_sent += 1
        uow.audit(actor, "approval.reminded", _subject(req.id), reminders_sent=req.reminders_sent)
        uow.commit()


def record_escalation(uow: UnitOfWork, request_id: int, actor: Actor) -> None:
    with uow:
        req = _locked_or_missing(uow, request_id)
        req.escalated_at = _now()
        uow.audit(
            actor,
            "approval.escalated",
            _subject(req.id),
            contacts=_escalation_contacts(uow.session, req),
            deadline=req.deadline.isoformat() if req.deadline else None,
        )
        uow.commit()


def escalation_contacts(uow: UnitOfWork, request_id: int) -> list[str]:
    """Who hears about an overdue request: the Accountable's manager, then the governance leads."""
    with uow.read():
        return _escalation_contacts(uow.session, _load(uow.session, request_id))


def _escalation_contacts(session: Session, req: ApprovalRequest) -> list[str]:
    contacts: list[str] = []
    raci = _raci(session, req.activity, req.system)
    manager = raci.accountable.manager if raci else None
    if manager is not None and manager.active:
        contacts.append(manager.email)
    leads: Sequence[str] = session.scalars(
        select(Person.email)
        .join(PersonRole, PersonRole.person_id == Person.id)
        .where(PersonRole.role_id == GOVERNANCE_LEAD, Person.active.is_(True))
        .order_by(Person.email)
    ).all()
    contacts.extend(leads)
    return list(dict.fromkeys(contacts))
