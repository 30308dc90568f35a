"""Messages to one person about an audit, queued in the caller's transaction."""

from __future__ import annotations

from sqlalchemy.orm import Session

from aims_core.models import Audit, Person
from aims_core.services import outbox
from aims_core.services.audits.queries import subject


def _notify(session: Session, key: str, kind: str, row: Audit, person: Person, text: str) -> None:
    """A message to one person, queued in the caller's transaction (Slack DM, else the log)."""
    outbox.tell(
        session,
        person,
        key=key,
        kind=kind,
        subject=subject(row.id),
        thread_key=f"audit-{row.id}-to-{person.id}",
        text=text,
    )
