"""Reminders and escalation of a request nobody decided in time: what was sent, and who hears."""

from __future__ import annotations

from typing import Final

from sqlalchemy.orm import Session

from aims_core.models import ApprovalRequest, ApprovalStatus
from aims_core.services import directory, outbox
from aims_core.services.approvals.queries import (
    load,
    locked_or_missing,
    now,
    raci_of,
    subject,
)
from aims_core.uow import Actor, UnitOfWork

__all__ = [
    "GOVERNANCE_LEAD",
    "escalate_within",
    "escalation_contacts",
    "record_escalation",
    "record_reminder",
]

GOVERNANCE_LEAD: Final = "governance-lead"


def record_reminder(uow: UnitOfWork, request_id: int, actor: Actor) -> None:
    with uow:
        req = locked_or_missing(uow, request_id)
        req.last_reminded_at = now()
        req.reminders_sent += 1
        uow.audit(actor, "approval.reminded", subject(req.id), reminders_sent=req.reminders_sent)
        uow.commit()


def record_escalation(uow: UnitOfWork, request_id: int, actor: Actor) -> None:
    with uow:
        req = locked_or_missing(uow, request_id)
        req.escalated_at = now()
        uow.audit(
            actor,
            "approval.escalated",
            subject(req.id),
            contacts=_escalation_contacts(uow.session, req),
            deadline=req.deadline.isoformat() if req.deadline else None,
        )
        uow.commit()


def escalate_within(
    uow: UnitOfWork, req: ApprovalRequest, actor: Actor, **details: object
) -> list[str] | None:
    """Escalate an open request now, in the caller's transaction (its row locked by the caller):
    escalation 1 queued to `escalation_contacts` and `escalated_at` set, so neither this nor the
    reconciler's deadline escalation ever sends it again. Returns the contacts told, [] when
    nobody can be told (nothing recorded), None when it is closed or was escalated already."""
    if req.status is not ApprovalStatus.open or req.escalated_at is not None:
        return None
    contacts = _escalation_contacts(uow.session, req)
    if not contacts:
        return []
    rows = outbox.queue_escalation(uow.session, req.id, contacts, n=1)
    req.escalated_at = now()
    told = [r.recipient.email for r in rows if r.recipient is not None]
    uow.audit(
        actor,
        "approval.escalated",
        subject(req.id),
        contacts=told,
        deadline=req.deadline.isoformat() if req.deadline else None,
        **details,
    )
    return told


def escalation_contacts(uow: UnitOfWork, request_id: int) -> list[str]:
    """Who hears about an overdue request: the Accountable's manager, then the governance leads."""
    with uow.read():
        return _escalation_contacts(uow.session, load(uow.session, request_id))


def _escalation_contacts(session: Session, req: ApprovalRequest) -> list[str]:
    """Emails: the Accountable's active manager first, then the governance leads by email (the
    manager once, even when also a lead)."""
    raci = raci_of(session, req.activity, req.system)
    accountable = raci.accountable if raci else None
    people = directory.escalation_contacts(session, accountable, [GOVERNANCE_LEAD])
    manager = accountable.manager if accountable is not None else None
    first = [p for p in people if manager is not None and manager.active and p.id == manager.id]
    rest = sorted((p for p in people if p not in first), key=lambda p: p.email)
    return [p.email for p in first + rest]
