"""Resume the Prefect run waiting on an approval request, once the database says it is decided.

The database is authoritative: the run, once resumed, re-reads the outcome from it. So a resume
that fails (Prefect API down, run not suspended yet) loses nothing: `resume_pending` stays set and
the reconciler tries again. Prefect is imported lazily: the bridge answers Slack without it.
"""

from __future__ import annotations

import enum
import logging
import time
from uuid import UUID

from sqlalchemy import select

from aims_core.models import ApprovalRequest, ApprovalStatus
from aims_core.settings import Settings
from aims_core.uow import UnitOfWork

log = logging.getLogger(__name__)


class ResumeOutcome(enum.StrEnum):
    resumed = "resumed"
    nothing_to_do = "nothing-to-do"  # not decided yet, no run attached, or already resumed
    finished = "finished"  # the run already ended: nothing waits any more
    deferred = "deferred"  # Prefect unreachable, or the run is not suspended (yet): retry later


def wait_key(request_id: int, round_: int) -> str:
    """The suspend key of a request's round: lowercase, digits and dashes (Prefect requires it)."""
    return f"approval-{request_id}-round-{round_}"


def resume_for_request(
    settings: Settings, request_id: int, *, attempts: int = 5, delay: float = 0.5
) -> ResumeOutcome:
    """Resume the request's run if it is decided and not yet resumed; mark it resumed."""
    with UnitOfWork(settings).read() as uow:
        req = uow.session.scalar(select(ApprovalRequest).where(ApprovalRequest.id == request_id))
        if req is None or not req.flow_run_id or not req.resume_pending:
            return ResumeOutcome.nothing_to_do
        if req.status is ApprovalStatus.open:
            return ResumeOutcome.nothing_to_do
        flow_run_id, status = req.flow_run_id, req.status
    outcome = resume_run(
        UUID(flow_run_id),
        {
            "approver": "-",
            "decision": "approve" if status is ApprovalStatus.approved else "reject",
            "code": "",
            "comment": f"decided: {status.value}",
        },
        attempts=attempts,
        delay=delay,
    )
    if outcome in (ResumeOutcome.resumed, ResumeOutcome.finished):
        from aims_core.services.approvals import mark_resumed

        mark_resumed(UnitOfWork(settings), request_id)
    return outcome


def resume_run(
    flow_run_id: UUID, run_input: dict[str, str], *, attempts: int, delay: float
) -> ResumeOutcome:
    """Resume a suspended run; retried while it is not suspended yet (or its input schema is not
    saved yet). Used for approvals here and by the CLIs that wake runs waiting for answers."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.responses import SetStateStatus

    for attempt in range(1, attempts + 1):
        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(flow_run_id)
                state = run.state
                if state is not None and state.is_final():
                    return ResumeOutcome.finished
                if state is None or not state.is_paused():
                    # Running: it may be about to suspend (a click raced its first wait), or
                    # re-running after another resume. Never mark resumed from here.
                    raise _NotYet(f"run is {state.name if state else 'without state'}")
                response = client.resume_flow_run(flow_run_id, run_input=run_input)
            if response.status == SetStateStatus.ACCEPT:
                return ResumeOutcome.resumed
            # HTTP 200 can carry a refusal: "Run input schema not found" in the gap between
            # the run showing Suspended and its input schema being saved. Retry briefly.
            reason = response.details.reason if response.details else "refused"
            raise _NotYet(reason)
        except _NotYet as exc:
            log.info(
                "resume %s not possible yet (%s), attempt %d/%d",
                flow_run_id,
                exc,
                attempt,
                attempts,
            )
        except Exception as exc:  # Prefect API unreachable or erroring: the reconciler retries
            log.warning("resume %s failed: %s", flow_run_id, exc)
            return ResumeOutcome.deferred
        time.sleep(delay)
    return ResumeOutcome.deferred


class _NotYet(Exception):
    pass
