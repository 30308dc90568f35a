"""Management review (ISO/IEC 42001 9.3): the prepared pack, its minutes, the decisions taken.

- `gather` reads every 9.3.2 input for a period straight from the database (pandas over the
  session's connection): a) the actions of earlier reviews, b) changes in external and internal
  issues, c) changes in interested parties' needs, d) AIMS performance with trends (CAPAs,
  incidents, gates, approvals, risk posture, training, SoA, audits), e) opportunities for
  improvement. It reads other processes' tables directly (no import of their services), so the
  review depends on their data, not on their code.
- `prepare` renders the pack (HTML with charts, Markdown with PNGs beside it, an Excel workbook
  with one sheet per input), records the `ManagementReview` row with the figures as JSON and the
  three files as `management-review` evidence on `review:<period>`. Re-preparing replaces the pack
  until the minutes are approved.
- `decide` records a 9.3.3 decision as a tracked `ReviewAction`; the next review reports it
  under input a). `record_outcome` files the minutes once top management has decided.

A period is a calendar quarter in the configured time zone: "2026Q4" = [2026-10-01, 2027-01-01).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

import pandas as pd
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from aims_core.errors import Conflict, InvalidInput, NotFound, from_validation_error
from aims_core.evidence_schemas import EvidenceIn
from aims_core.incident_policy import incident_policy
from aims_core.models import (
    AISystem,
    ApprovalRequest,
    Audit,
    AuditFinding,
    AuditStatus,
    Capa,
    ContextEntry,
    Control,
    ControlKind,
    GateReview,
    Incident,
    IncidentEvent,
    ManagementReview,
    Person,
    PersonRole,
    ReviewAction,
    ReviewStatus,
    Risk,
    RiskStatus,
    SoaEntry,
    TrainingRecord,
    TrainingRequirement,
    as_utc,
)
from aims_core.report_assets import bars, embed, figure, frame, kv, png
from aims_core.reports import render
from aims_core.risk_policy import risk_policy
from aims_core.schemas import Email
from aims_core.services import evidence, outbox
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.context import ContextOut, entry_out
from aims_core.services.people import get_person
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

__all__ = [
    "ACTIVITY",
    "DecisionIn",
    "ReviewInputs",
    "ReviewOut",
    "action_done",
    "approval_spec",
    "attach_request",
    "decide",
    "default_period",
    "gather",
    "get_review",
    "list_reviews",
    "period_bounds",
    "prepare",
    "record_outcome",
    "summary_markdown",
    "tick",
]

ACTIVITY: Final = "management-review"
APPROVER_ROLES: Final = ["top-management"]
EVIDENCE_KIND: Final = "management-review"
PERIOD_RE: Final = re.compile(r"^(\d{4})Q([1-4])$")
TREND_MONTHS: Final = 12  # four quarters of CAPA trend, ending with the reviewed one
REMIND_DAYS: Final = 7
#: Who the audit trail names for scheduled reminders.
TRACKER: Final = Actor(who="aims-review-tracker", channel="schedule")
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


# --- periods -----------------------------------------------------------------------------------


def period_bounds(period: str, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of a quarter like "2026Q4" in `timezone`, as aware UTC datetimes."""
    m = PERIOD_RE.match(period.strip()) if isinstance(period, str) else None
    if m is None or not 2000 <= int(m.group(1)) <= 2100:
        raise InvalidInput(f"'{period}' is not a quarter like 2026Q4 (year 2000-2100)", "period")
    year, quarter = int(m.group(1)), int(m.group(2))
    zone = ZoneInfo(timezone)
    start = datetime(year, 3 * quarter - 2, 1, tzinfo=zone)
    end = (
        datetime(year + 1, 1, 1, tzinfo=zone)
        if quarter == 4
        else datetime(year, 3 * quarter + 1, 1, tzinfo=zone)
    )
    return start.astimezone(UTC), end.astimezone(UTC)


def default_period(now: datetime | None, timezone: str) -> str:
    """The last full quarter before `now` in `timezone` (1 January: Q4 of the year before)."""
    local = _utc(now).astimezone(ZoneInfo(timezone))
    quarter = (local.month - 1) // 3 + 1
    return f"{local.year - 1}Q4" if quarter == 1 else f"{local.year}Q{quarter - 1}"


def _utc(value: datetime | None) -> datetime:
    return as_utc(value) if value is not None else datetime.now(UTC)


def _subject(period: str) -> str:
    return f"review:{period}"


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
        return _pct(self.soa_decided, self.soa_controls)


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


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _frame(session: Session, stmt: Select[Any], dates: tuple[str, ...] = ()) -> pd.DataFrame:
    """A query as a DataFrame; date columns as aware UTC timestamps on both backends."""
    df = pd.read_sql(stmt, session.connection())
    for col in dates:
        df[col] = pd.to_datetime(df[col], utc=True)
    return df


def _counts(series: pd.Series, order: list[str] | None = None) -> dict[str, int]:
    counts = {str(k): int(v) for k, v in series.value_counts().items()}
    if order is None:
        return dict(sorted(counts.items()))
    return {k: counts.get(k, 0) for k in order} | {
        k: v for k, v in sorted(counts.items()) if k not in order
    }


def _in(df: pd.DataFrame, col: str, start: datetime, end: datetime) -> pd.Series:
    return (df[col] >= pd.Timestamp(start)) & (df[col] < pd.Timestamp(end))


def _actions(s: Session, start: datetime, now: datetime) -> list[ActionRow]:
    rows = s.execute(
        select(ReviewAction, ManagementReview.period, Person.email)
        .join(ManagementReview, ManagementReview.id == ReviewAction.review_id)
        .join(Person, Person.id == ReviewAction.owner_id)
        .where(ManagementReview.period_start < start)
        .order_by(ManagementReview.period_start, ReviewAction.id)
    ).all()
    return [_action_row(a, period, email, now) for a, period, email in rows]


