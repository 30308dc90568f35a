"""`aims config`: the effective settings, secrets masked."""

from __future__ import annotations

import typer

from aims_core.cli._base import print_json, print_table
from aims_core.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Show the effective configuration.")


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print every setting (from AIMS_* variables and .env) with secrets masked."""
    values = get_settings().masked()
    if as_json:
        print_json(values)
    else:
        print_table("AIMS configuration", ["setting", "value"], values.items())
