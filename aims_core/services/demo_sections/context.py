"""The demo organisation's context entries (4.1, 4.2), recorded as a user would record them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field, ValidationError
from sqlalchemy import select

from aims_core.errors import from_validation_error
from aims_core.models import ContextEntry
from aims_core.services.context import ContextIn, add_entry
from aims_core.uow import Actor, UnitOfWork

__all__ = ["load_demo"]


class _DemoEntry(ContextIn):
    days_ago: int = Field(default=30, ge=0, le=3650)


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The demo organisation's `context` section (aims_core/data/demo_org.yaml); idempotent:
    an entry of the same kind and title is not added again. Dates are relative to now."""
    try:
        entries = [_DemoEntry.model_validate(e) for e in section or []]
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    with uow.read():
        rows = uow.session.execute(select(ContextEntry.kind, ContextEntry.title))
        have = {(k.value, t) for k, t in rows}
    now = datetime.now(UTC)
    added = 0
    for e in entries:
        if (e.kind.value, e.title) in have:
            continue
        add_entry(
            uow,
            ContextIn.model_validate(e.model_dump(exclude={"days_ago"})),
            actor,
            now=now - timedelta(days=e.days_ago),
        )
        added += 1
    return {"context entries": added}
