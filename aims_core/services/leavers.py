"""Deactivating a person who leaves: their open work moves, open approvals go on without them.

In one transaction, or not at all:

- what they own that is still open (systems, open CAPAs and their current actions, open plan
  tasks, RACI rows they are Accountable for, open risks, policies, open policy exceptions, open
  review actions, vendors, open vendor assessments, audits under way) moves to `reassign_to`,
  an active person, each move audited on the item's own subject. Without `reassign_to`, a
  Conflict names each item and nothing is written;
- a planned audit they were to run loses its auditor: the audit planner picks an independent
  one again (an auditor cannot simply be handed over: independence is checked per audit);
- they leave every open approval's eligible set; a request that can no longer reach its quorum
  with the approvers left is escalated at once, once (`approvals.escalate_within`);
- decisions they already recorded stand; their roles, RACI memberships (R, C, I) and the
  people they manage stay as they are, for the record and a reactivation (who holds a role and
  who hears of an escalation count active people only).

A service of its own, not part of `services.people`: it changes what the approval, CAPA and
audit services own, and those import `services.people`.
"""

from __future__ import annotations

from sqlalchemy import func, select

from aims_core.errors import Conflict, InvalidInput
from aims_core.models import (
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStatus,
    Decision,
    Outcome,
    Person,
)
from aims_core.rules.audit import audit_policy
from aims_core.services import approvals
from aims_core.services.audits.independence import conflicts
from aims_core.services.people import (
    DeactivationIn,
    Held,
    active_person,
    deactivation_text,
    get_person,
    held_by,
    person_subject,
)
from aims_core.uow import Actor, UnitOfWork, locked

__all__ = ["deactivate_in", "deactivate_person"]


def deactivate_person(uow: UnitOfWork, email: str, data: DeactivationIn, actor: Actor) -> list[str]:
    """`aims people deactivate`: one transaction; returns what was done, one line each."""
    with uow:
        person = get_person(uow.session, email)
        lines = deactivate_in(uow, person, actor, reason=data.reason, reassign_to=data.reassign_to)
        uow.commit()
    return lines


def deactivate_in(
    uow: UnitOfWork,
    person: Person,
    actor: Actor,
    *,
    reason: str,
    reassign_to: str | None = None,
) -> list[str]:
    """Deactivate `person` inside the caller's transaction (see the module docstring).

    Raises Conflict (already deactivated; open work and no `reassign_to`; an audit the new
    person may not take over) or InvalidInput (a bad `reassign_to`) before writing anything.
    """
    s = uow.session
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidInput("say why (e.g. 'left the company')", "reason")
    row = locked(s, Person, person.id)
    assert row is not None
    person = row
    if not person.active:
        raise Conflict(f"{deactivation_text(s, person)}: already deactivated", "email")
    target = None
    if reassign_to:
        target = active_person(s, reassign_to, "reassign_to")
        if target.id == person.id:
            raise InvalidInput(
                f"{person.email} is the person being deactivated: name someone else", "reassign_to"
            )
    held = held_by(s, person)
    moving = [h for h in held if h.must_reassign]
    if moving and target is None:
        raise Conflict(
            f"{person.name} <{person.email}> still owns {len(moving)} open item(s); name who "
            f"takes them over with --reassign-to EMAIL: {'; '.join(h.label for h in moving)}",
            "reassign_to",
        )
    if target is not None:
        _check_audits(uow, moving, target)

    lines: list[str] = []
    because = {"because": f"{person.email} deactivated: {reason}"}
    for h in held:
        if h.kind == "approval":
            continue
        if h.kind == "audit" and not h.must_reassign:
            h.row.auditor = None
            uow.audit(actor, "audit.auditor-unassigned", h.subject, auditor=person.email, **because)
            lines.append(f"{h.label}: unassigned (the planner picks an independent auditor)")
            continue
        assert target is not None
        setattr(h.row, h.attr, target)
        uow.audit(
            actor,
            f"{h.kind}.reassigned",
            h.subject,
            item=h.label,
            role=h.attr,
            previous=person.email,
            to=target.email,
            **because,
        )
        lines.append(f"{h.label}: → {target.email}")

    person.active = False
    s.flush()
    uow.audit(
        actor,
        "person.deactivated",
        person_subject(person),
        reason=reason,
        reassigned_to=target.email if target else None,
        reassigned=[h.label for h in moving],
    )
    lines += _leave_open_approvals(uow, person, actor, reason)
    return lines


def _check_audits(uow: UnitOfWork, moving: list[Held], target: Person) -> None:
    """An audit under way moves only to someone independent of what it audits."""
    audits = [h for h in moving if h.kind == "audit"]
    if not audits:
        return
    policy = audit_policy(uow.settings)
    for h in audits:
        problems = conflicts(uow.session, policy, h.row, target)
        if problems:
            raise Conflict(
                f"{target.name} may not take over {h.label}, an auditor may not audit their own "
                f"work: {'; '.join(problems)}",
                "reassign_to",
            )


def _leave_open_approvals(uow: UnitOfWork, person: Person, actor: Actor, reason: str) -> list[str]:
    """Out of every open request's eligible set; a request left short of its quorum is
    escalated now (once: `escalated_at` is its record)."""
    s = uow.session
    ids = list(
        s.scalars(
            select(ApprovalApprover.request_id)
            .join(ApprovalRequest, ApprovalRequest.id == ApprovalApprover.request_id)
            .where(
                ApprovalApprover.person_id == person.id,
                ApprovalRequest.status == ApprovalStatus.open,
            )
            .order_by(ApprovalApprover.request_id)
        )
    )
    lines = []
    for request_id in ids:
        req = locked(s, ApprovalRequest, request_id, key_share=True)
        if req is None or req.status is not ApprovalStatus.open:
            continue
        req.approvers = [a for a in req.approvers if a.person_id != person.id]
        s.flush()
        decided = set(s.scalars(select(Decision.person_id).where(Decision.request_id == req.id)))
        approved = (
            s.scalar(
                select(func.count()).where(
                    Decision.request_id == req.id, Decision.outcome == Outcome.approve
                )
            )
            or 0
        )
        can_still = [a for a in req.approvers if a.person_id not in decided and a.person.active]
        uow.audit(
            actor,
            "approval.approver-removed",
            f"approval:{req.id}",
            person=person.email,
            reason=reason,
            approvals=approved,
            undecided_left=len(can_still),
            quorum=req.quorum,
        )
        line = f"approval {req.id} '{req.title}': {person.email} no longer eligible"
        if approved + len(can_still) < req.quorum:
            told = approvals.escalate_within(
                uow,
                req,
                actor,
                why="quorum unreachable",
                left=person.email,
                approvals=approved,
                undecided_left=len(can_still),
                quorum=req.quorum,
            )
            if told:
                line += f"; quorum {req.quorum} unreachable: escalated to {', '.join(told)}"
            elif told == []:
                line += f"; quorum {req.quorum} unreachable and nobody to escalate to"
            else:
                line += f"; quorum {req.quorum} unreachable (already escalated)"
        lines.append(line)
    return lines
