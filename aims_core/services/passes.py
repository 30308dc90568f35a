"""What every scheduled pass shares: its report and the loop where one bad record holds up none.

A pass (reminders, escalations, reviews falling due, clocks) looks afresh at the database each
time and acts on each record that fell due in its own transaction. A record that fails is
counted in the report with its error and tried again by the next pass; the others go on. Each
domain keeps its own rules for what falls due when; this module only says how a pass reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("aims.passes")


class Failure(BaseModel):
    """One record a step could not handle this pass; the next pass tries it again."""

    step: str
    id: int | str
    error: str


def error_line(exc: BaseException) -> str:
    """How a failure reads in a report: the exception's type and message on one line."""
    return f"{type(exc).__name__}: {exc}"[:500]


class PassReport(BaseModel):
    """What one pass did: the lists of what it acted on (per domain) and what failed.

    Subclasses declare their lists as fields and `summary_parts` as (field, label) pairs; the
    summary reads `label count, ...` and adds `failed N` when something failed."""

    at: datetime
    failures: list[Failure] = Field(default_factory=list)

    summary_parts: ClassVar[tuple[tuple[str, str], ...]] = ()

    def note_failure(self, step: str, id_: int | str, exc: BaseException | str) -> None:
        error = exc if isinstance(exc, str) else error_line(exc)
        self.failures.append(Failure(step=step, id=id_, error=error))

    def summary(self) -> str:
        parts = [f"{label} {_count(getattr(self, name))}" for name, label in self.summary_parts]
        if self.failures:
            parts.append(f"failed {len(self.failures)}")
        return ", ".join(parts)

    def merged(self, other: Self) -> Self:
        """This report with `other`'s lists appended (a flow merging its steps' reports)."""
        data = self.model_dump()
        for name, value in other.model_dump().items():
            if isinstance(value, list):
                data[name] = [*data[name], *value]
        return type(self).model_validate(data)


def _count(value: Any) -> int:
    return value if isinstance(value, int) else len(value)


def each(
    report: PassReport,
    step: str,
    items: Iterable[T],
    act: Callable[[T], R],
    *,
    key: Callable[[T], int | str] = lambda item: item,  # type: ignore[assignment,return-value]
) -> list[tuple[T, R]]:
    """Call `act` on every item; a failing item is recorded in the report (and logged) and
    does not stop the others. Returns (item, result) for the items that succeeded."""
    done: list[tuple[T, R]] = []
    for item in items:
        try:
            done.append((item, act(item)))
        except Exception as exc:
            log.warning("%s %s failed: %s", step, key(item), exc, exc_info=True)
            report.note_failure(step, key(item), exc)
    return done
