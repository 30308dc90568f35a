"""`aims review`: Management reviews: the prepared pack, minutes and decisions (9.3)."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True, help="Management reviews: the prepared pack, minutes and decisions (9.3)."
)
