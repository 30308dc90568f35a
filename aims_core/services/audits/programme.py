"""The audit programme (9.2.2): which areas are audited every year, and the allocation of
every requirement to the periods of a cycle."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aims_core import catalog
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import (
    AISystem,
    Audit,
    AuditFinding,
    AuditProgramme,
    AuditStatus,
    Capa,
    Incident,
    LifecycleStage,
)
from aims_core.rules.audit import AuditPolicy, audit_policy, auditable
from aims_core.services import evidence
from aims_core.services.audits.checklist import _checklist, _sample_systems, _title
from aims_core.services.audits.independence import _pick_auditor
from aims_core.services.audits.periods import _tz, _utc, period_bounds, period_of, periods_from
from aims_core.services.audits.queries import _areas_of, _programme_by_name, _programme_out
from aims_core.services.audits.schemas import NONCONFORMITIES, PlanIn, PlanResult, ProgrammeOut
from aims_core.uow import Actor, UnitOfWork


def _nonconformities(
    session: Session, policy: AuditPolicy, since: datetime
) -> dict[str, list[str]]:
    """Area id -> the nonconformities since `since` on its requirements (CAPAs, audit
    nonconformities; incidents count against the policy's incident requirements)."""
    out: dict[str, list[str]] = defaultdict(list)

    def add(control: str, what: str) -> None:
        area = policy.area_of(control)
        if area is not None and what not in out[area.id]:
            out[area.id].append(what)

    for cid, control in session.execute(
        select(Capa.id, Capa.control_id).where(
            Capa.control_id.is_not(None), Capa.created_at >= since
        )
    ):
        add(control, f"CAPA {cid} on {control}")
    for fid, control in session.execute(
        select(AuditFinding.id, AuditFinding.control_id).where(
            AuditFinding.kind.in_(NONCONFORMITIES), AuditFinding.created_at >= since
        )
    ):
        add(control, f"finding {fid} on {control}")
    incidents = list(
        session.scalars(
            select(Incident.id).where(Incident.reported_at >= since, Incident.is_drill.is_(False))
        )
    )
    if incidents:
        shown = ", ".join(map(str, incidents[:5])) + (" ..." if len(incidents) > 5 else "")
        for control in policy.weighting.incident_requirements:
            add(control, f"incident(s) {shown}")
    return dict(out)


def _high_risk_systems(session: Session, policy: AuditPolicy) -> list[str]:
    return list(
        session.scalars(
            select(AISystem.name)
            .where(
                AISystem.risk_tier.in_(policy.weighting.high_risk_tiers),
                AISystem.lifecycle_stage != LifecycleStage.decommission,
            )
            .order_by(AISystem.name)
        )
    )


def yearly_areas(session: Session, policy: AuditPolicy, now: datetime) -> dict[str, str]:
    """Area id -> why it is audited every year rather than once per cycle."""
    since = now - timedelta(days=round(policy.weighting.nonconformity_months * 30.44))
    out: dict[str, list[str]] = defaultdict(list)
    high = _high_risk_systems(session, policy)
    if high:
        for a in policy.areas:
            if a.system_facing:
                out[a.id].append(f"touches high-risk systems ({', '.join(high)})")
    months = policy.weighting.nonconformity_months
    for area_id, items in _nonconformities(session, policy, since).items():
        out[area_id].append(f"nonconformities in the last {months} months ({'; '.join(items)})")
    return {k: "; ".join(v) for k, v in out.items()}


def _allocate(
    policy: AuditPolicy, periods: list[str], yearly: Mapping[str, str], cycle_years: int
) -> list[dict[str, str]]:
    """Per period, control id -> reason. Whole areas, biggest first, each into the least loaded
    period: yearly areas once in every year, the others once in the cycle."""
    members: dict[str, list[str]] = defaultdict(list)
    for r in auditable():
        area = policy.area_of(r.id)
        assert area is not None  # the policy's problems() guarantees it
        members[area.id].append(r.id)
    load = [0] * len(periods)
    out: list[dict[str, str]] = [{} for _ in periods]
    ppy = policy.periods_per_year

    def place(area_id: str, candidates: range, reason: str) -> None:
        i = min(candidates, key=lambda j: (load[j], j))
        for c in members[area_id]:
            out[i][c] = reason
        load[i] += len(members[area_id])

    by_size = sorted(members, key=lambda a: (-len(members[a]), a))
    for area_id in by_size:
        title = policy.area(area_id).title
        if area_id in yearly:
            for y in range(cycle_years):
                place(
                    area_id,
                    range(y * ppy, (y + 1) * ppy),
                    f"{title}: audited every year (year {y + 1} of {cycle_years}): "
                    f"{yearly[area_id]}",
                )
    for area_id in by_size:
        if area_id not in yearly:
            title = policy.area(area_id).title
            place(area_id, range(len(periods)), f"{title}: once per {cycle_years}-year cycle")
    return out


def _programme_md(p: ProgrammeOut, yearly: Mapping[str, str]) -> str:
    lines = [
        f"# Internal audit programme: {p.name}",
        "",
        f"- **cycle**: {p.cycle_years} year(s), {p.periods[0]} to {p.periods[-1]} "
        f"({p.starts_on:%Y-%m-%d} to {p.ends_on:%Y-%m-%d} UTC)",
        *(f"- **{line}**" for line in p.coverage.lines()),
        "",
        "## Audited every year",
        "",
        *([f"- {a}: {why}" for a, why in yearly.items()] or ["- none"]),
        "",
        "## Audits",
        "",
        "| period | requirements | areas | systems | auditor |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {a.period} | {', '.join(a.scope)} | {', '.join(a.areas)} | "
        f"{', '.join(a.systems) or '-'} | {a.auditor or 'unassigned'} |"
        for a in p.audits
    ]
    return "\n".join(lines) + "\n"


def plan_programme(
    uow: UnitOfWork,
    data: PlanIn | Mapping[str, Any] | None = None,
    actor: Actor | None = None,
    *,
    now: datetime | None = None,
) -> PlanResult:
    """Build the audit programme of a cycle: one planned audit per period with its scope (and
    why), sampled systems, a checklist, and an independent auditor where one exists. Idempotent
    by name: an existing programme of that name is returned as it is (`created` False)."""
    if not isinstance(data, PlanIn):
        data = PlanIn.model_validate(data or {})
    actor = actor or Actor.cli()
    at = _utc(now)
    settings = uow.settings
    policy, tz = audit_policy(settings), _tz(settings)
    ppy = policy.periods_per_year
    cycle_years = data.cycle_years or settings.audit_cycle_years
    start = data.start.upper() if data.start else period_of(at, ppy, tz)
    periods = periods_from(start, cycle_years * ppy, ppy)
    name = data.name or f"AIMS internal audit {periods[0]} to {periods[-1]}"
    try:
        with uow:
            s = uow.session
            existing = s.scalar(select(AuditProgramme).where(AuditProgramme.name == name))
            if existing is not None:
                return PlanResult(programme=_programme_out(s, existing, settings), created=False)
            yearly = yearly_areas(s, policy, at)
            allocation = _allocate(policy, periods, yearly, cycle_years)
            starts_on, _ = period_bounds(periods[0], ppy, tz)
            _, ends_on = period_bounds(periods[-1], ppy, tz)
            row = AuditProgramme(
                name=name,
                cycle_years=cycle_years,
                starts_on=starts_on,
                ends_on=ends_on,
                periods=periods,
                created_by=actor.who,
            )
            s.add(row)
            s.flush()
            order = {r.id: r.position for r in catalog.requirements()}
            unassigned: list[str] = []
            for i, (period, reasons) in enumerate(zip(periods, allocation, strict=True)):
                scope = sorted(reasons, key=lambda c: order[c])
                facing = any(policy.area(a).system_facing for a in _areas_of(policy, scope))
                systems = _sample_systems(s, policy, i) if facing else []
                audit = Audit(
                    programme=row,
                    period=period,
                    title=_title(policy, period, scope),
                    scope=scope,
                    scope_reasons={c: reasons[c] for c in scope},
                    systems=systems,
                    status=AuditStatus.planned,
                    checklist=_checklist(s, policy, scope, systems),
                    planned_start=period_bounds(period, ppy, tz)[0],
                )
                s.add(audit)
                s.flush()
                who, why = _pick_auditor(s, policy, audit, row.id)
                if who is None:
                    unassigned.append(f"audit {audit.id} ({period}): {why}")
                audit.auditor = who
            s.flush()
            out = _programme_out(s, row, settings)
            ev = evidence.append_in(
                uow,
                EvidenceIn(
                    subject=f"plan:audit-programme-{row.id}",
                    kind="audit-programme",
                    title=f"Internal audit programme: {name}"[:300],
                    text=_programme_md(out, yearly),
                    media_type="text/markdown; charset=utf-8",
                    idempotency_key=f"audit-programme-{row.id}",
                ),
                actor,
            )
            uow.audit(
                actor,
                "audit.programme-planned",
                f"plan:audit-programme-{row.id}",
                name=name,
                cycle_years=cycle_years,
                periods=periods,
                yearly=yearly,
                coverage=out.coverage.model_dump(),
                unassigned=unassigned,
                evidence_id=ev.id,
            )
            uow.commit()
    except IntegrityError:
        # A concurrent plan of the same name won the race: return that programme.
        with uow.read():
            return PlanResult(
                programme=_programme_out(
                    uow.session, _programme_by_name(uow.session, name), settings
                ),
                created=False,
            )
    evidence.sync_anchor(settings)
    return PlanResult(
        programme=out, created=True, yearly=yearly, unassigned=unassigned, evidence_id=ev.id
    )
