"""`aims soa`: the Statement of Applicability (ISO/IEC 42001 6.1.3 d)."""

from __future__ import annotations

from pathlib import Path

import typer

from aims_core.cli._base import print_json, print_table
from aims_core.errors import InvalidInput
from aims_core.services import soa
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(no_args_is_help=True, help="Statement of Applicability of the Annex A controls.")


@app.command("set")
def set_(
    control: str = typer.Argument(..., help="Annex A control id, e.g. A.6.2.4 (any case)."),
    applicable: bool | None = typer.Option(
        None, "--applicable/--not-applicable", help="The decision (one is required)."
    ),
    justification: str = typer.Option(
        "", "--justification", "-j", help="Why; required with --not-applicable."
    ),
) -> None:
    """Decide whether an Annex A control applies, with the reason an auditor will ask for."""
    if applicable is None:
        raise InvalidInput("give --applicable or --not-applicable", field="applicable")
    decision = soa.SoaDecision(
        control_id=control, applicable=applicable, justification=justification
    )
    result = soa.set_applicability(UnitOfWork(get_settings()), decision, Actor.cli())
    row = result.row
    verb = "set" if result.changed else "unchanged"
    typer.echo(
        f"{row.control} {verb}: {row.status.value}"
        + (f" ({row.justification})" if row.justification else "")
    )


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show every Annex A control with its decision; undecided ones included."""
    rows = soa.soa_rows(UnitOfWork(get_settings(), write=False))
    if as_json:
        print_json(rows)
        return
    print_table(
        "Statement of Applicability",
        ["control", "title", "status", "justification", "updated_by", "updated_at"],
        [
            (
                r.control,
                r.title,
                r.status.value,
                r.justification,
                r.updated_by,
                r.updated_at.strftime("%Y-%m-%d %H:%M UTC") if r.updated_at else None,
            )
            for r in rows
        ],
    )
    typer.echo(soa.summarise(rows).line())


@app.command("export")
def export(
    xlsx: Path = typer.Option(..., "--xlsx", help="Workbook to write (.xlsx).", dir_okay=False),
) -> None:
    """Write the SoA as an Excel workbook; refuses if an exclusion lacks its justification."""
    result = soa.export_xlsx(UnitOfWork(get_settings(), write=False), xlsx)
    if result.undecided:
        typer.echo(
            f"warning: {len(result.undecided)} control(s) undecided, exported as "
            f"'undecided': {', '.join(result.undecided)}",
            err=True,
        )
    typer.echo(f"wrote {result.path}: {result.summary.line()}")
