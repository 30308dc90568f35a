"""The demo organisation's `training` section: requirements and completions for its people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from aims_core.models import Person
from aims_core.rules.training import TrainingId, training_catalog
from aims_core.schemas import Email
from aims_core.services import evidence
from aims_core.services.training.competence import newest, required
from aims_core.services.training.days import local_day, zone_of
from aims_core.services.training.records import record_in, require_defaults
from aims_core.services.training.schemas import RecordIn
from aims_core.uow import Actor, UnitOfWork

__all__ = ["load_demo"]


class _DemoException(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    training: TrainingId
    completed_days_ago: int = Field(ge=0)


class _DemoTraining(BaseModel):
    """`requirements: catalog-defaults` applies the catalog's default per role; every demo
    person then completed each training their roles require `completed_days_ago` days ago,
    except the listed ones."""

    model_config = ConfigDict(extra="forbid")

    requirements: Literal["catalog-defaults"] = "catalog-defaults"
    completed_days_ago: int = Field(ge=0)
    exceptions: list[_DemoException] = Field(default_factory=list)


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The demo organisation's `training` section (aims_core/data/demo_org.yaml); idempotent:
    only requirements and records that are missing are added, so a second load adds nothing.
    Records are made for the demo's people only, never for people of a real organisation."""
    spec = _DemoTraining.model_validate(section)
    added = sum(1 for r in require_defaults(uow, actor) if r.changed)
    cat = training_catalog(uow.settings)
    zone = zone_of(uow.settings)
    now = datetime.now(UTC)
    today = local_day(now, zone)
    ago = {(e.email, e.training): e.completed_days_ago for e in spec.exceptions}
    recorded = 0
    from aims_core.services.demo import demo_org  # lazily: demo loads this module by name

    emails = [p.email for p in demo_org().people]
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
    return {"training requirements": added, "training records": recorded}
