"""`aims raci`: who is Responsible, Accountable, Consulted, Informed, per activity."""

from __future__ import annotations

import typer

from aims_core.cli._base import print_json, print_table
from aims_core.schemas import RaciIn
from aims_core.services import raci
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(no_args_is_help=True, help="RACI per activity (optionally per AI system).")


@app.command("set")
def set_(
    activity: str = typer.Argument(..., help="Activity id, e.g. stage-gate, incident-response."),
    system: str | None = typer.Option(None, "--system", help="Only for this AI system."),
    responsible: list[str] = typer.Option(..., "--responsible", help="Email; repeatable."),
    accountable: list[str] = typer.Option(..., "--accountable", help="Exactly one email."),
    consulted: list[str] = typer.Option([], "--consulted", help="Email; repeatable."),
    informed: list[str] = typer.Option([], "--informed", help="Email; repeatable."),
) -> None:
    """Set (or replace) the RACI of an activity."""
    data = RaciIn(
        activity=activity,
        system=system,
        responsible=responsible,
        accountable=accountable,
        consulted=consulted,
        informed=informed,
    )
    out = raci.set_raci(UnitOfWork(), data, Actor.cli())
    typer.echo(
        f"RACI {out.activity} ({out.system or 'organisation-wide'}): "
        f"A={out.accountable} R={', '.join(out.responsible)}"
    )


@app.command("show")
def show(
    system: str | None = typer.Option(None, "--system", help="Only rows that apply to it."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the RACI matrix."""
    rows = raci.show_raci(UnitOfWork(), system)
    if as_json:
        print_json(rows)
        return
    print_table(
        "RACI",
        ["activity", "scope", "R", "A", "C", "I"],
        [
            (
                r.activity,
                r.system or "organisation",
                ", ".join(r.responsible),
                r.accountable,
                ", ".join(r.consulted),
                ", ".join(r.informed),
            )
            for r in rows
        ],
    )
