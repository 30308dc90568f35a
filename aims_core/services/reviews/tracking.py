"""Reminders about the actions of management reviews, run by the approval reconciler's pass.

An owner hears once when an open action is due within `REMIND_DAYS`, and once more when it is
overdue (`reminders_sent` 1 = due soon sent, 2 = overdue sent). Each action in its own
transaction, checked again under a lock, so one bad record holds up none (`passes.each`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar, Final

from pydantic import Field
from sqlalchemy import select

from aims_core.models import ManagementReview, ReviewAction, as_utc
from aims_core.services.passes import PassReport, each
from aims_core.services.reviews.actions import notify
from aims_core.services.reviews.periods import as_of, subject
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork, locked

REMIND_DAYS: Final = 7
#: Who the audit trail names for scheduled reminders.
TRACKER: Final = Actor(who="aims-review-tracker", channel="schedule")


class TickReport(PassReport):
    """Action ids whose owner was reminded (due soon) and told they are overdue."""

    reminded: list[int] = Field(default_factory=list)
    overdue: list[int] = Field(default_factory=list)

    summary_parts: ClassVar[tuple[tuple[str, str], ...]] = (
        ("reminded", "review actions: reminded"),
        ("overdue", "overdue"),
    )


def _remind(settings: Settings, action_id: int, at: datetime) -> str | None:
    """Send the reminder this action is due for, if any: "due-soon", "overdue" or None."""
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        a = locked(s, ReviewAction, action_id)
        if a is None or a.status != "open" or a.reminders_sent >= 2:
            return None
        due = as_utc(a.due_at)
        if due < at:
            key, kind, n = "overdue", "review-action-overdue", 2
            text = f"Overdue since {due:%Y-%m-%d}"
        elif due - at <= timedelta(days=REMIND_DAYS) and a.reminders_sent < 1:
            key, kind, n = "due-soon", "review-action-due", 1
            text = f"Due {due:%Y-%m-%d}"
        else:
            return None
        period = s.scalar(select(ManagementReview.period).where(ManagementReview.id == a.review_id))
        assert period is not None
        notify(
            s,
            f"review-action-{a.id}-{key}",
            kind,
            period,
            a.owner,
            f"{text}: action {a.id} of management review {period} ({a.kind}): "
            f"{a.decision}. When done: `aims review action-done {a.id} --outcome ...`",
        )
        a.reminders_sent = n
        uow.audit(TRACKER, f"review.action-{key}", subject(period), action_id=a.id)
        uow.commit()
        return key


def tick(settings: Settings, now: datetime | None = None) -> TickReport:
    """Remind owners of open review actions due within 7 days, and once more when overdue;
    each message once."""
    at = as_of(now)
    report = TickReport(at=at)
    with UnitOfWork(settings).read() as uow:
        ids = list(
            uow.session.scalars(
                select(ReviewAction.id)
                .where(ReviewAction.status == "open", ReviewAction.reminders_sent < 2)
                .order_by(ReviewAction.id)
            )
        )
    for action_id, sent in each(report, "review-action", ids, lambda i: _remind(settings, i, at)):
        if sent == "overdue":
            report.overdue.append(action_id)
        elif sent == "due-soon":
            report.reminded.append(action_id)
    return report
