"""Who must have which training current, and the competence check of approvals (7.2, A.4.6).

The approvals service calls `competence_refusal` directly on every decision, whatever the
channel, so the check cannot be missed by a process that never loaded the rest of training.
This module therefore reads only models and settings: nothing here may import approvals, or
anything that does.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.models import (
    ApprovalRequest,
    Person,
    PersonRole,
    TrainingRecord,
    TrainingRequirement,
    as_utc,
)
from aims_core.services.training.days import local_day, zone_of
from aims_core.settings import Settings

__all__ = ["Required", "competence_refusal", "newest", "required"]


class Required(BaseModel):
    training: str
    title: str
    roles: list[str]
    validity_days: int  # the shortest of the roles requiring it


def required(
    session: Session, person_ids: Iterable[int] | None = None
) -> dict[int, dict[str, Required]]:
    """person id -> training -> what their roles require (active people only)."""
    q = (
        select(PersonRole.person_id, TrainingRequirement)
        .join(TrainingRequirement, TrainingRequirement.role_id == PersonRole.role_id)
        .join(Person, Person.id == PersonRole.person_id)
        .where(Person.active.is_(True))
        .order_by(PersonRole.person_id, TrainingRequirement.training, PersonRole.role_id)
    )
    if person_ids is not None:
        q = q.where(PersonRole.person_id.in_(list(person_ids)))
    out: dict[int, dict[str, Required]] = {}
    for person_id, req in session.execute(q):
        mine = out.setdefault(person_id, {})
        have = mine.get(req.training)
        if have is None:
            mine[req.training] = Required(
                training=req.training,
                title=req.title,
                roles=[req.role_id],
                validity_days=req.validity_days,
            )
        else:
            have.roles.append(req.role_id)
            have.validity_days = min(have.validity_days, req.validity_days)
    return out


def newest(session: Session, person_ids: Iterable[int]) -> dict[tuple[int, str], TrainingRecord]:
    """(person id, training) -> the record that counts: the latest completion (then the latest
    recorded, so a correction of the same completion wins)."""
    ids = list(person_ids)
    if not ids:
        return {}
    out: dict[tuple[int, str], TrainingRecord] = {}
    for r in session.scalars(
        select(TrainingRecord)
        .where(TrainingRecord.person_id.in_(ids))
        .order_by(TrainingRecord.completed_at, TrainingRecord.id)
    ):
        out[(r.person_id, r.training)] = r
    return out


def competence_refusal(
    session: Session, person: Person, request: ApprovalRequest, settings: Settings
) -> str | None:
    """Why `person` may not decide `request` for want of training, or None.

    Consulted by `approvals.decide` inside the decision's transaction, whatever the channel:
    a training required by any role of the person whose newest record expired refuses; one
    never completed refuses only with `training_blocks_missing`."""
    zone = zone_of(settings)
    now = datetime.now(UTC)
    mine = required(session, [person.id]).get(person.id, {})
    if not mine:
        return None
    counts = newest(session, [person.id])
    problems: list[tuple[str, str]] = []  # (training, what is wrong)
    for training, req in sorted(mine.items()):
        rec = counts.get((person.id, training))
        if rec is None:
            if settings.training_blocks_missing:
                problems.append(
                    (training, f"required training '{req.title}' ({training}) never completed")
                )
        elif as_utc(rec.expires_at) <= now:
            problems.append(
                (
                    training,
                    f"required training '{req.title}' ({training}) expired on "
                    f"{local_day(rec.expires_at, zone)}",
                )
            )
    if not problems:
        return None
    return (
        f"{person.email} may not decide request {request.id}: "
        f"{'; '.join(text for _, text in problems)} — renew: "
        f"`aims training record {person.email} {problems[0][0]} --completed YYYY-MM-DD "
        "--evidence FILE`"
    )
