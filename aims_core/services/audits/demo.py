"""The demo organisation's `audit` section."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from aims_core.models import AuditProgramme
from aims_core.services.audits.programme import plan_programme
from aims_core.services.audits.schemas import PlanIn
from aims_core.uow import Actor, UnitOfWork


class _DemoAudit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    programme: PlanIn = Field(default_factory=PlanIn)


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The demo organisation's `audit` section: an audit programme from the current period,
    planned once (no programme yet). Idempotent."""
    spec = _DemoAudit.model_validate(section or {})
    with uow.read():
        if uow.session.scalar(select(func.count()).select_from(AuditProgramme)):
            return {}
    result = plan_programme(uow, spec.programme, actor)
    return {"audit programme": 1} if result.created else {}
