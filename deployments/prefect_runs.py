"""The `Runs` port over the Prefect API: the only code that starts, resumes or reads runs.

Prefect is imported inside the methods, so building the adapter costs nothing and the bridge
answers Slack without Prefect loaded. Runs started here are deployment runs, never subflows of
the caller (`as_subflow=False`): a child that waits for people must be able to suspend.
"""

from __future__ import annotations

import functools
import logging
import ssl
import time
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from aims_core.ports import (
    UNKNOWN_RUN,
    EngineNotRunning,
    ResumeOutcome,
    Runs,
    RunStarted,
    RunState,
)

log = logging.getLogger("aims.runs")


def api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or "(PREFECT_API_URL not set)"


def run_url(flow_run_id: str) -> str:
    """The run's page in the Prefect UI."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value() or api_url().removesuffix("/api")
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}"


class _NotYet(Exception):
    pass


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS context of every client made here, built once per process by Prefect's own rule.

    Prefect's client builds a fresh context for each client (reading and parsing the CA bundle:
    ~20 ms of CPU holding the GIL). The bridge makes a client per resume, right after the clicks
    it answers: two follow-ups doing so amid a burst of clicks held four acknowledgements back
    by ~150 ms each (measured with py-spy on the decisions benchmark, PostgreSQL)."""
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY

    if PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value():
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    import certifi

    return ssl.create_default_context(cafile=PREFECT_API_SSL_CERT_FILE.value() or certifi.where())


def _client() -> Any:
    """A synchronous Prefect client (use it in a `with`): inside a run, the run's own; else a new
    one sharing the process's TLS context."""
    from prefect.client.orchestration import get_client
    from prefect.context import SyncClientContext

    running = SyncClientContext.get()
    if running is not None and running.client is not None:
        return get_client(sync_client=True)
    return get_client(sync_client=True, httpx_settings={"verify": _tls_context()})


class PrefectRuns(Runs):
    """Runs of the deployments the engine serves, through the Prefect API in PREFECT_API_URL."""

    def __init__(self, *, check_health: bool = True) -> None:
        # A flow starting a child knows the API answers (it is talking to it): no health call.
        self.check_health = check_health

    def start(
        self,
        deployment: str,
        parameters: Mapping[str, Any],
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        wait_s: float = 0,
    ) -> RunStarted:
        """The readable `name` is given here, not only by the flow, so the UI shows it from the
        moment the run is scheduled (a flow's own name template applies once it starts)."""
        from prefect.deployments import run_deployment

        if self.check_health:
            with _client() as client:
                healthy = client.api_healthcheck()
            if healthy is not None:
                raise EngineNotRunning(
                    f"the engine is not running (Prefect API at {api_url()} unreachable): start "
                    "it with `aims up` (or set PREFECT_API_URL to a running Prefect server)",
                    field="engine",
                )
        try:
            run = run_deployment(
                deployment,
                parameters=dict(parameters),
                timeout=wait_s,
                as_subflow=False,
                tags=tags or [],
                flow_run_name=name,
            )
        except Exception as exc:  # e.g. deployment not served yet
            raise EngineNotRunning(f"cannot start {deployment}: {exc}", field="engine") from None
        return RunStarted(
            id=str(run.id), name=run.name, url=run_url(str(run.id)), state=_state(run.state)
        )

    def resume(
        self,
        flow_run_id: str,
        run_input: Mapping[str, Any],
        *,
        attempts: int = 1,
        delay: float = 0.5,
    ) -> ResumeOutcome:
        """Resume a suspended run; retried while it is not suspended yet (or its input schema is
        not saved yet). An unreachable API is `deferred`, never raised: the database keeps what
        was decided and the reconciler tries again."""
        from prefect.client.schemas.responses import SetStateStatus

        run_id = UUID(flow_run_id)
        for attempt in range(1, attempts + 1):
            try:
                with _client() as client:
                    state = client.read_flow_run(run_id).state
                    if state is not None and state.is_final():
                        return ResumeOutcome.finished
                    if state is None or not state.is_paused():
                        # Running: it may be about to suspend (a click raced its first wait), or
                        # re-running after another resume. Never mark resumed from here.
                        raise _NotYet(f"run is {state.name if state else 'without state'}")
                    response = client.resume_flow_run(run_id, run_input=dict(run_input))
                if response.status == SetStateStatus.ACCEPT:
                    return ResumeOutcome.resumed
                # HTTP 200 can carry a refusal: "Run input schema not found" in the gap between
                # the run showing Suspended and its input schema being saved. Retry briefly.
                raise _NotYet(response.details.reason if response.details else "refused")
            except _NotYet as exc:
                log.info(
                    "resume %s not possible yet (%s), attempt %d/%d",
                    flow_run_id,
                    exc,
                    attempt,
                    attempts,
                )
            except Exception as exc:  # Prefect API unreachable or erroring
                log.warning("resume %s failed: %s", flow_run_id, exc)
                return ResumeOutcome.deferred
            time.sleep(delay)
        return ResumeOutcome.deferred

    def state(self, flow_run_id: str) -> RunState | None:
        from prefect.exceptions import ObjectNotFound

        try:
            with _client() as client:
                state = client.read_flow_run(UUID(flow_run_id)).state
        except ObjectNotFound:
            return UNKNOWN_RUN
        except Exception as exc:  # Prefect unreachable: the caller tries again later
            log.warning("cannot read run %s: %s", flow_run_id, exc)
            return None
        return _state(state) or RunState(name="without state")

    def url(self, flow_run_id: str) -> str:
        return run_url(flow_run_id)


def _state(state: Any) -> RunState | None:
    if state is None:
        return None
    return RunState(
        name=state.name or str(state.type),
        final=state.is_final(),
        completed=state.is_completed(),
        paused=state.is_paused(),
        pause_key=state.state_details.pause_key,
        message=state.message,
    )
