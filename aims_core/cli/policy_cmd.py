"""`aims policy`: Policies, their versions, reviews and exceptions (5.2, A.2)."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True, help="Policies, their versions, reviews and exceptions (5.2, A.2)."
)
