"""Tags for the Prefect UI's filters on the running flow run, however it was started.

A run started from the UI or by a schedule has only its deployment's tags; a process adds its own
(system, tier, severity, period, ...) once it knows them, so operators can filter by them.

One vocabulary for every process, the one the CLI and the HTTP intake already start runs with:
the process (`gate`, `risk-assessment`, `incident`, `capa`, `audit`, `policy`, `approval`, ...),
then bare values — the system's slug (`credit-scoring`), its risk tier (`high`), the severity
(`SEV2`), the category (`bias-fairness`), the trigger, the period (`2026Q4`), the policy key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.runtime import flow_run

if TYPE_CHECKING:
    from aims_core.services.approvals import ApprovalRequestIn
    from aims_core.settings import Settings


def tag_this_run(wanted: Iterable[str]) -> None:
    """Add the `wanted` tags the current run does not have yet (its own tags are kept).

    The run's tags come from its run context (the engine reads the run when it starts, and what
    is added here is kept there), so no API read: one call when tags are missing, none when not.
    Every API call made right after a task waits for the server to record that task's states
    (10-50 ms on the SQLite-backed server; see bench/orchestration.py)."""
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx is not None else None
    with get_client(sync_client=True) as client:
        if run is None:  # not inside a flow run's context: ask the API
            run = client.read_flow_run(flow_run.id)
        tags = list(run.tags)
        missing = [t for t in dict.fromkeys(wanted) if t and t not in tags]
        if missing:
            client.update_flow_run(run.id, tags=[*tags, *missing])
            run.tags = [*tags, *missing]


def system_tags(system: str | None, settings: Settings | None = None) -> list[str]:
    """The system's slug and risk tier; [] without a system, the slug alone if it is unknown
    (the step that needs the system says so clearly; a tag never fails a run)."""
    from aims_core.errors import AimsError
    from aims_core.services.systems import show_system
    from aims_core.settings import get_settings
    from aims_core.uow import UnitOfWork

    if not system:
        return []
    try:
        tier = show_system(UnitOfWork(settings or get_settings()), system).risk_tier
    except AimsError:
        return [system]
    return [system, tier.value]


def approval_tags(spec: ApprovalRequestIn, settings: Settings | None = None) -> list[str]:
    """`approval`, the subject's kind (`policy`, `gate`, `review`, ...), and the system with its
    tier when the subject is a system or belongs to one (a gate names its system)."""
    kind, _, ident = spec.subject.partition(":")
    system = spec.system or (ident if kind == "system" else None)
    return ["approval", kind, *system_tags(system, settings)]
