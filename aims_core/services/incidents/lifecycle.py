"""The response as it happens: lines on the timeline, the playbook run beside the record, and
status changes (which meet the internal SLA clocks a status meets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aims_core.errors import InvalidInput
from aims_core.models import IncidentStatus, as_utc
from aims_core.rules.incident import incident_policy
from aims_core.services.clocks import meet_on_status, timeline_event
from aims_core.services.incidents.queries import _get, _out, _timeline_out
from aims_core.services.incidents.schemas import IncidentOut, TimelineOut, _jsonable, _utc_now
from aims_core.uow import Actor, UnitOfWork


def add_timeline(
    uow: UnitOfWork,
    incident_id: int,
    kind: str,
    text: str,
    actor: Actor,
    *,
    data: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> TimelineOut:
    """Add a line (a playbook step, a message sent, a decision). Idempotent on the key: a
    re-run step that passes the same key gets the existing line back and writes nothing."""
    kind = kind.strip()
    if not kind or len(kind) > 40:
        raise InvalidInput("1 to 40 characters", field="kind")
    if not text.strip():
        raise InvalidInput("must not be blank", field="text")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
        raise InvalidInput("1 to 200 characters", field="idempotency_key")
    with uow:
        s = uow.session
        _get(s, incident_id)
        row, created = timeline_event(
            s,
            incident_id,
            kind,
            text.strip(),
            actor,
            data=_jsonable(data or {}),
            key=idempotency_key,
        )
        if row.incident_id != incident_id:
            raise InvalidInput(
                f"key already names a line of incident {row.incident_id}", field="idempotency_key"
            )
        if created:
            uow.audit(actor, "incident.timeline", f"incident:{incident_id}", kind=kind)
        out = _timeline_out(row)
        uow.commit()
    return out


def attach_run(uow: UnitOfWork, incident_id: int, flow_run_id: str, actor: Actor) -> IncidentOut:
    """The Prefect run handling the incident, beside the record (the UI and the record point at
    each other). The same run again changes nothing."""
    flow_run_id = flow_run_id.strip()
    if not 0 < len(flow_run_id) <= 64:
        raise InvalidInput("1 to 64 characters", field="flow_run_id")
    with uow:
        s = uow.session
        incident = _get(s, incident_id, lock=True)
        if incident.flow_run_id != flow_run_id:
            previous = incident.flow_run_id
            incident.flow_run_id = flow_run_id
            timeline_event(
                s,
                incident.id,
                "run",
                f"playbook run {flow_run_id} attached" + (f" (was {previous})" if previous else ""),
                actor,
                data={"flow_run_id": flow_run_id, "previous": previous},
            )
            uow.audit(
                actor, "incident.run-attached", f"incident:{incident.id}", flow_run_id=flow_run_id
            )
        out = _out(s, incident)
        uow.commit()
    return out


def _status(value: IncidentStatus | str) -> IncidentStatus:
    try:
        return IncidentStatus(value)
    except ValueError:
        known = ", ".join(x.value for x in IncidentStatus)
        raise InvalidInput(f"unknown status '{value}' (one of: {known})", field="status") from None


def set_status(
    uow: UnitOfWork,
    incident_id: int,
    status: IncidentStatus | str,
    actor: Actor,
    note: str = "",
    *,
    at: datetime | None = None,
) -> IncidentOut:
    """Move the incident on (closing stamps `closed_at`; another status after closed reopens
    it). Clocks met by the status (internal SLAs) are met; the same status again is a no-op.
    `at`: when it happened (a past business date); default now."""
    new = _status(status)
    policy = incident_policy(uow.settings)
    now = as_utc(at) if at is not None else _utc_now()
    with uow:
        s = uow.session
        incident = _get(s, incident_id, lock=True)
        old = incident.status
        if old is not new:
            incident.status = new
            incident.closed_at = now if new is IncidentStatus.closed else None
            timeline_event(
                s,
                incident.id,
                "status",
                f"status {old.value} → {new.value}" + (f": {note.strip()}" if note.strip() else ""),
                actor,
                data={"from": old.value, "to": new.value, "note": note.strip()},
                at=now,
            )
            met = meet_on_status(s, incident, new, policy, actor, now)
            uow.audit(
                actor,
                "incident.status",
                f"incident:{incident.id}",
                old=old.value,
                new=new.value,
                note=note.strip(),
                clocks=[c.id for c in met],
            )
        out = _out(s, incident, now)
        uow.commit()
    return out
