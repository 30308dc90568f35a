"""Pre-fill: what the engine's own records say about each requirement.

The rules of `gap_prefill.yaml` name a probe per requirement; a probe looks at the records
(policies, RACI, context, inventory, SoA, risks, impact assessments, audits, reviews, trainings,
vendors) and says `found`, `stale` or `missing` with the records it saw. The rule turns that into
a suggested status the assessor confirms or overrides. Read only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

from dateutil.relativedelta import relativedelta
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from aims_core import catalog
from aims_core.models import (
    AISystem,
    Audit,
    AuditFinding,
    AuditProgramme,
    AuditStatus,
    Capa,
    CapaStatus,
    ContextEntry,
    FindingKind,
    ImpactAssessment,
    ImpactStatus,
    ManagementReview,
    Policy,
    PolicyVersionStatus,
    RaciActivity,
    ReviewStatus,
    Risk,
    RiskTier,
    SoaEntry,
)
from aims_core.rules.gap import Probe, ProbeParams, prefill_rules
from aims_core.services import training, vendors
from aims_core.services.gap.schemas import _now
from aims_core.services.policies import next_review_due
from aims_core.settings import Settings
from aims_core.uow import UnitOfWork


class Finding(BaseModel):
    """What a probe found: `found`, `stale` or `missing`, and the records it looked at.

    A probe that finds something per requirement (an SoA exclusion) says so in `per`, each with
    the `note` a confirmation records (the exclusion's justification); a requirement it does not
    name there counts as missing."""

    state: str
    records: list[str] = Field(default_factory=list)
    note: str = ""
    per: dict[str, Finding] | None = None

    def for_requirement(self, requirement: str) -> Finding:
        if self.per is None:
            return self
        return self.per.get(requirement) or Finding(state="missing")


def _approved_policy(s: Session, p: ProbeParams, now: datetime) -> Finding:
    row = s.scalar(
        select(Policy).where(Policy.key == p.policy).options(selectinload(Policy.versions))
    )
    approved = [
        v for v in (row.versions if row else []) if v.status is PolicyVersionStatus.approved
    ]
    if row is None or not approved:
        return Finding(state="missing")
    v, due = approved[-1], next_review_due(row)
    records = [f"policy {row.key} v{v.version} approved (evidence #{v.evidence_id})"]
    if due < now:
        return Finding(state="stale", records=[*records, f"review overdue since {due:%Y-%m-%d}"])
    return Finding(state="found", records=[*records, f"next review {due:%Y-%m-%d}"])


def _share(have: list[str], want: list[str], what: str) -> Finding:
    """found when every wanted item is there, stale when some are, missing when none."""
    records = [f"{what} {x}" for x in want if x in have]
    if not records:
        return Finding(state="missing")
    lacking = [x for x in want if x not in have]
    if lacking:
        return Finding(state="stale", records=[*records, f"no {what} {', '.join(lacking)}"])
    return Finding(state="found", records=records)


def _raci(s: Session, p: ProbeParams, now: datetime) -> Finding:
    have = list(s.scalars(select(RaciActivity.activity).where(RaciActivity.scope == "org")))
    return _share(have, p.activities, "RACI of")


def _context(s: Session, p: ProbeParams, now: datetime) -> Finding:
    rows = s.scalars(
        select(ContextEntry)
        .where(
            ContextEntry.kind.in_(p.kinds),
            ContextEntry.recorded_at >= now - relativedelta(months=p.months),
        )
        .order_by(ContextEntry.id)
    ).all()
    records = [f"context #{c.id} ({c.kind.value}): {c.title}" for c in rows]
    return Finding(state="found" if records else "missing", records=records)


def _inventory(s: Session, p: ProbeParams, now: datetime) -> Finding:
    count = s.scalar(select(func.count()).select_from(AISystem)) or 0
    return Finding(
        state="found" if count else "missing",
        records=[f"AI system inventory: {count} systems"] if count else [],
    )


def _soa(s: Session, p: ProbeParams, now: datetime) -> Finding:
    total = len(catalog.annex_a_controls())
    decided = s.scalar(select(func.count()).select_from(SoaEntry)) or 0
    if not decided:
        return Finding(state="missing")
    state = "found" if decided >= total else "stale"
    return Finding(state=state, records=[f"Statement of Applicability: {decided}/{total} decided"])


def _soa_exclusions(s: Session, p: ProbeParams, now: datetime) -> Finding:
    rows = s.scalars(
        select(SoaEntry).where(SoaEntry.applicable.is_(False)).order_by(SoaEntry.control_id)
    ).all()
    per = {
        e.control_id: Finding(
            state="found",
            records=[f"Statement of Applicability excludes {e.control_id}: {e.justification}"],
            note=e.justification,
        )
        for e in rows
    }
    records = [f"Statement of Applicability: {len(per)} control(s) excluded"] if per else []
    return Finding(state="found" if per else "missing", records=records, per=per)


def _high_risk(s: Session) -> list[AISystem]:
    return list(
        s.scalars(select(AISystem).where(AISystem.risk_tier == RiskTier.high).order_by(AISystem.id))
    )


def _per_high_risk_system(s: Session, have: set[int], what: str) -> Finding:
    systems = _high_risk(s)
    if not systems:
        return Finding(state="found" if have else "missing", records=[f"{what}: {len(have)}"])
    names = {x.id: x.name for x in systems}
    return _share([names[i] for i in have if i in names], list(names.values()), what)


def _risk_register(s: Session, p: ProbeParams, now: datetime) -> Finding:
    have = set(s.scalars(select(Risk.system_id).distinct()))
    return _per_high_risk_system(s, have, "risk register of")


def _impact_assessments(s: Session, p: ProbeParams, now: datetime) -> Finding:
    have = set(
        s.scalars(
            select(ImpactAssessment.system_id).where(
                ImpactAssessment.status == ImpactStatus.approved
            )
        )
    )
    return _per_high_risk_system(s, have, "approved impact assessment of")


def _audit_programme(s: Session, p: ProbeParams, now: datetime) -> Finding:
    rows = s.scalars(select(AuditProgramme).order_by(AuditProgramme.id)).all()
    records = [f"audit programme {r.name}" for r in rows]
    return Finding(state="found" if records else "missing", records=records)


def _audit_done(s: Session, p: ProbeParams, now: datetime) -> Finding:
    since = now - relativedelta(months=p.months)
    closed = s.scalars(
        select(Audit).where(Audit.status == AuditStatus.closed, Audit.completed_at >= since)
    ).all()
    if closed:
        return Finding(state="found", records=[f"audit #{a.id} {a.period} closed" for a in closed])
    if s.scalar(select(func.count()).select_from(AuditProgramme)):
        return Finding(state="stale", records=[f"no audit closed in {p.months} months"])
    return Finding(state="missing")


def _management_review(s: Session, p: ProbeParams, now: datetime) -> Finding:
    since = now - relativedelta(months=p.months)
    rows = s.scalars(
        select(ManagementReview)
        .where(ManagementReview.prepared_at >= since)
        .order_by(ManagementReview.id)
    ).all()
    approved = [r for r in rows if r.status is ReviewStatus.approved]
    if approved:
        return Finding(state="found", records=[f"management review {r.period}" for r in approved])
    if rows:
        return Finding(
            state="stale",
            records=[f"management review {r.period} ({r.status.value})" for r in rows],
        )
    return Finding(state="missing")


def _no_major_nonconformity(s: Session, p: ProbeParams, now: datetime) -> Finding:
    rows = s.execute(
        select(AuditFinding.id, AuditFinding.control_id, Capa.status)
        .outerjoin(Capa, Capa.id == AuditFinding.capa_id)
        .where(AuditFinding.kind == FindingKind.major)
    ).all()
    open_ = [f"major nonconformity #{i} on {c}" for i, c, st in rows if st is not CapaStatus.closed]
    if open_:
        return Finding(state="stale", records=open_)
    return Finding(state="found", records=[f"no open major nonconformity ({len(rows)} closed)"])


def _trainings(settings: Settings, now: datetime) -> Finding:
    rows = training.matrix(UnitOfWork(settings), now=now)
    if not rows:
        return Finding(state="missing")
    lacking = [
        f"{r.email}: {r.training} {r.status.value}"
        for r in rows
        if r.status in ("expired", "missing")
    ]
    current = len(rows) - len(lacking)
    records = [f"trainings current: {current}/{len(rows)}", *lacking]
    return Finding(state="stale" if lacking else "found", records=records)


def _vendor_assessments(settings: Settings, now: datetime) -> Finding:
    rows = vendors.list_vendors(UnitOfWork(settings), now=now)
    current = [v.name for v in rows if v.last_assessed_at is not None and not v.overdue]
    return _share(current, [v.name for v in rows], "current assessment of vendor")


#: Probes over another service's view (it opens its own transaction).
_SERVICE_PROBES: Final[dict[str, Callable[[Settings, datetime], Finding]]] = {
    "trainings": _trainings,
    "vendor-assessments": _vendor_assessments,
}

_PROBES: Final[dict[str, Callable[[Session, ProbeParams, datetime], Finding]]] = {
    "approved-policy": _approved_policy,
    "raci": _raci,
    "context": _context,
    "inventory": _inventory,
    "soa": _soa,
    "soa-exclusions": _soa_exclusions,
    "risk-register": _risk_register,
    "impact-assessments": _impact_assessments,
    "audit-programme": _audit_programme,
    "audit-done": _audit_done,
    "management-review": _management_review,
    "no-major-nonconformity": _no_major_nonconformity,
}


def probe(uow: UnitOfWork, name: Probe, params: ProbeParams, now: datetime) -> Finding:
    """Run one probe (read only)."""
    if name in _SERVICE_PROBES:
        return _SERVICE_PROBES[name](uow.settings, now)
    with uow.read():
        return _PROBES[name](uow.session, params, now)


class Suggestion(BaseModel):
    status: str
    records: list[str]
    note: str = ""  # what confirming it records (an SoA exclusion's justification)


def suggestions(uow: UnitOfWork, now: datetime | None = None) -> dict[str, Suggestion]:
    """Requirement id -> the status the records suggest (first rule naming it wins)."""
    at = _now(now)
    out: dict[str, Suggestion] = {}
    cache: dict[str, Finding] = {}
    for rule in prefill_rules(uow.settings).rules:
        key = f"{rule.probe}:{rule.params.model_dump_json()}"
        if key not in cache:
            cache[key] = probe(uow, rule.probe, rule.params, at)
        for req in rule.covers():
            found = cache[key].for_requirement(req)
            status = rule.status_for(found.state)
            if status is not None:
                out.setdefault(
                    req, Suggestion(status=status, records=found.records, note=found.note)
                )
    return out
