"""What the audit service takes and returns (pydantic models at its boundary)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from aims_core.models import AuditStatus, FindingKind
from aims_core.schemas import SystemName

NONCONFORMITIES: Final = (FindingKind.major, FindingKind.minor)


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


class PlanIn(BaseModel):
    """`aims audit plan`: a cycle of `cycle_years` from period `start` (default: the current)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    cycle_years: int | None = Field(default=None, ge=1, le=10)
    start: Annotated[str | None, BeforeValidator(_blank_to_none)] = None
    name: Annotated[
        Annotated[str, StringConstraints(min_length=1, max_length=200)] | None,
        BeforeValidator(_blank_to_none),
    ] = None


class FindingIn(BaseModel):
    """One finding of an audit: a requirement in scope, its kind, what was found."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    control: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    kind: FindingKind
    statement: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    system: Annotated[SystemName | None, BeforeValidator(_blank_to_none)] = None
    evidence: Path | None = None
    #: What the auditor saw (records, interviews, samples), kept in the finding's evidence.
    evidence_note: Annotated[
        Annotated[str, StringConstraints(max_length=20_000)] | None,
        BeforeValidator(_blank_to_none),
    ] = None


class FindingOut(BaseModel):
    id: int
    audit_id: int
    control_id: str
    kind: FindingKind
    statement: str
    system: str | None
    evidence_id: int | None
    capa_id: int | None
    recorded_by: str
    created_at: datetime

    @property
    def nonconformity(self) -> bool:
        return self.kind in NONCONFORMITIES


class AuditOut(BaseModel):
    id: int
    programme_id: int
    programme: str
    period: str
    title: str
    scope: list[str]
    scope_reasons: dict[str, str]
    areas: list[str]
    systems: list[str]
    auditor: str | None
    auditor_name: str | None
    status: AuditStatus
    checklist: list[dict[str, Any]]
    request_id: int | None
    report_evidence_id: int | None
    flow_run_id: str | None
    planned_start: datetime
    period_end: datetime
    started_at: datetime | None
    completed_at: datetime | None
    findings: list[FindingOut]

    @property
    def subject(self) -> str:
        return f"audit:{self.id}"

    @property
    def nonconformities(self) -> list[FindingOut]:
        return [f for f in self.findings if f.nonconformity]

    def next_step(self) -> str:
        i = self.id
        match self.status:
            case AuditStatus.planned:
                if not self.auditor:
                    return f"an auditor: `aims audit assign {i} --auditor EMAIL`"
                return f"the fieldwork run: `aims audit start {i}`"
            case AuditStatus.in_progress:
                return (
                    f"fieldwork, from the auditor: answer the run's fieldwork ask (Slack, the "
                    f"run's form), or `aims audit finding {i} --control ID --kind minor-nc "
                    f"--statement ... --as EMAIL`, then `aims audit complete {i} --as EMAIL`"
                )
            case AuditStatus.reporting:
                req = self.request_id
                return (
                    f"the report's approval: `aims approve {req} --as EMAIL`"
                    if req
                    else "the report's approval (asked by the audit's run)"
                )
            case _:
                return f"nothing: {self.status.value}"


class Coverage(BaseModel):
    clauses_total: int
    clauses_covered: int
    annex_total: int
    annex_covered: int
    missing: list[str]

    def lines(self) -> list[str]:
        return [
            f"clauses covered {self.clauses_covered}/{self.clauses_total}",
            f"Annex A controls covered {self.annex_covered}/{self.annex_total}",
        ]


class ProgrammeOut(BaseModel):
    id: int
    name: str
    cycle_years: int
    starts_on: datetime
    ends_on: datetime
    periods: list[str]
    created_by: str
    created_at: datetime
    audits: list[AuditOut]
    coverage: Coverage

    @property
    def times_audited(self) -> Counter[str]:
        """How many audits of the programme each requirement is in."""
        return Counter(c for a in self.audits for c in a.scope)


class PlanResult(BaseModel):
    programme: ProgrammeOut
    created: bool
    yearly: dict[str, str] = Field(default_factory=dict)  # area id -> why every year
    unassigned: list[str] = Field(default_factory=list)  # why an audit has no auditor
    evidence_id: int | None = None


class AuditRunResult(BaseModel):
    """What an `internal-audit` run returns. Defined here, not in the flow module, so the
    persisted result unpickles anywhere (served flows load their module by file path)."""

    audit_id: int
    status: str
    findings: int
    capa_ids: list[int] = Field(default_factory=list)
    report_evidence_id: int | None = None
    request_id: int | None = None
    approvals: list[str] = Field(default_factory=list)
