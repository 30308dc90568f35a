"""Which Slack user is which person: found by email through a lookup the caller passes in.

The domain talks to no Slack: `link_slack_ids` gets a `Lookup` (email -> SlackUser or None;
raises LookupFailed when Slack cannot answer), which the CLI builds on `users.lookupByEmail`
(notifications/slack_identities.py). Lookups run outside any transaction (a slow Slack must not
hold the database's write lock); the ids found are then set in one transaction, each checked
again there. `link_from_slack_profile` is the bridge's: a click from a Slack user nobody is
linked to, whose Slack profile email is a person's, links them for their next click.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from aims_core.models import Person
from aims_core.services.people.lifecycle import person_subject
from aims_core.services.people.records import get_person
from aims_core.services.people.schemas import LinkReport, LookupFailed, SlackUser
from aims_core.uow import Actor, UnitOfWork, locked

__all__ = ["Lookup", "link_from_slack_profile", "link_slack_ids"]

#: email -> the Slack user with that email, None when Slack has none; LookupFailed otherwise.
Lookup = Callable[[str], SlackUser | None]


def link_slack_ids(
    uow: UnitOfWork, lookup: Lookup, actor: Actor, email: str | None = None
) -> LinkReport:
    """Look up each active person without a Slack id (or just `email`, linked or not) and set
    the ids found; the report says why each other person was not linked."""
    with uow.read():
        s = uow.session
        if email is not None:
            people = [get_person(s, email)]
        else:
            people = list(
                s.scalars(
                    select(Person)
                    .where(Person.active.is_(True), Person.slack_user_id.is_(None))
                    .order_by(Person.email)
                )
            )
        wanted = [(p.email, p.slack_user_id) for p in people]

    report = LinkReport()
    found: dict[str, str] = {}
    for person_email, current in wanted:
        try:
            user = lookup(person_email)
        except LookupFailed as exc:
            report.failed[person_email] = str(exc)
            continue
        if user is None or user.deleted or user.is_bot:
            report.not_found.append(person_email)
        elif user.id == current:
            report.already[person_email] = user.id
        else:
            found[person_email] = user.id
    if not found:
        return report

    with uow:
        s = uow.session
        for person_email, slack_id in found.items():
            other = s.scalar(select(Person.email).where(Person.slack_user_id == slack_id))
            if other is not None and other != person_email:
                report.taken[person_email] = f"{slack_id} (belongs to {other})"
                continue
            person = locked(s, Person, get_person(s, person_email).id)
            assert person is not None
            previous, person.slack_user_id = person.slack_user_id, slack_id
            s.flush()
            uow.audit(
                actor,
                "person.slack-linked",
                person_subject(person),
                slack_id=slack_id,
                previous=previous,
                source="users.lookupByEmail",
            )
            report.linked[person_email] = slack_id
        uow.commit()
    return report


def link_from_slack_profile(uow: UnitOfWork, user: SlackUser, actor: Actor) -> str | None:
    """Link the Slack user to the active person whose email their Slack profile shows, when
    that person has no Slack id yet and nobody has this one. Returns the email linked, or
    None (nothing written) when there is no such person."""
    if not user.email or user.deleted or user.is_bot:
        return None
    with uow:
        s = uow.session
        if s.scalar(select(Person.id).where(Person.slack_user_id == user.id)) is not None:
            return None
        match = s.scalar(select(Person).where(Person.email == user.email.strip().lower()))
        if match is None or not match.active or match.slack_user_id is not None:
            return None
        person = locked(s, Person, match.id)
        assert person is not None
        person.slack_user_id = user.id
        s.flush()
        uow.audit(
            actor,
            "person.slack-linked",
            person_subject(person),
            slack_id=user.id,
            previous=None,
            source="users.info (a click from an unlinked Slack user)",
        )
        linked = person.email
        uow.commit()
    return linked