def _action_row(a: ReviewAction, period: str, owner: str, now: datetime) -> ActionRow:
    status = a.status
    if status == "open" and as_utc(a.due_at) < now:
        status = "overdue"
    return ActionRow(
        id=a.id,
        review=period,
        decision=a.decision,
        kind=a.kind,
        owner=owner,
        due=as_utc(a.due_at).date(),
        status=status,
        done_at=as_utc(a.done_at) if a.done_at else None,
        outcome=a.outcome,
    )


def _context(
    s: Session, start: datetime, end: datetime, kinds: tuple[str, ...]
) -> list[ContextRow]:
    rows = s.scalars(
        select(ContextEntry)
        .where(ContextEntry.recorded_at >= start, ContextEntry.recorded_at < end)
        .order_by(ContextEntry.recorded_at, ContextEntry.id)
    )
    return [entry_out(r) for r in rows if r.kind.value in kinds]


def _months(end: datetime, zone: ZoneInfo) -> list[str]:
    local_end = end.astimezone(zone)
    y, m = local_end.year, local_end.month
    out = []
    for _ in range(TREND_MONTHS):
        m -= 1
        if m == 0:
            y, m = y - 1, 12
        out.append(f"{y:04d}-{m:02d}")
    return out[::-1]


def _month_of(col: pd.Series, zone: ZoneInfo) -> pd.Series:
    return col.dt.tz_convert(str(zone)).dt.strftime("%Y-%m")


def _capa_figures(s: Session, start: datetime, end: datetime, zone: ZoneInfo) -> dict[str, Any]:
    df = _frame(s, select(Capa.id, Capa.created_at, Capa.closed_at), ("created_at", "closed_at"))
    months = _months(end, zone)
    opened = _month_of(df["created_at"], zone).value_counts() if len(df) else pd.Series()
    closed_at = df["closed_at"].dropna()
    closed = _month_of(closed_at, zone).value_counts() if len(closed_at) else pd.Series()
    trend = [
        MonthRow(month=m, opened=int(opened.get(m, 0)), closed=int(closed.get(m, 0)))
        for m in months
    ]
    end_ts = pd.Timestamp(end)
    open_at_end = (df["created_at"] < end_ts) & (
        df["closed_at"].isna() | (df["closed_at"] >= end_ts)
    )
    return {
        "capa_trend": trend,
        "capas_opened": int(_in(df, "created_at", start, end).sum()),
        "capas_closed": int(_in(df, "closed_at", start, end).sum()),
        "capas_open_at_end": int(open_at_end.sum()),
    }


def _incident_figures(
    s: Session, settings: Settings, start: datetime, end: datetime
) -> dict[str, Any]:
    df = _frame(
        s,
        select(Incident.id, Incident.severity, Incident.category, Incident.aware_at).where(
            Incident.aware_at >= start, Incident.aware_at < end, Incident.is_drill.is_(False)
        ),
        ("aware_at",),
    )
    events = _frame(
        s,
        select(IncidentEvent.incident_id, IncidentEvent.at, IncidentEvent.data)
        .join(Incident, Incident.id == IncidentEvent.incident_id)
        .where(
            IncidentEvent.kind == "status",
            Incident.aware_at >= start,
            Incident.aware_at < end,
            Incident.is_drill.is_(False),
        ),
        ("at",),
    )
    mttc: float | None = None
    contained = 0
    if len(events):
        to = events["data"].map(lambda d: (d or {}).get("to") if isinstance(d, dict) else None)
        first = events[to == "contained"].groupby("incident_id")["at"].min()
        if len(first):
            aware = df.set_index("id")["aware_at"].reindex(first.index)
            hours = (first - aware).dt.total_seconds() / 3600
            contained = len(hours)
            mttc = round(float(hours.mean()), 1)
    return {
        "incidents": len(df),
        "incidents_by_severity": _counts(
            df["severity"], incident_policy(settings).classification.severity_ids
        ),
        "incidents_by_category": _counts(df["category"]),
        "incidents_contained": contained,
        "mean_time_to_contain_hours": mttc,
    }


def _risk_figures(s: Session, settings: Settings, end: datetime) -> dict[str, Any]:
    """Open risks at `end` by tier and score band, and residual scores by tier. The database
    counts the risks per (tier, score, residual): a few hundred rows rather than one per risk."""
    policy = risk_policy(settings)
    df = _frame(
        s,
        select(AISystem.risk_tier, Risk.score, Risk.residual_score, func.count().label("n"))
        .join(AISystem, AISystem.id == Risk.system_id)
        .where(Risk.status != RiskStatus.closed, Risk.created_at < end)
        .group_by(AISystem.risk_tier, Risk.score, Risk.residual_score),
    )
    tiers = {t: getattr(t, "value", t) for t in df["risk_tier"].unique()}
    df["tier"] = df["risk_tier"].map(tiers)
    df["band"] = df["score"].map({v: policy.level(v) for v in df["score"].unique()})
    posture = [
        RiskBandRow(tier=tier, band=band, risks=int(n))
        for (tier, band), n in df.groupby(["tier", "band"])["n"].sum().items()
    ]
    residual = []
    for tier, g in df.groupby("tier"):
        has = g["residual_score"].notna()
        with_residual = int(g.loc[has, "n"].sum())
        total = (g.loc[has, "residual_score"].astype(float) * g.loc[has, "n"]).sum()
        effective = g["residual_score"].fillna(g["score"])
        residual.append(
            ResidualRow(
                tier=str(tier),
                risks=int(g["n"].sum()),
                with_residual=with_residual,
                mean_residual=round(float(total) / with_residual, 1) if with_residual else None,
                above_appetite=int(g.loc[effective > policy.appetite, "n"].sum()),
            )
        )
    return {"risk_posture": posture, "residual_by_tier": residual, "risk_appetite": policy.appetite}


