"""The two doors from the domain to the outside: runs (Prefect) and message delivery (Slack).

The domain knows neither Prefect nor Slack. A service that must start, resume or look at a run,
or send what it queued now, takes a `Runs` or a `Delivery` as an argument; the entry points (flows,
the CLI, the HTTP app) build the real adapters (`deployments.prefect_runs.PrefectRuns`,
`notifications.slack.SlackDelivery`) and tests may pass their own. The data types the adapters
return live here, so the domain can reason about them without importing the adapters.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Protocol

from pydantic import BaseModel, Field

from aims_core.errors import AimsError

MAX_REPORTED_ERRORS: Final = 20


class EngineNotRunning(AimsError):
    """The engine (a Prefect API with the deployments served) cannot start this run now."""


class ResumeOutcome(enum.StrEnum):
    resumed = "resumed"
    nothing_to_do = "nothing-to-do"  # not decided yet, no run attached, or already resumed
    finished = "finished"  # the run already ended: nothing waits any more
    deferred = "deferred"  # Prefect unreachable, or the run is not suspended (yet): retry later


class RunState(BaseModel):
    """What the orchestrator says of a run now."""

    name: str
    final: bool = False
    completed: bool = False
    paused: bool = False
    pause_key: str | None = None
    message: str | None = None


class RunStarted(BaseModel):
    """A deployment run that was created: what a person needs to find it."""

    id: str
    name: str
    url: str
    state: RunState | None = Field(
        default=None, exclude=True, description="When the caller waited: how far the run got."
    )


#: `Runs.state` when the orchestrator does not know the run (deleted, or never existed).
UNKNOWN_RUN: Final = RunState(name="unknown", final=True)


class Runs(Protocol):
    """Start, resume and look at process runs. The Prefect adapter is the only implementation
    that talks to an orchestrator; every caller in the domain goes through this."""

    def start(
        self,
        deployment: str,
        parameters: Mapping[str, Any],
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        wait_s: float = 0,
    ) -> RunStarted:
        """Create a run of `deployment` (never a subflow of the caller: the child may suspend).
        `wait_s` > 0 waits that long for it to end. Raises EngineNotRunning when it cannot."""
        ...

    def resume(
        self,
        flow_run_id: str,
        run_input: Mapping[str, Any],
        *,
        attempts: int = 1,
        delay: float = 0.5,
    ) -> ResumeOutcome:
        """Resume a suspended run with `run_input`; never raises for an unreachable API."""
        ...

    def state(self, flow_run_id: str) -> RunState | None:
        """The run's state, UNKNOWN_RUN when the orchestrator does not know it, None when the
        orchestrator cannot be asked now."""
        ...

    def url(self, flow_run_id: str) -> str:
        """Where a person sees the run (the Prefect UI's page)."""
        ...


class DeliveryReport(BaseModel):
    """What one delivery pass did. `possible_duplicates`: posts whose answer never came (they
    may have reached Slack and will be posted again: at-least-once delivery)."""

    sent: int = 0
    updated: int = 0
    logged: int = 0
    retried: int = 0
    failed: int = 0
    possible_duplicates: int = 0
    stopped: str | None = Field(default=None, description="Why the pass ended early, if it did.")
    errors: list[str] = Field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.sent + self.updated + self.logged + self.retried + self.failed

    def note(self, line: str) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(line)


class Delivery(Protocol):
    """Send what the outbox holds. The Slack adapter is the only implementation that talks to
    Slack; without a bot token it writes the messages to the log."""

    def deliver_due(
        self, *, now: datetime | None = None, limit: int | None = None
    ) -> DeliveryReport:
        """One delivery pass over everything due."""
        ...

    def deliver_subject(self, subject: str, *, limit: int) -> DeliveryReport:
        """Send one subject's queued messages now, oldest first (at most `limit`), stopping at
        the first transient error: the rest wait in the outbox for the next pass."""
        ...
