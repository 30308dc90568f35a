"""Reading CAPAs: one CAPA, listings, similar open ones, and what its run is named and waits for.

Reads only; every step (`lifecycle`, `closure`, `tracking`) loads its CAPA through `load_capa`
and answers with `capa_out`, so all channels see a CAPA the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from aims_core.errors import NotFound
from aims_core.models import ApprovalRequest, AuditEvent, Capa, CapaAction, CapaStatus, as_utc
from aims_core.services.capa.schemas import (
    ACTION_ADDED,
    OPEN,
    UNTIL_DUE,
    CapaActionOut,
    CapaOut,
    RootCauseOut,
    VerificationOut,
    WaitStep,
    closure_key,
    subject,
)
from aims_core.services.systems import get_system
from aims_core.uow import UnitOfWork

# --- reading -----------------------------------------------------------------------------------


def load_capa(session: Session, capa_id: int, *, lock: bool = False) -> Capa:
    """The CAPA with its owner, system and actions; `lock`: held until commit (a step)."""
    q = (
        select(Capa)
        .where(Capa.id == capa_id)
        .options(
            selectinload(Capa.owner),
            selectinload(Capa.system),
            selectinload(Capa.actions).selectinload(CapaAction.owner),
        )
    )
    if lock:
        q = q.with_for_update(of=Capa)
    row = session.scalar(q)
    if row is None:
        raise NotFound(f"no CAPA {capa_id} (see `aims capa list`)", "capa")
    return row


def analyses_of(row: Capa) -> list[dict[str, Any]]:
    """Every root cause analysis recorded, oldest first (kept as JSON on the row)."""
    return list((row.root_cause or {}).get("analyses", []))


def results_of(row: Capa) -> list[dict[str, Any]]:
    """Every effectiveness verification recorded, oldest first."""
    return list((row.verification or {}).get("results", []))


def marked_asks(session: Session, capa_id: int, action: str) -> set[int]:
    """The asks named (`ask_id`) by this CAPA's audit events of `action`."""
    details = session.scalars(
        select(AuditEvent.details).where(
            AuditEvent.subject == subject(capa_id), AuditEvent.action == action
        )
    )
    return {int(d["ask_id"]) for d in details if d and d.get("ask_id") is not None}


def applied_plan_asks(session: Session, capa_id: int) -> set[int]:
    """The plan asks whose action was added (`add_action` marks its audit event with the ask)."""
    return marked_asks(session, capa_id, ACTION_ADDED)


def current_analysis(row: Capa) -> dict[str, Any] | None:
    """The latest analysis of the current attempt, if there is one yet."""
    mine = [a for a in analyses_of(row) if a["attempt"] == row.attempt]
    return mine[-1] if mine else None


def _action_out(a: CapaAction) -> CapaActionOut:
    return CapaActionOut(
        id=a.id,
        capa_id=a.capa_id,
        title=a.title,
        owner=a.owner.email,
        due_at=as_utc(a.due_at),
        attempt=a.attempt,
        done_at=as_utc(a.done_at) if a.done_at else None,
        evidence_id=a.evidence_id,
        reminders_sent=a.reminders_sent,
        escalated_at=as_utc(a.escalated_at) if a.escalated_at else None,
    )


def capa_out(session: Session, row: Capa) -> CapaOut:
    """The row as callers see it (the closure request looked up once there is one)."""
    analyses = [RootCauseOut.model_validate(a) for a in analyses_of(row)]
    current = [a for a in analyses if a.attempt == row.attempt]
    results = [VerificationOut.model_validate(r) for r in results_of(row)]
    request_id = None
    if results and row.status in (CapaStatus.awaiting_closure, CapaStatus.closed):
        request_id = session.scalar(
            select(ApprovalRequest.id).where(
                ApprovalRequest.idempotency_key == closure_key(row.id, len(results))
            )
        )
    return CapaOut(
        id=row.id,
        idempotency_key=row.idempotency_key,
        title=row.title,
        description=row.description,
        source=row.source,
        system=row.system.name if row.system else None,
        incident_id=row.incident_id,
        control_id=row.control_id,
        owner=row.owner.email,
        status=row.status,
        containment=row.containment,
        attempt=row.attempt,
        root_cause=current[-1] if current else None,
        root_causes=analyses,
        actions=[_action_out(a) for a in row.actions],
        verify_after_days=row.verify_after_days,
        verification_due_at=as_utc(row.verification_due_at) if row.verification_due_at else None,
        verifications=results,
        closure_request_id=request_id,
        flow_run_id=row.flow_run_id,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        closed_at=as_utc(row.closed_at) if row.closed_at else None,
    )


