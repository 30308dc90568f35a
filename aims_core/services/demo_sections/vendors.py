"""The demo organisation's vendors (A.10.3), registered and assessed as a user would do it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from aims_core.models import Criticality, Vendor
from aims_core.services.vendors import AssessmentIn, Result, VendorIn, add_vendor, assess
from aims_core.uow import Actor, UnitOfWork

__all__ = ["load_demo"]


class _DemoVendor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    criticality: Criticality
    services: str = ""
    contact: str = ""
    owner: str
    assessed_days_ago: int | None = None
    assessor: str | None = None
    result: Result = "acceptable"
    notes: str = "Due-diligence questionnaire, model documentation and DPA reviewed."


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The demo organisation's `vendors` section (aims_core/data/demo_org.yaml); idempotent.
    Dates relative to now: one critical vendor past its interval, one within."""
    rows = [_DemoVendor.model_validate(x) for x in section or []]
    now = datetime.now(UTC)
    with uow.read():
        registered = set(
            uow.session.scalars(select(Vendor.name).where(Vendor.owner_id.is_not(None)))
        )
    added = {"vendors": 0}
    for d in rows:
        if d.name in registered:
            continue
        add_vendor(
            uow,
            VendorIn(
                name=d.name,
                criticality=d.criticality,
                services=d.services,
                contact=d.contact,
                owner=d.owner,
            ),
            actor,
        )
        if d.assessed_days_ago is not None:
            assess(
                uow,
                d.name,
                AssessmentIn(result=d.result, notes=d.notes, assessor=d.assessor or d.owner),
                actor,
                now=now - timedelta(days=d.assessed_days_ago),
            )
        added["vendors"] += 1
    return added
