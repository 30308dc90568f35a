"""Policy as data: the YAML files an organisation may override, read and checked in one way.

Each file has a shipped default in `aims_core/data/` and may be replaced by a file of the same
name in the data dir. A file is read on every call (they are small) and parsed once per content,
so an edit takes effect at the next command or run without a restart; every problem in it is
named at once (`field: problem`), before anything uses it.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import ClassVar, TypeVar, cast

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from aims_core import catalog
from aims_core.errors import AimsError, problems_of
from aims_core.settings import Settings


class DataFileInvalid(AimsError):
    """A data file that cannot be used; `problems` lists each, as `field: problem`."""

    #: The field a user sees in `error: FIELD: ...`; default: the file's stem.
    field_name: ClassVar[str | None] = None

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"{source}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems),
            field=self.field_name or Path(source).stem,
        )


class Strict(BaseModel):
    """A data file's model: unknown keys are mistakes; `problems` checks what a schema cannot."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def problems(self) -> list[str]:
        return []


M = TypeVar("M", bound=Strict)


def unknown_roles(field: str, roles: list[str]) -> list[str]:
    """One problem per role id that is not in the role catalog."""
    known = {r.id for r in catalog.roles()}
    return [
        f"{field}: unknown role '{r}' (roles: {', '.join(sorted(known))})"
        for r in roles
        if r not in known
    ]


def parse_data_file(
    model: type[M], text: str, source: str, error: type[DataFileInvalid] = DataFileInvalid
) -> M:
    """Parse and check one document; `error` names every problem found."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise error(source, ["file: expected a mapping of settings"])
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise error(source, problems_of(exc)) from None
    problems = parsed.problems()
    if problems:
        raise error(source, problems)
    return parsed


@functools.lru_cache(maxsize=32)
def _parse_cached(
    model: type[Strict], text: str, source: str, error: type[DataFileInvalid]
) -> Strict:
    return parse_data_file(model, text, source, error)


def organisation_file(settings: Settings, name: str) -> Path | None:
    """The organisation's own `name` in the data dir, if it has one."""
    path = settings.data_dir / name
    return path if path.is_file() else None


def load_data_file(
    settings: Settings,
    model: type[M],
    name: str,
    error: type[DataFileInvalid] = DataFileInvalid,
) -> M:
    """The file in force: the organisation's `name` if present, else the shipped default."""
    path = organisation_file(settings, name)
    if path is None:
        text = resources.files("aims_core.data").joinpath(name).read_text("utf-8")
        return cast(M, _parse_cached(model, text, f"aims_core/data/{name}", error))
    return cast(M, _parse_cached(model, path.read_text("utf-8"), str(path), error))
