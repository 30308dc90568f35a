"""The demo organisation, loaded through the same services a user's commands use."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module, resources
from typing import Any

import yaml
from pydantic import BaseModel, Field
from sqlalchemy import select

from aims_core.models import AISystem, Person
from aims_core.schemas import PersonIn, RaciIn, SystemIn
from aims_core.services import people, raci, systems
from aims_core.uow import Actor, UnitOfWork


class _DemoPerson(BaseModel):
    email: str
    name: str
    slack_id: str | None = None
    roles: list[str] = Field(default_factory=list)
    manager: str | None = None


class _DemoRaci(BaseModel):
    activity: str
    system: str | None = None
    responsible: list[str]
    accountable: str
    consulted: list[str] = Field(default_factory=list)
    informed: list[str] = Field(default_factory=list)


class DemoOrg(BaseModel):
    organisation: str
    people: list[_DemoPerson]
    systems: list[SystemIn]
    raci: list[_DemoRaci]
    #: Further sections (training, policies, vendors, ...), each loaded by its own service.
    sections: dict[str, Any] = Field(default_factory=dict)


#: Demo file section -> the service function that loads it: `load_demo(uow, actor, section)`
#: returns what it added (label -> count). Each is idempotent, like the core above.
SECTIONS: dict[str, str] = {
    "training": "aims_core.services.training.demo",
    "vendors": "aims_core.services.demo_sections.vendors",
    "policies": "aims_core.services.policies.demo",
    "context": "aims_core.services.demo_sections.context",
    "audit": "aims_core.services.audits.demo",
}


def demo_org() -> DemoOrg:
    text = resources.files("aims_core.data").joinpath("demo_org.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    raw["sections"] = {name: raw.pop(name) for name in SECTIONS if name in raw}
    return DemoOrg.model_validate(raw)


def _section_loader(module: str) -> Callable[[UnitOfWork, Actor, Any], dict[str, int]]:
    return import_module(module).load_demo  # type: ignore[no-any-return]


def load_demo(uow: UnitOfWork, actor: Actor) -> dict[str, int]:
    """Add what is missing of the demo organisation; running it twice changes nothing."""
    org = demo_org()
    with uow.read():
        have_people = set(uow.session.scalars(select(Person.email)))
        have_systems = set(uow.session.scalars(select(AISystem.name)))
    added = {"people": 0, "systems": 0, "raci": 0}
    for p in org.people:  # managers come before their reports in the file
        if p.email not in have_people:
            people.add_person(
                uow,
                PersonIn(
                    email=p.email,
                    name=p.name,
                    slack_user_id=p.slack_id,
                    roles=p.roles,
                    manager=p.manager,
                ),
                actor,
            )
            added["people"] += 1
    for s in org.systems:
        if s.name not in have_systems:
            systems.add_system(uow, s, actor)
            added["systems"] += 1
    existing = {(r.activity, r.system) for r in raci.show_raci(uow)}
    for r in org.raci:
        if (r.activity, r.system) not in existing:
            raci.set_raci(
                uow,
                RaciIn(
                    activity=r.activity,
                    system=r.system,
                    responsible=r.responsible,
                    accountable=[r.accountable],
                    consulted=r.consulted,
                    informed=r.informed,
                ),
                actor,
            )
            added["raci"] += 1
    for name, section in org.sections.items():
        for label, count in _section_loader(SECTIONS[name])(uow, actor, section).items():
            added[label] = added.get(label, 0) + count
    return added
