"""`aims demo`: a demo organisation to try the engine with."""

from __future__ import annotations

import os
import secrets

import typer

from aims_core.cli._base import print_table
from aims_core.cli.systems_cmd import print_inventory
from aims_core.services import demo, people, systems
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork

CORE_LABELS = ("people", "systems", "raci")

app = typer.Typer(no_args_is_help=True, help="The demo organisation.")


@app.command("load")
def load(
    history: bool = typer.Option(
        True,
        "--history/--no-history",
        help="Also its year of history: incidents and CAPAs, audits, gates, risks, SoA, "
        "reviews (a few seconds).",
    ),
) -> None:
    """Load the demo organisation (people, roles, managers, AI systems, RACI) and show it."""
    uow = UnitOfWork()
    org = demo.demo_org()
    added = demo.load_demo(uow, Actor(who=Actor.cli().who, channel="demo"), history=history)
    more = "".join(
        f", {count} {label}" for label, count in added.items() if label not in CORE_LABELS
    )
    typer.echo(
        f"{org.organisation}: added {added['people']} people, {added['systems']} AI "
        f"systems, {added['raci']} RACI rows{more}"
    )
    print_inventory(systems.list_systems(uow))
    print_table(
        "People and roles",
        ["name", "email", "roles", "manager"],
        [(p.name, p.email, ", ".join(p.roles), p.manager) for p in people.list_people(uow)],
    )


@app.command("run")
def run(
    exit_after: bool = typer.Option(
        False, "--exit", help="Run the scripted day, then stop (`make demo DEMO_EXIT=1`, CI)."
    ),
    fake_slack: bool = typer.Option(
        False, "--fake-slack", help="Start a local fake Slack that prints every message."
    ),
    port: int = typer.Option(4200, "--port", min=1, max=65535, help="Prefect server port."),
    bridge_port: int = typer.Option(3000, "--bridge-port", min=1, max=65535, help="HTTP app port."),
) -> None:
    """The engine up (`aims up`) with the demo organisation and a scripted day to watch in the
    Prefect UI: a gate waiting for approval, an incident from an Alertmanager alert running its
    playbook, the management review pack. Runs until Ctrl-C (or, with --exit, until the day is
    done: exit 0 when every step shows in Prefect as it should)."""
    from aims_core.cli.demo_day import DemoDay, load_organisation
    from aims_core.cli.up_cmd import build_engine, default_runner_limit, describe, run_engine

    settings = get_settings()
    load_organisation(settings)
    extra_env: dict[str, str] = {}
    if settings.intake_token is None:  # this run's HTTP app and the day's alert share one
        extra_env["AIMS_INTAKE_TOKEN"] = secrets.token_urlsafe(24)
    slack = None
    if fake_slack:
        from notifications.fake_slack import FakeSlack

        slack = FakeSlack(on_message=_print_slack).start()
        extra_env |= {"AIMS_SLACK_BOT_TOKEN": slack.token, "AIMS_SLACK_API_URL": slack.base_url}
        typer.echo(f"fake Slack on {slack.base_url}: every message is printed here")
    os.environ.update(extra_env)  # this process reads what the engine's parts are given
    settings = get_settings()
    engine = build_engine(
        settings,
        port=port,
        bridge_port=bridge_port,
        poll=1.0,
        runner_limit=default_runner_limit(),
        extra_env=extra_env,
    )
    outcome: list[bool] = []

    def the_day() -> None:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        typer.echo(describe(engine, settings))
        day = DemoDay(settings, engine.http.url, stopped=engine.stopping)
        with temporary_settings({PREFECT_API_URL: engine.api_url}):  # this process's client
            outcome.append(day.run())
        if exit_after:
            engine.stop()
        else:
            typer.echo(
                f"\nWatch it in the Prefect UI: {engine.ui_url}/runs — approve the gate as printed "
                "above, or try `aims status`. The engine stays up; Ctrl-C stops it."
            )

    try:
        code = run_engine(engine, the_day)
    finally:
        if slack is not None:
            slack.stop()
    if code == 0 and exit_after and outcome != [True]:
        typer.echo("the demo day did not show every step in Prefect (see the marks above)")
        code = 1
    raise typer.Exit(code)


def _print_slack(message: object, updated: bool) -> None:
    from notifications.fake_slack import FakeMessage

    assert isinstance(message, FakeMessage)
    first = (message.text or "").strip().splitlines()[0] if message.text else "(blocks only)"
    typer.echo(f"  slack {'✎' if updated else '→'} {message.channel}: {first[:110]}")
