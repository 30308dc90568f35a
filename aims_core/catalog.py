"""The catalogs shipped as data: ISO/IEC 42001 requirements, roles, evidence kinds.

Validated by pydantic on load, so a broken data file fails loudly at the first use.
"""

from __future__ import annotations

import functools
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from aims_core.models import ControlKind


class _Strict(BaseModel):
    """Data files are checked strictly: an unknown key is a typo, not something to ignore."""

    model_config = ConfigDict(extra="forbid")


class _Node(_Strict):
    id: str
    title: str
    children: list[_Node] = Field(default_factory=list)


class _Objective(_Strict):
    id: str
    title: str
    controls: list[_Node]


class _Iso42001File(_Strict):
    clauses: list[_Node]
    annex_a: list[_Objective]


class Requirement(BaseModel):
    """One catalog entry, flattened: a clause or sub-clause, an Annex A objective or control."""

    id: str
    kind: ControlKind
    title: str
    parent: str | None = None
    position: int


class RoleSpec(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    title: str
    description: str = ""


class EvidenceKind(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    title: str
    controls: list[str] = Field(default_factory=list)


def _load_yaml(name: str) -> object:
    return yaml.safe_load(resources.files("aims_core.data").joinpath(name).read_text("utf-8"))


@functools.cache
def requirements() -> tuple[Requirement, ...]:
    data = _Iso42001File.model_validate(_load_yaml("iso42001.yaml"))
    out: list[Requirement] = []

    def walk(node: _Node, parent: str | None) -> None:
        out.append(
            Requirement(
                id=node.id,
                kind=ControlKind.clause,
                title=node.title,
                parent=parent,
                position=len(out),
            )
        )
        for child in node.children:
            walk(child, node.id)

    for clause in data.clauses:
        walk(clause, None)
    for objective in data.annex_a:
        out.append(
            Requirement(
                id=objective.id,
                kind=ControlKind.annex_objective,
                title=objective.title,
                position=len(out),
            )
        )
        for control in objective.controls:
            out.append(
                Requirement(
                    id=control.id,
                    kind=ControlKind.annex_control,
                    title=control.title,
                    parent=objective.id,
                    position=len(out),
                )
            )
    ids = [r.id for r in out]
    if len(ids) != len(set(ids)):
        raise ValueError("iso42001.yaml: duplicate requirement ids")
    return tuple(out)


def annex_a_controls() -> list[Requirement]:
    return [r for r in requirements() if r.kind is ControlKind.annex_control]


@functools.cache
def roles() -> tuple[RoleSpec, ...]:
    return tuple(TypeAdapter(list[RoleSpec]).validate_python(_load_yaml("roles.yaml")))


@functools.cache
def evidence_kinds() -> dict[str, EvidenceKind]:
    kinds = TypeAdapter(list[EvidenceKind]).validate_python(_load_yaml("evidence_kinds.yaml"))
    return {k.id: k for k in kinds}
