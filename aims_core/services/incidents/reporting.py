"""Reporting an incident: every channel (CLI, HTTP intake, Alertmanager, the response flow,
drills) records through `report`, so an incident is classified the same way wherever it comes
from; a repeat of an open alert attaches to its incident, and an alert's resolution is a line on
its timeline."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from aims_core.models import Incident, IncidentEvent, IncidentStatus, as_utc
from aims_core.rules.incident import (
    Classification,
    ResolvedCategory,
    Suggestion,
    incident_policy,
)
from aims_core.services.clocks import start_clocks, timeline_event
from aims_core.services.incidents.messages import _confirm_hint, _queue_opened
from aims_core.services.incidents.queries import _facts, _out
from aims_core.services.incidents.schemas import (
    IncidentIn,
    IncidentOut,
    ReportResult,
    _jsonable,
    _utc_now,
)
from aims_core.services.inputs import validated
from aims_core.services.systems import get_system
from aims_core.uow import Actor, UnitOfWork


def _serialise_fingerprint(session: Session, system_id: int, fingerprint: str) -> None:
    """One reporter at a time per (system, fingerprint) until commit, so concurrent repeats of
    one alert cannot each open an incident. SQLite's write transactions are already serial."""
    if session.get_bind().dialect.name == "sqlite":
        return
    digest = hashlib.sha256(f"incident:{system_id}:{fingerprint}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _open_with_fingerprint(
    session: Session, fingerprint: str, *, system_id: int | None = None, is_drill: bool = False
) -> Incident | None:
    stmt = select(Incident).where(
        Incident.fingerprint == fingerprint,
        Incident.status != IncidentStatus.closed,
        Incident.is_drill.is_(is_drill),
    )
    if system_id is not None:
        stmt = stmt.where(Incident.system_id == system_id)
    return session.scalar(
        stmt.order_by(Incident.id.desc()).limit(1).with_for_update(key_share=True)
    )


def _suggest(
    cls: Classification, data: IncidentIn, cat: ResolvedCategory, tier: str
) -> list[Suggestion]:
    return cls.suggest_serious(
        title=data.title,
        summary=data.summary,
        category=cat.stored,
        severity=data.severity,
        tier=tier,
        labels=data.labels,
        harm=data.harm,
    )


def _repeat(
    uow: UnitOfWork,
    incident: Incident,
    data: IncidentIn,
    cls: Classification,
    cat: ResolvedCategory,
    actor: Actor,
    now: datetime,
) -> None:
    """A repeat of an open alert: one timeline line; new serious suggestions are added."""
    s = uow.session
    suggestions = _suggest(cls, data, cat, incident.system.risk_tier.value)
    known = list(incident.serious_suggested or [])
    new = [x for x in suggestions if x.kind not in known]
    if new:
        order = cls.kind_ids
        incident.serious_suggested = sorted({*known, *(x.kind for x in new)}, key=order.index)
    earlier = s.scalar(
        select(func.count())
        .select_from(IncidentEvent)
        .where(IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "alert-repeat")
    )
    repeats = (earlier or 0) + 1
    line = f"repeat {repeats} of the alert ({data.severity}, via {data.source})"
    if data.severity != incident.severity:
        line += f"; it now says {data.severity}, the incident stays {incident.severity}"
    if new:
        line += "; likely serious: " + ", ".join(f"{x.kind} ({x.reason})" for x in new)
    timeline_event(
        s,
        incident.id,
        "alert-repeat",
        line,
        actor,
        data={
            "source": data.source,
            "severity": data.severity,
            "title": data.title,
            "labels": data.labels,
            "harm": data.harm,
            "aware_at": data.aware_at.isoformat() if data.aware_at else None,
        },
        at=now,
    )
    uow.audit(
        actor,
        "incident.repeat",
        f"incident:{incident.id}",
        fingerprint=data.fingerprint,
        repeat=repeats,
        serious_suggested=[x.kind for x in new],
    )


