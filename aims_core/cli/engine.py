"""The CLI's one door to the running engine: start a process as a deployment run.

Prefect is imported here, lazily, so commands that only read or write records never pay for it.
A command that starts a run first checks what it was given against the records (`known_person`,
`known_system`, `known_roles`: exit 2, nothing started), then that an engine answers
(`require_engine`: exit 1 naming `aims up`). Without a configured Prefect API nothing here lets
Prefect start its throw-away ephemeral server: that server has none of the engine's deployments,
so a run "started" there never runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aims_core.errors import InvalidInput
from aims_core.ports import EngineNotRunning, ResumeOutcome, Runs, RunStarted, RunState

__all__ = [
    "EngineNotRunning",
    "NoEngine",
    "adopt_running_engine",
    "engine_api_url",
    "known_person",
    "known_roles",
    "known_system",
    "require_engine",
    "run_ended",
    "run_url",
    "runs",
    "start_run",
    "wake",
]

#: How long the engine's health check may wait to connect, and then for its answer: a command
#: must say within seconds that no engine runs, and Prefect's own client retries a timed-out
#: call with growing pauses (a minute and more). A local engine answers in milliseconds.
CONNECT_TIMEOUT_S: Final = 1.0
HEALTH_TIMEOUT_S: Final = 1.5


#: Why no engine runs when nothing names one (`adopt_running_engine` found no live engine.json).
NOT_CONFIGURED: Final = "no live engine.json there and PREFECT_API_URL not set"


class NoEngine(EngineNotRunning):
    """No engine answers: the operator's to start (exit 1; 2 means bad input, nothing written)."""

    exit_code = 1


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


# --- what a command gives, checked before a run starts ---------------------------------------


def known_person(email: str | None, option: str) -> str | None:
    """The email of the active person `email` names (as stored), None when not given; else an
    error naming `option`. A deactivated person is refused too: a run would give them work."""
    if not email:
        return None
    from aims_core.services.people import deactivation_text, get_person
    from aims_core.uow import UnitOfWork

    uow = UnitOfWork()
    with uow.read():
        person = get_person(uow.session, email, option)
        if not person.active:
            raise InvalidInput(f"{person.email}: {deactivation_text(uow.session, person)}", option)
        return person.email


def known_system(name: str | None, option: str) -> str | None:
    """The key of the AI system `name` names (key, display name, ...), None when not given."""
    if not name:
        return None
    from aims_core.services.systems import get_system
    from aims_core.uow import UnitOfWork

    uow = UnitOfWork()
    with uow.read():
        return get_system(uow.session, name, option).name


def known_roles(role_ids: Sequence[str], option: str) -> list[str]:
    """The role ids given, each one known (case as the catalog spells it: lower)."""
    from aims_core.services.people import resolve_roles
    from aims_core.uow import UnitOfWork

    uow = UnitOfWork()
    with uow.read():
        try:
            roles = resolve_roles(uow.session, [r.strip().lower() for r in role_ids])
        except InvalidInput as exc:  # it names its own field ("role"): name the option given
            raise InvalidInput(exc.message, option) from None
        return [r.id for r in roles]


# --- the engine ---------------------------------------------------------------------------------


def _data_dir() -> str:
    from aims_core.settings import get_settings

    try:
        return str(get_settings().data_dir.resolve())
    except Exception:  # bad settings are reported by the command that needs them
        return "(unknown: the settings do not load)"


def engine_api_url() -> str | None:
    """The Prefect API the CLI talks to (PREFECT_API_URL, or engine.json's, see
    `adopt_running_engine`); None when none is configured. The environment wins over Prefect's
    other sources (profile, prefect.toml), so before Prefect is imported its variable is read
    as is: a command that finds no engine there exits without Prefect's ~1.5 s import."""
    if "prefect.settings" not in sys.modules and (url := os.environ.get("PREFECT_API_URL")):
        return url
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def _health_problem(api_url: str) -> str | None:
    """Why the API at `api_url` is not an engine that answers (None: it is): its health check,
    one try within seconds. A 2xx counts, and a 401/403 (a Prefect API that wants credentials:
    the start itself says whether they are right); anything else answering at that address (a
    proxy's 404) is no engine."""
    import httpx

    verify: Any = True
    if api_url.startswith("https:"):  # Prefect's own TLS settings (a CA file, skip-verify)
        from deployments.prefect_runs import _tls_context

        verify = _tls_context()
    try:
        response = httpx.get(
            f"{api_url.rstrip('/')}/health",
            timeout=httpx.Timeout(HEALTH_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            verify=verify,
        )
    except httpx.ConnectTimeout:
        return f"the Prefect API at {api_url} cannot be reached within {CONNECT_TIMEOUT_S:g} s"
    except httpx.TimeoutException:
        return f"no answer from the Prefect API at {api_url} within {HEALTH_TIMEOUT_S:g} s"
    except httpx.HTTPError as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"no answer from the Prefect API at {api_url}: {why}"
    if not (response.is_success or response.status_code in (401, 403)):
        status = response.status_code
        return f"the Prefect API at {api_url} answers its health check with HTTP {status}"
    return None


def _not_running(why: str) -> NoEngine:
    return NoEngine(
        f"the engine is not running for data dir {_data_dir()} ({why}): start it with `aims up`",
        field="engine",
    )


def require_engine() -> str:
    """The API URL of the engine that answers now; else NoEngine naming the data dir, the URL and
    `aims up`, within seconds. Never through Prefect's client: with no URL set it would start an
    ephemeral server, and it retries a silent address for minutes."""
    api_url = engine_api_url()
    if api_url is None:
        raise _not_running(NOT_CONFIGURED)
    problem = _health_problem(api_url)
    if problem is not None:
        raise _not_running(problem)
    return api_url


class _NoEngineRuns:
    """The runs port when no Prefect API is configured: starts nothing (NoEngine), resumes
    nothing (deferred: the database keeps what was decided), knows no state (None)."""

    def start(
        self,
        deployment: str,
        parameters: Mapping[str, Any],
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        wait_s: float = 0,
    ) -> RunStarted:
        raise _not_running(NOT_CONFIGURED)

    def resume(
        self,
        flow_run_id: str,
        run_input: Mapping[str, Any],
        *,
        attempts: int = 1,
        delay: float = 0.5,
    ) -> ResumeOutcome:
        return ResumeOutcome.deferred

    def state(self, flow_run_id: str) -> RunState | None:
        return None

    def url(self, flow_run_id: str) -> str:
        return run_url(flow_run_id)


def runs() -> Runs:
    """The engine's runs, as the CLI reaches them: the Prefect adapter (imported when used), or,
    with no Prefect API configured, one that never calls Prefect."""
    if engine_api_url() is None:
        return _NoEngineRuns()
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
    """Start `deployment` and return at once: (run id, run name, UI link). NoEngine (exit 1)
    when no engine answers, within seconds; the command has checked its input before."""
    require_engine()
    from deployments.prefect_runs import PrefectRuns

    run = PrefectRuns(check_health=False).start(deployment, parameters, name=name, tags=tags)
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
