"""Context entries: external and internal issues, interested parties (4.1, 4.2).

Each entry records a *change* in the organisation's context (new, changed, resolved) when it is
noticed, so the management review can report inputs 9.3.2 b) and c) — and e) for improvement
ideas — from what was recorded in its period. Every entry is audited and kept as `context`
evidence on `org:context`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import select

from aims_core.errors import InvalidInput
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import ContextEntry, ContextKind, as_utc
from aims_core.services import evidence
from aims_core.services.inputs import validated
from aims_core.uow import Actor, UnitOfWork

__all__ = ["ContextIn", "ContextOut", "add_entry", "entry_out", "list_entries"]

SUBJECT: Final = "org:context"
EVIDENCE_KIND: Final = "context"
KINDS: Final = tuple(k.value for k in ContextKind)
Change = Literal["new", "changed", "resolved"]


class ContextIn(BaseModel):
    """One change in the context: what kind, a one-line title, details, what changed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: ContextKind
    title: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    description: Annotated[str, StringConstraints(max_length=20_000)] = ""
    change: Change = "new"


class ContextOut(BaseModel):
    id: int
    kind: str
    title: str
    description: str
    change: str
    recorded_by: str
    recorded_at: datetime


def entry_out(row: ContextEntry) -> ContextOut:
    return ContextOut(
        id=row.id,
        kind=row.kind.value,
        title=row.title,
        description=row.description,
        change=row.change,
        recorded_by=row.recorded_by,
        recorded_at=as_utc(row.recorded_at),
    )


def _markdown(row: ContextEntry) -> str:
    lines = [
        f"# Context ({row.kind.value}, {row.change}): {row.title}",
        "",
        f"- **recorded**: {as_utc(row.recorded_at):%Y-%m-%d %H:%M} UTC by {row.recorded_by}",
    ]
    if row.description:
        lines += ["", row.description]
    return "\n".join(lines) + "\n"


def add_entry(
    uow: UnitOfWork,
    data: ContextIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
) -> ContextOut:
    """Record a change in the context, with its evidence and audit event, in one transaction."""
    data = validated(ContextIn, data)
    at = as_utc(now) if now is not None else datetime.now(UTC)
    with uow:
        row = ContextEntry(
            kind=data.kind,
            title=data.title,
            description=data.description,
            change=data.change,
            recorded_by=actor.who,
            recorded_at=at,
        )
        uow.session.add(row)
        uow.session.flush()
        ev = evidence.append_in(
            uow,
            EvidenceIn(
                subject=SUBJECT,
                kind=EVIDENCE_KIND,
                title=f"Context {row.kind.value} ({row.change}): {row.title}"[:300],
                text=_markdown(row),
                media_type="text/markdown; charset=utf-8",
                idempotency_key=f"context-{row.id}",
            ),
            actor,
        )
        uow.audit(
            actor,
            "context.recorded",
            SUBJECT,
            entry_id=row.id,
            kind=row.kind.value,
            title=row.title,
            change=row.change,
            evidence_id=ev.id,
        )
        out = entry_out(row)
        uow.commit()
    evidence.sync_anchor(uow.settings)
    return out


def list_entries(
    uow: UnitOfWork, *, since: date | None = None, kind: str | None = None
) -> list[ContextOut]:
    """Entries oldest first; `since` is a calendar day in the configured time zone."""
    q = select(ContextEntry).order_by(ContextEntry.recorded_at, ContextEntry.id)
    if kind is not None:
        if kind not in KINDS:
            raise InvalidInput(f"'{kind}' is not one of {', '.join(KINDS)}", "kind")
        q = q.where(ContextEntry.kind == ContextKind(kind))
    if since is not None:
        zone = ZoneInfo(uow.settings.timezone)
        q = q.where(ContextEntry.recorded_at >= datetime.combine(since, time.min, zone))
    with uow.read():
        return [entry_out(r) for r in uow.session.scalars(q)]
