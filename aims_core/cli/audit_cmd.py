"""`aims audit`: The internal audit programme, audits, findings and reports (9.2)."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True, help="The internal audit programme, audits, findings and reports (9.2)."
)
