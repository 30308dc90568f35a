"""The audit itself: start, findings (a nonconformity opens its CAPA), fieldwork complete."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.errors import AimsError, Conflict, InvalidInput, NotFound
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import (
    AISystem,
    Audit,
    AuditFinding,
    AuditStatus,
    Control,
    Evidence,
    Person,
    RaciActivity,
)
from aims_core.rules.audit import AuditPolicy, audit_policy
from aims_core.services import capa as capas
from aims_core.services import evidence
from aims_core.services.audits.checklist import _checklist
from aims_core.services.audits.independence import conflicts
from aims_core.services.audits.periods import _tz, _utc
from aims_core.services.audits.queries import _finding_out, _load, _out, _system_names, subject
from aims_core.services.audits.schemas import NONCONFORMITIES, AuditOut, FindingIn, FindingOut
from aims_core.services.directory import role_holders
from aims_core.services.runs import attach_run
from aims_core.services.systems import get_system
from aims_core.uow import Actor, UnitOfWork, locked


def _startable(session: Session, policy: AuditPolicy, row: Audit) -> Person:
    """The auditor of a planned audit, if it may start (Conflict naming why not)."""
    if row.auditor is None:
        raise Conflict(
            f"audit {row.id} has no auditor: `aims audit assign {row.id} --auditor EMAIL`",
            "auditor",
        )
    problems = conflicts(session, policy, row, row.auditor)
    if problems:
        raise Conflict(
            f"{row.auditor.email} is no longer independent for audit {row.id}: "
            f"{'; '.join(problems)} (assign another auditor)",
            "auditor",
        )
    return row.auditor


def check_startable(uow: UnitOfWork, audit_id: int) -> AuditOut:
    """The audit, if a run may start for it now (before starting one: no run left failing)."""
    policy, tz = audit_policy(uow.settings), _tz(uow.settings)
    with uow.read():
        row = _load(uow.session, audit_id)
        if row.status in (AuditStatus.closed, AuditStatus.cancelled):
            raise Conflict(f"audit {row.id} is {row.status.value}: nothing to run", "audit")
        if row.status is AuditStatus.planned:
            _startable(uow.session, policy, row)
        return _out(uow.session, row, policy, tz)


def start_audit(
    uow: UnitOfWork,
    audit_id: int,
    flow_run_id: str | None,
    actor: Actor,
    *,
    now: datetime | None = None,
) -> AuditOut:
    """Fieldwork begins: planned → in-progress, the checklist's records refreshed, the run
    attached. Needs an independent auditor (checked again: RACI may have changed). A repeat,
    or a later run of an audit in progress, only attaches the run."""
    policy, tz = audit_policy(uow.settings), _tz(uow.settings)
    with uow:
        s = uow.session
        row = _load(s, audit_id, lock=True)
        if row.status is AuditStatus.planned:
            auditor = _startable(s, policy, row)
            row.status = AuditStatus.in_progress
            row.started_at = _utc(now)
            row.checklist = _checklist(s, policy, list(row.scope), list(row.systems))
            uow.audit(
                actor,
                "audit.started",
                subject(row.id),
                auditor=auditor.email,
                flow_run_id=flow_run_id,
            )
        elif row.status in (AuditStatus.closed, AuditStatus.cancelled):
            raise Conflict(f"audit {row.id} is {row.status.value}", "audit")
        attach_run(uow, actor, row, flow_run_id, "audit.run-attached", subject(row.id))
        s.flush()
        out = _out(s, row, policy, tz)
        uow.commit()
    return out


def _finding_md(a: Audit, f: AuditFinding, system: str | None, title: str, seen: str | None) -> str:
    return (
        f"# Audit {a.id} ({a.period}) finding {f.id}: {f.kind.value}\n\n"
        f"- **requirement**: {f.control_id} {title}\n"
        f"- **system**: {system or '-'}\n"
        f"- **auditor**: {a.auditor.email if a.auditor else '-'}\n"
        f"- **recorded by**: {f.recorded_by}\n\n{f.statement}\n"
        + (f"\n## Evidence seen\n\n{seen}\n" if seen else "")
    )


def record_finding(
    uow: UnitOfWork,
    audit_id: int,
    data: FindingIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
    key: str | None = None,
) -> FindingOut:
    """Record a finding during fieldwork (the requirement must be in scope), kept as
    `audit-finding` evidence (the file given, else the statement). A major or minor
    nonconformity opens its CAPA at once (`ensure_capas`). `now`: when it was found (a past
    business date); default now. `key`: the finding's evidence key, so a repeat (e.g. a later
    run applying the same answered ask) returns the finding already recorded."""
    if not isinstance(data, FindingIn):
        data = FindingIn.model_validate(data)
    if data.evidence is not None and not data.evidence.is_file():
        raise InvalidInput(f"no file {data.evidence}", "evidence")
    with uow:
        s = uow.session
        row = _load(s, audit_id, lock=True)
        if key is not None:
            done = s.scalar(
                select(AuditFinding)
                .join(Evidence, Evidence.id == AuditFinding.evidence_id)
                .where(Evidence.idempotency_key == key, AuditFinding.audit_id == row.id)
            )
            if done is not None:
                return _finding_out(done, _system_names(s, [done.system_id]))
        if row.status is not AuditStatus.in_progress:
            raise Conflict(
                f"audit {row.id} is {row.status.value}: findings are recorded during fieldwork"
                + (f" (`aims audit start {row.id}`)" if row.status is AuditStatus.planned else ""),
                "audit",
            )
        control = s.get(Control, data.control)
        if control is None:
            raise NotFound(
                f"no clause or control '{data.control}' (see `aims catalog list`)", "control"
            )
        if control.id not in row.scope:
            raise InvalidInput(
                f"{control.id} is not in the scope of audit {row.id} ({row.period}: "
                f"{', '.join(row.scope)})",
                "control",
            )
        system = get_system(s, data.system) if data.system else None
        f = AuditFinding(
            audit_id=row.id,
            control_id=control.id,
            kind=data.kind,
            statement=data.statement,
            system_id=system.id if system else None,
            recorded_by=actor.who,
            created_at=_utc(now),
        )
        s.add(f)
        s.flush()
        head = f"Audit {row.period} finding {f.id} ({f.kind.value}, {control.id})"
        content: dict[str, Any] = (
            {"file": data.evidence}
            if data.evidence is not None
            else {
                "text": _finding_md(
                    row, f, system.name if system else None, control.title, data.evidence_note
                ),
                "media_type": "text/markdown; charset=utf-8",
            }
        )
        ev = evidence.append_in(
            uow,
            EvidenceIn(
                subject=f"finding:{f.id}",
                kind="audit-finding",
                title=f"{head}: {' '.join(data.statement.split())}"[:300],
                idempotency_key=key or f"audit-{row.id}-finding-{f.id}",
                **content,
            ),
            actor,
        )
        f.evidence_id = ev.id
        uow.audit(
            actor,
            "audit.finding-recorded",
            subject(row.id),
            finding_id=f.id,
            control_id=control.id,
            kind=f.kind.value,
            system=system.name if system else None,
            evidence_id=ev.id,
            evidence_seen=data.evidence_note,
        )
        uow.commit()
        finding_id = f.id
    evidence.sync_anchor(uow.settings)
    if data.kind in NONCONFORMITIES:
        ensure_capas(uow, audit_id, actor, now=now)
    with uow.read():
        f = uow.session.get(AuditFinding, finding_id)
        assert f is not None
        return _finding_out(f, _system_names(uow.session, [f.system_id]))


def _capa_owner(session: Session, policy: AuditPolicy, f: AuditFinding) -> str:
    """The sampled system's owner; else the Accountable of the area's activity; else a holder
    of the policy's CAPA owner role."""
    if f.system_id is not None:
        system = session.get(AISystem, f.system_id)
        assert system is not None
        return system.owner.email
    area = policy.area_of(f.control_id)
    for activity in area.activities if area else []:
        raci = session.scalar(
            select(RaciActivity).where(
                RaciActivity.activity == activity, RaciActivity.scope == "org"
            )
        )
        if raci is not None and raci.accountable.active:
            return raci.accountable.email
    holder = next(iter(role_holders(session, [policy.capa_owner_role])), None)
    if holder is None:
        raise AimsError(
            f"nobody can own the CAPA of finding {f.id}: no system named, no RACI for the "
            f"area's activities, nobody holds {policy.capa_owner_role}",
            "capa_owner",
        )
    return holder.email


