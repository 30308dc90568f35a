"""`aims incident report`: an incident reported by hand, through the same intake as the webhooks.

The incident is recorded and its first Slack message delivered before the playbook run is asked
for, so a responder hears of it even with the engine down. Exit status 3 then (as `aims systems
event`): recorded and notified, run not started — not 2, which means "bad input, nothing
written", so a script that retries on 2 would report the incident twice.
"""

from __future__ import annotations

from typing import Final

import typer

from aims_core.errors import InvalidInput
from aims_core.uow import Actor

#: Exit status when the incident is recorded but its playbook run could not be started.
RECORDED_NOT_STARTED: Final = 3


def _title(summary: str) -> str:
    line = " ".join(summary.strip().splitlines()[0].split()) if summary.strip() else ""
    return line if len(line) <= 120 else line[:119] + "…"


def report(
    system: str = typer.Option(..., "--system", help="The AI system's name."),
    severity: str = typer.Option(..., "--severity", help="SEV1 (worst) .. SEV4."),
    category: str = typer.Option(
        ..., "--category", help="bias, model-failure, adversarial, data-issue, privacy, ..."
    ),
    summary: str = typer.Option(..., "--summary", help="What happened, what is affected."),
    title: str | None = typer.Option(
        None, "--title", help="One line for lists and Slack (default: the summary's first line)."
    ),
    aware_at: str | None = typer.Option(
        None,
        "--aware-at",
        metavar="ISO-8601",
        help="When the organisation became aware, with its time zone (2026-11-20T14:05:00+01:00); "
        "default now. The regulatory clocks count from it.",
    ),
) -> None:
    """Report an incident: record it, tell the responders in Slack now, start its playbook run.

    Exit status 3: recorded and notified, but the engine is down; start the run as printed.
    """
    from aims_core.services import intake
    from aims_core.settings import get_settings

    settings = get_settings()
    if title is None and not summary.strip():  # else the error would name a title never given
        raise InvalidInput("empty: say what happened (the title is its first line)", "summary")
    data = intake.incident_in(
        source="cli",
        system=system,
        severity=severity,
        category=category,
        summary=summary,  # before the title made of it: a problem of both names the summary
        title=title if title is not None else _title(summary),
        aware_at=aware_at,
    )
    from aims_core.cli import engine
    from notifications.slack import SlackDelivery, intake_client

    result = intake.take_in(
        settings,
        [intake.IntakeItem(incident=data)],
        Actor.cli(),
        runs=engine.runs(),
        delivery=SlackDelivery(settings, intake_client(settings)),
    )
    (item,) = result.items
    verb = "recorded" if item.created else "attached to the open"
    typer.echo(f"{verb} incident {item.incident_id} ({item.severity} {item.category} on {system})")
    n = item.notification
    if n is not None:
        if n.state == "delivered":
            typer.echo(f"first message delivered to Slack ({n.sent} sent)")
        elif n.state == "logged":
            typer.echo("first message written to the log (no AIMS_SLACK_BOT_TOKEN)")
        elif n.state in ("queued", "failed"):
            typer.echo(f"warning: first message not at Slack yet: {n.detail}", err=True)
    if item.run is not None:
        typer.echo(f"started run {item.run.name} ({item.run.id})\n{item.run.url}")
        return
    if item.run_error:
        typer.echo(f"warning: {item.run_error}", err=True)
        raise typer.Exit(RECORDED_NOT_STARTED)
