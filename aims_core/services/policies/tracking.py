"""The daily pass (`tick`): owners of policies whose review fell due are told, exceptions are
reminded `exception_reminder_days` before they expire and closed once expired.

Each record in its own transaction, checked again under a lock: a repeat at the same moment
does nothing, each reminder goes once per due date or threshold whatever number of passes run,
and one bad record does not hold the others up (`passes.each`).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Final

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from aims_core.models import ExceptionStatus, Policy, PolicyException, as_utc
from aims_core.services.passes import PassReport, each
from aims_core.services.policies.due import as_of, local_date, next_review_due
from aims_core.services.policies.exceptions import close_row
from aims_core.services.policies.queries import (
    current_version,
    list_exceptions,
    list_policies,
    select_exceptions,
)
from aims_core.services.policies.records import commit_and_anchor, notify
from aims_core.services.policies.schemas import subject
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork, locked

#: Who the audit trail names for the daily pass's reminders and closures.
TRACKER: Final = Actor(who="aims-policy-tracker", channel="schedule")


class TickReport(PassReport):
    """What one daily pass did: policy keys whose review fell due (owner told), exception ids
    reminded and closed."""

    reviews_due: list[str] = Field(default_factory=list)
    exceptions_reminded: list[int] = Field(default_factory=list)
    exceptions_closed: list[int] = Field(default_factory=list)

    summary_parts: ClassVar[tuple[tuple[str, str], ...]] = (
        ("reviews_due", "reviews due"),
        ("exceptions_reminded", "exceptions reminded"),
        ("exceptions_closed", "exceptions closed"),
    )


def _review_due(settings: Settings, policy_id: int, at: datetime) -> str | None:
    """Tell the owner once per due date that the review is due; the key if told now."""
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        row = s.scalar(
            select(Policy)
            .where(Policy.id == policy_id)
            .options(selectinload(Policy.owner), selectinload(Policy.versions))
            .with_for_update(of=Policy)
        )
        if row is None or current_version(row) is None:
            return None
        due = next_review_due(row)
        notified = as_utc(row.review_notified_for) if row.review_notified_for else None
        if due > at or notified == due:
            return None
        row.review_notified_for = due
        current = current_version(row)
        assert current is not None
        notify(
            s,
            f"policy-{row.key}-review-due-{due:%Y%m%d}",
            "policy-review-due",
            row.key,
            row.owner,
            f"The review of {row.title} (v{current.version}) was due on {due:%Y-%m-%d}. Keep it: "
            f"`aims policy review {row.key} --outcome unchanged --notes ...`; change it: "
            f"`aims policy propose {row.key} --file ...`.",
        )
        uow.audit(
            TRACKER,
            "policy.review-due",
            subject(row.key),
            due=due.isoformat(),
            owner=row.owner.email,
        )
        uow.commit()
        return row.key


def _exception_step(settings: Settings, exception_id: int, at: datetime) -> str | None:
    """Close an expired exception, or send the latest reminder due; what was done, if any."""
    uow = UnitOfWork(settings)
    with uow:
        e = locked(uow.session, PolicyException, exception_id)
        if e is None or e.status is not ExceptionStatus.open:
            return None
        if as_utc(e.expires_at) <= at:
            close_row(uow, e, at, "expired", TRACKER)
            commit_and_anchor(uow)
            return "closed"
        days_left = (local_date(e.expires_at, settings) - local_date(at, settings)).days
        sent = set(e.reminders_sent or [])
        due = [d for d in settings.exception_reminder_days if days_left <= d and d not in sent]
        if not due:
            return None
        threshold = min(due)  # a late first pass sends the nearest reminder, not every missed one
        notify(
            uow.session,
            f"policy-exception-{e.id}-reminder-{threshold}",
            "policy-exception-reminder",
            e.policy.key,
            e.owner,
            f"Reminder: exception {e.id} to {e.policy.title} ({e.title}) expires on "
            f"{local_date(e.expires_at, settings)} ({days_left} day(s)); then the policy applies "
            "in full. End the deviation, or ask for a new exception.",
        )
        e.reminders_sent = sorted(
            sent | {d for d in settings.exception_reminder_days if d >= threshold}
        )
        uow.audit(
            TRACKER,
            "policy.exception-reminded",
            subject(e.policy.key),
            exception_id=e.id,
            days_left=days_left,
        )
        uow.commit()
        return "reminded"


def tick(settings: Settings, now: datetime | None = None) -> TickReport:
    """The daily pass: owners of policies whose review fell due are told (once per due date);
    exceptions are reminded before expiry and closed once expired (owner told)."""
    at = as_of(now)
    report = TickReport(at=at)
    with UnitOfWork(settings).read() as uow:
        policy_ids = list(uow.session.scalars(select(Policy.id).order_by(Policy.id)))
        exception_ids = [e.id for e in select_exceptions(uow.session, open_only=True)]
    for _, key in each(report, "review-due", policy_ids, lambda p: _review_due(settings, p, at)):
        if key is not None:
            report.reviews_due.append(key)
    steps = each(report, "exception", exception_ids, lambda e: _exception_step(settings, e, at))
    for eid, done in steps:
        if done == "closed":
            report.exceptions_closed.append(eid)
        elif done == "reminded":
            report.exceptions_reminded.append(eid)
    return report


def tick_rows(settings: Settings, report: TickReport) -> list[dict[str, str]]:
    """The pass as a table for the run's artifact: every policy and open exception, and what
    this pass did with it."""
    uow = UnitOfWork(settings)
    rows = [
        {
            "item": f"policy {p.key}",
            "state": f"v{p.version or '-'} {p.status}",
            "due": f"{p.next_review_due:%Y-%m-%d}" + (" (overdue)" if p.overdue else ""),
            "this pass": "owner told: review due" if p.key in report.reviews_due else "",
        }
        for p in list_policies(uow, now=report.at)
    ]
    done = {**dict.fromkeys(report.exceptions_reminded, "owner reminded")}
    done.update(dict.fromkeys(report.exceptions_closed, "closed (expired), owner told"))
    for e in list_exceptions(uow):
        if e.status is ExceptionStatus.open or e.id in done:
            rows.append(
                {
                    "item": f"exception {e.id} ({e.policy})",
                    "state": e.status.value,
                    "due": f"{e.expires_at:%Y-%m-%d}",
                    "this pass": done.get(e.id, ""),
                }
            )
    return rows