def ensure_capas(
    uow: UnitOfWork, audit_id: int, actor: Actor, *, now: datetime | None = None
) -> list[int]:
    """Every major/minor nonconformity of the audit has its CAPA (opened once: idempotent on
    `audit-finding-<id>`), linked both ways. Returns the CAPA ids opened or found."""
    policy = audit_policy(uow.settings)
    with uow.read():
        s = uow.session
        a = _load(s, audit_id)
        todo = []
        for f in a.findings:
            if f.kind in NONCONFORMITIES and f.capa_id is None:
                control = s.get(Control, f.control_id)
                system = s.get(AISystem, f.system_id) if f.system_id else None
                todo.append(
                    (
                        f.id,
                        capas.CapaIn(
                            title=f"Audit {a.period} finding {f.id}: "
                            f"{' '.join(f.statement.split())}"[:300],
                            description=(
                                f"{f.kind.value} found by internal audit {a.id} ({a.title}) "
                                f"against {f.control_id} {control.title if control else ''}, "
                                f"auditor {a.auditor.email if a.auditor else '-'}.\n\n{f.statement}"
                            ),
                            source="audit-finding",
                            system=system.name if system else None,
                            control_id=f.control_id,
                            owner=_capa_owner(s, policy, f),
                            idempotency_key=f"audit-finding-{f.id}",
                        ),
                    )
                )
        ids = [f.capa_id for f in a.findings if f.capa_id is not None]
    for finding_id, spec in todo:
        c = capas.open_capa(uow, spec, actor, now=now)
        with uow:
            f = locked(uow.session, AuditFinding, finding_id)
            assert f is not None
            if f.capa_id is None:
                f.capa_id = c.id
                uow.audit(
                    actor,
                    "audit.finding-capa",
                    subject(audit_id),
                    finding_id=finding_id,
                    capa_id=c.id,
                )
                uow.commit()
        ids.append(c.id)
    return ids


def complete_fieldwork(
    uow: UnitOfWork, audit_id: int, actor: Actor, *, now: datetime | None = None
) -> AuditOut:
    """Fieldwork done: in-progress → reporting (the run renders the report and asks for its
    approval). Every nonconformity has its CAPA first. A repeat changes nothing."""
    policy, tz = audit_policy(uow.settings), _tz(uow.settings)
    with uow.read():
        status = _load(uow.session, audit_id).status
    if status is AuditStatus.in_progress:
        ensure_capas(uow, audit_id, actor, now=now)
    with uow:
        s = uow.session
        row = _load(s, audit_id, lock=True)
        if row.status is AuditStatus.in_progress:
            row.status = AuditStatus.reporting
            row.completed_at = _utc(now)
            row.request_id = None
            counts = Counter(f.kind.value for f in row.findings)
            uow.audit(actor, "audit.fieldwork-completed", subject(row.id), findings=dict(counts))
        elif row.status is not AuditStatus.reporting:
            raise Conflict(
                f"audit {row.id} is {row.status.value}: fieldwork is completed when it is "
                "in-progress",
                "audit",
            )
        s.flush()
        out = _out(s, row, policy, tz)
        uow.commit()
    return out
