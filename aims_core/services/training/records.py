"""Changing competence: a role requires a training, a person completed one (7.2, 7.3).

Requirements live in the database (a role requires a training; every holder must have it
current). Records are one completion per row with `training-record` evidence on
`person:<email>`; the newest per (person, training) counts, so renewing is recording again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import select

from aims_core.errors import Conflict, InvalidInput
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import Role, TrainingRecord, TrainingRequirement, as_utc
from aims_core.rules.training import TrainingCatalog, training_catalog
from aims_core.services import evidence
from aims_core.services.people import get_person
from aims_core.services.training.competence import required
from aims_core.services.training.days import day_start, local_day, now_utc, zone_of
from aims_core.services.training.queries import known_role
from aims_core.services.training.schemas import RecordIn, RecordOut, RequirementIn, RequirementOut
from aims_core.uow import Actor, UnitOfWork

__all__ = ["EVIDENCE_KIND", "record", "record_in", "require", "require_defaults", "require_in"]

EVIDENCE_KIND: Final = "training-record"


# --- requirements ------------------------------------------------------------------------------


def require_in(
    uow: UnitOfWork, data: RequirementIn, actor: Actor, cat: TrainingCatalog
) -> RequirementOut:
    s = uow.session
    role = known_role(s, data.role)
    spec = cat.get(data.training)
    days = data.validity_days or spec.validity_days
    row = s.scalar(
        select(TrainingRequirement).where(
            TrainingRequirement.role_id == role, TrainingRequirement.training == spec.id
        )
    )
    if row is not None and row.validity_days == days and row.title == spec.title:
        return RequirementOut(role=role, training=spec.id, title=spec.title, validity_days=days)
    if row is None:
        s.add(
            TrainingRequirement(
                role_id=role,
                training=spec.id,
                title=spec.title,
                validity_days=days,
                created_by=actor.who,
            )
        )
        action, previous = "training.required", None
    else:
        action, previous = "training.requirement-changed", row.validity_days
        row.validity_days, row.title = days, spec.title
    s.flush()
    uow.audit(
        actor,
        action,
        f"training:{spec.id}",
        role=role,
        training=spec.id,
        validity_days=days,
        previous_validity_days=previous,
    )
    return RequirementOut(
        role=role, training=spec.id, title=spec.title, validity_days=days, changed=True
    )


def require(
    uow: UnitOfWork, data: RequirementIn | Mapping[str, Any], actor: Actor
) -> RequirementOut:
    """Every holder of `role` must have `training` current. Idempotent; a new validity replaces
    the old one (audited) and applies to records made from then on."""
    if not isinstance(data, RequirementIn):
        data = RequirementIn.model_validate(data)
    cat = training_catalog(uow.settings)
    with uow:
        out = require_in(uow, data, actor, cat)
        uow.commit()
    return out


def require_defaults(uow: UnitOfWork, actor: Actor) -> list[RequirementOut]:
    """The catalog's default requirement per role, in one transaction (idempotent: only what
    is missing or differs changes). Roles the database does not know are skipped."""
    cat = training_catalog(uow.settings)
    with uow:
        known = set(uow.session.scalars(select(Role.id)))
        out = [
            require_in(uow, RequirementIn(role=role, training=t), actor, cat)
            for role, trainings in cat.requirements.items()
            if role in known
            for t in trainings
        ]
        uow.commit()
    return out


# --- records -----------------------------------------------------------------------------------


def _record_out(r: TrainingRecord, title: str, zone: ZoneInfo, *, replayed: bool) -> RecordOut:
    return RecordOut(
        id=r.id,
        email=r.person.email,
        training=r.training,
        title=title,
        completed_at=as_utc(r.completed_at),
        expires_at=as_utc(r.expires_at),
        expires_on=local_day(r.expires_at, zone),
        evidence_id=r.evidence_id,
        recorded_by=r.recorded_by,
        replayed=replayed,
    )


def record_in(
    uow: UnitOfWork, data: RecordIn, actor: Actor, cat: TrainingCatalog, now: datetime
) -> RecordOut:
    """Record inside the caller's transaction (the caller commits and syncs the anchor)."""
    s = uow.session
    zone = zone_of(uow.settings)
    spec = cat.get(data.training)
    person = get_person(s, data.email, "email")
    today = local_day(now, zone)
    if data.completed > today:
        raise InvalidInput(f"{data.completed} is in the future (today is {today})", "completed")
    completed_at = day_start(data.completed, zone)
    if data.expires is not None:
        expires_at = day_start(data.expires, zone)
    else:
        req = required(s, [person.id]).get(person.id, {}).get(spec.id)
        days = req.validity_days if req else spec.validity_days
        expires_at = day_start(data.completed + timedelta(days=days), zone)
    same = s.scalar(
        select(TrainingRecord)
        .where(
            TrainingRecord.person_id == person.id,
            TrainingRecord.training == spec.id,
            TrainingRecord.completed_at == completed_at,
        )
        .order_by(TrainingRecord.id.desc())
        .limit(1)
    )
    if same is not None:
        if as_utc(same.expires_at) == expires_at:
            return _record_out(same, spec.title, zone, replayed=True)
        raise Conflict(
            f"{person.email} already has {spec.id} completed on {data.completed} recorded "
            f"(record {same.id}, expires on {local_day(same.expires_at, zone)})",
            "expires",
        )
    expires_on = local_day(expires_at, zone)
    head = f"{spec.title}: {person.name} <{person.email}> completed {data.completed}"
    text = None
    if data.evidence is None:
        text = "\n".join(
            [
                f"# {head}",
                "",
                f"- **training**: {spec.title} ({spec.id})",
                f"- **completed**: {data.completed}",
                f"- **expires on**: {expires_on}",
                f"- **controls**: {', '.join(spec.controls) or '-'}",
                f"- **recorded by**: {actor.who} ({actor.channel})",
                *(["", data.note] if data.note else []),
            ]
        )
    ev = evidence.append_in(
        uow,
        EvidenceIn(
            subject=f"person:{person.email}",
            kind=EVIDENCE_KIND,
            title=head[:300],
            text=text,
            file=data.evidence.expanduser() if data.evidence else None,
            media_type="text/markdown; charset=utf-8" if text else None,
            idempotency_key=f"training-{person.id}-{spec.id}-{data.completed:%Y%m%d}",
        ),
        actor,
    )
    row = TrainingRecord(
        person=person,
        training=spec.id,
        completed_at=completed_at,
        expires_at=expires_at,
        evidence_id=ev.id,
        recorded_by=actor.who,
        reminders_sent=[],
    )
    s.add(row)
    s.flush()
    uow.audit(
        actor,
        "training.recorded",
        f"person:{person.email}",
        training=spec.id,
        completed=data.completed.isoformat(),
        expires=expires_on.isoformat(),
        evidence_id=ev.id,
        note=data.note,
    )
    return _record_out(row, spec.title, zone, replayed=False)


def record(
    uow: UnitOfWork,
    data: RecordIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
) -> RecordOut:
    """Record a completion with its evidence; the newest completion counts from now on, so a
    renewal restores the person's right to decide at once. The same completion again returns
    the record made first (`replayed`); the same completion with another expiry is a Conflict."""
    if not isinstance(data, RecordIn):
        data = RecordIn.model_validate(data)
    cat = training_catalog(uow.settings)
    with uow:
        out = record_in(uow, data, actor, cat, now_utc(now))
        if out.replayed:
            return out
        uow.commit()
    evidence.sync_anchor(uow.settings)
    return out
