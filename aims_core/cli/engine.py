"""The CLI's one door to the running engine: start a process as a deployment run.

Prefect is imported here, lazily, so commands that only read or write records never pay for it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aims_core.ports import EngineNotRunning, ResumeOutcome

if TYPE_CHECKING:
    from deployments.prefect_runs import PrefectRuns

__all__ = [
    "EngineNotRunning",
    "adopt_running_engine",
    "run_ended",
    "run_url",
    "runs",
    "start_run",
    "wake",
]


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


def runs() -> PrefectRuns:
    """The engine's runs, as the CLI reaches them (the Prefect adapter, imported when used)."""
    from deployments.prefect_runs import PrefectRuns

    return PrefectRuns()


def run_url(flow_run_id: str) -> str:
    """The run's page in the Prefect UI."""
    from deployments.prefect_runs import run_url as url

    return url(flow_run_id)


def start_run(
    deployment: str,
    parameters: dict[str, Any],
    *,
    name: str | None = None,
    tags: list[str] | None = None,
) -> tuple[str, str, str]:
    """Start `deployment` and return at once: (run id, run name, UI link)."""
    run = runs().start(deployment, parameters, name=name, tags=tags)
    return run.id, run.name, run.url


def run_ended(flow_run_id: str) -> bool | None:
    """Whether the run has ended (or is unknown to Prefect); None if Prefect cannot be asked."""
    state = runs().state(flow_run_id)
    return None if state is None else state.final


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
    # A run still re-running after an earlier wake is waited for (it suspends within seconds).
    outcome = runs().resume(flow_run_id, {}, attempts=attempts, delay=0.5)
    if outcome is ResumeOutcome.resumed:
        return f"flow run {flow_run_id}: {resumed}"
    if outcome is ResumeOutcome.finished and ended is not None:
        return f"flow run {flow_run_id} has ended: {ended}"
    return f"flow run {flow_run_id}: not resumed ({outcome.value}); {retry}"
