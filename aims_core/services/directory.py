"""Who holds a role, and who hears when someone lets a deadline pass.

One query per question, so every process answers them alike: only active people, in a stable
order, each person once.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.models import Person, PersonRole


def role_holders(session: Session, roles: Iterable[str | None]) -> list[Person]:
    """Active people holding any of `roles` (None entries ignored), by id."""
    wanted = [r for r in dict.fromkeys(roles) if r]
    if not wanted:
        return []
    return list(
        session.scalars(
            select(Person)
            .join(PersonRole, PersonRole.person_id == Person.id)
            .where(PersonRole.role_id.in_(wanted), Person.active.is_(True))
            .distinct()
            .order_by(Person.id)
        )
    )


def escalation_contacts(
    session: Session,
    person: Person | None,
    roles: Iterable[str | None],
    *,
    roles_only_without_manager: bool = False,
    skip_person: bool = False,
) -> list[Person]:
    """Who hears about a missed deadline of `person` (an owner, an approver's Accountable): their
    active manager first, then the holders of `roles` — always, or only when there is no
    manager. `skip_person`: never `person` themselves (they already know)."""
    people: dict[int, Person] = {}
    manager = person.manager if person is not None else None
    if manager is not None and manager.active:
        people[manager.id] = manager
    if not (people and roles_only_without_manager):
        for p in role_holders(session, roles):
            people.setdefault(p.id, p)
    if skip_person and person is not None:
        people.pop(person.id, None)
    return list(people.values())
