"""People and their roles: who may approve, own, audit and respond."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.models import Person, Role
from aims_core.schemas import PersonIn, PersonOut
from aims_core.uow import Actor, UnitOfWork


def person_out(p: Person) -> PersonOut:
    return PersonOut(
        id=p.id,
        email=p.email,
        name=p.name,
        slack_user_id=p.slack_user_id,
        roles=[r.id for r in p.roles],
        manager=p.manager.email if p.manager else None,
        active=p.active,
    )


def get_person(session: Session, email: str, field: str = "email") -> Person:
    """The person with this email (case-insensitive), or a NotFound naming the field."""
    person = session.scalar(select(Person).where(Person.email == email.strip().lower()))
    if person is None:
        raise NotFound(f"no person with email '{email}' (see `aims people list`)", field=field)
    return person


def active_person(session: Session, email: str, field: str) -> Person:
    """The person behind `email` who must be active (an owner, a verifier, a requester), or an
    InvalidInput naming the field: nobody inactive is given new work."""
    person = get_person(session, email, field)
    if not person.active:
        raise InvalidInput(f"{person.email} is not active", field)
    return person


def persons_by_email(session: Session, emails: Iterable[str]) -> dict[str, Person]:
    wanted = {e.strip().lower() for e in emails}
    if not wanted:
        return {}
    return {p.email: p for p in session.scalars(select(Person).where(Person.email.in_(wanted)))}


def resolve_roles(session: Session, role_ids: Iterable[str]) -> list[Role]:
    ids = list(dict.fromkeys(role_ids))
    found = {r.id: r for r in session.scalars(select(Role).where(Role.id.in_(ids)))}
    unknown = [r for r in ids if r not in found]
    if unknown:
        known = ", ".join(session.scalars(select(Role.id).order_by(Role.id)))
        raise InvalidInput(f"unknown role '{unknown[0]}' (roles: {known})", field="role")
    return [found[r] for r in ids]


def add_person(uow: UnitOfWork, data: PersonIn, actor: Actor) -> PersonOut:
    with uow:
        s = uow.session
        if s.scalar(select(Person.id).where(Person.email == data.email)) is not None:
            raise Conflict(f"a person with email '{data.email}' already exists", field="email")
        if data.slack_user_id and s.scalar(
            select(Person.email).where(Person.slack_user_id == data.slack_user_id)
        ):
            raise Conflict(
                f"Slack id {data.slack_user_id} already belongs to someone", field="slack_id"
            )
        manager = get_person(s, data.manager, field="manager") if data.manager else None
        person = Person(
            email=data.email,
            name=data.name,
            slack_user_id=data.slack_user_id,
            manager=manager,
            roles=resolve_roles(s, data.roles),
        )
        s.add(person)
        s.flush()
        uow.audit(
            actor, "person.added", f"person:{person.email}", roles=data.roles, manager=data.manager
        )
        out = person_out(person)
        uow.commit()
    return out


def list_people(uow: UnitOfWork) -> list[PersonOut]:
    with uow.read():
        people = uow.session.scalars(
            select(Person)
            .options(selectinload(Person.roles), selectinload(Person.manager))
            .order_by(func.lower(Person.name))
        )
        return [person_out(p) for p in people]
