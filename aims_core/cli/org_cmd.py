"""`aims org`: the organisation as code (people, RACI, systems, vendors, required trainings)."""

from __future__ import annotations

from pathlib import Path

import typer

from aims_core.cli._base import print_json
from aims_core.services import org
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(
    no_args_is_help=True, help="The organisation as code: apply or export one YAML file."
)


@app.command("apply")
def apply(
    file: Path = typer.Argument(..., help="The organisation file (YAML; see `aims org export`)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the changes, write nothing."),
    prune: bool = typer.Option(
        False, "--prune", help="Deactivate active people the file does not list."
    ),
    reassign_to: str | None = typer.Option(
        None, "--reassign-to", help="With --prune: who takes over what the leavers own."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the changes as JSON."),
) -> None:
    """Make the database hold what the file declares, in one transaction; print the diff.
    Applying the same file again changes nothing."""
    doc = org.read_org(file)
    result = org.apply_org(
        UnitOfWork(), doc, Actor.cli(), dry_run=dry_run, prune=prune, reassign_to=reassign_to
    )
    if as_json:
        print_json(result)
        return
    for change in result.changes:
        typer.echo(change.line())
    written = len(result.written)
    if dry_run:
        typer.echo(f"dry run: {written} change(s) would be written; nothing written")
    elif written:
        typer.echo(f"applied {file.name}: {written} change(s) written")
    else:
        typer.echo(f"{result.organisation}: no change (the database already holds {file.name})")


@app.command("export")
def export(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="File to write (default: stdout)."
    ),
    organisation: str | None = typer.Option(
        None, "--organisation", help="The organisation's name (default: the last file applied)."
    ),
) -> None:
    """Write today's organisation as a file `aims org apply` reads."""
    text = org.export_yaml(UnitOfWork(), organisation)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, "utf-8")
        typer.echo(f"wrote {output}", err=True)
