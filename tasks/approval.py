"""`request_approval`: a flow waits for an approval — the approval kind of `tasks/asks.ask`.

Kept as the name flows use for approvals; the wait, the UI form and the answer service are the
asks' (`tasks/asks.py`).
"""

from __future__ import annotations

from prefect import task
from prefect.runtime import flow_run

from aims_core.services import approvals
from aims_core.settings import Settings, get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.asks import (
    FLOW_ACTOR,
    ApprovalInput,
    AskOutcome,
    answer_from_ui,
    ask,
    deliver_request,
    open_request,
)

__all__ = [
    "FLOW_ACTOR",
    "ApprovalInput",
    "ApprovalOutcome",
    "claim_request",
    "deliver_request",
    "open_request",
    "request_approval",
]

#: An approval's outcome is an ask's.
ApprovalOutcome = AskOutcome


@task(name="claim approval request", persist_result=True)
def claim_request(request_id: int | None) -> None:
    """A run taking over a record (`take_over`) takes over its approval request too: the
    decision must resume this run, not the one that ended."""
    if request_id is not None:
        approvals.attach_flow_run(
            UnitOfWork(get_settings()),
            request_id,
            str(flow_run.id),
            Actor(who=FLOW_ACTOR, channel="flow"),
        )


def request_approval(spec: approvals.ApprovalRequestIn) -> AskOutcome:
    """Ask for an approval, wait suspended (no process kept), and return the decision the
    database holds."""
    return ask(spec)


def _decide_from_ui(settings: Settings, request_id: int, answer: ApprovalInput) -> str | None:
    """What a resumed run does with an approval typed into the UI form (tests call it)."""
    return answer_from_ui(settings, approvals.get_request(UnitOfWork(settings), request_id), answer)