def _training_figures(s: Session, at: datetime) -> dict[str, Any]:
    """Required (person, training) pairs of active role holders; current = the newest record
    completed by `at` has not expired at `at`."""
    pairs = _frame(
        s,
        select(PersonRole.person_id, TrainingRequirement.training)
        .join(TrainingRequirement, TrainingRequirement.role_id == PersonRole.role_id)
        .join(Person, Person.id == PersonRole.person_id)
        .where(Person.active.is_(True))
        .distinct(),
    ).drop_duplicates()
    records = _frame(
        s,
        select(
            TrainingRecord.person_id,
            TrainingRecord.training,
            TrainingRecord.completed_at,
            TrainingRecord.expires_at,
            TrainingRecord.id,
        ).where(TrainingRecord.completed_at <= at),
        ("completed_at", "expires_at"),
    )
    current = 0
    if len(pairs) and len(records):
        newest = (
            records.sort_values(["completed_at", "id"]).groupby(["person_id", "training"]).last()
        )
        valid = newest[newest["expires_at"] > pd.Timestamp(at)].index
        current = int(pairs.set_index(["person_id", "training"]).index.isin(valid).sum())
    return {
        "training_required": len(pairs),
        "training_current": current,
        "training_compliance_pct": _pct(current, len(pairs)),
    }


def _soa_figures(s: Session) -> dict[str, Any]:
    controls = _frame(s, select(Control.id).where(Control.kind == ControlKind.annex_control))
    soa = _frame(s, select(SoaEntry.control_id, SoaEntry.applicable))
    soa = soa[soa["control_id"].isin(controls["id"])]
    return {
        "soa_controls": len(controls),
        "soa_decided": len(soa),
        "soa_applicable": int(soa["applicable"].astype(bool).sum()),
    }


def _audit_figures(s: Session, start: datetime, end: datetime) -> dict[str, Any]:
    audits = s.scalars(
        select(Audit)
        .where(
            Audit.status == AuditStatus.closed,
            Audit.completed_at >= start,
            Audit.completed_at < end,
        )
        .order_by(Audit.completed_at)
    )
    findings = _frame(
        s,
        select(AuditFinding.kind).where(
            AuditFinding.created_at >= start, AuditFinding.created_at < end
        ),
    )
    kinds = findings["kind"].map(lambda k: getattr(k, "value", k))
    return {
        "audits_closed": [
            AuditRow(
                id=a.id,
                period=a.period,
                title=a.title,
                completed_at=as_utc(a.completed_at) if a.completed_at else None,
            )
            for a in audits
        ],
        "findings_by_kind": _counts(kinds, ["major-nc", "minor-nc", "observation", "opportunity"]),
    }


def _overdue_approvals(s: Session, start: datetime, until: datetime) -> int:
    """Requests whose deadline fell in the period (up to `until`) and were not decided by it."""
    df = _frame(
        s,
        select(ApprovalRequest.deadline, ApprovalRequest.decided_at).where(
            ApprovalRequest.deadline >= start, ApprovalRequest.deadline < until
        ),
        ("deadline", "decided_at"),
    )
    return int((df["decided_at"].isna() | (df["decided_at"] > df["deadline"])).sum())


def _improvements(s: Session, start: datetime, end: datetime) -> list[ImprovementRow]:
    out: list[ImprovementRow] = []
    for f in s.scalars(
        select(AuditFinding)
        .where(
            AuditFinding.kind == "opportunity",
            AuditFinding.created_at >= start,
            AuditFinding.created_at < end,
        )
        .order_by(AuditFinding.id)
    ):
        out.append(
            ImprovementRow(
                source="audit opportunity",
                ref=f"finding:{f.id} ({f.control_id})",
                text=f.statement,
                at=as_utc(f.created_at),
            )
        )
    for c in _context(s, start, end, ("improvement",)):
        out.append(
            ImprovementRow(source="context", ref=f"context:{c.id}", text=c.title, at=c.recorded_at)
        )
    for i in s.scalars(
        select(Incident)
        .where(
            Incident.lessons != "",
            Incident.is_drill.is_(False),
            ((Incident.aware_at >= start) & (Incident.aware_at < end))
            | ((Incident.closed_at >= start) & (Incident.closed_at < end)),
        )
        .order_by(Incident.id)
    ):
        out.append(
            ImprovementRow(
                source="incident lessons",
                ref=f"incident:{i.id}",
                text=i.lessons,
                at=as_utc(i.closed_at or i.aware_at),
            )
        )
    for c in s.scalars(select(Capa).order_by(Capa.id)):
        for r in (c.verification or {}).get("results", []):
            at = as_utc(datetime.fromisoformat(r["at"]))
            if not r.get("effective", True) and start <= at < end:
                out.append(
                    ImprovementRow(
                        source="ineffective CAPA",
                        ref=f"capa:{c.id}",
                        text=f"{c.title}: {r.get('evidence', '')}",
                        at=at,
                    )
                )
    return out


def gather(uow: UnitOfWork, period: str, now: datetime | None = None) -> ReviewInputs:
    """Every 9.3.2 input of `period`, read in one transaction. Figures that are states rather
    than events (open CAPAs, risk posture, training, SoA) are taken at the period's end, or now
    if the period has not ended yet."""
    settings = uow.settings
    zone = ZoneInfo(settings.timezone)
    start, end = period_bounds(period, settings.timezone)
    at = _utc(now)
    as_of = min(at, end)
    with uow.read():
        s = uow.session
        perf = Performance(
            **_capa_figures(s, start, end, zone),
            **_incident_figures(s, settings, start, end),
            gates_by_outcome=_counts(
                _frame(
                    s,
                    select(GateReview.status).where(
                        GateReview.created_at >= start, GateReview.created_at < end
                    ),
                )["status"].map(lambda v: getattr(v, "value", v))
            ),
            approvals_overdue=_overdue_approvals(s, start, as_of),
            **_risk_figures(s, settings, end),
            **_training_figures(s, as_of),
            **_soa_figures(s),
            **_audit_figures(s, start, end),
        )
        return ReviewInputs(
            period=period.strip(),
            timezone=settings.timezone,
            period_start=start,
            period_end=end,
            as_of=as_of,
            actions=_actions(s, start, at),
            issues=_context(s, start, end, ("external-issue", "internal-issue")),
            parties=_context(s, start, end, ("interested-party",)),
            performance=perf,
            improvements=_improvements(s, start, end),
        )


