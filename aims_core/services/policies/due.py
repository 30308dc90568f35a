"""When a policy's review falls due and an exception expires.

The next review is computed, never typed in: the last review (else the first approval, else the
creation) plus the interval. Calendar dates people give (an exception's expiry) end at the last
second of that day in the configured time zone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from aims_core.models import Policy, as_utc
from aims_core.settings import Settings


def as_of(now: datetime | None) -> datetime:
    """The moment a call acts at: `now` in UTC, else the current time (tests pass `now`)."""
    return as_utc(now) if now is not None else datetime.now(UTC)


def end_of_day(day: date, settings: Settings) -> datetime:
    """A calendar date as a deadline: its last second in the configured time zone, in UTC."""
    zone = ZoneInfo(settings.timezone)
    return datetime.combine(day, time(23, 59, 59), zone).astimezone(UTC)


def local_date(value: datetime, settings: Settings) -> date:
    return as_utc(value).astimezone(ZoneInfo(settings.timezone)).date()


def _first_approval(row: Policy) -> datetime | None:
    approved = [v.approved_at for v in row.versions if v.approved_at is not None]
    return min(as_utc(a) for a in approved) if approved else None


def review_base(row: Policy) -> datetime:
    """What the next review counts from: the last review, else the first approval, else the
    creation of the policy."""
    if row.last_reviewed_at is not None:
        return as_utc(row.last_reviewed_at)
    return _first_approval(row) or as_utc(row.created_at)


def next_review_due(row: Policy) -> datetime:
    return review_base(row) + relativedelta(months=row.review_interval_months)
