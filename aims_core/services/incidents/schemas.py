"""What the incident service takes in and gives out: the report, the record with its timeline
and clocks, the root-cause analysis. Checked at the boundary, before any transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from aims_core.models import IncidentStatus, as_utc
from aims_core.schemas import no_nul
from aims_core.services.clocks import ClockOut

#: A reporter's clock may run a little ahead of ours; beyond this, `aware_at` is refused.
FUTURE_SKEW: Final = timedelta(minutes=5)
FISHBONE: Final = ("people", "process", "data", "model", "infrastructure", "environment")
Source = Literal["cli", "api", "alertmanager", "drill"]


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _utc_now() -> datetime:
    return datetime.now(UTC)


def not_in_future(value: datetime) -> datetime:
    """Aware UTC, never ahead of now (a small clock skew is clamped, more is refused)."""
    value = as_utc(value)
    now = _utc_now()
    if value > now + FUTURE_SKEW:
        raise ValueError(f"{value.isoformat()} is in the future (now {now.isoformat()})")
    return min(value, now)


class IncidentIn(BaseModel):
    """An incident as a reporter sends it. Severity and category are checked against the
    classification data by `report` (their values can be organisation-specific)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    _no_nul = model_validator(mode="before")(no_nul)

    system: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    title: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    summary: Annotated[str, StringConstraints(max_length=20_000)] = ""
    severity: Annotated[str, StringConstraints(min_length=1, max_length=8, to_upper=True)]
    category: Annotated[str, StringConstraints(min_length=1, max_length=60)]
    source: Source = "cli"
    fingerprint: Annotated[
        Annotated[str, StringConstraints(min_length=1, max_length=200)] | None,
        BeforeValidator(_blank_to_none),
    ] = None
    aware_at: datetime | None = Field(
        default=None, description="When the organisation became aware; default now."
    )
    labels: dict[str, str] = Field(default_factory=dict)
    harm: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list
    )
    is_drill: bool = False

    @field_validator("aware_at")
    @classmethod
    def _aware_at(cls, value: datetime | None) -> datetime | None:
        return None if value is None else not_in_future(value)

    @model_validator(mode="after")
    def _drill(self) -> IncidentIn:
        if self.source == "drill":
            self.is_drill = True
        return self


class TimelineOut(BaseModel):
    id: int
    at: datetime
    kind: str
    text: str
    data: dict[str, Any]
    actor: str


class IncidentOut(BaseModel):
    id: int
    system: str
    system_tier: str
    title: str
    summary: str
    severity: str
    category: str
    status: IncidentStatus
    source: str
    fingerprint: str | None
    aware_at: datetime
    reported_at: datetime
    serious_suggested: list[str]
    serious_kind: str | None
    serious_confirmed_at: datetime | None
    is_drill: bool
    playbook: str | None
    root_cause: dict[str, Any]
    lessons: str
    flow_run_id: str | None
    timeline: list[TimelineOut]
    clocks: list[ClockOut]


class ReportResult(BaseModel):
    incident: IncidentOut
    created: bool = Field(description="False when a repeat attached to an open incident.")


Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class RootCauseIn(BaseModel):
    """Root-cause analysis: up to five whys, fishbone causes by category, the root cause
    (default: the last why, where a 5-whys chain ends)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    whys: list[Line] = Field(min_length=1, max_length=5)
    fishbone: dict[str, list[Line]] = Field(default_factory=dict)
    root_cause: Annotated[str, StringConstraints(max_length=2000)] = ""

    @field_validator("fishbone")
    @classmethod
    def _fishbone(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = [k for k in value if k not in FISHBONE]
        if unknown:
            raise ValueError(
                f"unknown fishbone category '{unknown[0]}' (one of: {', '.join(FISHBONE)})"
            )
        return {k: value[k] for k in FISHBONE if value.get(k)}

    @model_validator(mode="after")
    def _root(self) -> RootCauseIn:
        if not self.root_cause:
            self.root_cause = self.whys[-1]
        return self


def _jsonable(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(dict(data), default=str))
    return out
