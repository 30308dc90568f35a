"""Reading where competence stands: the matrix of people x required trainings, the requirements."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.errors import InvalidInput
from aims_core.models import Person, PersonRole, Role, TrainingRecord, TrainingRequirement, as_utc
from aims_core.services.people import get_person
from aims_core.services.training.competence import newest, required
from aims_core.services.training.days import local_day, now_utc, zone_of
from aims_core.services.training.schemas import MatrixRow, RequirementOut, Status
from aims_core.settings import Settings
from aims_core.uow import UnitOfWork

__all__ = ["known_role", "list_requirements", "matrix", "rows"]


def _status(
    record: TrainingRecord | None, now: datetime, zone: ZoneInfo, window_days: int
) -> tuple[Status, int | None]:
    if record is None:
        return Status.missing, None
    days_left = (local_day(record.expires_at, zone) - local_day(now, zone)).days
    if as_utc(record.expires_at) <= now:
        return Status.expired, days_left
    if days_left <= window_days:
        return Status.expiring, days_left
    return Status.current, days_left


def rows(
    session: Session,
    settings: Settings,
    now: datetime,
    *,
    person: Person | None = None,
    role: str | None = None,
) -> list[MatrixRow]:
    """Every required training of every active person (or of `person`, or of `role`'s holders
    as far as that role requires it), by person email then training."""
    zone = zone_of(settings)
    window = max(settings.training_reminder_days, default=0)
    q = select(Person).where(Person.active.is_(True)).order_by(Person.email)
    if person is not None:
        q = q.where(Person.id == person.id)
    if role is not None:
        q = q.join(PersonRole, PersonRole.person_id == Person.id).where(PersonRole.role_id == role)
    people = list(session.scalars(q))
    wanted = required(session, [p.id for p in people])
    counts = newest(session, [p.id for p in people])
    out: list[MatrixRow] = []
    for p in people:
        for training, req in sorted(wanted.get(p.id, {}).items()):
            if role is not None and role not in req.roles:
                continue
            rec = counts.get((p.id, training))
            status, days_left = _status(rec, now, zone, window)
            out.append(
                MatrixRow(
                    email=p.email,
                    name=p.name,
                    roles=req.roles,
                    training=training,
                    title=req.title,
                    status=status,
                    completed_on=local_day(rec.completed_at, zone) if rec else None,
                    expires_on=local_day(rec.expires_at, zone) if rec else None,
                    days_left=days_left,
                    record_id=rec.id if rec else None,
                )
            )
    return out


def known_role(session: Session, role: str) -> str:
    """The role id, normalised; InvalidInput listing the roles when there is no such role."""
    role = role.strip().lower()
    if session.get(Role, role) is None:
        known = ", ".join(session.scalars(select(Role.id).order_by(Role.id)))
        raise InvalidInput(f"unknown role '{role}' (roles: {known})", "role")
    return role


def matrix(
    uow: UnitOfWork,
    *,
    person: str | None = None,
    role: str | None = None,
    now: datetime | None = None,
) -> list[MatrixRow]:
    """The competence matrix: every active person x every training their roles require, with
    its status (current / expiring / expired / missing) and dates, by person then training."""
    at = now_utc(now)
    with uow.read():
        s = uow.session
        who = get_person(s, person, "person") if person else None
        wanted = known_role(s, role) if role else None
        return rows(s, uow.settings, at, person=who, role=wanted)


def list_requirements(uow: UnitOfWork) -> list[RequirementOut]:
    with uow.read():
        return [
            RequirementOut(
                role=r.role_id, training=r.training, title=r.title, validity_days=r.validity_days
            )
            for r in uow.session.scalars(
                select(TrainingRequirement).order_by(
                    TrainingRequirement.role_id, TrainingRequirement.training
                )
            )
        ]
