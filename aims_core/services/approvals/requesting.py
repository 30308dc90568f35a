"""Asking: who is eligible, fixed when the ask is made (roles, scoped by the RACI of the activity,
never the requester nor anyone excluded for segregation of duties), each with a personal code
for the UI (derived, never stored: `aims_core/approval_codes.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aims_core.errors import AimsError, Conflict, InvalidInput
from aims_core.models import (
    AISystem,
    ApprovalApprover,
    ApprovalRequest,
    Evidence,
    Person,
    RaciKind,
    Role,
    as_utc,
)
from aims_core.services import directory
from aims_core.services.approvals.queries import (
    get_request,
    now,
    raci_of,
    request_out,
    subject,
    with_everything,
)
from aims_core.services.approvals.schemas import ApprovalRequestIn, ApprovalRequestOut
from aims_core.services.people import get_person
from aims_core.services.systems import get_system
from aims_core.uow import Actor, UnitOfWork

__all__ = ["DECIDING_KINDS", "create_request"]

#: RACI kinds whose members may decide (Informed people are told, not asked).
DECIDING_KINDS: Final = (RaciKind.responsible, RaciKind.consulted)


def _eligible(
    session: Session,
    data: ApprovalRequestIn,
    system: AISystem | None,
    requester: Person | None,
    excluded: list[Person],
) -> list[Person]:
    roles = list(dict.fromkeys(data.approver_roles))
    known = set(session.scalars(select(Role.id).where(Role.id.in_(roles))))
    unknown = [r for r in roles if r not in known]
    if unknown:
        catalog = ", ".join(session.scalars(select(Role.id).order_by(Role.id)))
        raise InvalidInput(f"unknown role '{unknown[0]}' (roles: {catalog})", "approver_roles")
    holders = {p.id: p for p in directory.role_holders(session, roles)} if roles else {}
    raci = raci_of(session, data.activity, system) if roles else None
    if raci is not None:
        in_raci = {m.person_id for m in raci.members if m.kind in DECIDING_KINDS}
        holders = {pid: p for pid, p in holders.items() if pid in in_raci}
        if raci.accountable.active:
            holders[raci.accountable.id] = raci.accountable
    for email in dict.fromkeys(data.approver_people):
        named = get_person(session, email, "approver_people")
        if not named.active:
            raise InvalidInput(f"{email} is deactivated and cannot be asked", "approver_people")
        holders[named.id] = named
    if requester is not None:
        holders.pop(requester.id, None)
    for person in excluded:
        holders.pop(person.id, None)
    people = sorted(holders.values(), key=lambda p: p.id)
    if len(people) < data.quorum:
        where = ", ".join(
            [*([f"roles {', '.join(roles)}"] if roles else []), *data.approver_people]
        )
        if raci is not None:
            where += f" within the RACI of {data.activity}@{raci.scope}"
        if requester is not None:
            where += f", not the requester {requester.email}"
        for person in excluded:
            where += f", not {person.email} ({data.excluded[person.email]})"
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


def create_request(
    uow: UnitOfWork, data: ApprovalRequestIn, actor: Actor, *, at: datetime | None = None
) -> ApprovalRequestOut:
    """Create the request once per idempotency key; a retry returns the existing one unchanged.
    `at`: when it was asked (a past business date, e.g. the demo's history); default now.

    A retried step may recompute its deadline or wording, so a repeat is matched on the key and
    only a different subject or activity (a real key clash) is a Conflict.
    """
    _key(uow)  # no key, no personal codes: refuse now rather than at the UI form
    try:
        with uow:
            s = uow.session
            existing = _by_key(s, data)
            if existing is not None:
                return request_out(existing)
            system = get_system(s, data.system) if data.system else None
            requester = get_person(s, data.requester, "requester") if data.requester else None
            excluded = [get_person(s, email, "excluded") for email in data.excluded]
            approvers = _eligible(s, data, system, requester, excluded)
            evidence_ids = list(dict.fromkeys(data.evidence_ids))
            if evidence_ids:
                found = set(s.scalars(select(Evidence.id).where(Evidence.id.in_(evidence_ids))))
                missing = [i for i in evidence_ids if i not in found]
                if missing:
                    raise InvalidInput(f"no evidence with id {missing[0]}", "evidence_ids")
            row = ApprovalRequest(
                idempotency_key=data.idempotency_key,
                kind=data.kind,
                excluded=dict(data.excluded),
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
                created_at=as_utc(at) if at is not None else now(),
            )
            s.add(row)
            for p in approvers:
                row.approvers.append(ApprovalApprover(person=p))
            s.flush()
            uow.audit(
                actor,
                "approval.requested",
                subject(row.id),
                kind=data.kind,
                about=data.subject,
                activity=data.activity,
                system=system.name if system else None,
                title=data.title,
                approvers=[p.email for p in approvers],
                quorum=data.quorum,
                requester=data.requester,
                excluded=dict(data.excluded),
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
        with_everything(select(ApprovalRequest)).where(
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
