"""What every policy change writes besides the change itself: evidence on `policy:<key>`, a
message to the one person concerned, both in the caller's transaction so they stand or fall
with it; the evidence chain is anchored once the transaction is committed."""

from __future__ import annotations

from sqlalchemy.orm import Session

from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import Person
from aims_core.services import evidence, outbox
from aims_core.services.policies.schemas import subject
from aims_core.uow import Actor, UnitOfWork


def record_evidence(
    uow: UnitOfWork, key: str, kind: str, idem: str, title: str, text: str, actor: Actor
) -> int:
    """One record on `policy:<key>` inside the caller's transaction (anchored after commit)."""
    return evidence.append_in(
        uow,
        EvidenceIn(
            subject=subject(key),
            kind=kind,
            title=title[:300],
            text=text,
            media_type="text/markdown; charset=utf-8",
            idempotency_key=idem,
        ),
        actor,
    ).id


def notify(session: Session, idem: str, kind: str, key: str, person: Person, text: str) -> None:
    """A message to one person, queued in the caller's transaction (Slack DM, else the log)."""
    outbox.tell(
        session,
        person,
        key=idem,
        kind=kind,
        subject=subject(key),
        thread_key=f"policy-{key}-to-{person.id}",
        text=text,
    )


def commit_and_anchor(uow: UnitOfWork) -> None:
    uow.commit()
    evidence.sync_anchor(uow.settings)
