"""Every deployment, served by one process (`python -m deployments.serve`).

Runs that wait for people suspend (their process exits), so one small runner holds hundreds of
open approvals. `pause_on_shutdown=False`: stopping the engine must not pause the schedules.
`AIMS_SCHEDULES_PAUSED=true` serves the deployments with their schedules paused (tests, drills).
"""

from __future__ import annotations

import importlib
import os
from datetime import timedelta
from typing import Any

from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment

from aims_core import processes
from aims_core.processes import Process

# Runs started by the CLI or the bridge should begin within seconds, not the default ~10 s.
os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
# Suspended runs re-run from the top: the steps before the wait must come back cached.
os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")


def to_deployment(process: Process, *, paused: bool, timezone: str) -> RunnerDeployment:
    """A row of the process table as Prefect serves it."""
    from prefect.schedules import Cron, Interval

    module = importlib.import_module(process.module)
    flow: Flow[..., Any] = getattr(module, process.function)
    schedule = (
        Cron(process.cron, timezone=timezone)
        if process.cron
        else Interval(timedelta(seconds=process.every_s))
        if process.every_s
        else None
    )
    extra: dict[str, Any] = {}
    if schedule is not None:
        extra.update(schedule=schedule, paused=paused)
    if process.one_at_a_time:
        extra["concurrency_limit"] = ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
        )
    return flow.to_deployment(name=process.name, tags=list(process.tags), **extra)


def all_deployments() -> list[RunnerDeployment]:
    from aims_core.settings import get_settings

    paused = os.environ.get("AIMS_SCHEDULES_PAUSED", "").lower() in ("1", "true", "yes")
    tz = get_settings().timezone
    return [to_deployment(p, paused=paused, timezone=tz) for p in processes.ALL]


def main(limit: int = 4) -> None:
    serve(*all_deployments(), limit=limit, pause_on_shutdown=False, print_starting_message=True)


if __name__ == "__main__":
    main(int(os.environ.get("AIMS_RUNNER_LIMIT", "4")))
