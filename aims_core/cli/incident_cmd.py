"""`aims incident ...` (one incident) and `aims incidents ...` (the clocks across incidents).

The commands record what people decide about an incident (serious or not, root cause, lessons,
a corrected aware-at time) through the same services the incident-response flow uses, so the
record is the same whichever channel a person chose. While the incident's run asks for one of
them, the command answers that ask (`--as EMAIL`: someone it was put to) through the answer
service, like Slack and the Prefect UI; it records directly only when no run asks.
`aims incident report` lives with the intake (cli/intake_cmd.py) and is added to this sub-app by
the CLI root.
"""

from __future__ import annotations

from datetime import datetime

import typer

from aims_core.cli import drill_cmd, intake_cmd
from aims_core.cli._base import print_json, print_table
from aims_core.errors import InvalidInput
from aims_core.messages import fmt_utc
from aims_core.services import clocks, incidents
from aims_core.services.clocks import ClockOut, fmt_left
from aims_core.services.incidents import IncidentOut
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(
    no_args_is_help=True,
    help="One AI incident (clause 10, A.8.4): show it, confirm it as serious, record the root "
    "cause and lessons learned.",
)
incidents_app = typer.Typer(
    no_args_is_help=True,
    help="Incidents across the organisation: the regulatory clocks and their deadlines.",
)

KINDS_HELP = (
    "death | health | critical-infrastructure | fundamental-rights | property-environment | "
    "widespread-infringement (the classification data may add others)"
)


