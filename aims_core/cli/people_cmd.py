"""`aims people`: the people who own, approve, audit and respond."""

from __future__ import annotations

import typer

from aims_core.cli._base import print_json, print_table
from aims_core.schemas import PersonIn
from aims_core.services import people
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(no_args_is_help=True, help="People, their roles and managers.")


@app.command("add")
def add(
    email: str = typer.Option(..., "--email", help="Work email (the person's identity)."),
    name: str = typer.Option(..., "--name", help="Full name."),
    slack_id: str | None = typer.Option(None, "--slack-id", help="Slack user id (U…)."),
    role: list[str] = typer.Option([], "--role", help="A role id; repeat for several."),
    manager: str | None = typer.Option(None, "--manager", help="The manager's email."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """Add a person."""
    data = PersonIn(email=email, name=name, slack_user_id=slack_id, roles=role, manager=manager)
    out = people.add_person(UnitOfWork(), data, Actor.cli())
    if as_json:
        print_json(out)
    else:
        typer.echo(f"added {out.name} <{out.email}> roles: {', '.join(out.roles) or '-'}")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List people with their roles and managers."""
    rows = people.list_people(UnitOfWork())
    if as_json:
        print_json(rows)
        return
    print_table(
        f"People ({len(rows)})",
        ["name", "email", "roles", "manager", "slack"],
        [(p.name, p.email, ", ".join(p.roles), p.manager, p.slack_user_id) for p in rows],
    )
