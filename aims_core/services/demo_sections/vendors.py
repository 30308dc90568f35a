"""The demo organisation's vendor assessments (A.10.3), made as a user would make them. The
vendors themselves are declared in its organisation file (aims_core/data/demo_org.yaml)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from aims_core.models import Vendor
from aims_core.services.vendors import AssessmentIn, Result, assess
from aims_core.uow import Actor, UnitOfWork

__all__ = ["load_demo"]


class _DemoAssessment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    assessed_days_ago: int = Field(ge=0)
    assessor: str
    result: Result = "acceptable"
    notes: str = "Due-diligence questionnaire, model documentation and DPA reviewed."


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The `vendors` section of aims_core/data/demo_activity.yaml; idempotent: a vendor
    assessed before is left alone. Dates relative to now: one critical vendor past its
    interval, one within."""
    rows = [_DemoAssessment.model_validate(x) for x in section or []]
    now = datetime.now(UTC)
    with uow.read():
        assessed = set(
            uow.session.scalars(select(Vendor.name).where(Vendor.last_assessed_at.is_not(None)))
        )
    added = {"vendor assessments": 0}
    for d in rows:
        if d.name in assessed:
            continue
        assess(
            uow,
            d.name,
            AssessmentIn(result=d.result, notes=d.notes, assessor=d.assessor),
            actor,
            now=now - timedelta(days=d.assessed_days_ago),
        )
        added["vendor assessments"] += 1
    return added