def get_capa(uow: UnitOfWork, capa_id: int) -> CapaOut:
    with uow.read():
        return capa_out(uow.session, load_capa(uow.session, capa_id))


def capa_of_action(uow: UnitOfWork, action_id: int) -> int:
    """The CAPA an action belongs to."""
    with uow.read():
        capa_id = uow.session.scalar(select(CapaAction.capa_id).where(CapaAction.id == action_id))
    if capa_id is None:
        raise NotFound(f"no CAPA action {action_id} (see `aims capa show ID`)", "action")
    return capa_id


def listing() -> Any:
    """A select of CAPAs with what `capa_out` reads loaded up front."""
    return select(Capa).options(
        selectinload(Capa.owner),
        selectinload(Capa.system),
        selectinload(Capa.actions).selectinload(CapaAction.owner),
    )


def list_capas(
    uow: UnitOfWork, *, open_only: bool = False, system: str | None = None
) -> list[CapaOut]:
    """CAPAs, newest first; `open_only` leaves out closed ones, `system` keeps one system's."""
    with uow.read():
        s = uow.session
        q = listing().order_by(Capa.id.desc())
        if open_only:
            q = q.where(Capa.status.in_(OPEN))
        if system is not None:
            q = q.where(Capa.system_id == get_system(s, system).id)
        return [capa_out(s, row) for row in s.scalars(q)]


def similar_rows(session: Session, row: Capa) -> list[Capa]:
    """Other open CAPAs on the same system or control, oldest first."""
    same = []
    if row.system_id is not None:
        same.append(Capa.system_id == row.system_id)
    if row.control_id is not None:
        same.append(Capa.control_id == row.control_id)
    if not same:
        return []
    q = listing().where(Capa.id != row.id, Capa.status.in_(OPEN), or_(*same))
    return list(session.scalars(q.order_by(Capa.id)))


def similar_open(uow: UnitOfWork, capa_id: int) -> list[CapaOut]:
    """Other open CAPAs on the same system or control (10.2 b: do similar nonconformities exist
    or could they occur?), oldest first."""
    with uow.read():
        s = uow.session
        return [capa_out(s, r) for r in similar_rows(s, load_capa(s, capa_id))]


# --- the run's view of a CAPA ---------------------------------------------------------------


def run_name(c: CapaOut) -> str:
    """The run's name in the Prefect UI: `capa 7: <title>`."""
    title = " ".join(c.title.split())
    return f"capa {c.id}: {title if len(title) <= 80 else title[:79] + '…'}"


def run_tags(c: CapaOut) -> list[str]:
    """The run's tags for the UI's filters: `capa`, the system, the source."""
    return [t for t in ("capa", c.system, c.source) if t]


def wait_step(c: CapaOut, now: datetime | None = None) -> WaitStep | None:
    """The wait a CAPA's run is in, derived from the database alone (None: nothing to wait for
    from people here — closure goes through the approval service, closed is the end)."""
    base = f"capa-{c.id}-a{c.attempt}"
    match c.status:
        case CapaStatus.containment | CapaStatus.root_cause | CapaStatus.action_plan:
            return WaitStep(kind=c.status.value, prefix=f"{base}-{c.status.value}")
        case CapaStatus.tracking:
            return WaitStep(kind="tracking", prefix=f"{base}-tracking")
        case CapaStatus.verification:
            n = len(c.verifications) + 1
            if c.verification_due(now):
                return WaitStep(kind="verification", prefix=f"{base}-v{n}-verify")
            return WaitStep(kind=UNTIL_DUE, prefix=f"{base}-v{n}-{UNTIL_DUE}")
        case _:
            return None
