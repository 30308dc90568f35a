"""Reassessment triggers: a model update, a data-drift alert or a regulation change on a system.

Recording an event is one transaction that also voids the gate approval the risk policy names
(`AISystem.reapproval_stage`), so the record and the mark exist even when the engine that runs
the reassessment is down. Starting the run is the caller's next step (CLI, later the HTTP
intake), which then attaches the run's id here. No Prefect here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from aims_core.errors import NotFound, from_validation_error
from aims_core.models import LifecycleStage, RiskTier, SystemEvent, SystemEventKind
from aims_core.rules.risk import STAGE_ORDER, risk_policy
from aims_core.schemas import SystemName
from aims_core.services.systems import get_system
from aims_core.uow import Actor, UnitOfWork

__all__ = [
    "SystemEventIn",
    "SystemEventOut",
    "attach_run",
    "get_event",
    "list_events",
    "record_event",
]


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


class SystemEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    system: SystemName
    kind: Annotated[SystemEventKind, BeforeValidator(_lower)]
    details: Annotated[str, StringConstraints(max_length=5000)] = ""


class SystemEventOut(BaseModel):
    id: int
    system: str
    risk_tier: RiskTier
    lifecycle_stage: LifecycleStage
    kind: SystemEventKind
    details: str
    actor: str
    channel: str
    flow_run_id: str | None
    created_at: datetime
    reapproval_stage: LifecycleStage | None
    reapproval_marked: bool = False  # True when this very event voided the gate approval


def _out(e: SystemEvent, marked: bool = False) -> SystemEventOut:
    return SystemEventOut(
        id=e.id,
        system=e.system.name,
        risk_tier=e.system.risk_tier,
        lifecycle_stage=e.system.lifecycle_stage,
        kind=e.kind,
        details=e.details,
        actor=e.actor,
        channel=e.channel,
        flow_run_id=e.flow_run_id,
        created_at=e.created_at,
        reapproval_stage=e.system.reapproval_stage,
        reapproval_marked=marked,
    )


def record_event(
    uow: UnitOfWork,
    system: str,
    kind: SystemEventKind | str,
    details: str,
    actor: Actor,
) -> SystemEventOut:
    """Record the event and, where the risk policy says so, mark the gate for re-approval.

    An earlier gate already marked is kept (the stricter re-approval wins)."""
    try:
        data = SystemEventIn(system=system, kind=kind, details=details)
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    policy = risk_policy(uow.settings)
    with uow:
        s = uow.session
        sys_row = get_system(s, data.system)
        event = SystemEvent(
            system=sys_row,
            kind=data.kind,
            details=data.details,
            actor=actor.who,
            channel=actor.channel,
        )
        s.add(event)
        s.flush()
        subject = f"system:{sys_row.name}"
        uow.audit(
            actor,
            "system.event-recorded",
            subject,
            event_id=event.id,
            kind=data.kind.value,
            details=data.details,
        )
        gate = policy.reopened_gate(data.kind, sys_row.risk_tier, sys_row.lifecycle_stage)
        current = sys_row.reapproval_stage
        marked = False
        if gate is not None and (
            current is None or STAGE_ORDER.index(gate) < STAGE_ORDER.index(current)
        ):
            marked = True
            sys_row.reapproval_stage = gate
            s.flush()
            uow.audit(
                actor,
                "system.reapproval-required",
                subject,
                gate=gate.value,
                previous=current.value if current else None,
                event_id=event.id,
                kind=data.kind.value,
                risk_tier=sys_row.risk_tier.value,
                lifecycle_stage=sys_row.lifecycle_stage.value,
            )
        out = _out(event, marked)
        uow.commit()
    return out


def attach_run(uow: UnitOfWork, event_id: int, flow_run_id: str, actor: Actor) -> SystemEventOut:
    """Link the event to the assessment run it started; the first run attached is kept."""
    with uow:
        event = _load(uow, event_id)
        if event.flow_run_id is None:
            event.flow_run_id = str(flow_run_id)
            uow.session.flush()
            uow.audit(
                actor,
                "system.event-run-started",
                f"system:{event.system.name}",
                event_id=event.id,
                flow_run_id=str(flow_run_id),
            )
        out = _out(event)
        uow.commit()
    return out


def _load(uow: UnitOfWork, event_id: int) -> SystemEvent:
    event = uow.session.scalar(
        select(SystemEvent)
        .where(SystemEvent.id == event_id)
        .options(selectinload(SystemEvent.system))
    )
    if event is None:
        raise NotFound(f"no system event {event_id}", field="event")
    return event


def get_event(uow: UnitOfWork, event_id: int) -> SystemEventOut:
    with uow.read():
        return _out(_load(uow, event_id))


def list_events(uow: UnitOfWork, system: str | None = None) -> list[SystemEventOut]:
    """Events, newest first; those without a run are assessments still to be started."""
    with uow.read():
        q = select(SystemEvent).options(selectinload(SystemEvent.system))
        if system is not None:
            q = q.where(SystemEvent.system_id == get_system(uow.session, system).id)
        return [_out(e) for e in uow.session.scalars(q.order_by(SystemEvent.id.desc()))]
