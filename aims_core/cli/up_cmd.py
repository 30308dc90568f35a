"""`aims up`: the whole engine on this machine, supervised until Ctrl-C."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from aims_core.cli._base import fail
from aims_core.settings import Settings, get_settings
from aims_core.uow import Actor

if TYPE_CHECKING:
    from deployments.local_engine import LocalEngine


def default_runner_limit() -> int:
    """Two flow runs per core: runs mostly wait on the database and Prefect's API, and a run
    waiting for people holds no process at all (it is suspended)."""
    return 2 * (os.cpu_count() or 1)


def configured_prefect_api() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile, if any."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def build_engine(
    settings: Settings,
    *,
    port: int,
    bridge_port: int,
    poll: float,
    runner_limit: int,
    extra_env: dict[str, str] | None = None,
    say: Callable[[str], None] = typer.echo,
) -> LocalEngine:
    """The engine for these settings; creates or upgrades the AIMS database first, so a fresh
    clone needs no other step."""
    from deployments.local_engine import EngineInfo, LocalEngine
    from deployments.serve import all_deployments

    running = EngineInfo.read(settings.data_dir.resolve())
    if running is not None:
        fail(
            f"an engine is already up for {settings.data_dir} (pid {running.pid}, UI "
            f"{running.ui_url or running.api_url}): stop it with Ctrl-C there, or use another "
            "AIMS_DATA_DIR"
        )
    from aims_core import database

    database.initialise(settings, Actor.cli())
    data_dir = settings.data_dir.resolve()
    aims_env = {
        "AIMS_DATA_DIR": str(data_dir),
        "AIMS_DATABASE_URL": settings.effective_database_url,
        **(extra_env or {}),
    }
    os.environ.update(aims_env)  # all_deployments() reads the settings (time zone) too
    names = [f"{d.flow_name}/{d.name}" for d in all_deployments()]
    return LocalEngine(
        data_dir=data_dir,
        aims_env=aims_env,
        deployments=names,
        port=port,
        bridge_port=bridge_port,
        external_api_url=configured_prefect_api(),
        poll_seconds=poll,
        runner_limit=runner_limit,
        say=say,
    )


def describe(engine: LocalEngine, settings: Settings) -> str:
    """The lines a person needs once the engine is up."""
    prefect_db = os.environ.get("PREFECT_SERVER_DATABASE_CONNECTION_URL")
    if engine.server is None:
        prefect_where = f"the configured server at {engine.api_url}"
    elif prefect_db:
        prefect_where = f"{prefect_db.split('://', 1)[0]} (PREFECT_SERVER_DATABASE_CONNECTION_URL)"
    else:
        prefect_where = f"SQLite under {engine.data_dir / 'prefect'}"
    slack = (
        "bot token set: approvers get Block Kit messages"
        if settings.slack_bot_token
        else "not configured: messages wait in the outbox (`aims notifications list`); decide "
        "with `aims approve` or the run's Resume form in the UI"
    )
    socket_mode = "on (app token set)" if settings.slack_app_token else "off"
    return "\n".join(
        [
            "",
            "AIMS Flow is up. Ctrl-C stops everything.",
            f"  Prefect UI    {engine.ui_url}   (runs, states, artifacts, Resume forms)",
            f"  Prefect API   {engine.api_url}",
            f"  HTTP app      {engine.http.url}   (POST /slack/interactions, /incidents, "
            "/alertmanager; GET /healthz)",
            f"  Slack         {slack}",
            f"  Socket Mode   {socket_mode}",
            f"  AIMS database {settings.masked()['database_url']}",
            f"  Prefect data  {prefect_where}",
            f"  Runner        {len(engine.deployments)} deployments, up to "
            f"{engine.runner_limit} runs at once, poll {engine.poll_seconds:g} s, schedules in "
            f"{settings.timezone}",
            f"  Logs          {engine.data_dir / 'prefect'}/{{server,runner,http}}.log",
            "Other shells find this engine through "
            f"{engine.data_dir / 'engine.json'}: try `aims status`, `aims gate request ...`.",
        ]
    )


def run_engine(engine: LocalEngine, on_ready: Callable[[], Any]) -> int:
    try:
        return engine.run_until_stopped(on_ready)
    except KeyboardInterrupt:
        typer.echo("stopped before the engine was up")
        return 130
    except (RuntimeError, TimeoutError) as exc:
        fail(str(exc))
    finally:
        typer.echo("engine stopped")


def up(
    port: int = typer.Option(4200, "--port", min=1, max=65535, help="Prefect server port."),
    bridge_port: int = typer.Option(
        3000, "--bridge-port", min=1, max=65535, help="HTTP app (Slack bridge, intake) port."
    ),
    poll: float = typer.Option(
        2.0, "--poll", min=0.5, max=30, help="Seconds between the runner's polls for new runs."
    ),
    runner_limit: int = typer.Option(
        default_runner_limit(), "--limit", min=1, max=64, help="Flow runs at once."
    ),
) -> None:
    """Start the engine here: a Prefect server (SQLite under the data dir; or the one
    PREFECT_API_URL names), every deployment served with its schedules, the HTTP app, and Slack
    Socket Mode when an app token is set. Waits for each, prints the URLs, stops all on Ctrl-C."""
    settings = get_settings()
    engine = build_engine(
        settings, port=port, bridge_port=bridge_port, poll=poll, runner_limit=runner_limit
    )
    code = run_engine(engine, lambda: typer.echo(describe(engine, settings)))
    raise typer.Exit(code)
