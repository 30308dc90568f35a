"""The CLI's one door to the running engine: start a process as a deployment run.

Prefect is imported here, lazily, so commands that only read or write records never pay for it.
"""

from __future__ import annotations

import os
from typing import Any

from aims_core.errors import AimsError


class EngineNotRunning(AimsError):
    pass


def adopt_running_engine() -> None:
    """Point Prefect's client at the engine `aims up` runs for this data dir (it leaves its
    addresses in <data dir>/engine.json), unless PREFECT_API_URL says otherwise. Before any
    Prefect import: Prefect reads its settings once."""
    if os.environ.get("PREFECT_API_URL"):
        return
    from aims_core.settings import get_settings
    from deployments.local_engine import EngineInfo

    try:
        data_dir = get_settings().data_dir.resolve()
    except Exception:  # bad settings are reported by the command that needs them
        return
    info = EngineInfo.read(data_dir)
    if info is not None:
        os.environ["PREFECT_API_URL"] = info.api_url


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or "(PREFECT_API_URL not set)"


def run_url(flow_run_id: str) -> str:
    """The run's page in the Prefect UI."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value() or _api_url().removesuffix("/api")
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}"


def start_run(
    deployment: str,
    parameters: dict[str, Any],
    *,
    name: str | None = None,
    tags: list[str] | None = None,
) -> tuple[str, str, str]:
    """Start `deployment` and return at once: (run id, run name, UI link).

    The readable `name` is given here, not only by the flow, so the UI shows it from the moment
    the run is scheduled (a flow's own name template applies only once the run starts)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    with get_client(sync_client=True) as client:
        healthy = client.api_healthcheck()
    if healthy is not None:
        raise EngineNotRunning(
            f"the engine is not running (Prefect API at {_api_url()} unreachable): start it "
            "with `aims up` (or set PREFECT_API_URL to a running Prefect server)",
            field="engine",
        )
    try:
        run = run_deployment(
            deployment, parameters=parameters, timeout=0, tags=tags or [], flow_run_name=name
        )
    except Exception as exc:  # e.g. deployment not served yet
        raise EngineNotRunning(f"cannot start {deployment}: {exc}", field="engine") from None
    return str(run.id), run.name, run_url(str(run.id))


def run_ended(flow_run_id: str) -> bool | None:
    """Whether the run has ended (or is unknown to Prefect); None if Prefect cannot be asked."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
    except ObjectNotFound:
        return True
    except Exception:
        return None
    return bool(run.state and run.state.is_final())


def wake(
    flow_run_id: str,
    *,
    attempts: int,
    retry: str,
    ended: str | None = None,
    resumed: str = "resumed",
) -> str:
    """Resume a run waiting for what a command just recorded; the line that tells the user what
    happened. `ended`: what to do when the run has finished (None: report it like any other
    failure); `retry`: what to do when it could not be resumed now."""
    from uuid import UUID

    from notifications.resume import ResumeOutcome, resume_run

    # A run still re-running after an earlier wake is waited for (it suspends within seconds).
    outcome = resume_run(UUID(flow_run_id), {}, attempts=attempts, delay=0.5)
    if outcome is ResumeOutcome.resumed:
        return f"flow run {flow_run_id}: {resumed}"
    if outcome is ResumeOutcome.finished and ended is not None:
        return f"flow run {flow_run_id} has ended: {ended}"
    return f"flow run {flow_run_id}: not resumed ({outcome.value}); {retry}"
