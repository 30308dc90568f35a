"""What a management review holds: the 9.3.2 inputs as figures (shared by the pack, the workbook
and the JSON kept on the review), the review and its actions as read back, and a decision in."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

from aims_core.models import ReviewStatus
from aims_core.schemas import Email
from aims_core.services.context import ContextOut
from aims_core.services.reviews.periods import subject

ACTIVITY: Final = "management-review"
APPROVER_ROLES: Final = ["top-management"]
EVIDENCE_KIND: Final = "management-review"
TREND_MONTHS: Final = 12  # four quarters of CAPA trend, ending with the reviewed one
XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
INPUT_TITLES: Final = {
    "a": "Status of actions from previous management reviews",
    "b": "Changes in external and internal issues",
    "c": "Changes in needs and expectations of interested parties",
    "d": "Information on the performance of the AI management system",
    "e": "Opportunities for continual improvement",
}
#: Workbook sheet of each input (Excel: at most 31 characters, no `: / ? * [ ]`).
SHEETS: Final = {
    "a": "a) previous actions",
    "b": "b) issues",
    "c": "c) interested parties",
    "d": "d) performance",
    "e": "e) improvements",
}
MEDIA: Final = {
    "html": "text/html; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "xlsx": XLSX_TYPE,
}


def pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


# --- the gathered inputs -----------------------------------------------------------------------


class ActionRow(BaseModel):
    id: int
    review: str
    decision: str
    kind: str
    owner: str
    due: date
    status: str  # open, overdue, done, dropped
    done_at: datetime | None
    outcome: str


#: A context entry reported under b), c) or e).
ContextRow = ContextOut


class MonthRow(BaseModel):
    month: str
    opened: int
    closed: int


class RiskBandRow(BaseModel):
    tier: str
    band: str
    risks: int


class ResidualRow(BaseModel):
    tier: str
    risks: int
    with_residual: int
    mean_residual: float | None
    above_appetite: int


class AuditRow(BaseModel):
    id: int
    period: str
    title: str
    completed_at: datetime | None


class ImprovementRow(BaseModel):
    source: str  # audit opportunity, context, incident lessons, ineffective CAPA
    ref: str
    text: str
    at: datetime | None


class Performance(BaseModel):
    """9.3.2 d): nonconformities and corrective actions, monitoring and measurement, audits."""

    capa_trend: list[MonthRow]
    capas_opened: int
    capas_closed: int
    capas_open_at_end: int
    incidents: int
    incidents_by_severity: dict[str, int]
    incidents_by_category: dict[str, int]
    incidents_contained: int
    mean_time_to_contain_hours: float | None
    gates_by_outcome: dict[str, int]
    approvals_overdue: int
    risk_posture: list[RiskBandRow]
    residual_by_tier: list[ResidualRow]
    risk_appetite: int
    training_required: int
    training_current: int
    training_compliance_pct: float | None
    soa_controls: int
    soa_decided: int
    soa_applicable: int
    audits_closed: list[AuditRow]
    findings_by_kind: dict[str, int]

    @property
    def soa_coverage_pct(self) -> float | None:
        return pct(self.soa_decided, self.soa_controls)


class ReviewInputs(BaseModel):
    """Every 9.3.2 input of one period, as figures the pack, the workbook and the JSON share."""

    period: str
    timezone: str
    period_start: datetime
    period_end: datetime
    as_of: datetime
    actions: list[ActionRow]  # a)
    issues: list[ContextRow]  # b)
    parties: list[ContextRow]  # c)
    performance: Performance  # d)
    improvements: list[ImprovementRow]  # e)

    @property
    def action_counts(self) -> dict[str, int]:
        counts = {s: 0 for s in ("open", "overdue", "done", "dropped")}
        for a in self.actions:
            counts[a.status] = counts.get(a.status, 0) + 1
        return counts


# --- reviews and decisions ---------------------------------------------------------------------


class ActionOut(ActionRow):
    recorded_by: str
    created_at: datetime
    reminders_sent: int


class ReviewOut(BaseModel):
    id: int
    period: str
    status: ReviewStatus
    period_start: datetime
    period_end: datetime
    pack_dir: str | None
    pack_evidence_ids: list[int]
    request_id: int | None
    flow_run_id: str | None
    minutes: str
    prepared_by: str
    prepared_at: datetime
    approved_at: datetime | None
    actions: list[ActionOut]
    inputs: dict[str, Any]

    @property
    def subject(self) -> str:
        return subject(self.period)

    def files(self) -> dict[str, Path]:
        """The pack's three files (html, md, xlsx)."""
        base = Path(self.pack_dir or ".") / f"management-review-{self.period}"
        return {ext: base.with_suffix(f".{ext}") for ext in ("html", "md", "xlsx")}


class DecisionIn(BaseModel):
    """A decision of the review: a change or improvement to make, or resources to give, with an
    owner and a due date (a calendar day, due at its end in the configured time zone)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    kind: Literal["improvement", "change", "resources"]
    owner: Email
    due: date
