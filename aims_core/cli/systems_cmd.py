"""`aims systems`: the AI system inventory."""

from __future__ import annotations

from pathlib import Path

import typer

from aims_core.cli import system_events_cmd
from aims_core.cli._base import console, print_json, print_table
from aims_core.models import Criticality, RiskTier
from aims_core.schemas import SystemIn
from aims_core.services import systems
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(no_args_is_help=True, help="The AI system inventory.")


@app.command("add")
def add(
    name: str = typer.Option(
        ..., "--name", help="The name people see, any text, e.g. 'Évaluation crédit'."
    ),
    key: str | None = typer.Option(
        None,
        "--key",
        help="What commands, runs and subjects call it; derived from the name when not given "
        "('Évaluation crédit' gives evaluation-credit).",
    ),
    owner: str = typer.Option(..., "--owner", help="The owner's email."),
    purpose: str = typer.Option(..., "--purpose", help="What the system is for."),
    risk_tier: str = typer.Option(
        ..., "--risk-tier", help=f"EU AI Act tier: {', '.join(t.value for t in RiskTier)}."
    ),
    criticality: str = typer.Option(
        ..., "--criticality", help=f"{', '.join(c.value for c in Criticality)}."
    ),
    vendor: str | None = typer.Option(None, "--vendor", help="Third-party supplier, if any."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """Add an AI system to the inventory (it starts at the concept stage)."""
    data = SystemIn(
        name=name,
        key=key,
        owner=owner,
        purpose=purpose,
        risk_tier=risk_tier,
        criticality=criticality,
        vendor=vendor,
    )
    out = systems.add_system(UnitOfWork(), data, Actor.cli())
    if as_json:
        print_json(out)
    else:
        typer.echo(
            f"added {out.display_name} (key {out.name}, {out.risk_tier.value} risk, "
            f"owner {out.owner})"
        )


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the inventory."""
    rows = systems.list_systems(UnitOfWork())
    if as_json:
        print_json(rows)
    else:
        print_inventory(rows)


def print_inventory(rows: list) -> None:  # type: ignore[type-arg]
    print_table(
        f"AI systems ({len(rows)})",
        ["name", "key", "risk tier", "criticality", "stage", "owner", "vendor"],
        [
            (
                s.display_name,
                s.name,
                s.risk_tier.value,
                s.criticality.value,
                s.lifecycle_stage.value,
                f"{s.owner_name} <{s.owner}>",
                s.vendor,
            )
            for s in rows
        ],
    )


@app.command("show")
def show(
    name: str = typer.Argument(..., help="The system's key (or its name as listed)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one system."""
    out = systems.show_system(UnitOfWork(), name)
    if as_json:
        print_json(out)
        return
    print_table(
        out.display_name,
        ["field", "value"],
        [
            ("key", out.name),
            ("purpose", out.purpose),
            ("owner", f"{out.owner_name} <{out.owner}>"),
            ("risk tier", out.risk_tier.value),
            ("criticality", out.criticality.value),
            ("lifecycle stage", out.lifecycle_stage.value),
            ("vendor", out.vendor or "-"),
        ],
    )


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="CSV (UTF-8, any line ending) or .xlsx file."),
) -> None:
    """Import systems: columns name, owner, purpose, risk_tier, criticality, vendor, key.

    `name` is any text; `key` (optional) is derived from it when blank. Every row is checked
    first; if any row is bad, each is listed and nothing is imported.
    """
    from rich.progress import Progress

    from aims_core.importing import read_rows

    rows = read_rows(file, systems.REQUIRED_COLUMNS, optional=systems.OPTIONAL_COLUMNS)
    with Progress(console=console(), transient=True, disable=len(rows) < 500) as bar:
        task = bar.add_task(f"importing {file.name}", total=len(rows))
        out = systems.import_systems(
            UnitOfWork(),
            rows,
            Actor(who=Actor.cli().who, channel="import"),
            source=file.name,
            progress=lambda n: bar.advance(task, n),
        )
    typer.echo(f"imported {len(out)} AI system(s) from {file.name}, each as key: name")
    for o in out:
        typer.echo(f"  {o.name}: {o.display_name}")


app.command("event")(system_events_cmd.event)
