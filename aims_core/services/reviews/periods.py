"""The period a management review covers: a calendar quarter in the configured time zone.

"2026Q4" = [2026-10-01, 2027-01-01) local time; a review's records live on `review:<period>`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

from aims_core.errors import InvalidInput
from aims_core.models import as_utc

PERIOD_RE: Final = re.compile(r"^(\d{4})Q([1-4])$")


def as_of(now: datetime | None) -> datetime:
    """The moment a call acts at: `now` in UTC, else the current time (tests pass `now`)."""
    return as_utc(now) if now is not None else datetime.now(UTC)


def subject(period: str) -> str:
    return f"review:{period}"


def period_bounds(period: str, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of a quarter like "2026Q4" in `timezone`, as aware UTC datetimes."""
    m = PERIOD_RE.match(period.strip()) if isinstance(period, str) else None
    if m is None or not 2000 <= int(m.group(1)) <= 2100:
        raise InvalidInput(f"'{period}' is not a quarter like 2026Q4 (year 2000-2100)", "period")
    year, quarter = int(m.group(1)), int(m.group(2))
    zone = ZoneInfo(timezone)
    start = datetime(year, 3 * quarter - 2, 1, tzinfo=zone)
    end = (
        datetime(year + 1, 1, 1, tzinfo=zone)
        if quarter == 4
        else datetime(year, 3 * quarter + 1, 1, tzinfo=zone)
    )
    return start.astimezone(UTC), end.astimezone(UTC)


def default_period(now: datetime | None, timezone: str) -> str:
    """The last full quarter before `now` in `timezone` (1 January: Q4 of the year before)."""
    local = as_of(now).astimezone(ZoneInfo(timezone))
    quarter = (local.month - 1) // 3 + 1
    return f"{local.year - 1}Q4" if quarter == 1 else f"{local.year}Q{quarter - 1}"
