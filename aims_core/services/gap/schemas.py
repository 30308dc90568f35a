"""What the gap assessment takes in and gives out: answers, requirements, maturity, the
assessment as read, the run's result, trends and readiness. Plain models, no database access."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from pydantic import BaseModel, Field, field_validator

from aims_core.models import GapStatus, as_utc
from aims_core.rules.gap import Conformity, area_of

EVIDENCE_KIND: Final = "gap-assessment"
OPEN: Final = (GapStatus.draft, GapStatus.answered)
NOTE_MAX: Final = 5_000
DETAILS_MAX: Final = 2800  # the approval's details also go into a Slack section (3,000 chars)


def subject(assessment_id: int) -> str:
    return f"gap:{assessment_id}"


def run_name(at: datetime) -> str:
    """A gap-assessment run's name in the Prefect UI: `gap assessment 2026-12-06`."""
    return f"gap assessment {as_utc(at):%Y-%m-%d}"


def approval_key(assessment_id: int) -> str:
    return f"gap-assessment-{assessment_id}-approval"


def _now(now: datetime | None = None) -> datetime:
    return as_utc(now) if now is not None else datetime.now(UTC)


class AnswerIn(BaseModel):
    """One requirement's conformity as an assessor records it."""

    status: Conformity
    note: str = Field(default="", max_length=NOTE_MAX)
    evidence: list[str] = Field(default_factory=list, max_length=50)

    @field_validator("note", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("evidence", mode="before")
    @classmethod
    def _links(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        return value


class RequirementOut(BaseModel):
    requirement: str
    title: str
    area: str
    suggested_status: str | None
    suggested_records: list[str]
    suggested_note: str
    status: str | None
    note: str
    evidence: list[str]
    answered_by: str | None

    @property
    def shown_status(self) -> str:
        return self.status or "not assessed"


class AreaMaturity(BaseModel):
    area: str
    title: str
    kind: str  # clause | annex-objective
    score: float | None
    level: int
    name: str
    counts: dict[str, int]


class Maturity(BaseModel):
    areas: list[AreaMaturity]
    overall: int
    overall_name: str

    def levels(self, kind: str | None = None) -> dict[str, int]:
        return {a.area: a.level for a in self.areas if kind is None or a.kind == kind}


class GapAssessmentOut(BaseModel):
    id: int
    status: GapStatus
    assessor: str
    requirements: list[RequirementOut]
    answered: int
    total: int
    suggested: int
    missing: list[str]
    maturity: Maturity | None
    request_id: int | None
    evidence_id: int | None
    flow_run_id: str | None
    created_at: datetime
    completed_at: datetime | None
    approved_at: datetime | None

    @property
    def subject(self) -> str:
        return subject(self.id)

    def by_id(self) -> dict[str, RequirementOut]:
        return {r.requirement: r for r in self.requirements}

    def missing_in(self, area: str) -> list[str]:
        return [r for r in self.missing if area_of(r) == area]


class GapResult(BaseModel):
    """What a gap-assessment run returns (a model of the service, so the persisted result
    unpickles without the flow's module)."""

    assessment_id: int
    status: str
    request_id: int | None
    evidence_id: int | None
    overall: int | None
    plan_tasks: int
    approvals: list[str]
    rejections: list[str]


class TrendPoint(BaseModel):
    assessment_id: int
    approved_at: datetime
    overall: int
    conforming_pct: float
    levels: dict[str, int]


class ReadinessRow(BaseModel):
    requirement: str
    title: str
    asks: str
    ready: bool
    records: list[str]


class Readiness(BaseModel):
    assessment_id: int | None
    rows: list[ReadinessRow]
    percent: float

    @property
    def ready(self) -> int:
        return sum(1 for r in self.rows if r.ready)
