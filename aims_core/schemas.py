"""Pydantic models at the service boundary: what comes in is validated here, once."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aims_core.models import Criticality, LifecycleStage, RiskTier
from aims_core.system_keys import derive_key, key_problem, text_problem

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value):
        raise ValueError(f"'{value}' is not an email address")
    return value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _blank_to_none(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _none_to_blank(value: object) -> object:
    return "" if value is None else value


Email = Annotated[str, AfterValidator(_email)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _one_line(value: str) -> str:
    """One line of text, composed (NFC): `é` typed on macOS (e + a combining accent) is then
    the same name as `é` typed elsewhere."""
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return unicodedata.normalize("NFC", value)


def _a_key(value: str) -> str:
    problem = key_problem(value)
    if problem:
        raise ValueError(problem)
    return value


#: A system's display name: any one line of text (`Évaluation crédit`, `信用スコア`).
SystemDisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_one_line),
]
#: A system as a person names it in a command or file: its key, in any case, or its display
#: name; `services.systems.get_system` resolves it. Keys are no longer ASCII-only, so no pattern.
SystemName = SystemDisplayName
Slug = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=120, pattern=r"^[a-z0-9][a-z0-9._-]*$"
    ),
]


def no_nul(data: Any) -> Any:
    """Refuse a NUL character in any text of an input, naming the field: PostgreSQL cannot
    store one (its driver raises mid-write), and no name, email or note needs one."""
    if isinstance(data, dict):
        for name, value in data.items():
            values = value if isinstance(value, list | tuple) else [value]
            if any(isinstance(v, str) and "\x00" in v for v in values):
                raise ValueError(f"{name}: contains a NUL character")
    return data


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    _no_nul = model_validator(mode="before")(no_nul)


class PersonIn(_In):
    email: Email
    name: Name
    slack_user_id: Annotated[
        Annotated[str, StringConstraints(pattern=r"^[UW][A-Z0-9]{2,31}$")] | None,
        BeforeValidator(_blank_to_none),
    ] = None
    roles: list[Annotated[str, BeforeValidator(_lower)]] = Field(default_factory=list)
    manager: Annotated[Email | None, BeforeValidator(_blank_to_none)] = None


class PersonOut(BaseModel):
    id: int
    email: str
    name: str
    slack_user_id: str | None
    roles: list[str]
    manager: str | None
    active: bool


class SystemIn(_In):
    """`name` is the display name; `key` (what commands, runs and subjects use) is derived from
    it when not given, so after validation it is always set."""

    name: SystemDisplayName
    key: Annotated[str, BeforeValidator(_none_to_blank)] = Field(default="", validate_default=True)
    owner: Email
    purpose: Text
    risk_tier: Annotated[RiskTier, BeforeValidator(_lower)]
    criticality: Annotated[Criticality, BeforeValidator(_lower)]
    vendor: Annotated[Name | None, BeforeValidator(_blank_to_none)] = None

    @field_validator("key")
    @classmethod
    def _key(cls, value: str, info: ValidationInfo) -> str:
        if value:
            return _a_key(value)
        name = info.data.get("name")
        if name is None:  # the name itself is refused; that is the one problem to report
            return value
        derived = derive_key(name)
        if not derived:
            raise ValueError(
                f"the name '{name}' has no letter or digit to make a key of: give a key"
            )
        return derived


class SystemOut(BaseModel):
    id: int
    name: str = Field(description="The key: what commands, run names and subjects use.")
    display_name: str = Field(description="The name people see (any text).")
    purpose: str
    owner: str
    owner_name: str
    risk_tier: RiskTier
    criticality: Criticality
    lifecycle_stage: LifecycleStage
    vendor: str | None


class RaciIn(_In):
    activity: Slug
    system: Annotated[SystemName | None, BeforeValidator(_blank_to_none)] = None
    responsible: list[Email] = Field(min_length=1)
    accountable: list[Email]
    consulted: list[Email] = Field(default_factory=list)
    informed: list[Email] = Field(default_factory=list)

    @field_validator("accountable")
    @classmethod
    def _exactly_one_accountable(cls, value: list[str]) -> list[str]:
        if len(value) != 1:
            raise ValueError(f"exactly one Accountable per activity (got {len(value)})")
        return value


class RaciOut(BaseModel):
    activity: str
    system: str | None
    responsible: list[str]
    accountable: str
    consulted: list[str]
    informed: list[str]
