"""Reading audits and programmes: the rows as the boundary models, with coverage."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from aims_core import catalog
from aims_core.errors import NotFound
from aims_core.models import (
    AISystem,
    Audit,
    AuditFinding,
    AuditProgramme,
    AuditStatus,
    Control,
    ControlKind,
    as_utc,
)
from aims_core.rules.audit import AuditPolicy, audit_policy
from aims_core.services.audits.periods import _tz, period_bounds
from aims_core.services.audits.schemas import AuditOut, Coverage, FindingOut, ProgrammeOut
from aims_core.settings import Settings
from aims_core.uow import UnitOfWork, locked


def subject(audit_id: int) -> str:
    return f"audit:{audit_id}"


def _audit_query() -> Any:
    return select(Audit).options(
        selectinload(Audit.programme),
        selectinload(Audit.auditor),
        selectinload(Audit.findings),
    )


def _load(session: Session, audit_id: int, *, lock: bool = False) -> Audit:
    """The audit (NotFound names where to look); `lock`: locked until commit, for a change."""
    row = (
        locked(session, Audit, audit_id)
        if lock
        else session.scalar(_audit_query().where(Audit.id == audit_id))
    )
    if row is None:
        raise NotFound(f"no audit {audit_id} (see `aims audit list`)", "audit")
    return row


def _system_names(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(AISystem.id, AISystem.name).where(AISystem.id.in_(wanted)))
    return {i: n for i, n in rows}


def _finding_out(f: AuditFinding, systems: Mapping[int, str]) -> FindingOut:
    return FindingOut(
        id=f.id,
        audit_id=f.audit_id,
        control_id=f.control_id,
        kind=f.kind,
        statement=f.statement,
        system=systems.get(f.system_id) if f.system_id else None,
        evidence_id=f.evidence_id,
        capa_id=f.capa_id,
        recorded_by=f.recorded_by,
        created_at=as_utc(f.created_at),
    )


def _areas_of(policy: AuditPolicy, scope: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for c in scope:
        area = policy.area_of(c)
        if area is not None:
            seen.setdefault(area.id, None)
    return list(seen)


def _out(session: Session, row: Audit, policy: AuditPolicy, tz: ZoneInfo) -> AuditOut:
    systems = _system_names(session, (f.system_id for f in row.findings))
    _, end = period_bounds(row.period, policy.periods_per_year, tz)
    return AuditOut(
        id=row.id,
        programme_id=row.programme_id,
        programme=row.programme.name,
        period=row.period,
        title=row.title,
        scope=list(row.scope),
        scope_reasons=dict(row.scope_reasons),
        areas=_areas_of(policy, row.scope),
        systems=list(row.systems),
        auditor=row.auditor.email if row.auditor else None,
        auditor_name=row.auditor.name if row.auditor else None,
        status=row.status,
        checklist=list(row.checklist),
        request_id=row.request_id,
        report_evidence_id=row.report_evidence_id,
        flow_run_id=row.flow_run_id,
        planned_start=as_utc(row.planned_start),
        period_end=end,
        started_at=as_utc(row.started_at) if row.started_at else None,
        completed_at=as_utc(row.completed_at) if row.completed_at else None,
        findings=[_finding_out(f, systems) for f in row.findings],
    )


def _coverage(session: Session, audits: Iterable[Audit | AuditOut]) -> Coverage:
    kinds = dict(
        session.execute(
            select(Control.id, Control.kind).where(Control.kind != ControlKind.annex_objective)
        ).all()
    )
    covered = {c for a in audits for c in a.scope}
    clauses = [c for c, k in kinds.items() if k is ControlKind.clause]
    annex = [c for c, k in kinds.items() if k is ControlKind.annex_control]
    order = {r.id: r.position for r in catalog.requirements()}
    return Coverage(
        clauses_total=len(clauses),
        clauses_covered=sum(1 for c in clauses if c in covered),
        annex_total=len(annex),
        annex_covered=sum(1 for c in annex if c in covered),
        missing=sorted((c for c in kinds if c not in covered), key=lambda c: order.get(c, 0)),
    )


def _programme_out(session: Session, row: AuditProgramme, settings: Settings) -> ProgrammeOut:
    policy, tz = audit_policy(settings), _tz(settings)
    audits = [
        _out(session, a, policy, tz)
        for a in session.scalars(
            _audit_query().where(Audit.programme_id == row.id).order_by(Audit.planned_start)
        )
    ]
    return ProgrammeOut(
        id=row.id,
        name=row.name,
        cycle_years=row.cycle_years,
        starts_on=as_utc(row.starts_on),
        ends_on=as_utc(row.ends_on),
        periods=list(row.periods),
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        audits=audits,
        coverage=_coverage(session, [a for a in audits if a.status is not AuditStatus.cancelled]),
    )


def get_audit(uow: UnitOfWork, audit_id: int) -> AuditOut:
    with uow.read():
        return _out(
            uow.session, _load(uow.session, audit_id), audit_policy(uow.settings), _tz(uow.settings)
        )


def list_audits(uow: UnitOfWork, *, programme: str | None = None) -> list[AuditOut]:
    """Audits in the order they are planned; `programme` keeps one programme's (by name)."""
    policy, tz = audit_policy(uow.settings), _tz(uow.settings)
    with uow.read():
        s = uow.session
        q = _audit_query().order_by(Audit.planned_start, Audit.id)
        if programme is not None:
            q = q.where(Audit.programme_id == _programme_by_name(s, programme).id)
        return [_out(s, a, policy, tz) for a in s.scalars(q)]


def _programme_by_name(session: Session, name: str) -> AuditProgramme:
    row = session.scalar(select(AuditProgramme).where(AuditProgramme.name == name.strip()))
    if row is None:
        raise NotFound(f"no audit programme '{name}' (see `aims audit list`)", "programme")
    return row


def get_programme(uow: UnitOfWork, name: str) -> ProgrammeOut:
    with uow.read():
        return _programme_out(uow.session, _programme_by_name(uow.session, name), uow.settings)


def list_programmes(uow: UnitOfWork) -> list[ProgrammeOut]:
    with uow.read():
        s = uow.session
        rows = s.scalars(select(AuditProgramme).order_by(AuditProgramme.starts_on))
        return [_programme_out(s, r, uow.settings) for r in rows]


def run_name(a: AuditOut) -> str:
    """`audit 2026Q4: 9 requirements (auditor Olu Adeyemi)`: the run's name in the UI."""
    who = f"auditor {a.auditor_name}" if a.auditor_name else "no auditor yet"
    return f"audit {a.period}: {len(a.scope)} requirements ({who})"


def run_tags(a: AuditOut) -> list[str]:
    return ["audit", a.period, *(f"area:{x}" for x in a.areas)]
