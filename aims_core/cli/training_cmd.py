"""`aims training`: Training requirements, records and the competence matrix (7.2, 7.3, A.4.6)."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True,
    help="Training requirements, records and the competence matrix (7.2, 7.3, A.4.6).",
)
