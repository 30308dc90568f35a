"""What every command shares: user errors as one line + exit 2, output helpers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import DataError, DBAPIError, OperationalError, ProgrammingError
from typer._click import Context
from typer.core import TyperGroup

from aims_core.errors import AimsError, ImportRejected, InvalidInput, from_validation_error


class AimsGroup(TyperGroup):
    """Root group: a domain error raised anywhere below prints as `error: field: problem` on
    stderr and exits 2 (1 for a failed check) — one plain line, never a stack trace."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImportRejected as exc:
            fail(str(exc), *exc.problems, code=exc.exit_code)
        except AimsError as exc:
            fail(str(exc), code=exc.exit_code)
        except ValidationError as exc:
            fail(str(from_validation_error(exc)))
        except (OperationalError, ProgrammingError) as exc:
            message, code = database_problem(exc)
            fail(message, code=code)
        except DataError as exc:  # a value the database cannot store: bad input, rolled back
            fail(f"a value the database cannot store: {str(exc.orig).strip().splitlines()[0]}")


def database_problem(exc: DBAPIError) -> tuple[str, int]:
    """A database that is not there or not initialised is the operator's to fix: say how."""
    first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    if "no such table" in first or ("relation" in first and "does not exist" in first):
        return f"database: the AIMS database has no tables yet ({first}): run `aims init`", 2
    return f"database: cannot use the AIMS database: {first}", 1


def fail(message: str, *details: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    for line in details:
        typer.echo(f"  {line}", err=True)
    raise typer.Exit(code)


def console() -> Console:
    """A console on the current stdout (CliRunner swaps it), never wrapping JSON or tables."""
    con = Console(soft_wrap=True, highlight=False)
    if not con.is_terminal:  # piped or captured: don't squeeze tables into 80 columns
        con = Console(soft_wrap=True, highlight=False, width=160)
    return con


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


class _AnswersLoader(yaml.SafeLoader):
    """YAML without its yes/no/on/off booleans: `vulnerable_people: no` means the option "no"."""


_AnswersLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_answers(path: Path, keys: str, example: str) -> dict[str, Any]:
    """An answers file: a YAML mapping of `keys` to answers; an empty value is left for later."""
    try:
        data = yaml.load(path.read_text("utf-8"), Loader=_AnswersLoader)
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {path}", "file") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", "file") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}", "file") from None
    if not isinstance(data, dict) or not data:
        raise InvalidInput(f"{path} must map {keys} to answers (e.g. `{example}`)", "file")
    return {str(k): v for k, v in data.items() if v is not None}
