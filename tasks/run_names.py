"""Readable run names for the Prefect UI (`@flow(flow_run_name=...)`), however a run started.

Prefect calls the name function with no arguments once the run starts. A process names its run
from its parameters (`run_name`) — with a plain fallback when the record it names cannot be read
(unknown id, no database): the first step then says what is wrong, the name never fails the
run — or, for a scheduled pass, from the time it was scheduled for (`scheduled_run_name`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prefect.runtime import flow_run

#: What Prefect's `flow_run_name=` takes.
RunNamer = Callable[[], str]


def run_name(
    build: Callable[[dict[str, Any]], str],
    fallback: Callable[[dict[str, Any]], str] | None = None,
    *,
    errors: tuple[type[Exception], ...] = (Exception,),
) -> RunNamer:
    """The name `build(parameters)`; when it raises one of `errors`, `fallback(parameters)`
    (without a fallback the error is raised)."""

    def name() -> str:
        parameters: dict[str, Any] = dict(flow_run.parameters)
        if fallback is None:
            return build(parameters)
        try:
            return build(parameters)
        except errors:
            return fallback(parameters)

    return name


def scheduled_run_name(build: Callable[[datetime], str]) -> RunNamer:
    """The name `build(at)`, `at` being the run's scheduled start (now, if it has none)."""

    def name() -> str:
        return build(flow_run.scheduled_start_time or datetime.now(UTC))

    return name