# --- charts ------------------------------------------------------------------------------------


def _capa_chart(inputs: ReviewInputs) -> bytes:
    fig, ax = figure()
    trend = inputs.performance.capa_trend
    x = range(len(trend))
    ax.bar([i - 0.2 for i in x], [m.opened for m in trend], 0.4, label="opened", color="#cf222e")
    ax.bar([i + 0.2 for i in x], [m.closed for m in trend], 0.4, label="closed", color="#1a7f37")
    ax.set_xticks(list(x), [m.month[2:] for m in trend], rotation=45, fontsize=8)
    ax.set_title("Corrective actions opened and closed per month")
    ax.set_ylabel("CAPAs")
    ax.legend()
    return png(fig)


def _risk_chart(inputs: ReviewInputs) -> bytes:
    fig, ax = figure()
    perf = inputs.performance
    tiers = sorted({r.tier for r in perf.risk_posture}) or ["(none)"]
    bands = list(dict.fromkeys(r.band for r in perf.risk_posture))
    colors = {"low": "#1a7f37", "medium": "#bf8700", "high": "#d1242f", "critical": "#6e011a"}
    bottom = [0] * len(tiers)
    for band in bands:
        values = [
            sum(r.risks for r in perf.risk_posture if r.tier == t and r.band == band) for t in tiers
        ]
        ax.bar(tiers, values, bottom=bottom, label=band, color=colors.get(band))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title("Open risks by system risk tier and score band")
    ax.set_ylabel("risks")
    ax.set_ylim(0, max([*bottom, 1]) * 1.2)
    if bands:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no open risks", transform=ax.transAxes, ha="center")
    return png(fig)


def _compliance_chart(inputs: ReviewInputs) -> bytes:
    fig, ax = figure()
    perf = inputs.performance
    labels = ["training compliance", "SoA decided", "SoA applicable"]
    values = [
        perf.training_compliance_pct or 0.0,
        perf.soa_coverage_pct or 0.0,
        _pct(perf.soa_applicable, perf.soa_controls) or 0.0,
    ]
    bars = ax.barh(labels, values, color=["#0969da", "#8250df", "#bf3989"])
    ax.bar_label(bars, fmt="%.1f %%")
    ax.set_xlim(0, 110)
    ax.set_xlabel("%")
    ax.set_title(
        f"Training ({perf.training_current}/{perf.training_required} current) and "
        f"SoA ({perf.soa_decided}/{perf.soa_controls} decided)"
    )
    return png(fig)


def charts(inputs: ReviewInputs) -> dict[str, tuple[str, bytes]]:
    """Chart name -> (caption, PNG), each drawn from the gathered figures."""
    perf = inputs.performance
    return {
        "incidents-by-severity": (
            "Incidents by severity",
            bars("Incidents by severity", perf.incidents_by_severity, "incidents", "#d1242f"),
        ),
        "capa-trend": ("CAPAs opened and closed, last four quarters", _capa_chart(inputs)),
        "risk-posture": ("Risk posture by tier", _risk_chart(inputs)),
        "compliance": ("Training compliance and SoA coverage", _compliance_chart(inputs)),
        "findings-by-kind": (
            "Audit findings by kind",
            bars("Audit findings by kind", perf.findings_by_kind, "findings", "#8250df"),
        ),
        "gates-by-outcome": (
            "Gate reviews by outcome",
            bars("Gate reviews by outcome", perf.gates_by_outcome, "gate reviews", "#0969da"),
        ),
    }


# --- the workbook ------------------------------------------------------------------------------


def performance_rows(perf: Performance) -> list[tuple[str, Any]]:
    """The headline figures of d), in the order the pack shows them."""
    rows: list[tuple[str, Any]] = [
        ("CAPAs opened in the period", perf.capas_opened),
        ("CAPAs closed in the period", perf.capas_closed),
        ("CAPAs open at period end", perf.capas_open_at_end),
        ("Incidents (aware in the period, drills excluded)", perf.incidents),
        ("Incidents contained", perf.incidents_contained),
        ("Mean time to contain (hours)", perf.mean_time_to_contain_hours),
        ("Approvals overdue", perf.approvals_overdue),
        ("Training pairs required", perf.training_required),
        ("Training pairs current", perf.training_current),
        ("Training compliance (%)", perf.training_compliance_pct),
        ("Annex A controls", perf.soa_controls),
        ("SoA controls decided", perf.soa_decided),
        ("SoA controls applicable", perf.soa_applicable),
        ("SoA coverage (%)", perf.soa_coverage_pct),
        ("Audits closed", len(perf.audits_closed)),
        ("Risk appetite (score)", perf.risk_appetite),
    ]
    rows += [(f"Incidents {k}", v) for k, v in perf.incidents_by_severity.items()]
    rows += [(f"Findings {k}", v) for k, v in perf.findings_by_kind.items()]
    rows += [(f"Gate reviews {k}", v) for k, v in perf.gates_by_outcome.items()]
    return rows


