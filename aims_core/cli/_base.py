"""What every command shares: user errors as one line + exit 2, output helpers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from aims_core.errors import AimsError, ImportRejected, from_validation_error


class UserError(click.ClickException):
    """Printed as `Error: <field>: <problem>` on stderr, exit 2: never a stack trace."""

    exit_code = 2


class AimsGroup(TyperGroup):
    """Root group: turns domain errors raised anywhere below into a clean UserError."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImportRejected as exc:
            raise UserError("\n".join([str(exc), *exc.problems])) from None
        except AimsError as exc:
            err = UserError(str(exc))
            err.exit_code = exc.exit_code
            raise err from None
        except ValidationError as exc:
            raise UserError(str(from_validation_error(exc))) from None


def console() -> Console:
    """A console on the current stdout (CliRunner swaps it), never wrapping JSON or tables."""
    return Console(soft_wrap=True, highlight=False)


def print_json(data: Any) -> None:
    if isinstance(data, BaseModel):
        text = data.model_dump_json(indent=2)
    elif isinstance(data, list) and all(isinstance(d, BaseModel) for d in data):
        text = json.dumps([d.model_dump(mode="json") for d in data], indent=2)
    else:
        text = json.dumps(data, indent=2, default=str)
    typer.echo(text)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console().print(table)
