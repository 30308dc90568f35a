"""What the people services take in and give back (PersonIn/PersonOut live in aims_core.schemas)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from aims_core.schemas import Email, Name, PersonOut, no_nul

__all__ = [
    "CLEAR",
    "Deactivation",
    "DeactivationIn",
    "Holding",
    "HoldingKind",
    "LinkReport",
    "LookupFailed",
    "PersonDetail",
    "PersonImportRow",
    "PersonUpdate",
    "SlackId",
    "SlackUser",
]

_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,31}$")
#: What `--slack-id` and `--manager` take to remove the value.
CLEAR = "none"


def _slack_id(value: str) -> str:
    value = value.strip()
    if not _SLACK_ID.match(value):
        raise ValueError(
            f"'{value}' is not a Slack user id (U or W, then 2 to 31 capital letters or digits, "
            "e.g. U0123ABCD)"
        )
    return value


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _roles(value: object) -> object:
    """A file's roles cell: ids separated by `;`, `,` or spaces, any case (or a YAML list)."""
    if isinstance(value, str):
        return [r for r in re.split(r"[;,\s]+", value.strip().lower()) if r]
    if isinstance(value, list):
        return [r.strip().lower() if isinstance(r, str) else r for r in value]
    return value


SlackId = Annotated[str, AfterValidator(_slack_id)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    _no_nul = model_validator(mode="before")(no_nul)


class PersonImportRow(_In):
    """One line of a people file (columns email, name, roles, manager, slack_id), or one
    person of an organisation file (`aims org apply`)."""

    email: Email
    name: Name
    roles: Annotated[list[str], BeforeValidator(_roles)] = Field(default_factory=list)
    manager: Annotated[Email | None, BeforeValidator(_blank_to_none)] = None
    slack_id: Annotated[SlackId | None, BeforeValidator(_blank_to_none)] = None


class PersonUpdate(_In):
    """`aims people update`: only what is given changes. `slack_id`/`manager` = "none" clears."""

    name: Name | None = None
    slack_id: str | None = None
    add_roles: list[str] = Field(default_factory=list)
    remove_roles: list[str] = Field(default_factory=list)
    manager: str | None = None

    @model_validator(mode="after")
    def _check(self) -> PersonUpdate:
        if self.slack_id is not None and self.slack_id.lower() != CLEAR:
            self.slack_id = _slack_id(self.slack_id)
        if self.manager is not None:
            self.manager = self.manager.strip().lower()
        self.add_roles = [r.strip().lower() for r in self.add_roles if r.strip()]
        self.remove_roles = [r.strip().lower() for r in self.remove_roles if r.strip()]
        both = set(self.add_roles) & set(self.remove_roles)
        if both:
            raise ValueError(f"role '{sorted(both)[0]}' both added and removed")
        return self


class DeactivationIn(_In):
    reason: Reason
    reassign_to: Annotated[Email | None, BeforeValidator(_blank_to_none)] = None


class Deactivation(BaseModel):
    """When, why and by whom a person was deactivated (from their `person.deactivated` event)."""

    at: datetime
    reason: str
    by: str

    def text(self, name: str) -> str:
        return f"{name} was deactivated on {self.at:%Y-%m-%d} ({self.reason})"


HoldingKind = Literal[
    "system",
    "capa",
    "capa-action",
    "plan-task",
    "raci",
    "risk",
    "policy",
    "policy-exception",
    "review-action",
    "vendor",
    "vendor-assessment",
    "audit",
    "approval",
]


class Holding(BaseModel):
    """One thing a person owns or may decide. `must_reassign`: deactivating them leaves open
    work without an owner unless it moves (`--reassign-to`)."""

    kind: HoldingKind
    label: str
    must_reassign: bool


class PersonDetail(PersonOut):
    deactivation: Deactivation | None = None
    manages: list[str] = Field(default_factory=list)
    holdings: list[Holding] = Field(default_factory=list)


class SlackUser(BaseModel):
    """What the Slack directory says about one user (users.lookupByEmail, users.info)."""

    id: str
    email: str | None = None
    deleted: bool = False
    is_bot: bool = False


class LookupFailed(Exception):
    """The Slack directory could not answer (not: the user does not exist)."""


class LinkReport(BaseModel):
    """`aims people link-slack`: whom it linked, and why each other person was not."""

    linked: dict[str, str] = Field(default_factory=dict)  # email -> Slack id
    already: dict[str, str] = Field(default_factory=dict)  # already had this id
    not_found: list[str] = Field(default_factory=list)
    taken: dict[str, str] = Field(default_factory=dict)  # email -> "U… (belongs to x@y)"
    failed: dict[str, str] = Field(default_factory=dict)  # email -> Slack's error