def _workbook(inputs: ReviewInputs, path: Path) -> None:
    perf = inputs.performance
    ctx_cols = ["id", "kind", "change", "title", "description", "recorded_by", "recorded_at"]
    sheets = {
        SHEETS["a"]: frame(
            inputs.actions,  # type: ignore[arg-type]
            ["id", "review", "decision", "kind", "owner", "due", "status", "done_at", "outcome"],
        ),
        SHEETS["b"]: frame(inputs.issues, ctx_cols),  # type: ignore[arg-type]
        SHEETS["c"]: frame(inputs.parties, ctx_cols),  # type: ignore[arg-type]
        SHEETS["d"]: kv(performance_rows(perf)),
        SHEETS["e"]: frame(inputs.improvements, ["source", "ref", "text", "at"]),  # type: ignore[arg-type]
        "KPI CAPA trend": frame(perf.capa_trend, ["month", "opened", "closed"]),  # type: ignore[arg-type]
        "KPI incidents": pd.DataFrame(
            [("severity", k, v) for k, v in perf.incidents_by_severity.items()]
            + [("category", k, v) for k, v in perf.incidents_by_category.items()],
            columns=["by", "value", "incidents"],
        ),
        "KPI gates": pd.DataFrame(
            list(perf.gates_by_outcome.items()), columns=["outcome", "gate reviews"]
        ),
        "KPI risk posture": frame(perf.risk_posture, ["tier", "band", "risks"]),  # type: ignore[arg-type]
        "KPI residual risk": frame(
            perf.residual_by_tier,  # type: ignore[arg-type]
            ["tier", "risks", "with_residual", "mean_residual", "above_appetite"],
        ),
        "KPI audits": frame(perf.audits_closed, ["id", "period", "title", "completed_at"]),  # type: ignore[arg-type]
        "KPI training SoA": kv(
            [
                ("training required", perf.training_required),
                ("training current", perf.training_current),
                ("training compliance %", perf.training_compliance_pct),
                ("SoA controls", perf.soa_controls),
                ("SoA decided", perf.soa_decided),
                ("SoA applicable", perf.soa_applicable),
            ]
        ),
    }
    with pd.ExcelWriter(path, engine="openpyxl") as xl:
        kv(
            [
                ("period", inputs.period),
                ("from", f"{inputs.period_start.astimezone(ZoneInfo(inputs.timezone)):%Y-%m-%d}"),
                (
                    "until (exclusive)",
                    f"{inputs.period_end.astimezone(ZoneInfo(inputs.timezone)):%Y-%m-%d}",
                ),
                ("time zone", inputs.timezone),
                ("states as of", f"{inputs.as_of:%Y-%m-%d %H:%M} UTC"),
            ]
        ).to_excel(xl, sheet_name="review", index=False)
        for name, df in sheets.items():
            df.to_excel(xl, sheet_name=name, index=False)


# --- reading reviews ---------------------------------------------------------------------------


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
        return _subject(self.period)

    def files(self) -> dict[str, Path]:
        """The pack's three files (html, md, xlsx)."""
        base = Path(self.pack_dir or ".") / f"management-review-{self.period}"
        return {ext: base.with_suffix(f".{ext}") for ext in ("html", "md", "xlsx")}


def _action_out(a: ReviewAction, period: str, now: datetime) -> ActionOut:
    row = _action_row(a, period, a.owner.email, now)
    return ActionOut(
        **row.model_dump(),
        recorded_by=a.recorded_by,
        created_at=as_utc(a.created_at),
        reminders_sent=a.reminders_sent,
    )


def _review_out(row: ManagementReview, now: datetime | None = None) -> ReviewOut:
    at = _utc(now)
    return ReviewOut(
        id=row.id,
        period=row.period,
        status=row.status,
        period_start=as_utc(row.period_start),
        period_end=as_utc(row.period_end),
        pack_dir=row.pack_dir,
        pack_evidence_ids=list(row.pack_evidence_ids or []),
        request_id=row.request_id,
        flow_run_id=row.flow_run_id,
        minutes=row.minutes,
        prepared_by=row.prepared_by,
        prepared_at=as_utc(row.prepared_at),
        approved_at=as_utc(row.approved_at) if row.approved_at else None,
        actions=[_action_out(a, row.period, at) for a in row.actions],
        inputs=dict(row.inputs or {}),
    )


def _load(s: Session, period: str, *, lock: bool = False) -> ManagementReview:
    q = (
        select(ManagementReview)
        .where(ManagementReview.period == period)
        .options(selectinload(ManagementReview.actions).selectinload(ReviewAction.owner))
    )
    if lock:
        q = q.with_for_update(of=ManagementReview)
    row = s.scalar(q)
    if row is None:
        raise NotFound(
            f"no management review for {period}: prepare it first "
            f"(`aims review prepare --period {period}` or `aims review start --period {period}`)",
            "period",
        )
    return row


def get_review(uow: UnitOfWork, period: str, now: datetime | None = None) -> ReviewOut:
    period_bounds(period, uow.settings.timezone)
    with uow.read():
        return _review_out(_load(uow.session, period.strip()), now)


def find_review(uow: UnitOfWork, period: str) -> ReviewOut | None:
    """The review of a period, or None if it was never prepared."""
    with uow.read():
        row = uow.session.scalar(
            select(ManagementReview.id).where(ManagementReview.period == period)
        )
    return None if row is None else get_review(uow, period)


def list_reviews(uow: UnitOfWork, now: datetime | None = None) -> list[ReviewOut]:
    with uow.read():
        rows = uow.session.scalars(
            select(ManagementReview)
            .options(selectinload(ManagementReview.actions).selectinload(ReviewAction.owner))
            .order_by(ManagementReview.period_start.desc())
        )
        return [_review_out(r, now) for r in rows]


# --- preparing the pack ------------------------------------------------------------------------


