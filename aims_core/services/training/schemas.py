"""What the training service takes in and hands out: requirements, records, the matrix."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from aims_core.rules.training import TrainingId
from aims_core.schemas import Email

__all__ = [
    "MatrixRow",
    "Notice",
    "RecordIn",
    "RecordOut",
    "RequirementIn",
    "RequirementOut",
    "Status",
]


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


class RequirementIn(BaseModel):
    """A role requires a training; `validity_days` overrides the catalog's period."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    role: Annotated[str, BeforeValidator(_lower), StringConstraints(min_length=1, max_length=64)]
    training: Annotated[TrainingId, BeforeValidator(_lower)]
    validity_days: int | None = Field(default=None, ge=1, le=3650)


class RequirementOut(BaseModel):
    role: str
    training: str
    title: str
    validity_days: int
    changed: bool = False


class RecordIn(BaseModel):
    """One completion. `expires` defaults to `completed` + the validity (the shortest a role of
    the person requires, else the catalog's); `evidence` is a certificate or attendance file,
    `note` a line of text (one of them, or neither: the record itself is then the evidence)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: Email
    training: Annotated[TrainingId, BeforeValidator(_lower)]
    completed: date
    expires: date | None = None
    evidence: Annotated[Path | None, BeforeValidator(_blank_to_none)] = None
    note: Annotated[str, StringConstraints(max_length=5_000)] = ""

    @field_validator("note")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:  # named here, not later as the evidence's `text`
            raise ValueError("contains a NUL character")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.expires is not None and self.expires <= self.completed:
            raise ValueError(
                f"expires: {self.expires} is not after the completion date {self.completed}"
            )
        if self.evidence is not None and not self.evidence.expanduser().is_file():
            raise ValueError(f"evidence: no such file: {self.evidence}")
        return self


class RecordOut(BaseModel):
    id: int
    email: str
    training: str
    title: str
    completed_at: datetime
    expires_at: datetime
    expires_on: date
    evidence_id: int | None
    recorded_by: str
    replayed: bool = False


class Status(StrEnum):
    current = "current"
    expiring = "expiring"  # within the first reminder threshold
    expired = "expired"
    missing = "missing"


class MatrixRow(BaseModel):
    """One required training of one person, and where it stands."""

    email: str
    name: str
    roles: list[str]  # the person's roles that require it
    training: str
    title: str
    status: Status
    completed_on: date | None
    expires_on: date | None
    days_left: int | None
    record_id: int | None


class Notice(BaseModel):
    """A reminder or an escalation the daily pass queued."""

    record_id: int
    person: str
    training: str
    title: str
    expires_on: date
    days_left: int
    threshold: int | None = None
    told: list[str]
