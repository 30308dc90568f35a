"""Reading an organisation file: every problem named with its line, before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from aims_core.errors import InvalidInput
from aims_core.rules.loading import DataFileInvalid, Place, load_located, problem_at, syntax_problem
from aims_core.services.org.schemas import OrgFile


class OrgFileInvalid(DataFileInvalid):
    field_name = "org"


@dataclass(frozen=True)
class OrgDocument:
    """A parsed organisation file and its YAML node tree (to name the line of a problem)."""

    org: OrgFile
    source: str
    root: yaml.Node | None = None

    def at(self, place: Place, msg: str) -> str:
        return problem_at(self.root, place, msg)


def parse_org(text: str, source: str) -> OrgDocument:
    try:
        data, root = load_located(text)
    except yaml.YAMLError as exc:
        raise OrgFileInvalid(source, [syntax_problem(exc)]) from None
    if not isinstance(data, dict):
        raise OrgFileInvalid(source, ["(top): expected a mapping (organisation, people, ...)"])
    try:
        org = OrgFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            place = tuple(p for p in err["loc"] if not _is_union_branch(p))
            msg = "missing" if err["type"] == "missing" else err["msg"]
            problems.append(problem_at(root, place, msg.removeprefix("Value error, ")))
        raise OrgFileInvalid(source, list(dict.fromkeys(problems))) from None
    return OrgDocument(org=org, source=source, root=root)


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
