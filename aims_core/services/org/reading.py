"""Reading an organisation file: every problem named with its line, before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from aims_core.errors import InvalidInput
from aims_core.rules.loading import (
    DataFileInvalid,
    Place,
    line_of,
    load_located,
    problem_at,
    syntax_problem,
)
from aims_core.schemas import SystemIn
from aims_core.services.org.schemas import OrgFile, OrgPerson, OrgRaci
from aims_core.services.training.schemas import RequirementIn
from aims_core.services.vendors import VendorIn


class OrgFileInvalid(DataFileInvalid):
    field_name = "org"


@dataclass(frozen=True)
class OrgDocument:
    """A parsed organisation file and its YAML node tree (to name the line of a problem).

    A file with schema mistakes still yields a document: `org` holds the entries that are
    valid and `problems` the rest, so applying it names every mistake at once (a bad email on
    line 4 and a RACI row naming an unknown system on line 9), then writes nothing."""

    org: OrgFile
    source: str
    root: yaml.Node | None = None
    problems: tuple[str, ...] = ()
    #: Emails of people entries refused by the schema: not also reported as unknown elsewhere.
    refused_emails: frozenset[str] = frozenset()
    #: Names and keys of system entries refused by the schema (likewise).
    refused_systems: frozenset[str] = frozenset()

    #: Section -> the file's index of each entry kept in `org` (when entries were refused).
    kept: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def place(self, place: Place) -> Place:
        """`place` in `org` -> the same entry's place in the file."""
        if len(place) > 1 and isinstance(place[1], int) and place[0] in self.kept:
            return (place[0], self.kept[str(place[0])][place[1]], *place[2:])
        return place

    def at(self, place: Place, msg: str) -> str:
        return problem_at(self.root, self.place(place), msg)

    def line(self, place: Place) -> int | None:
        return line_of(self.root, self.place(place))


#: Each list section and the model of one of its entries.
_ENTRIES: dict[str, type[BaseModel]] = {
    "people": OrgPerson,
    "vendors": VendorIn,
    "systems": SystemIn,
    "raci": OrgRaci,
    "trainings": RequirementIn,
}


def parse_org(text: str, source: str) -> OrgDocument:
    try:
        data, root = load_located(text)
    except yaml.YAMLError as exc:
        raise OrgFileInvalid(source, [syntax_problem(exc)]) from None
    if not isinstance(data, dict):
        raise OrgFileInvalid(source, ["(top): expected a mapping (organisation, people, ...)"])
    try:
        return OrgDocument(org=OrgFile.model_validate(data), source=source, root=root)
    except ValidationError as exc:
        problems = list(dict.fromkeys(_located(root, exc)))
    valid, refused, kept = _valid_entries(data)
    try:
        org = OrgFile.model_validate(valid)
    except ValidationError:  # e.g. the organisation's name itself: nothing else to check
        raise OrgFileInvalid(source, problems) from None
    return OrgDocument(
        org=org,
        source=source,
        root=root,
        problems=tuple(problems),
        refused_emails=frozenset(refused["people"]),
        refused_systems=frozenset(refused["systems"]),
        kept=kept,
    )


def _located(root: yaml.Node | None, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        place = tuple(p for p in err["loc"] if not _is_union_branch(p))
        msg = "missing" if err["type"] == "missing" else err["msg"]
        out.append(problem_at(root, place, msg.removeprefix("Value error, ")))
    return out


def _valid_entries(
    data: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, set[str]], dict[str, tuple[int, ...]]]:
    """The file with only its valid entries, what refused people (emails) and systems (names,
    keys) entries named, and where each kept entry is in the file (`OrgDocument.kept`)."""
    valid: dict[str, Any] = {}
    refused: dict[str, set[str]] = {"people": set(), "systems": set()}
    kept_at: dict[str, tuple[int, ...]] = {}
    for key, value in data.items():
        model = _ENTRIES.get(key)
        if model is None or not isinstance(value, list):
            valid[key] = value
            continue
        kept, where = [], []
        for i, entry in enumerate(value):
            try:
                model.model_validate(entry)
            except ValidationError:
                if key in refused and isinstance(entry, dict):
                    names = (entry.get(k) for k in ("email", "name", "key"))
                    refused[key].update(str(n).strip().lower() for n in names if n)
                continue
            kept.append(entry)
            where.append(i)
        valid[key], kept_at[key] = kept, tuple(where)
    return valid, refused, kept_at


def read_org(path: Path) -> OrgDocument:
    if not path.is_file():
        raise InvalidInput(f"no such file: {path}", field="file")
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("not UTF-8 text: save the file as UTF-8", field="file") from None
    return parse_org(text, str(path))


def _is_union_branch(part: str | int) -> bool:
    """pydantic names the branch of a union it tried (`list[RequirementIn]`): not a place."""
    return isinstance(part, str) and ("[" in part or part.startswith("literal"))
