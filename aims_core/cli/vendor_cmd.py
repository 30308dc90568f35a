"""`aims vendor`: Third-party AI vendors and their reassessments (A.10)."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True, help="Third-party AI vendors and their reassessments (A.10)."
)