def report(
    uow: UnitOfWork,
    data: IncidentIn | Mapping[str, Any],
    actor: Actor,
    *,
    notify: bool = True,
    at: datetime | None = None,
) -> ReportResult:
    """Record an incident (or attach a repeat), classify it, start its report-time clocks and
    queue its first notifications, in one transaction. Bad input: InvalidInput naming the field,
    nothing written; an unknown system: NotFound on `system`. `at`: when it was reported (a
    past business date, e.g. the demo's history); default now."""
    data = validated(IncidentIn, data)
    policy = incident_policy(uow.settings)
    cls = policy.classification
    sev = cls.severity(data.severity)
    cat = cls.resolve_category(data.category)
    now = as_utc(at) if at is not None else _utc_now()
    with uow:
        s = uow.session
        system = get_system(s, data.system)
        if data.fingerprint:
            _serialise_fingerprint(s, system.id, data.fingerprint)
            existing = _open_with_fingerprint(
                s, data.fingerprint, system_id=system.id, is_drill=data.is_drill
            )
            if existing is not None:
                _repeat(uow, existing, data, cls, cat, actor, now)
                out = _out(s, existing, now)
                uow.commit()
                return ReportResult(incident=out, created=False)
        suggestions = _suggest(cls, data, cat, system.risk_tier.value)
        incident = Incident(
            system_id=system.id,
            title=data.title,
            summary=data.summary,
            severity=sev.id,
            category=cat.stored,
            status=IncidentStatus.open,
            source=data.source,
            fingerprint=data.fingerprint,
            aware_at=data.aware_at or now,
            reported_at=now,
            serious_suggested=[x.kind for x in suggestions],
            is_drill=data.is_drill,
            playbook=cat.playbook,
            root_cause={},
            lessons="",
            reported_by=actor.who,
        )
        s.add(incident)
        s.flush()
        timeline_event(
            s,
            incident.id,
            "reported",
            f"{'drill ' if data.is_drill else ''}{sev.id} {cat.stored} incident reported via "
            f"{data.source} by {actor.who}; playbook {cat.playbook}",
            actor,
            data={
                "source": data.source,
                "severity": sev.id,
                "category": cat.stored,
                "playbook": cat.playbook,
                "fingerprint": data.fingerprint,
                "labels": data.labels,
                "harm": data.harm,
            },
            at=now,
        )
        if suggestions:
            timeline_event(
                s,
                incident.id,
                "serious-suggested",
                "likely serious incident: "
                + "; ".join(f"{x.kind} ({x.reason})" for x in suggestions)
                + ". A person confirms with "
                + _confirm_hint(incident.id, incident.serious_suggested),
                actor,
                data={"suggestions": [{"kind": x.kind, "reason": x.reason} for x in suggestions]},
                at=now,
            )
        facts = _facts(incident, system.risk_tier, data.labels, data.harm)
        start_clocks(s, incident, "reported", facts, policy, actor, now=now)
        uow.audit(
            actor,
            "incident.reported",
            f"incident:{incident.id}",
            system=system.name,
            severity=sev.id,
            category=cat.stored,
            source=data.source,
            fingerprint=data.fingerprint,
            aware_at=as_utc(incident.aware_at).isoformat(),
            serious_suggested=incident.serious_suggested,
            is_drill=data.is_drill,
        )
        if notify:
            _queue_opened(s, incident, sev, cat, suggestions, cls)
        out = _out(s, incident, now)
        uow.commit()
    return ReportResult(incident=out, created=True)


def resolve_alert(
    uow: UnitOfWork,
    fingerprint: str,
    actor: Actor,
    data: Mapping[str, Any] | BaseModel | None = None,
) -> IncidentOut | None:
    """An alert says it is resolved: a line on the open incident's timeline. It does not close
    the incident (closure is a decision, after investigation). None if no open incident has it.
    `data` (the alert, as a mapping or a model) is kept on the line; a re-sent resolution with
    the same `endsAt` (top level or in its labels) writes nothing."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    data = dict(data or {})
    with uow:
        s = uow.session
        incident = _open_with_fingerprint(s, fingerprint) or _open_with_fingerprint(
            s, fingerprint, is_drill=True
        )
        if incident is None:
            return None
        labels = data.get("labels") if isinstance(data.get("labels"), Mapping) else {}
        ends = next(
            (d[k] for d in (data, labels) for k in ("endsAt", "ends_at") if d and d.get(k)), None
        )
        key = None
        if ends:
            digest = hashlib.sha256(f"{fingerprint}|{ends}".encode()).hexdigest()[:32]
            key = f"incident-{incident.id}-resolved-{digest}"
        _, created = timeline_event(
            s,
            incident.id,
            "alert-resolved",
            "the alert reports resolved; the incident stays "
            f"{incident.status.value} until it is closed",
            actor,
            data=_jsonable(data),
            key=key,
        )
        if created:
            uow.audit(actor, "incident.alert-resolved", f"incident:{incident.id}", ends_at=ends)
        out = _out(s, incident)
        uow.commit()
    return out
