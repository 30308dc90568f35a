"""`aims systems event`: record a reassessment trigger and start the system's risk assessment.

The record comes first and never depends on the engine: with Prefect down the event and the
re-approval mark are kept, the command says how to start the assessment later, and exits 3 —
not 2, which means "bad input, nothing written", so a monitoring hook that retries on 2 would
record the event twice; not 0, since the assessment did not start.
"""

from __future__ import annotations

from typing import Final

import typer

from aims_core.cli._base import print_json
from aims_core.cli.engine import EngineNotRunning
from aims_core.models import SystemEventKind
from aims_core.services import system_events
from aims_core.uow import Actor, UnitOfWork

#: Exit status when the event is recorded but its risk assessment could not be started.
RECORDED_NOT_STARTED: Final = 3


def event(
    system: str = typer.Argument(..., help="The AI system's name."),
    kind: SystemEventKind = typer.Option(..., "--kind", help="What happened."),
    details: str = typer.Option("", "--details", help="What changed, where to read more."),
    as_json: bool = typer.Option(False, "--json", help="Print the event record as JSON."),
) -> None:
    """Record a model update, data-drift alert or regulation change; start a risk reassessment.

    For a high-risk system in operation the operation gate then needs re-approval (risk policy).

    Exit status 3: recorded, but the engine is down; start the assessment later as printed.
    """
    from aims_core.cli.risks_cmd import start_assessment

    out = system_events.record_event(UnitOfWork(), system, kind, details, Actor.cli())
    say = (lambda _: None) if as_json else typer.echo
    say(
        f"recorded {out.kind.value} event {out.id} on {out.system} "
        f"({out.risk_tier.value} risk, {out.lifecycle_stage.value})"
    )
    if out.reapproval_marked and out.reapproval_stage is not None:
        say(
            f"the {out.reapproval_stage.value} gate needs re-approval: its approval no longer "
            f"holds after this {out.kind.value} event"
        )
    try:
        run_id, name, url = start_assessment(out.system, out.risk_tier, out.kind.value, out.id)
    except EngineNotRunning as exc:
        if as_json:
            print_json(out)
        kept = "the event and the re-approval mark are" if out.reapproval_marked else "the event is"
        typer.echo(
            f"warning: the risk assessment could not start: {exc.message}\n"
            f"{kept} recorded; once the engine runs, start the assessment with:\n"
            f"  aims risks assess {out.system} --event {out.id}",
            err=True,
        )
        raise typer.Exit(RECORDED_NOT_STARTED) from None
    if as_json:
        print_json(out.model_copy(update={"flow_run_id": run_id}))
        return
    typer.echo(f"started run {name} ({run_id})\n{url}")
