"""Reading incidents: one record with its timeline and clocks, the list, and the facts the
clock rules run on."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.errors import NotFound
from aims_core.models import Incident, IncidentEvent, IncidentStatus, RiskTier, as_utc
from aims_core.rules.incident import IncidentFacts
from aims_core.services.clocks import clock_out, clocks_of
from aims_core.services.incidents.schemas import IncidentOut, TimelineOut
from aims_core.services.systems import get_system
from aims_core.uow import UnitOfWork, locked


def _timeline_out(e: IncidentEvent) -> TimelineOut:
    return TimelineOut(
        id=e.id, at=as_utc(e.at), kind=e.kind, text=e.text, data=dict(e.data or {}), actor=e.actor
    )


def _out(session: Session, i: Incident, now: datetime | None = None) -> IncidentOut:
    events = session.scalars(
        select(IncidentEvent).where(IncidentEvent.incident_id == i.id).order_by(IncidentEvent.id)
    )
    return IncidentOut(
        id=i.id,
        system=i.system.name,
        system_tier=i.system.risk_tier.value,
        title=i.title,
        summary=i.summary,
        severity=i.severity,
        category=i.category,
        status=i.status,
        source=i.source,
        fingerprint=i.fingerprint,
        aware_at=as_utc(i.aware_at),
        reported_at=as_utc(i.reported_at),
        serious_suggested=list(i.serious_suggested or []),
        serious_kind=i.serious_kind,
        serious_confirmed_at=as_utc(i.serious_confirmed_at) if i.serious_confirmed_at else None,
        is_drill=i.is_drill,
        playbook=i.playbook,
        root_cause=dict(i.root_cause or {}),
        lessons=i.lessons,
        flow_run_id=i.flow_run_id,
        timeline=[_timeline_out(e) for e in events],
        clocks=[clock_out(c, i, now) for c in clocks_of(session, i.id)],
    )


def _get(session: Session, incident_id: int, *, lock: bool = False) -> Incident:
    """The incident; `lock`: locked until commit, NO KEY UPDATE, since timeline and clock rows
    inserted meanwhile reference it."""
    if lock:
        incident = locked(session, Incident, incident_id, key_share=True)
    else:
        incident = session.scalar(select(Incident).where(Incident.id == incident_id))
    if incident is None:
        raise NotFound(f"no incident {incident_id} (see `aims incident list`)", field="incident")
    return incident


def get_incident(uow: UnitOfWork, incident_id: int) -> IncidentOut:
    with uow.read():
        return _out(uow.session, _get(uow.session, incident_id))


def list_incidents(
    uow: UnitOfWork, *, open_only: bool = False, system: str | None = None
) -> list[IncidentOut]:
    """Newest first; `open_only`: every status but closed."""
    with uow.read():
        s = uow.session
        stmt = select(Incident)
        if open_only:
            stmt = stmt.where(Incident.status != IncidentStatus.closed)
        if system is not None:
            stmt = stmt.where(Incident.system_id == get_system(s, system).id)
        return [_out(s, i) for i in s.scalars(stmt.order_by(Incident.id.desc()))]


def _facts(
    incident: Incident,
    tier: RiskTier,
    labels: Mapping[str, str],
    harm: list[str] | tuple[str, ...],
) -> IncidentFacts:
    return IncidentFacts(
        category=incident.category,
        severity=incident.severity,
        tier=tier,
        aware_at=as_utc(incident.aware_at),
        labels=dict(labels),
        harm=tuple(harm),
        serious_kind=incident.serious_kind,
    )


def _stored_facts(session: Session, incident: Incident) -> IncidentFacts:
    """The facts of a recorded incident: labels and harm signals are kept on its first line."""
    first = session.scalar(
        select(IncidentEvent)
        .where(IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "reported")
        .order_by(IncidentEvent.id)
        .limit(1)
    )
    data = dict(first.data or {}) if first else {}
    return _facts(
        incident,
        incident.system.risk_tier,
        {str(k): str(v) for k, v in (data.get("labels") or {}).items()},
        [str(h) for h in data.get("harm") or []],
    )
