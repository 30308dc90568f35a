"""Today's organisation as an organisation file (`aims org export`): what `apply` reads."""

from __future__ import annotations

from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from aims_core.models import (
    AISystem,
    AuditEvent,
    Person,
    RaciActivity,
    RaciMember,
    TrainingRequirement,
    Vendor,
)
from aims_core.services import raci
from aims_core.system_keys import derive_key
from aims_core.uow import UnitOfWork


def export_org(uow: UnitOfWork, organisation: str | None = None) -> dict[str, Any]:
    """Active people, registered vendors, every system, RACI row and required training.
    `organisation`: default the name of the last file applied."""
    with uow.read():
        s = uow.session
        if organisation is None:
            last = s.scalar(
                select(AuditEvent.subject)
                .where(AuditEvent.action == "org.applied")
                .order_by(AuditEvent.id.desc())
                .limit(1)
            )
            organisation = last.removeprefix("org:") if last else "Our organisation"
        people = s.scalars(
            select(Person)
            .where(Person.active.is_(True))
            .options(selectinload(Person.roles), selectinload(Person.manager))
            .order_by(Person.id)
        )
        vendors = s.scalars(
            select(Vendor).where(Vendor.owner_id.is_not(None)).order_by(Vendor.name)
        )
        systems = s.scalars(select(AISystem).order_by(AISystem.id))
        racis = s.scalars(
            select(RaciActivity)
            .options(selectinload(RaciActivity.members).selectinload(RaciMember.person))
            .order_by(RaciActivity.id)
        )
        return {
            "organisation": organisation,
            "people": [_drop_empty(_person(p)) for p in people],
            "vendors": [
                _drop_empty(
                    {
                        "name": v.name,
                        "criticality": v.criticality.value,
                        "services": v.services,
                        "contact": v.contact,
                        "owner": v.owner.email if v.owner else None,
                    }
                )
                for v in vendors
            ],
            "systems": [_drop_empty(_system(sy)) for sy in systems],
            "raci": [
                _drop_empty(raci.raci_out(r).model_dump(mode="json"), keep=("responsible",))
                for r in racis
            ],
            "trainings": [
                {"role": t.role_id, "training": t.training, "validity_days": t.validity_days}
                for t in s.scalars(
                    select(TrainingRequirement).order_by(
                        TrainingRequirement.role_id, TrainingRequirement.training
                    )
                )
            ],
        }


def export_yaml(uow: UnitOfWork, organisation: str | None = None) -> str:
    """One entry per line (as the packaged demo file is written): a diff of two exports reads
    as the change it is."""
    data = export_org(uow, organisation)
    lines = [
        "# The organisation as code: `aims org apply` this file (see `aims org apply --help`).",
        f"organisation: {_dump(data.pop('organisation'))}",
    ]
    for section, entries in data.items():
        lines.append(f"{section}:" if entries else f"{section}: []")
        lines += [f"  - {_dump(entry)}" for entry in entries]
    return "\n".join(lines) + "\n"


def _dump(value: object) -> str:
    text = yaml.safe_dump(
        value, default_flow_style=True, sort_keys=False, allow_unicode=True, width=10_000
    )
    return text.strip().removesuffix("...").strip()


def _person(p: Person) -> dict[str, Any]:
    return {
        "email": p.email,
        "name": p.name,
        "slack_id": p.slack_user_id,
        "roles": [r.id for r in p.roles],
        "manager": p.manager.email if p.manager else None,
    }


def _system(sy: AISystem) -> dict[str, Any]:
    return {
        "name": sy.display_name,
        "key": None if derive_key(sy.display_name) == sy.name else sy.name,
        "owner": sy.owner.email,
        "purpose": sy.purpose,
        "risk_tier": sy.risk_tier.value,
        "criticality": sy.criticality.value,
        "vendor": sy.vendor.name if sy.vendor else None,
    }


def _drop_empty(entry: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k in keep or v not in (None, [], "")}
