"""Serious incidents (EU AI Act Art. 73): the rule only suggests; a person confirms the kind,
which starts its clocks counted from `aware_at`. Correcting `aware_at` (only on evidence) moves
every clock not yet met."""

from __future__ import annotations

from datetime import datetime

from aims_core.errors import InvalidInput
from aims_core.messages import fmt_utc
from aims_core.models import as_utc
from aims_core.rules.incident import incident_policy
from aims_core.services.clocks import (
    ClockOut,
    check_evidence,
    clock_out,
    clocks_of,
    move_clocks,
    start_clocks,
    timeline_event,
)
from aims_core.services.incidents.messages import _queue_serious
from aims_core.services.incidents.queries import _get, _out, _stored_facts
from aims_core.services.incidents.schemas import IncidentOut, _utc_now, not_in_future
from aims_core.uow import Actor, UnitOfWork


def confirm_serious(
    uow: UnitOfWork, incident_id: int, kind: str, actor: Actor, *, now: datetime | None = None
) -> list[ClockOut]:
    """A person confirms the incident as serious, of `kind`: the clocks whose rules apply start,
    counted from `aware_at` (not from now). Idempotent; a different kind later (health turned
    out a death) starts that kind's clocks too, and the earlier ones keep running."""
    policy = incident_policy(uow.settings)
    k = policy.classification.serious_kind(kind)
    at = as_utc(now) if now else _utc_now()
    with uow:
        s = uow.session
        incident = _get(s, incident_id, lock=True)
        previous = incident.serious_kind
        changed = previous != k.id
        if changed:
            incident.serious_kind = k.id
            incident.serious_confirmed_at = incident.serious_confirmed_at or at
        facts = _stored_facts(s, incident)
        if changed:
            plans = policy.clocks.plan("serious-confirmed", facts, policy.classification)
            timeline_event(
                s,
                incident.id,
                "serious-confirmed",
                f"confirmed serious: {k.title} ({k.basis})"
                + (f", was {previous}" if previous else "")
                + (
                    f"; clocks from aware at {fmt_utc(incident.aware_at)}: "
                    + ", ".join(p.rule.id for p in plans)
                    if plans
                    else "; no clock rule applies to it on its aware-at date"
                ),
                actor,
                data={"kind": k.id, "previous": previous, "rules": [p.rule.id for p in plans]},
                at=at,
            )
        before = {c.id for c in clocks_of(s, incident.id)}
        clocks = start_clocks(s, incident, "serious-confirmed", facts, policy, actor, now=at)
        started = [c for c in clocks if c.id not in before]
        if changed:
            uow.audit(
                actor,
                "incident.serious-confirmed",
                f"incident:{incident.id}",
                kind=k.id,
                previous=previous,
                clocks=[c.rule for c in started],
            )
            _queue_serious(s, incident, k.title, clocks, policy)
        out = [clock_out(c, incident, at) for c in clocks]
        uow.commit()
    return out


def correct_aware_at(
    uow: UnitOfWork, incident_id: int, aware_at: datetime, evidence_id: int, actor: Actor
) -> IncidentOut:
    """Correct when the organisation became aware, only with evidence about this incident (a
    deadline must not move on someone's word); every clock not yet met moves with it."""
    try:
        new = not_in_future(aware_at)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="aware_at") from None
    now = _utc_now()
    with uow:
        s = uow.session
        incident = _get(s, incident_id, lock=True)
        check_evidence(s, evidence_id, incident.id)
        reported = as_utc(incident.reported_at)
        if new > reported:
            raise InvalidInput(
                f"{new.isoformat()} is after the incident was reported ({reported.isoformat()}): "
                "the organisation was aware by then",
                field="aware_at",
            )
        old = as_utc(incident.aware_at)
        if new != old:
            incident.aware_at = new
            moved = move_clocks(s, incident, new, now)
            timeline_event(
                s,
                incident.id,
                "aware-at-corrected",
                f"aware at corrected from {fmt_utc(old)} to {fmt_utc(new)} (evidence "
                f"{evidence_id}); {len(moved)} clock(s) moved",
                actor,
                data={
                    "from": old.isoformat(),
                    "to": new.isoformat(),
                    "evidence_id": evidence_id,
                    "clocks": {str(c.id): as_utc(c.deadline).isoformat() for c, _ in moved},
                },
                at=now,
            )
            uow.audit(
                actor,
                "incident.aware-at-corrected",
                f"incident:{incident.id}",
                old=old.isoformat(),
                new=new.isoformat(),
                evidence_id=evidence_id,
                clocks=[c.id for c, _ in moved],
            )
        out = _out(s, incident, now)
        uow.commit()
    return out
