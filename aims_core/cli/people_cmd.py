"""`aims people`: the people who own, approve, audit and respond, as they come and go."""

from __future__ import annotations

from pathlib import Path

import typer

from aims_core.cli._base import print_json, print_table
from aims_core.errors import InvalidInput
from aims_core.schemas import PersonIn
from aims_core.services import people
from aims_core.services.people import PersonDetail
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(
    no_args_is_help=True,
    help="People, their roles and managers; update, deactivate, import, link Slack.",
)


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
        ["name", "email", "roles", "manager", "slack", "active"],
        [
            (p.name, p.email, ", ".join(p.roles), p.manager, p.slack_user_id, _yes(p.active))
            for p in rows
        ],
    )


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _roles(values: list[str]) -> tuple[list[str], list[str]]:
    """`--role +R` adds, `--role -R` (or `--role=-R`) removes, a bare `R` adds."""
    add: list[str] = []
    remove: list[str] = []
    for value in values:
        v = value.strip()
        role = v[1:].strip() if v[:1] in "+-" else v
        if not role:
            raise InvalidInput(f"'{value}': name a role after + or -", "role")
        (remove if v.startswith("-") else add).append(role)
    return add, remove


@app.command("update")
def update(
    email: str = typer.Argument(..., help="The person's email."),
    name: str | None = typer.Option(None, "--name", help="New full name."),
    slack_id: str | None = typer.Option(
        None, "--slack-id", help="Slack user id (U…); `none` removes it."
    ),
    role: list[str] = typer.Option(
        [], "--role", help="+ROLE adds, -ROLE removes (write --role=-ROLE); repeat for several."
    ),
    manager: str | None = typer.Option(
        None, "--manager", help="The manager's email; `none` removes the manager."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """Change a person's name, Slack id, roles or manager (each change audited)."""
    add, remove = _roles(role)
    data = people.PersonUpdate(
        name=name, slack_id=slack_id, add_roles=add, remove_roles=remove, manager=manager
    )
    out = people.update_person(UnitOfWork(), email, data, Actor.cli())
    if as_json:
        print_json(out)
        return
    typer.echo(
        f"{out.name} <{out.email}>: roles {', '.join(out.roles) or '-'}, manager "
        f"{out.manager or '-'}, Slack {out.slack_user_id or '-'}"
    )


@app.command("show")
def show(
    email: str = typer.Argument(..., help="The person's email."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a person: roles, manager, Slack id, active or deactivated (when, why, by whom), and
    what they own or may decide."""
    out = people.show_person(UnitOfWork(), email)
    if as_json:
        print_json(out)
        return
    typer.echo("\n".join(_describe(out)))


def _describe(p: PersonDetail) -> list[str]:
    if p.active:
        state = "active"
    elif p.deactivation:
        d = p.deactivation
        state = f"deactivated on {d.at:%Y-%m-%d %H:%M} UTC by {d.by}: {d.reason}"
    else:
        state = "deactivated"
    lines = [
        f"{p.name} <{p.email}>",
        f"  status:   {state}",
        f"  roles:    {', '.join(p.roles) or '-'}",
        f"  manager:  {p.manager or '-'}",
        f"  slack:    {p.slack_user_id or '-'}",
        f"  manages:  {', '.join(p.manages) or '-'}",
    ]
    owned = [h for h in p.holdings if h.kind != "approval"]
    eligible = [h for h in p.holdings if h.kind == "approval"]
    lines.append(f"  owns ({len(owned)}):" + ("" if owned else " nothing open"))
    lines += [f"    - {h.label}" for h in owned]
    lines.append(f"  may decide ({len(eligible)}):" + ("" if eligible else " no open approval"))
    lines += [f"    - {h.label}" for h in eligible]
    return lines


@app.command("deactivate")
def deactivate(
    email: str = typer.Argument(..., help="The person who leaves."),
    reason: str = typer.Option(..., "--reason", help="Why (e.g. 'left the company')."),
    reassign_to: str | None = typer.Option(
        None, "--reassign-to", metavar="EMAIL", help="Who takes over what they own."
    ),
) -> None:
    """Deactivate a person: what they own moves to --reassign-to (else each item is named and
    nothing changes); they leave every open approval (one that can no longer reach its quorum
    is escalated now); their recorded decisions stand."""
    from aims_core.services import leavers

    data = people.DeactivationIn(reason=reason, reassign_to=reassign_to)
    lines = leavers.deactivate_person(UnitOfWork(), email, data, Actor.cli())
    typer.echo(f"deactivated {email.strip().lower()}")
    for line in lines:
        typer.echo(f"  {line}")
    if any("escalated to" in line for line in lines):
        _deliver()


def _deliver() -> None:
    """Send the escalations now rather than at the next delivery pass (best effort: what fails
    stays queued for it)."""
    from aims_core.settings import get_settings
    from notifications.slack import SlackDelivery

    try:
        SlackDelivery(get_settings()).deliver_due()
    except Exception as exc:  # queued is enough: the delivery flow sends it
        typer.echo(f"  (escalation queued; delivery now failed: {exc})")


@app.command("reactivate")
def reactivate(
    email: str = typer.Argument(..., help="The person who is back."),
    reason: str = typer.Option("", "--reason", help="Why (optional)."),
) -> None:
    """Make a deactivated person active again (open approvals they left stay as they are)."""
    out = people.reactivate_person(UnitOfWork(), email, Actor.cli(), reason)
    typer.echo(f"reactivated {out.name} <{out.email}>")


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="CSV (UTF-8, any line ending) or .xlsx file."),
) -> None:
    """Import people: columns email, name, roles (separated by ; or spaces), manager, slack_id.

    Every row is checked first; if any row is bad, each is listed and nothing is imported. A
    manager may be anyone in AIMS or in the file.
    """
    from aims_core.importing import read_rows

    rows = read_rows(file, people.REQUIRED_COLUMNS, optional=people.IMPORT_COLUMNS[2:])
    out = people.import_people(
        UnitOfWork(), rows, Actor(who=Actor.cli().who, channel="import"), source=file.name
    )
    typer.echo(f"imported {len(out)} person(s) from {file.name}")


@app.command("link-slack")
def link_slack(
    email: str | None = typer.Option(
        None, "--email", help="Only this person (looked up even if already linked)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Find Slack ids by email (users.lookupByEmail) for active people without one, set them,
    and say why each other person was not linked."""
    from aims_core.settings import get_settings
    from notifications.slack import make_client
    from notifications.slack_identities import lookup_by_email

    client = make_client(get_settings())
    if client is None:
        raise InvalidInput("set AIMS_SLACK_BOT_TOKEN to look people up in Slack", "slack")
    report = people.link_slack_ids(UnitOfWork(), lookup_by_email(client), Actor.cli(), email)
    if as_json:
        print_json(report)
        return
    for who, sid in report.linked.items():
        typer.echo(f"linked     {who} → {sid}")
    for who, sid in report.already.items():
        typer.echo(f"unchanged  {who} (already {sid})")
    for who in report.not_found:
        typer.echo(f"not found  {who}: no Slack user with this email")
    for who, why in report.taken.items():
        typer.echo(f"taken      {who}: Slack id {why}")
    for who, why in report.failed.items():
        typer.echo(f"failed     {who}: {why}")
    typer.echo(
        f"{len(report.linked)} linked, {len(report.not_found)} not found, "
        f"{len(report.taken)} taken by someone else, {len(report.failed)} failed"
    )
