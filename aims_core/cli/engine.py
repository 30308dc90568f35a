"""The CLI's one door to the running engine: start a process as a deployment run.

Prefect is imported here, lazily, so commands that only read or write records never pay for it.
"""

from __future__ import annotations

from typing import Any

from aims_core.errors import AimsError


class EngineNotRunning(AimsError):
    pass


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
            "with `python -m deployments.serve` beside a Prefect server, or set PREFECT_API_URL",
            field="engine",
        )
    try:
        run = run_deployment(
            deployment, parameters=parameters, timeout=0, tags=tags or [], flow_run_name=name
        )
    except Exception as exc:  # e.g. deployment not served yet
        raise EngineNotRunning(f"cannot start {deployment}: {exc}", field="engine") from None
    return str(run.id), run.name, run_url(str(run.id))
