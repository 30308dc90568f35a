"""How a CAPA step is recorded: the status guard, `capa-record` evidence, the notices it queues.

Each helper works inside the caller's transaction, so a step's state change, its evidence, its
audit event and its messages are committed together or not at all.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from aims_core.errors import Conflict
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import Capa, CapaStatus, Person
from aims_core.services import evidence, outbox
from aims_core.services.capa.queries import capa_out
from aims_core.services.capa.schemas import EVIDENCE_KIND, CapaOut, subject
from aims_core.uow import Actor, UnitOfWork


def allowed(row: Capa, doing: str, *statuses: CapaStatus) -> None:
    """A Conflict naming what the CAPA waits for, unless it is in one of `statuses`."""
    if row.status not in statuses:
        now = capa_out(Session.object_session(row), row)  # type: ignore[arg-type]
        allowed = " or ".join(s.value for s in statuses)
        raise Conflict(
            f"CAPA {row.id} is {row.status.value}: {doing} is recorded when it is {allowed}; "
            f"it waits for {now.next_step}",
            "capa",
        )


def record_evidence(
    uow: UnitOfWork, row: Capa, key: str, title: str, text: str, actor: Actor, kind: str = ""
) -> int:
    """One record on `capa:<id>` inside the caller's transaction (anchored after commit)."""
    out = evidence.append_in(
        uow,
        EvidenceIn(
            subject=subject(row.id),
            kind=kind or EVIDENCE_KIND,
            title=title[:300],
            text=text,
            media_type="text/markdown; charset=utf-8",
            idempotency_key=key,
        ),
        actor,
    )
    return out.id


def notify(session: Session, key: str, kind: str, row: Capa, person: Person, text: str) -> None:
    """A message to one person, queued in the caller's transaction (Slack DM, else the log)."""
    outbox.tell(
        session,
        person,
        key=key,
        kind=kind,
        subject=subject(row.id),
        thread_key=f"capa-{row.id}-to-{person.id}",
        text=text,
    )


def head(row: Capa) -> str:
    """How notices and records name a CAPA: `CAPA 7 on <system>: <title>`."""
    where = f" on {row.system.name}" if row.system else ""
    return f"CAPA {row.id}{where}: {row.title}"


def commit_and_anchor(uow: UnitOfWork, row: Capa) -> CapaOut:
    """Commit the step, then anchor the evidence it wrote (after commit: anchoring reads it)."""
    out = capa_out(uow.session, row)
    uow.commit()
    evidence.sync_anchor(uow.settings)
    return out


def nonconformity_md(row: Capa) -> str:
    """The nature of the nonconformity, recorded at opening and in the closed record."""
    lines = [
        f"# {head(row)}",
        "",
        f"- **source**: {row.source}"
        + (f" (incident {row.incident_id})" if row.incident_id else ""),
        f"- **system**: {row.system.name if row.system else '-'}",
        f"- **control**: {row.control_id or '-'}",
        f"- **owner**: {row.owner.email}",
        f"- **verify after**: {row.verify_after_days} day(s)",
    ]
    if row.description:
        lines += ["", row.description]
    return "\n".join(lines) + "\n"
