"""Exceptions to a policy (A.2.2): a granted deviation with an owner and an expiry date.

Granting and closing are kept as `policy-exception` evidence and told to the owner; the daily
pass (`tracking`) reminds the owner before the expiry and closes the exception once it expired.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aims_core.errors import InvalidInput, NotFound
from aims_core.models import ExceptionStatus, PolicyException, as_utc
from aims_core.services.people import active_person
from aims_core.services.policies.due import as_of, end_of_day
from aims_core.services.policies.queries import exception_out, load_policy
from aims_core.services.policies.records import (
    commit_and_anchor,
    record_evidence,
)
from aims_core.services.policies.records import notify as tell  # `notify` is a flag here
from aims_core.services.policies.schemas import ExceptionIn, ExceptionOut, subject
from aims_core.services.systems import get_system
from aims_core.uow import Actor, UnitOfWork, locked


def add_exception(
    uow: UnitOfWork,
    key: str,
    data: ExceptionIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
    notify: bool = True,
) -> ExceptionOut:
    """Grant a deviation from a policy until the end of `expires` (configured time zone); the
    owner is told unless `notify` is off (an exception brought in with existing records)."""
    if not isinstance(data, ExceptionIn):
        data = ExceptionIn.model_validate(data)
    at = as_of(now)
    expires_at = end_of_day(data.expires, uow.settings)
    if expires_at <= at:
        raise InvalidInput(
            f"{data.expires} is in the past: an exception must expire later", "expires"
        )
    with uow:
        s = uow.session
        row = load_policy(s, key)
        owner = active_person(s, data.owner, "owner")
        system = get_system(s, data.system) if data.system else None
        e = PolicyException(
            policy_id=row.id,
            title=data.title,
            reason=data.reason,
            system_id=system.id if system else None,
            owner_id=owner.id,
            granted_by=actor.who,
            expires_at=expires_at,
            status=ExceptionStatus.open,
            reminders_sent=[],
            created_at=at,
        )
        s.add(e)
        s.flush()
        record_evidence(
            uow,
            row.key,
            "policy-exception",
            f"policy-exception-{e.id}-granted",
            f"Exception {e.id} to {row.title} granted: {e.title}",
            f"# Exception {e.id} to {row.title}: {e.title}\n\n"
            f"- **granted by**: {actor.who} ({actor.channel})\n- **owner**: {owner.email}\n"
            f"- **system**: {system.name if system else '-'}\n"
            f"- **expires**: {data.expires} (end of day, {uow.settings.timezone})\n\n"
            f"{data.reason}\n",
            actor,
        )
        uow.audit(
            actor,
            "policy.exception-granted",
            subject(row.key),
            exception_id=e.id,
            title=e.title,
            owner=owner.email,
            system=system.name if system else None,
            expires=data.expires.isoformat(),
        )
        if notify:
            tell(
                s,
                f"policy-exception-{e.id}-granted",
                "policy-exception",
                row.key,
                owner,
                f"You own exception {e.id} to {row.title}: {e.title}. It expires on "
                f"{data.expires}; you will be reminded before.",
            )
        s.refresh(e)
        out = exception_out(uow.session, e)
        commit_and_anchor(uow)
    return out


def close_row(uow: UnitOfWork, e: PolicyException, at: datetime, why: str, actor: Actor) -> None:
    """Close an open exception in the caller's transaction: evidence, audit, owner told."""
    s = uow.session
    e.status = ExceptionStatus.closed
    e.closed_at = at
    expired = why == "expired"
    record_evidence(
        uow,
        e.policy.key,
        "policy-exception",
        f"policy-exception-{e.id}-closed",
        f"Exception {e.id} to {e.policy.title} closed ({why}): {e.title}",
        f"# Exception {e.id} to {e.policy.title} closed: {e.title}\n\n"
        f"- **closed**: {at:%Y-%m-%d %H:%M} UTC by {actor.who} ({why})\n"
        f"- **expired**: {as_utc(e.expires_at):%Y-%m-%d %H:%M} UTC\n"
        f"- **owner**: {e.owner.email}\n",
        actor,
    )
    s.flush()
    uow.audit(actor, "policy.exception-closed", subject(e.policy.key), exception_id=e.id, why=why)
    tell(
        s,
        f"policy-exception-{e.id}-closed",
        "policy-exception",
        e.policy.key,
        e.owner,
        f"Exception {e.id} to {e.policy.title} ({e.title}) "
        + (
            f"expired on {as_utc(e.expires_at):%Y-%m-%d} and is closed: the policy applies "
            "in full again. Ask for a new exception if the deviation must continue."
            if expired
            else "is closed."
        ),
    )


def close_exception(
    uow: UnitOfWork, exception_id: int, actor: Actor, *, now: datetime | None = None
) -> ExceptionOut:
    """Close an exception before it expires (the deviation ended). Closing twice is a no-op."""
    with uow:
        s = uow.session
        e = locked(s, PolicyException, exception_id)
        if e is None:
            raise NotFound(f"no policy exception {exception_id}", "exception")
        if e.status is ExceptionStatus.open:
            close_row(uow, e, as_of(now), "closed by hand", actor)
        out = exception_out(uow.session, e)
        commit_and_anchor(uow)
    return out
