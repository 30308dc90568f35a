"""Policy as data: the one way every rule file in YAML is read, checked and located.

Each file has a shipped default in `aims_core/data/` and may be replaced by a file of the same
name in the data dir. A file is read on every call (they are small) and parsed once per content,
so an edit takes effect at the next command or run without a restart; every problem in it is
named at once (`field: problem`), before anything uses it.

Every file is read by `load_located`, which refuses a key given twice in one mapping (YAML would
keep the last one silently: a hand-edited policy must not lose a rule that way) and nesting too
deep to load, and keeps the node tree so a problem can name its line
(`line 12: gates.development.high.quorum: ...`, see `problem_at`).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from aims_core import catalog
from aims_core.errors import AimsError, problems_of
from aims_core.settings import Settings

# --- reading YAML, with the place of each node ------------------------------------------------

Place = tuple[str | int, ...]


def path_of(place: Place) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in place).lstrip(".")


def problem_at(root: yaml.Node | None, place: Place, msg: str) -> str:
    """`line 12: gates.development.high.quorum: quorum -1: must be at least 1`."""
    line = line_of(root, place)
    where = f"line {line}: " if line is not None else ""
    return f"{where}{path_of(place) or '(top)'}: {msg}"


def line_of(root: yaml.Node | None, place: Place) -> int | None:
    """The line of the deepest node of `place` that the YAML has (1-based)."""
    if root is None:
        return None
    node: Any = root
    line = root.start_mark.line + 1
    for part in place:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def load_located(text: str) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree (whose marks give the lines); raises yaml.YAMLError,
    also for a key given twice in one mapping (YAML would keep the last one silently: a
    hand-edited policy must not lose a rule that way) and for nesting too deep to load."""
    try:
        root = yaml.compose(text)
        _no_duplicate_keys(root)
        if root is None:  # an empty document
            return None, None
        loader = yaml.SafeLoader("")  # built from the tree just read: one parse, not two
        try:
            return loader.construct_document(root), root
        finally:
            loader.dispose()
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def _no_duplicate_keys(node: yaml.Node | None) -> None:
    seen: set[int] = set()
    stack = [node]
    while stack:
        here = stack.pop()
        if here is None or id(here) in seen:  # an alias is the same node again
            continue
        seen.add(id(here))
        if isinstance(here, yaml.MappingNode):
            first: dict[str, yaml.Node] = {}
            for key, value in here.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in first:
                        line = first[key.value].start_mark.line + 1
                        raise yaml.MarkedYAMLError(
                            problem=f"duplicate key '{key.value}' (first on line {line})",
                            problem_mark=key.start_mark,
                        )
                    first[key.value] = key
                stack += [key, value]
        elif isinstance(here, yaml.SequenceNode):
            stack += here.value


def syntax_problem(exc: yaml.YAMLError) -> str:
    """`line 3: not valid YAML: mapping values are not allowed here`."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}not valid YAML: {problem}"


# --- rule files: a strict schema, the organisation's copy or the shipped one -----------------


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
        data, _root = load_located(text)
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
