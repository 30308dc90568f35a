"""The demo organisation's `training` section: requirements and completions for its people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from aims_core.models import Person
from aims_core.rules.training import TrainingId, training_catalog
from aims_core.schemas import Email
from aims_core.services import evidence
from aims_core.services.training.competence import newest, required
from aims_core.services.training.days import local_day, zone_of
from aims_core.services.training.records import record_in
from aims_core.services.training.schemas import RecordIn
from aims_core.uow import Actor, UnitOfWork

__all__ = ["load_demo"]


class _DemoException(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    training: TrainingId
    completed_days_ago: int = Field(ge=0)


class _DemoTraining(BaseModel):
    """Every demo person completed each training their roles require (the organisation file
    declares the requirements) `completed_days_ago` days ago, except the listed ones."""

    model_config = ConfigDict(extra="forbid")

    completed_days_ago: int = Field(ge=0)
    exceptions: list[_DemoException] = Field(default_factory=list)
    #: The demo's own people (given by the demo loader from its organisation file): records
    #: are never made for anyone else.
    people: list[Email] = Field(default_factory=list)


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The `training` section of aims_core/data/demo_activity.yaml; idempotent:
    only requirements and records that are missing are added, so a second load adds nothing.
    Records are made for the demo's people only, never for people of a real organisation."""
    spec = _DemoTraining.model_validate(section)
    cat = training_catalog(uow.settings)
    zone = zone_of(uow.settings)
    now = datetime.now(UTC)
    today = local_day(now, zone)
    ago = {(e.email, e.training): e.completed_days_ago for e in spec.exceptions}
    recorded = 0
    emails = spec.people
    with uow:
        s = uow.session
        people = list(
            s.scalars(
                select(Person)
                .where(Person.email.in_(emails), Person.active.is_(True))
                .order_by(Person.id)
            )
        )
        wanted = required(s, [p.id for p in people])
        have = newest(s, [p.id for p in people])
        for p in people:
            for training in sorted(wanted.get(p.id, {})):
                if (p.id, training) in have:
                    continue
                days = ago.get((p.email, training), spec.completed_days_ago)
                record_in(
                    uow,
                    RecordIn(
                        email=p.email, training=training, completed=today - timedelta(days=days)
                    ),
                    actor,
                    cat,
                    now,
                )
                recorded += 1
        uow.commit()
    if recorded:
        evidence.sync_anchor(uow.settings)
    return {"training records": recorded}
