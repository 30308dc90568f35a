"""The run behind a request: which flow run waits for it, its wait round, its resumption.

No Prefect here: flows learn the outcome by re-reading the request (`resume_needed`,
`pending_resumes`), and the reconciler resumes what a channel could not.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import select

from aims_core.errors import InvalidInput
from aims_core.models import ApprovalRequest, ApprovalStatus
from aims_core.services.approvals.queries import (
    locked_or_missing,
    request_out,
    subject,
    with_everything,
)
from aims_core.services.approvals.schemas import ApprovalRequestOut
from aims_core.uow import Actor, UnitOfWork

__all__ = ["FLOW_ACTOR", "attach_flow_run", "mark_resumed", "next_round", "pending_resumes"]

#: Who is recorded for bookkeeping a flow does when the caller names nobody.
FLOW_ACTOR: Final = Actor(who="aims", channel="flow")


def attach_flow_run(
    uow: UnitOfWork, request_id: int, flow_run_id: str, actor: Actor | None = None
) -> None:
    """Remember which run waits for this request (idempotent; a new run id replaces the old)."""
    flow_run_id = flow_run_id.strip()
    if not flow_run_id or len(flow_run_id) > 64:
        raise InvalidInput("a flow run id of 1 to 64 characters", "flow_run_id")
    with uow:
        req = locked_or_missing(uow, request_id)
        if req.flow_run_id == flow_run_id:
            return
        previous, req.flow_run_id = req.flow_run_id, flow_run_id
        uow.audit(
            actor or FLOW_ACTOR,
            "approval.run-attached",
            subject(req.id),
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
        req = locked_or_missing(uow, request_id)
        if req.round == expected_round:
            req.round = expected_round + 1
            uow.audit(
                actor or FLOW_ACTOR,
                "approval.next-round",
                subject(req.id),
                round=req.round,
            )
            uow.commit()
        return req.round


def mark_resumed(uow: UnitOfWork, request_id: int, actor: Actor | None = None) -> None:
    """The waiting run was resumed: the reconciler no longer needs to."""
    with uow:
        req = locked_or_missing(uow, request_id)
        if not req.resume_pending:
            return
        req.resume_pending = False
        uow.audit(
            actor or FLOW_ACTOR,
            "approval.resumed",
            subject(req.id),
            flow_run_id=req.flow_run_id,
            status=req.status.value,
        )
        uow.commit()


def pending_resumes(uow: UnitOfWork) -> list[ApprovalRequestOut]:
    """Decided requests whose waiting run has not been resumed yet (e.g. Prefect was down)."""
    with uow.read():
        q = with_everything(select(ApprovalRequest)).where(
            ApprovalRequest.status != ApprovalStatus.open,
            ApprovalRequest.resume_pending.is_(True),
            ApprovalRequest.flow_run_id.is_not(None),
        )
        return [request_out(r) for r in uow.session.scalars(q.order_by(ApprovalRequest.id))]
