"""Telling people about an incident as its playbook says: one message per recipient and channel.

The playbook's notify rules name roles, the system's owner and channels per audience; each
message has a key per incident, step and recipient, so a re-run after a resume queues nothing
twice. Messages go to the outbox (delivered by the flow's delivery step or the delivery pass);
an unattended drill keeps every one in the log, and people without Slack get a log row.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from aims_core.models import Person
from aims_core.rules.playbooks import NotifyRule, ResponsePlan
from aims_core.services import outbox
from aims_core.services.directory import role_holders
from aims_core.services.incident_cards import notice
from aims_core.services.outbox import TARGET_DM, TARGET_LOG, NotificationIn
from aims_core.services.systems import get_system
from aims_core.uow import UnitOfWork


def recipients(session: Session, rule: NotifyRule, system: str) -> list[Person]:
    """The active holders of the rule's roles, then the system's owner if it says so; once each."""
    people = role_holders(session, rule.roles)
    if rule.system_owner:
        people.append(get_system(session, system).owner)
    return list({p.id: p for p in people}.values())


def tell(
    uow: UnitOfWork,
    r: ResponsePlan,
    name: str,
    rules: Sequence[NotifyRule],
    header: str,
    body: str,
    *,
    kind: str,
) -> list[str]:
    """Queue one message per recipient of `rules` (and per channel), once per incident and
    `name`; returns who was told (emails, `#channel`), each once."""
    s, subject = r.situation, f"incident:{r.incident_id}"
    told: list[str] = []
    with uow:
        for rule in rules:
            extra = rule.message.format_map(s.values(name)) if rule.message else ""
            text, blocks = notice(r, header, body, extra)
            for p in recipients(uow.session, rule, s.system):
                quiet = r.unattended or not p.slack_user_id
                outbox.queue(
                    uow.session,
                    NotificationIn(
                        idempotency_key=f"incident-{r.incident_id}-{name}-to-{p.id}"[:200],
                        kind=kind,
                        subject=subject,
                        recipient=p.email,
                        target=TARGET_LOG if quiet else TARGET_DM,
                        thread_key=f"{subject}-to-{p.id}",
                        text=text[:3000],
                        blocks=blocks,
                    ),
                )
                told.append(p.email)
            if rule.channel:
                outbox.queue(
                    uow.session,
                    NotificationIn(
                        idempotency_key=f"incident-{r.incident_id}-{name}-{rule.channel}"[:200],
                        kind=kind,
                        subject=subject,
                        target=TARGET_LOG if r.unattended else rule.channel,
                        text=text[:3000],
                        blocks=blocks,
                    ),
                )
                told.append(f"#{rule.channel}")
        uow.commit()
    return list(dict.fromkeys(told))
