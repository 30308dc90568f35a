"""The demo organisation, loaded through the same services a user's commands use."""

from __future__ import annotations

from importlib import resources

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


def demo_org() -> DemoOrg:
    text = resources.files("aims_core.data").joinpath("demo_org.yaml").read_text("utf-8")
    return DemoOrg.model_validate(yaml.safe_load(text))


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
    return added
