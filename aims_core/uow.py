"""Unit of work: one database transaction per service call (Cosmic Python, chapter 6).

Services open it, do their reads and writes, record audit events, and commit; leaving the block
without `commit()` rolls everything back, so a failed step never leaves a half record.
"""

from __future__ import annotations

import getpass
from types import TracebackType
from typing import Literal, Self, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.db import session_factory
from aims_core.models import AuditEvent
from aims_core.settings import Settings, get_settings

M = TypeVar("M")

Channel = Literal["cli", "slack", "ui", "schedule", "api", "flow", "import", "demo", "test"]


class Actor(BaseModel):
    """Who acts and through which channel; stored on every audit event and evidence record."""

    who: str = Field(min_length=1, max_length=320)
    channel: Channel = "cli"

    @classmethod
    def cli(cls) -> Actor:
        try:
            user = getpass.getuser()
        except Exception:  # no login name in some containers
            user = "unknown"
        return cls(who=f"os:{user}", channel="cli")


class UnitOfWork:
    def __init__(self, settings: Settings | None = None, *, write: bool = True) -> None:
        self.settings = settings or get_settings()
        self.url = self.settings.effective_database_url
        self._default_write = write
        self._write = write
        self.session: Session

    def read(self) -> Self:
        """`with uow.read():` for a transaction that only reads (takes no write lock)."""
        self._write = False
        return self

    def __enter__(self) -> Self:
        self.session = session_factory(self.url)()
        # A writing transaction on SQLite begins with BEGIN IMMEDIATE (see aims_core.db).
        self.session.connection(execution_options={"aims_write": self._write})
        self._write = self._default_write
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        self.session.commit()

    def audit(self, actor: Actor, action: str, subject: str, **details: object) -> None:
        """Record a state change in the same transaction as the change itself."""
        self.session.add(
            AuditEvent(
                actor=actor.who,
                channel=actor.channel,
                action=action,
                subject=subject,
                details=details,
            )
        )


def locked(
    session: Session, model: type[M], row_id: object, *, key_share: bool = False
) -> M | None:
    """The row, locked until commit (`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite the write
    transaction already serialises writers). `key_share`: FOR NO KEY UPDATE, so rows that merely
    reference this one (notifications, decisions) are not blocked."""
    pk = model.__mapper__.primary_key[0]  # type: ignore[attr-defined]
    return session.scalar(select(model).where(pk == row_id).with_for_update(key_share=key_share))
