"""Audit periods: a programme's cycle is cut into years, halves, quarters or months
(the policy's `periods_per_year`), each labelled like `2026Q4` and counted in the organisation's
time zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

from aims_core.errors import InvalidInput
from aims_core.models import as_utc
from aims_core.settings import Settings

_PERIOD_RE: Final = re.compile(r"^(\d{4})(?:Q([1-4])|H([12])|-(\d{2}))?$")


def _label(year: int, index: int, per_year: int) -> str:
    """`2026Q4` (quarters), `2026H2` (halves), `2026-10` (months), `2026` (years)."""
    match per_year:
        case 4:
            return f"{year}Q{index + 1}"
        case 2:
            return f"{year}H{index + 1}"
        case 12:
            return f"{year}-{index + 1:02d}"
        case _:
            return str(year)


def parse_period(label: str, per_year: int) -> tuple[int, int]:
    """(year, index within the year) of a period label in the policy's format."""
    example = _label(2026, per_year - 1, per_year)
    m = _PERIOD_RE.match(label.strip().upper())
    if m is None:
        raise InvalidInput(f"'{label}' is not a period like {example}", "start")
    year = int(m.group(1))
    given = {4: m.group(2), 2: m.group(3), 12: m.group(4), 1: None}
    other = [g for n, g in given.items() if n != per_year and g is not None]
    if other or (per_year != 1 and given[per_year] is None):
        raise InvalidInput(f"'{label}' is not a period like {example} (the policy's)", "start")
    index = int(given[per_year]) - 1 if per_year != 1 else 0  # type: ignore[arg-type]
    if per_year == 12 and not 0 <= index < 12:
        raise InvalidInput(f"'{label}': no month {index + 1}", "start")
    return year, index


def _period_start(year: int, index: int, per_year: int, tz: ZoneInfo) -> datetime:
    months = 12 // per_year
    extra_years, month0 = divmod(index * months, 12)
    return datetime(year + extra_years, month0 + 1, 1, tzinfo=tz).astimezone(UTC)


def period_bounds(label: str, per_year: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a period, in UTC, its days counted in the configured time zone."""
    year, index = parse_period(label, per_year)
    nxt = (year + 1, 0) if index + 1 == per_year else (year, index + 1)
    return _period_start(year, index, per_year, tz), _period_start(*nxt, per_year, tz)


def period_of(at: datetime, per_year: int, tz: ZoneInfo) -> str:
    local = as_utc(at).astimezone(tz)
    return _label(local.year, (local.month - 1) // (12 // per_year), per_year)


def periods_from(start: str, count: int, per_year: int) -> list[str]:
    year, index = parse_period(start, per_year)
    out = []
    for _ in range(count):
        out.append(_label(year, index, per_year))
        year, index = (year + 1, 0) if index + 1 == per_year else (year, index + 1)
    return out


def _tz(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.timezone)


def _utc(value: datetime | None) -> datetime:
    return as_utc(value) if value is not None else datetime.now(UTC)