def _when(value: str, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"'{value}' is not an ISO 8601 time (e.g. 2026-11-20T14:05:00+01:00)", field=field
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput(
            f"'{value}' has no time zone: add one (+01:00, or Z for UTC)", field=field
        )
    return parsed


# --- one incident ------------------------------------------------------------------------------


@app.command("show")
def show(
    incident_id: int = typer.Argument(..., metavar="ID", help="The incident's id."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """The incident with its clocks and timeline."""
    out = incidents.get_incident(UnitOfWork(), incident_id)
    if as_json:
        print_json(out)
        return
    _print_incident(out)


def _print_incident(i: IncidentOut) -> None:
    drill = " [DRILL]" if i.is_drill else ""
    typer.echo(
        f"Incident #{i.id}{drill} [{i.status.value}] {i.severity} {i.category} on {i.system} "
        f"({i.system_tier}-risk)"
    )
    typer.echo(f"Title:    {i.title}")
    if i.summary:
        typer.echo(f"Summary:  {i.summary}")
    typer.echo(f"Aware at: {fmt_utc(i.aware_at)}; reported {fmt_utc(i.reported_at)} via {i.source}")
    typer.echo(f"Playbook: {i.playbook or '-'}; run {i.flow_run_id or '-'}")
    if i.serious_kind:
        at = fmt_utc(i.serious_confirmed_at) if i.serious_confirmed_at else "?"
        typer.echo(f"Serious:  {i.serious_kind} (confirmed {at})")
    elif i.serious_suggested:
        typer.echo(
            f"Serious:  likely {', '.join(i.serious_suggested)}; confirm with `aims incident "
            f"confirm-serious {i.id} --kind {'|'.join(i.serious_suggested)}`"
        )
    if i.root_cause:
        typer.echo(f"Root cause: {i.root_cause.get('root_cause', '')}")
    if i.lessons:
        typer.echo(f"Lessons:  {i.lessons}")
    if i.clocks:
        _print_clocks("Clocks", i.clocks)
    print_table(
        f"Timeline ({len(i.timeline)})",
        ["at (UTC)", "kind", "what", "by"],
        [(f"{e.at:%Y-%m-%d %H:%M:%S}", e.kind, e.text, e.actor) for e in i.timeline],
    )


def _print_clocks(title: str, rows: list[ClockOut]) -> None:
    print_table(
        title,
        ["clock", "incident", "system", "rule", "deadline (UTC)", "time left", "status", "fired"],
        [
            (
                c.id,
                f"#{c.incident_id}" + (" drill" if c.is_drill else ""),
                c.system,
                c.label,
                f"{c.deadline:%Y-%m-%d %H:%M}",
                fmt_left(c.time_left_seconds),
                c.status.value,
                ", ".join(f"{f:.0%}" for f in c.reminders_fired) or "-",
            )
            for c in rows
        ],
    )


@app.command("list")
def list_(
    open_only: bool = typer.Option(False, "--open", help="Only incidents not closed."),
    system: str | None = typer.Option(None, "--system", help="Only this system's incidents."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Incidents, newest first."""
    rows = incidents.list_incidents(UnitOfWork(), open_only=open_only, system=system)
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Incidents ({len(rows)})",
        ["id", "status", "sev", "category", "system", "title", "aware at", "serious", "clocks"],
        [
            (
                i.id,
                i.status.value + (" (drill)" if i.is_drill else ""),
                i.severity,
                i.category,
                i.system,
                i.title,
                fmt_utc(i.aware_at),
                i.serious_kind
                or (f"likely {', '.join(i.serious_suggested)}?" if i.serious_suggested else "-"),
                sum(1 for c in i.clocks if c.time_left_seconds is not None) or "-",
            )
            for i in rows
        ],
    )


@app.command("confirm-serious")
def confirm_serious(
    incident_id: int = typer.Argument(..., metavar="ID", help="The incident's id."),
    kind: str = typer.Option(..., "--kind", help=KINDS_HELP),
    email: str | None = typer.Option(
        None, "--as", metavar="EMAIL", help="Who confirms (required while the run asks)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the clocks as JSON."),
) -> None:
    """Confirm a serious incident (EU AI Act Art. 3(49)): its reporting clocks start, counted
    from the incident's aware-at time. While the incident's run asks for the confirmation, this
    answers that ask (`--as`: someone it was put to), with the same checks as Slack and the UI."""
    key = f"incident-{incident_id}-serious-confirmation"
    if _answered_ask(incident_id, key, "to confirm it", email, {"kind": kind.strip().lower()}):
        return
    rows = incidents.confirm_serious(UnitOfWork(), incident_id, kind, Actor.cli())
    if as_json:
        print_json(rows)
        return
    typer.echo(f"incident {incident_id} confirmed serious: {kind.strip().lower()}")
    if not rows:
        typer.echo("no clock rule applies (see regulatory_clocks.yaml)")
    for c in rows:
        typer.echo(
            f"clock {c.id}: {c.label}; deadline {fmt_utc(c.deadline)} "
            f"({fmt_left(c.time_left_seconds)})"
        )
    _wake(incidents.get_incident(UnitOfWork(), incident_id))


@app.command("rca")
def rca(
    incident_id: int = typer.Argument(..., metavar="ID", help="The incident's id."),
    why: list[str] = typer.Option(
        [], "--why", help="One of the 5 whys, in order (repeat the option, 1 to 5 times)."
    ),
    people: list[str] = typer.Option([], "--fishbone-people", help="People causes."),
    process: list[str] = typer.Option([], "--fishbone-process", help="Process causes."),
    data: list[str] = typer.Option([], "--fishbone-data", help="Data causes."),
    model: list[str] = typer.Option([], "--fishbone-model", help="Model causes."),
    infrastructure: list[str] = typer.Option(
        [], "--fishbone-infrastructure", help="Infrastructure causes."
    ),
    environment: list[str] = typer.Option([], "--fishbone-environment", help="Environment causes."),
    root_cause: str = typer.Option(
        "", "--root-cause", help="The root cause (default: the last why)."
    ),
    email: str | None = typer.Option(
        None, "--as", metavar="EMAIL", help="Who answers (required while the run asks)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """Record the root-cause analysis: 5 whys and fishbone causes. While the incident's run asks
    for the root cause, this answers that ask (`--as`: someone it was put to: the incident
    policy's responders or the system's owner), with the same checks as Slack and the UI."""
    fishbone = {
        "people": people,
        "process": process,
        "data": data,
        "model": model,
        "infrastructure": infrastructure,
        "environment": environment,
    }
    analysis: dict[str, object] = {
        "whys": why,
        "fishbone": {k: v for k, v in fishbone.items() if v},
    }
    if root_cause:
        analysis["root_cause"] = root_cause
    answer = incidents.root_cause_answer(why, fishbone, root_cause)
    key = incidents.root_cause_key(incident_id)
    if _answered_ask(incident_id, key, "for the root cause", email, answer):
        return
    out = incidents.record_root_cause(UnitOfWork(), incident_id, analysis, Actor.cli())
    if as_json:
        print_json(out)
        return
    typer.echo(f"incident {out.id}: root cause recorded: {out.root_cause.get('root_cause')}")


@app.command("lessons")
def lessons(
    incident_id: int = typer.Argument(..., metavar="ID", help="The incident's id."),
    text: str = typer.Option(..., "--text", help="What changes so it does not happen again."),
    email: str | None = typer.Option(
        None, "--as", metavar="EMAIL", help="Who answers (required while the run asks)."
    ),
) -> None:
    """Record the lessons learned. While the incident's run asks for them, this answers that ask
    (`--as`: someone it was put to), with the same checks as Slack and the UI."""
    key = incidents.lessons_key(incident_id)
    if _answered_ask(incident_id, key, "for the lessons learned", email, {"lessons": text}):
        return
    out = incidents.record_lessons(UnitOfWork(), incident_id, text, Actor.cli())
    typer.echo(f"incident {out.id}: lessons learned recorded")


def _answered_ask(
    incident_id: int, key: str, what: str, email: str | None, answer: dict[str, object]
) -> bool:
    """While the incident's run asks for this (its ask under `key` is open), answer that ask as
    `email`; False when no run asks: the command records it directly."""
    from aims_core.cli.approvals_cmd import answer_open_ask, open_ask

    ask = open_ask(key)
    if ask is None:
        return False
    answer_open_ask(ask, email, answer, asker=f"incident {incident_id}'s run", what=what)
    return True


def _wake(incident: incidents.IncidentOut) -> None:
    """The incident's run may be waiting for exactly this answer: wake it (Prefect, lazily)."""
    from aims_core.cli.drill_cmd import wake

    typer.echo(wake(incident))


@app.command("aware-at")
def aware_at(
    incident_id: int = typer.Argument(..., metavar="ID", help="The incident's id."),
    at: str = typer.Option(
        ..., "--at", metavar="ISO-8601", help="When the organisation became aware, with zone."
    ),
    evidence: int = typer.Option(
        ..., "--evidence", metavar="EVIDENCE_ID", help="Evidence about this incident showing it."
    ),
) -> None:
    """Correct the aware-at time (with evidence); the clocks not yet met move with it."""
    out = incidents.correct_aware_at(
        UnitOfWork(), incident_id, _when(at, "at"), evidence, Actor.cli()
    )
    typer.echo(f"incident {out.id}: aware at {fmt_utc(out.aware_at)}")
    for c in out.clocks:
        if c.time_left_seconds is not None:
            typer.echo(f"clock {c.id}: deadline {fmt_utc(c.deadline)}")


# --- across incidents --------------------------------------------------------------------------


@incidents_app.command("clocks")
def list_clocks(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Running clocks (and overdue ones not met yet), soonest deadline first, with time left."""
    rows = clocks.running_clocks(UnitOfWork())
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no clock is running")
        return
    _print_clocks(f"Running clocks ({len(rows)})", rows)


@incidents_app.command("clock-met")
def clock_met(
    clock_id: int = typer.Argument(..., metavar="CLOCK", help="The clock's id."),
    evidence: int | None = typer.Option(
        None, "--evidence", metavar="EVIDENCE_ID", help="Evidence of the report sent."
    ),
) -> None:
    """Mark a clock met: the report was sent (or the SLA kept)."""
    out = clocks.mark_met(UnitOfWork(), clock_id, Actor.cli(), evidence)
    late = out.met_at is not None and out.met_at > out.deadline
    typer.echo(f"clock {out.id} met{' (late)' if late else ''}: {out.label}")


@incidents_app.command("tick")
def tick(as_json: bool = typer.Option(False, "--json", help="Print the pass as JSON.")) -> None:
    """One pass of the clocks now (the `incident-clocks` deployment does it every 10 minutes)."""
    from notifications.slack import SlackDelivery

    settings = get_settings()
    report = clocks.tick(settings, delivery=SlackDelivery(settings))
    if as_json:
        print_json(report)
        return
    typer.echo(f"incident clocks: {report.summary()}")
    for f in report.failures:
        typer.echo(f"warning: {f.step} clock {f.id}: {f.error}", err=True)


# One incident's commands that live beside their own concerns (intake, drills).
app.command("report")(intake_cmd.report)
app.command("drill")(drill_cmd.drill)
app.command("playbooks")(drill_cmd.playbooks)
app.command("resume")(drill_cmd.resume)
