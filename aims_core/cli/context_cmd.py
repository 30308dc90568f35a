"""`aims context`: issues and interested parties (4.1, 4.2) for the management review."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True,
    help="Context: external and internal issues, interested parties (4.1, 4.2).",
)