def _render_files(
    inputs: ReviewInputs, out_dir: Path, prepared_by: str, prepared_at: datetime
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    base = f"management-review-{inputs.period}"
    images = embed(charts(inputs), out_dir, base)
    zone = ZoneInfo(inputs.timezone)
    context = {
        "r": inputs,
        "perf": inputs.performance,
        "titles": INPUT_TITLES,
        "charts": images,
        "kpis": performance_rows(inputs.performance),
        "counts": inputs.action_counts,
        "start": f"{inputs.period_start.astimezone(zone):%Y-%m-%d}",
        "end": f"{(inputs.period_end.astimezone(zone) - timedelta(days=1)):%Y-%m-%d}",
        "prepared_by": prepared_by,
        "prepared_at": prepared_at,
    }
    files = {
        "html": out_dir / f"{base}.html",
        "md": out_dir / f"{base}.md",
        "xlsx": out_dir / f"{base}.xlsx",
    }
    files["html"].write_text(render("management_review.html.j2", **context), "utf-8")
    files["md"].write_text(render("management_review.md.j2", **context), "utf-8")
    _workbook(inputs, files["xlsx"])
    return files


MEDIA: Final = {
    "html": "text/html; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "xlsx": XLSX_TYPE,
}


def _refuse_while_asked(s: Session, row: ManagementReview | None) -> None:
    """A pack whose minutes await approval stays: the waiting run would approve minutes of a
    pack that is gone."""
    if row is None or row.request_id is None:
        return
    asked = s.get(ApprovalRequest, row.request_id)
    if asked is not None and asked.status.value == "open":
        raise Conflict(
            f"the minutes of {row.period} await approval (request {asked.id}): decide it first; "
            "a rejection lets the pack be prepared again",
            "period",
        )


def prepare(
    uow: UnitOfWork,
    period: str | None,
    output_dir: Path | None,
    actor: Actor,
    now: datetime | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> ReviewOut:
    """Gather the inputs, write the pack, record the review and its evidence. Re-preparing a
    review not yet approved replaces its pack (earlier evidence stays, as evidence does); an
    approved review is refused."""
    say = progress or (lambda _msg: None)
    at = _utc(now)
    settings = uow.settings
    period = (period or default_period(at, settings.timezone)).strip()
    start, end = period_bounds(period, settings.timezone)
    if start > at:
        raise InvalidInput(f"{period} has not started yet", "period")
    existing = find_review(uow, period)
    if existing is not None and existing.status is ReviewStatus.approved:
        raise Conflict(
            f"the management review {period} was approved on {existing.approved_at:%Y-%m-%d}: "
            "its pack is final",
            "period",
        )
    with uow.read():
        _refuse_while_asked(
            uow.session,
            uow.session.scalar(select(ManagementReview).where(ManagementReview.period == period)),
        )
    say(f"gathering the 9.3.2 inputs of {period}")
    inputs = gather(uow, period, at)
    out_dir = (output_dir or settings.reviews_path / period).expanduser().resolve()
    say(f"drawing charts and writing the pack to {out_dir}")
    files = _render_files(inputs, out_dir, actor.who, at)
    say("recording the review and its evidence")
    with uow:
        s = uow.session
        row = s.scalar(
            select(ManagementReview).where(ManagementReview.period == period).with_for_update()
        )
        if row is not None and row.status is ReviewStatus.approved:
            raise Conflict(f"the management review {period} was approved meanwhile", "period")
        _refuse_while_asked(s, row)
        if row is None:
            row = ManagementReview(period=period, period_start=start, period_end=end)
            s.add(row)
        row.status = ReviewStatus.prepared
        row.inputs = inputs.model_dump(mode="json")
        row.pack_dir = str(out_dir)
        row.prepared_by = actor.who
        row.prepared_at = at
        row.request_id = None
        row.minutes = ""
        s.flush()
        ids = []
        for ext, path in files.items():
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            ids.append(
                evidence.append_in(
                    uow,
                    EvidenceIn(
                        subject=_subject(period),
                        kind=EVIDENCE_KIND,
                        title=f"Management review {period}: pack ({ext})",
                        file=path,
                        file_name=path.name,
                        media_type=MEDIA[ext],
                        idempotency_key=f"review-{period}-pack-{ext}-{sha[:32]}",
                    ),
                    actor,
                ).id
            )
        row.pack_evidence_ids = ids
        s.flush()
        uow.audit(
            actor,
            "review.prepared",
            _subject(period),
            pack_dir=str(out_dir),
            evidence_ids=ids,
            replaced=existing is not None,
            actions_reported=len(inputs.actions),
        )
        uow.commit()
    evidence.sync_anchor(settings)
    return get_review(uow, period, at)


def attach_request(
    uow: UnitOfWork, period: str, request_id: int, flow_run_id: str | None, actor: Actor
) -> ReviewOut:
    """The minutes approval request (and the run waiting on it) of a review. Idempotent."""
    with uow:
        row = _load(uow.session, period, lock=True)
        if (row.request_id, row.flow_run_id) != (request_id, flow_run_id):
            row.request_id, row.flow_run_id = request_id, flow_run_id
            uow.audit(
                actor, "review.minutes-requested", _subject(period),
                request_id=request_id, flow_run_id=flow_run_id,
            )  # fmt: skip
        uow.commit()
    return get_review(uow, period)


# --- decisions (9.3.3) -------------------------------------------------------------------------


class DecisionIn(BaseModel):
    """A decision of the review: a change or improvement to make, or resources to give, with an
    owner and a due date (a calendar day, due at its end in the configured time zone)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    kind: Literal["improvement", "change", "resources"]
    owner: Email
    due: date


def _notify(s: Session, key: str, kind: str, period: str, person: Person, text: str) -> None:
    outbox.queue(
        s,
        outbox.NotificationIn(
            idempotency_key=key,
            kind=kind,
            subject=_subject(period),
            recipient=person.email,
            target=outbox.TARGET_DM if person.slack_user_id else outbox.TARGET_LOG,
            thread_key=f"review-{period}-to-{person.id}",
            text=text,
        ),
    )


def decide(
    uow: UnitOfWork,
    period: str,
    data: DecisionIn | Mapping[str, Any],
    actor: Actor,
    now: datetime | None = None,
) -> ActionOut:
    """Record a decision of the review as a tracked action (owner told); refused once the
    minutes are approved: they are final."""
    if not isinstance(data, DecisionIn):
        try:
            data = DecisionIn.model_validate(data)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
    at = _utc(now)
    zone = ZoneInfo(uow.settings.timezone)
    if data.due < at.astimezone(zone).date():
        raise InvalidInput(f"{data.due} is in the past", "due")
    period_bounds(period, uow.settings.timezone)
    with uow:
        s = uow.session
        row = _load(s, period.strip(), lock=True)
        if row.status is ReviewStatus.approved:
            raise Conflict(
                f"the minutes of {row.period} are approved: record the decision in the next review",
                "period",
            )
        owner = get_person(s, data.owner, "owner")
        if not owner.active:
            raise InvalidInput(f"{owner.email} is not active", "owner")
        action = ReviewAction(
            review_id=row.id,
            decision=data.decision,
            kind=data.kind,
            owner=owner,
            due_at=datetime.combine(data.due, time(23, 59, 59), zone).astimezone(UTC),
            status="open",
            outcome="",
            recorded_by=actor.who,
            created_at=at,
            reminders_sent=0,
        )
        s.add(action)
        s.flush()
        uow.audit(
            actor, "review.decision", _subject(row.period), action_id=action.id,
            decision=data.decision, kind=data.kind, owner=owner.email, due=data.due.isoformat(),
        )  # fmt: skip
        _notify(
            s,
            f"review-action-{action.id}-assigned",
            "review-action",
            row.period,
            owner,
            f"Management review {row.period} decided ({data.kind}): {data.decision}. "
            f"You own it, due {data.due}. When done: `aims review action-done {action.id} "
            "--outcome ...`",
        )
        out = _action_out(action, row.period, at)
        uow.commit()
    return out


def action_done(
    uow: UnitOfWork, action_id: int, outcome: str, actor: Actor, now: datetime | None = None
) -> ActionOut:
    """Close an action with what came of it (kept as evidence). A repeat changes nothing."""
    text = (outcome or "").strip()
    if not text:
        raise InvalidInput("say what came of it", "outcome")
    at = _utc(now)
    with uow:
        s = uow.session
        action = s.scalar(
            select(ReviewAction).where(ReviewAction.id == action_id).with_for_update()
        )
        if action is None:
            raise NotFound(f"no review action {action_id} (see `aims review show`)", "action")
        period = s.scalar(
            select(ManagementReview.period).where(ManagementReview.id == action.review_id)
        )
        assert period is not None
        if action.status == "done":
            return _action_out(action, period, at)
        if action.status != "open":
            raise Conflict(f"action {action_id} is {action.status}", "action")
        action.status, action.done_at, action.outcome = "done", at, text
        ev = evidence.append_in(
            uow,
            EvidenceIn(
                subject=_subject(period),
                kind=EVIDENCE_KIND,
                title=f"Management review {period}: action {action.id} done",
                text=f"# Action {action.id} of management review {period}: done\n\n"
                f"- **decision** ({action.kind}): {action.decision}\n"
                f"- **owner**: {action.owner.email}\n- **due**: {as_utc(action.due_at):%Y-%m-%d}\n"
                f"- **done**: {at:%Y-%m-%d %H:%M} UTC, recorded by {actor.who}\n\n{text}\n",
                media_type="text/markdown; charset=utf-8",
                idempotency_key=f"review-action-{action.id}-done",
            ),
            actor,
        )
        s.flush()
        uow.audit(
            actor, "review.action-done", _subject(period), action_id=action.id, outcome=text,
            evidence_id=ev.id,
        )  # fmt: skip
        out = _action_out(action, period, at)
        uow.commit()
    evidence.sync_anchor(uow.settings)
    return out


# --- the minutes approval ----------------------------------------------------------------------


def summary_markdown(review: ReviewOut) -> str:
    """What the pack says in a page: the figures of each input, where the files are."""
    inputs = ReviewInputs.model_validate(review.inputs)
    perf = inputs.performance
    counts = inputs.action_counts
    sev = ", ".join(f"{k} {v}" for k, v in perf.incidents_by_severity.items())
    mttc, training = perf.mean_time_to_contain_hours, perf.training_compliance_pct
    kinds = ", ".join(f"{k} {v}" for k, v in perf.findings_by_kind.items())
    lines = [
        f"## Management review {review.period} ({review.status.value})",
        "",
        f"- **a) previous actions**: {len(inputs.actions)} — "
        + ", ".join(f"{k} {v}" for k, v in counts.items()),
        f"- **b) external and internal issues**: {len(inputs.issues)} change(s)",
        f"- **c) interested parties**: {len(inputs.parties)} change(s)",
        f"- **d) performance**: CAPAs opened {perf.capas_opened}, closed {perf.capas_closed}, "
        f"open at end {perf.capas_open_at_end}; incidents {perf.incidents} ({sev}); "
        f"mean time to contain {'-' if mttc is None else mttc} h; "
        f"approvals overdue {perf.approvals_overdue}; training "
        f"{'-' if training is None else training} %; "
        f"SoA {perf.soa_decided}/{perf.soa_controls} decided; audits closed "
        f"{len(perf.audits_closed)}; findings {kinds}",
        f"- **e) opportunities for improvement**: {len(inputs.improvements)}",
        "",
        "Pack:",
        *(f"- `{p}`" for p in review.files().values()),
    ]
    if review.pack_evidence_ids:
        lines.append(f"- evidence: {', '.join(f'#{i}' for i in review.pack_evidence_ids)}")
    return "\n".join(lines)


def _decisions_md(review: ReviewOut) -> list[str]:
    if not review.actions:
        return ["_No decisions recorded._"]
    return [
        f"{n}. ({a.kind}) {a.decision} — owner {a.owner}, due {a.due} [action {a.id}]"
        for n, a in enumerate(review.actions, 1)
    ]


def approval_spec(review: ReviewOut, flow_run_id: str | None = None) -> ApprovalRequestIn:
    """The minutes approval: top management (RACI of `management-review`) approves the review
    with the decisions recorded. One request per preparation of the pack."""
    details = "\n".join(
        [
            summary_markdown(review),
            "",
            "Decisions recorded so far:",
            *_decisions_md(review),
            "",
            f"Record decisions before approving: `aims review decide {review.period} --decision "
            "TEXT --kind improvement|change|resources --owner EMAIL --due YYYY-MM-DD`.",
        ]
    )
    # One request per preparation: its time names it (the evidence of an identical pack may
    # be replayed, so the evidence ids alone could name a rejected request again).
    return ApprovalRequestIn(
        idempotency_key=f"management-review-{review.period}-{review.prepared_at:%Y%m%dT%H%M%S%f}",
        subject=review.subject,
        activity=ACTIVITY,
        title=f"Approve the minutes of management review {review.period}",
        details=details[:20_000],
        approver_roles=APPROVER_ROLES,
        evidence_ids=review.pack_evidence_ids,
        flow_run_id=flow_run_id,
    )


def record_outcome(uow: UnitOfWork, period: str, actor: Actor) -> ReviewOut:
    """File what top management decided on the minutes request: approved -> the minutes (with
    the decisions) become evidence; rejected -> the reasons are kept. Idempotent."""
    with uow:
        s = uow.session
        row = _load(s, period, lock=True)
        if row.request_id is None:
            raise Conflict(f"no minutes approval was asked for {period}", "period")
        req = s.get(ApprovalRequest, row.request_id)
        assert req is not None
        status = req.status.value
        if status not in ("approved", "rejected") or row.status.value == status:
            return _review_out(row)
        who = ", ".join(
            f"{d.person.email} ({d.outcome.value}{': ' + d.comment if d.comment else ''})"
            for d in req.decisions
        )
        if status == "approved":
            row.status = ReviewStatus.approved
            row.approved_at = as_utc(req.decided_at) if req.decided_at else datetime.now(UTC)
            out = _review_out(row)
            row.minutes = (
                "\n".join(
                    [
                        f"# Minutes of management review {period}",
                        "",
                        f"Approved {row.approved_at:%Y-%m-%d %H:%M} UTC by {who} "
                        f"(request {req.id}).",
                        "",
                        summary_markdown(out),
                        "",
                        "## Decisions (9.3.3)",
                        "",
                        *_decisions_md(out),
                    ]
                )
                + "\n"
            )
            ev = evidence.append_in(
                uow,
                EvidenceIn(
                    subject=_subject(period),
                    kind=EVIDENCE_KIND,
                    title=f"Management review {period}: approved minutes",
                    text=row.minutes,
                    media_type="text/markdown; charset=utf-8",
                    idempotency_key=f"review-{period}-minutes-{req.id}",
                ),
                actor,
            )
            uow.audit(
                actor, "review.approved", _subject(period), request_id=req.id,
                decisions=len(out.actions), evidence_id=ev.id,
            )  # fmt: skip
        else:
            row.status = ReviewStatus.rejected
            row.minutes = f"Minutes rejected by {who} (request {req.id}).\n"
            uow.audit(actor, "review.rejected", _subject(period), request_id=req.id, by=who)
        s.flush()
        out = _review_out(row)
        uow.commit()
    evidence.sync_anchor(uow.settings)
    return out


# --- reminders ---------------------------------------------------------------------------------


class TickReport(BaseModel):
    reminded: list[int]
    overdue: list[int]

    def summary(self) -> str:
        return f"review actions: reminded {len(self.reminded)}, overdue {len(self.overdue)}"


def tick(settings: Settings, now: datetime | None = None) -> TickReport:
    """Remind owners of open review actions due within 7 days, and once more when overdue;
    each message once (`reminders_sent` 1 = due soon sent, 2 = overdue sent)."""
    at = _utc(now)
    reminded: list[int] = []
    overdue: list[int] = []
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        rows = s.execute(
            select(ReviewAction, ManagementReview.period)
            .join(ManagementReview, ManagementReview.id == ReviewAction.review_id)
            .where(ReviewAction.status == "open", ReviewAction.reminders_sent < 2)
            .options(selectinload(ReviewAction.owner))
            .with_for_update(of=ReviewAction)
        ).all()
        for a, period in rows:
            due = as_utc(a.due_at)
            if due < at:
                key, kind, n = "overdue", "review-action-overdue", 2
                text = f"Overdue since {due:%Y-%m-%d}"
                overdue.append(a.id)
            elif due - at <= timedelta(days=REMIND_DAYS) and a.reminders_sent < 1:
                key, kind, n = "due-soon", "review-action-due", 1
                text = f"Due {due:%Y-%m-%d}"
                reminded.append(a.id)
            else:
                continue
            _notify(
                s,
                f"review-action-{a.id}-{key}",
                kind,
                period,
                a.owner,
                f"{text}: action {a.id} of management review {period} ({a.kind}): "
                f"{a.decision}. When done: `aims review action-done {a.id} --outcome ...`",
            )
            a.reminders_sent = n
            uow.audit(TRACKER, f"review.action-{key}", _subject(period), action_id=a.id)
        uow.commit()
    return TickReport(reminded=reminded, overdue=overdue)
