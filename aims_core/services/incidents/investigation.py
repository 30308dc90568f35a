"""Investigation (10.2): the root-cause analysis and the lessons learned, each kept on the
record with a line on the timeline."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aims_core.errors import InvalidInput
from aims_core.models import as_utc
from aims_core.services.clocks import timeline_event
from aims_core.services.incidents.queries import _get, _out
from aims_core.services.incidents.schemas import IncidentOut, RootCauseIn, _utc_now
from aims_core.services.inputs import validated
from aims_core.uow import Actor, UnitOfWork


def record_root_cause(
    uow: UnitOfWork,
    incident_id: int,
    rca: RootCauseIn | Mapping[str, Any],
    actor: Actor,
    *,
    at: datetime | None = None,
) -> IncidentOut:
    """Record the root-cause analysis (5 whys and/or fishbone). Recording the same analysis
    again writes nothing; a revised one replaces it, and the timeline keeps both."""
    rca = validated(RootCauseIn, rca)
    analysis = rca.model_dump()
    now = as_utc(at) if at is not None else _utc_now()
    with uow:
        s = uow.session
        incident = _get(s, incident_id, lock=True)
        current = {k: v for k, v in (incident.root_cause or {}).items() if k in analysis}
        if current != analysis:
            incident.root_cause = {
                **analysis,
                "recorded_by": actor.who,
                "recorded_at": now.isoformat(),
            }
            timeline_event(
                s,
                incident.id,
                "root-cause",
                f"root cause: {rca.root_cause}",
                actor,
                data=analysis,
                at=now,
            )
            uow.audit(
                actor,
                "incident.root-cause",
                f"incident:{incident.id}",
                whys=len(rca.whys),
                fishbone=sorted(rca.fishbone),
            )
        out = _out(s, incident, now)
        uow.commit()
    return out


def record_lessons(
    uow: UnitOfWork, incident_id: int, text: str, actor: Actor, *, at: datetime | None = None
) -> IncidentOut:
    """Lessons learned (10.2): what the organisation changes so it does not happen again."""
    lessons = text.strip()
    if not lessons:
        raise InvalidInput("must not be blank", field="text")
    if len(lessons) > 20_000:
        raise InvalidInput("at most 20000 characters", field="text")
    now = as_utc(at) if at is not None else _utc_now()
    with uow:
        s = uow.session
        incident = _get(s, incident_id, lock=True)
        if incident.lessons != lessons:
            incident.lessons = lessons
            timeline_event(s, incident.id, "lessons", f"lessons learned: {lessons}", actor, at=now)
            uow.audit(actor, "incident.lessons", f"incident:{incident.id}", chars=len(lessons))
        out = _out(s, incident, now)
        uow.commit()
    return out
