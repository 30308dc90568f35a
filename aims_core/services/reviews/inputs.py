"""Gathering the 9.3.2 inputs of a period straight from the database.

a) the actions of earlier reviews, b) changes in external and internal issues, c) changes in
interested parties' needs, d) AIMS performance with trends (CAPAs, incidents, gates, approvals,
risk posture, training, SoA, audits), e) opportunities for improvement. It reads other
processes' tables directly (no import of their services), so the review depends on their data,
not on their code. The figures are computed with pandas over the session's connection; pandas is
imported by the functions that use it, so importing the service stays cheap.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

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
    Risk,
    RiskStatus,
    SoaEntry,
    TrainingRecord,
    TrainingRequirement,
    as_utc,
)
from aims_core.rules.incident import incident_policy
from aims_core.rules.risk import risk_policy
from aims_core.services.context import entry_out
from aims_core.services.reviews.periods import as_of, period_bounds
from aims_core.services.reviews.queries import action_row
from aims_core.services.reviews.schemas import (
    TREND_MONTHS,
    ActionRow,
    AuditRow,
    ContextRow,
    ImprovementRow,
    MonthRow,
    Performance,
    ResidualRow,
    ReviewInputs,
    RiskBandRow,
    pct,
)
from aims_core.settings import Settings
from aims_core.uow import UnitOfWork

if TYPE_CHECKING:
    import pandas as pd


def _frame(session: Session, stmt: Select[Any], dates: tuple[str, ...] = ()) -> pd.DataFrame:
    """A query as a DataFrame; date columns as aware UTC timestamps on both backends."""
    import pandas as pd

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
    import pandas as pd

    return (df[col] >= pd.Timestamp(start)) & (df[col] < pd.Timestamp(end))


def _actions(s: Session, start: datetime, now: datetime) -> list[ActionRow]:
    rows = s.execute(
        select(ReviewAction, ManagementReview.period, Person.email)
        .join(ManagementReview, ManagementReview.id == ReviewAction.review_id)
        .join(Person, Person.id == ReviewAction.owner_id)
        .where(ManagementReview.period_start < start)
        .order_by(ManagementReview.period_start, ReviewAction.id)
    ).all()
    return [action_row(a, period, email, now) for a, period, email in rows]


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
    import pandas as pd

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
    import pandas as pd

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
        "training_compliance_pct": pct(current, len(pairs)),
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
    at = as_of(now)
    states_at = min(at, end)
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
            approvals_overdue=_overdue_approvals(s, start, states_at),
            **_risk_figures(s, settings, end),
            **_training_figures(s, states_at),
            **_soa_figures(s),
            **_audit_figures(s, start, end),
        )
        return ReviewInputs(
            period=period.strip(),
            timezone=settings.timezone,
            period_start=start,
            period_end=end,
            as_of=states_at,
            actions=_actions(s, start, at),
            issues=_context(s, start, end, ("external-issue", "internal-issue")),
            parties=_context(s, start, end, ("interested-party",)),
            performance=perf,
            improvements=_improvements(s, start, end),
        )
