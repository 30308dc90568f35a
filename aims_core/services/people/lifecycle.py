"""A person's record over time: update, show, reactivate; when and why they were deactivated.

Deactivating (which moves their open work and changes open approvals) is
`aims_core.services.leavers`: it needs the approval and audit services, which need this package.
The deactivation's date, reason and actor are not columns: they are read from the latest
`person.deactivated` audit event, the record of the change itself.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.errors import Conflict, InvalidInput
from aims_core.models import AuditEvent, Person, as_utc
from aims_core.services.people.holdings import held_by
from aims_core.services.people.records import get_person, person_out, resolve_roles
from aims_core.services.people.schemas import CLEAR, Deactivation, PersonDetail, PersonUpdate
from aims_core.uow import Actor, UnitOfWork, locked

__all__ = [
    "deactivation_of",
    "deactivation_text",
    "person_subject",
    "reactivate_person",
    "show_person",
    "update_person",
]


def person_subject(person: Person) -> str:
    return f"person:{person.email}"


def deactivation_of(session: Session, person: Person) -> Deactivation | None:
    """When, why and by whom `person` was deactivated; None while they are active."""
    if person.active:
        return None
    event = session.scalar(
        select(AuditEvent)
        .where(
            AuditEvent.subject == person_subject(person), AuditEvent.action == "person.deactivated"
        )
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    if event is None:  # deactivated before this was recorded (or by hand): no date to give
        return None
    return Deactivation(
        at=as_utc(event.at),
        reason=str((event.details or {}).get("reason") or "no reason recorded"),
        by=event.actor,
    )


def deactivation_text(session: Session, person: Person) -> str:
    """`Lena Fischer was deactivated on 2026-12-07 (left the company)`, for refusals."""
    found = deactivation_of(session, person)
    return found.text(person.name) if found else f"{person.name} is deactivated"


def update_person(uow: UnitOfWork, email: str, data: PersonUpdate, actor: Actor) -> PersonDetail:
    """Change what is given; one `person.updated` event lists each change as [old, new].
    Nothing given, or nothing different: nothing written."""
    with uow:
        s = uow.session
        found = get_person(s, email)
        person = locked(s, Person, found.id)
        assert person is not None
        changes: dict[str, list[object]] = {}
        if data.name is not None and data.name != person.name:
            changes["name"] = [person.name, data.name]
            person.name = data.name
        if data.slack_id is not None:
            new = None if data.slack_id.lower() == CLEAR else data.slack_id
            if new is not None:
                other = s.scalar(
                    select(Person.email).where(Person.slack_user_id == new, Person.id != person.id)
                )
                if other:
                    raise Conflict(f"Slack id {new} already belongs to {other}", "slack_id")
            if new != person.slack_user_id:
                changes["slack_id"] = [person.slack_user_id, new]
                person.slack_user_id = new
        if data.add_roles or data.remove_roles:
            held = [r.id for r in person.roles]
            resolve_roles(s, [*data.add_roles, *data.remove_roles])  # unknown ids refused
            missing = [r for r in data.remove_roles if r not in held]
            if missing:
                raise InvalidInput(f"{person.email} does not hold the role '{missing[0]}'", "role")
            wanted = [r for r in held if r not in data.remove_roles]
            wanted += [r for r in data.add_roles if r not in wanted]
            if sorted(wanted) != sorted(held):
                changes["roles"] = [held, sorted(wanted)]
                person.roles = resolve_roles(s, wanted)
        if data.manager is not None:
            manager = _manager(s, person, data.manager)
            before = person.manager.email if person.manager else None
            after = manager.email if manager else None
            if before != after:
                changes["manager"] = [before, after]
                person.manager = manager
        if changes:
            s.flush()
            uow.audit(actor, "person.updated", person_subject(person), changes=changes)
        out = _detail(s, person)
        uow.commit()
    return out


def _manager(session: Session, person: Person, email: str) -> Person | None:
    """The new manager (None for "none"): an existing person, never `person` nor anyone they
    manage, directly or not (a manager chain must end)."""
    if email == CLEAR:
        return None
    manager = get_person(session, email, "manager")
    seen: set[int] = set()
    boss: Person | None = manager
    while boss is not None and boss.id not in seen:
        if boss.id == person.id:
            if manager.id == person.id:
                raise InvalidInput(f"{person.email} cannot be their own manager", "manager")
            raise InvalidInput(
                f"{manager.email} reports to {person.email}: a manager chain cannot loop",
                "manager",
            )
        seen.add(boss.id)
        boss = boss.manager
    return manager


def reactivate_person(uow: UnitOfWork, email: str, actor: Actor, reason: str = "") -> PersonDetail:
    """Make a deactivated person active again. Open approvals they were removed from stay as
    they are (the eligible set is fixed when a request is made); new work may go to them."""
    reason = " ".join(reason.split())
    if len(reason) > 500:
        raise InvalidInput("at most 500 characters", "reason")
    with uow:
        s = uow.session
        found = get_person(s, email)
        person = locked(s, Person, found.id)
        assert person is not None
        if person.active:
            raise Conflict(f"{person.email} is active", "email")
        was = deactivation_of(s, person)
        person.active = True
        s.flush()
        uow.audit(
            actor,
            "person.reactivated",
            person_subject(person),
            reason=reason or None,
            deactivated_at=was.at.isoformat() if was else None,
        )
        out = _detail(s, person)
        uow.commit()
    return out


def show_person(uow: UnitOfWork, email: str) -> PersonDetail:
    with uow.read():
        s = uow.session
        return _detail(s, get_person(s, email))


def _detail(session: Session, person: Person) -> PersonDetail:
    manages = session.scalars(
        select(Person.email).where(Person.manager_id == person.id).order_by(Person.email)
    )
    return PersonDetail(
        **person_out(person).model_dump(),
        deactivation=deactivation_of(session, person),
        manages=list(manages),
        holdings=[h.out() for h in held_by(session, person)],
    )
