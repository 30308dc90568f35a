"""`aims catalog`: the ISO/IEC 42001 requirements as shipped with the package (no database)."""

from __future__ import annotations

import typer

from aims_core import catalog
from aims_core.cli._base import console, print_json
from aims_core.models import ControlKind

app = typer.Typer(no_args_is_help=True, help="The ISO/IEC 42001 clauses and Annex A controls.")


@app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    kind: ControlKind | None = typer.Option(None, "--kind", help="Only this kind of entry."),
) -> None:
    """List clauses 4-10, Annex A objectives and the 38 Annex A controls, in catalog order."""
    reqs = [r for r in catalog.requirements() if kind is None or r.kind is kind]
    if as_json:
        print_json(
            [{"id": r.id, "kind": r.kind.value, "title": r.title, "parent": r.parent} for r in reqs]
        )
        return
    parents = {r.id: r.parent for r in catalog.requirements()}

    def depth(rid: str) -> int:
        parent = parents[rid]
        return 0 if parent is None else 1 + depth(parent)

    from rich.table import Table

    table = Table(title="ISO/IEC 42001:2023")
    for col in ("id", "kind", "title"):
        table.add_column(col, no_wrap=col != "title")
    for r in reqs:
        table.add_row("  " * depth(r.id) + r.id, r.kind.value, r.title)
    console().print(table)
