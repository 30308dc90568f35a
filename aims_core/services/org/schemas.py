"""The organisation file (`aims org apply org.yaml`): people, RACI, AI systems, vendors and
required trainings, declared in one place and applied as one transaction."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from aims_core.schemas import Email, Name, SystemIn, _blank_to_none
from aims_core.services.people.schemas import PersonImportRow
from aims_core.services.training.schemas import RequirementIn
from aims_core.services.vendors import VendorIn


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


#: A person of the file: the same fields and rules as a line of `aims people import`.
OrgPerson = PersonImportRow


class OrgRaci(_Entry):
    """One activity's RACI, organisation-wide or for one system (by its key); exactly one
    Accountable by construction."""

    activity: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    system: Annotated[str | None, BeforeValidator(_blank_to_none)] = None
    responsible: list[Email] = Field(min_length=1)
    accountable: Email
    consulted: list[Email] = Field(default_factory=list)
    informed: list[Email] = Field(default_factory=list)


class OrgFile(_Entry):
    """What an organisation declares. Sections left out are not touched; what the database has
    beyond the file is reported (people are deactivated only with `--prune`)."""

    organisation: Name
    people: list[OrgPerson] = Field(default_factory=list)
    vendors: list[VendorIn] = Field(default_factory=list)
    systems: list[SystemIn] = Field(default_factory=list)
    raci: list[OrgRaci] = Field(default_factory=list)
    #: Trainings roles require: the training catalog's defaults, or a list.
    trainings: Literal["catalog-defaults"] | list[RequirementIn] = Field(default_factory=list)


Action = Literal["add", "update", "deactivate", "absent", "deactivated"]


class OrgChange(BaseModel):
    """One line of the diff `aims org apply` prints."""

    action: Action
    kind: Literal["person", "vendor", "system", "raci", "training"]
    key: str
    details: list[str] = Field(default_factory=list)

    @property
    def writes(self) -> bool:
        return self.action in ("add", "update", "deactivate")

    def line(self) -> str:
        mark = {"add": "+", "update": "~", "deactivate": "-", "absent": "?", "deactivated": "!"}
        more = f": {'; '.join(self.details)}" if self.details else ""
        return f"{mark[self.action]} {self.kind} {self.key}{more}"


class OrgApplied(BaseModel):
    organisation: str
    dry_run: bool
    changes: list[OrgChange]

    @property
    def written(self) -> list[OrgChange]:
        return [c for c in self.changes if c.writes]

    @property
    def reported(self) -> list[OrgChange]:
        return [c for c in self.changes if not c.writes]
