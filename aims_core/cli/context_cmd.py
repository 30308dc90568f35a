"""`aims context`: issues and interested parties (4.1, 4.2) for the management review."""

from __future__ import annotations

from datetime import datetime

import typer

from aims_core.cli._base import print_json, print_table
from aims_core.services import context
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(
    no_args_is_help=True,
    help="Context: external and internal issues, interested parties (4.1, 4.2).",
)


@app.command("add")
def add(
    kind: str = typer.Option(
        ..., "--kind", help="external-issue, internal-issue, interested-party or improvement."
    ),
    title: str = typer.Option(..., "--title", help="The issue, party or idea, in one line."),
    description: str = typer.Option("", "--description", help="Details."),
    change: str = typer.Option("new", "--change", help="new, changed or resolved."),
    as_json: bool = typer.Option(False, "--json", help="Print the entry as JSON."),
) -> None:
    """Record a change in the organisation's context (reported by the next management review)."""
    out = context.add_entry(
        UnitOfWork(),
        {"kind": kind, "title": title, "description": description, "change": change},
        Actor.cli(),
    )
    if as_json:
        print_json(out)
        return
    typer.echo(f"recorded context entry {out.id}: {out.kind} ({out.change}) {out.title}")


@app.command("list")
def list_(
    since: datetime | None = typer.Option(
        None, "--since", formats=["%Y-%m-%d"], help="Only entries from this day (YYYY-MM-DD)."
    ),
    kind: str | None = typer.Option(None, "--kind", help="Only entries of this kind."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Context entries, oldest first."""
    rows = context.list_entries(UnitOfWork(), since=since.date() if since else None, kind=kind)
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Context entries ({len(rows)})",
        ["id", "recorded", "kind", "change", "title", "by"],
        [
            (e.id, f"{e.recorded_at:%Y-%m-%d}", e.kind, e.change, e.title, e.recorded_by)
            for e in rows
        ],
    )
