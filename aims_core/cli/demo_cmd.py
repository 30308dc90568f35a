"""`aims demo`: a demo organisation to try the engine with."""

from __future__ import annotations

import typer

from aims_core.cli._base import print_table
from aims_core.cli.systems_cmd import print_inventory
from aims_core.services import demo, people, systems
from aims_core.uow import Actor, UnitOfWork

CORE_LABELS = ("people", "systems", "raci")

app = typer.Typer(no_args_is_help=True, help="The demo organisation.")


@app.command("load")
def load() -> None:
    """Load the demo organisation (people, roles, managers, AI systems, RACI) and show it."""
    uow = UnitOfWork()
    org = demo.demo_org()
    added = demo.load_demo(uow, Actor(who=Actor.cli().who, channel="demo"))
    more = "".join(
        f", {count} {label}" for label, count in added.items() if label not in CORE_LABELS
    )
    typer.echo(
        f"{org.organisation}: added {added['people']} people, {added['systems']} AI "
        f"systems, {added['raci']} RACI rows{more}"
    )
    print_inventory(systems.list_systems(uow))
    print_table(
        "People and roles",
        ["name", "email", "roles", "manager"],
        [(p.name, p.email, ", ".join(p.roles), p.manager) for p in people.list_people(uow)],
    )
