"""Dates a person types or reads (completed, expires) are calendar days in `settings.timezone`:
a training that "expires on 2026-11-23" counts until the start of that day there."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from aims_core.models import as_utc
from aims_core.settings import Settings


def now_utc(now: datetime | None) -> datetime:
    """`now` as UTC, or the real now when the caller names no time."""
    return as_utc(now) if now is not None else datetime.now(UTC)


def zone_of(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.timezone)


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first moment of `day` in the zone, as UTC: what a typed date means."""
    return datetime.combine(day, time.min, zone).astimezone(UTC)


def local_day(at: datetime, zone: ZoneInfo) -> date:
    return as_utc(at).astimezone(zone).date()
