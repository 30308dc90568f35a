"""`aims incident drill|playbooks|resume`: exercise a playbook, check playbooks, wake a run.

A drill is a tabletop exercise of one playbook: it records a drill incident (source `drill`) and
starts the `incident-response` run on it, in which every hook is rehearsed (recorded with what it
would call, never fired), no CAPA is opened, the risk assessment is not reopened and the
regulator's filers are never told. By default people answer its waits (approvals, the root-cause
and lessons forms) through the usual channels, marked [DRILL], since practising the response is
the point; `--unattended` answers them itself and keeps every message in the log, to check that a
playbook runs end to end after editing it.

Prefect is imported only by the commands that talk to the engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from aims_core.cli import engine
from aims_core.cli._base import print_json, print_table
from aims_core.errors import AimsError, InvalidInput, NotFound
from aims_core.models import RiskTier
from aims_core.rules.playbooks import (
    DEPLOYMENT,
    check_playbooks,
    load_playbook,
    parse_playbook,
    response_run,
)
from aims_core.services import incidents
from aims_core.services.incidents import IncidentIn, IncidentOut
from aims_core.services.systems import show_system
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork

#: The system a drill uses when none is named: the most demanding tier first.
TIER_ORDER = (RiskTier.high, RiskTier.limited, RiskTier.gpai, RiskTier.minimal)


def _category_of(playbook_id: str) -> str:
    """The category (or `category/sub`) whose incidents run this playbook."""
    from aims_core.rules.incident import incident_policy

    classification = incident_policy(get_settings()).classification
    for category in classification.categories:
        for sub in category.subcategories:
            if sub.playbook == playbook_id:
                return f"{category.id}/{sub.id}"
        if category.playbook == playbook_id:
            return category.id
    raise InvalidInput(
        f"no incident category runs playbook '{playbook_id}' (incident_classification.yaml)",
        "playbook",
    )


def _default_system() -> str:
    from aims_core.services.systems import list_systems

    systems = list_systems(UnitOfWork())
    for tier in TIER_ORDER:
        for s in systems:
            if s.risk_tier is tier:
                return s.name
    raise NotFound("no AI system to drill on: add one (`aims systems add`)", "system")


def drill(
    playbook: str = typer.Option(..., "--playbook", help="The playbook to exercise (e.g. bias)."),
    system: str | None = typer.Option(
        None, "--system", help="The AI system (default: one of the highest risk tier)."
    ),
    severity: str = typer.Option("SEV3", "--severity", help="The drill incident's severity."),
    unattended: bool = typer.Option(
        False,
        "--unattended",
        help="Answer the run's waits with placeholders and keep messages in the log "
        "(checks a playbook end to end; nobody is asked anything).",
    ),
) -> None:
    """Run a playbook end to end as a drill: hooks rehearsed, never fired; recorded as a drill."""
    from aims_core.cli.engine import require_engine, start_run

    settings = get_settings()
    book = load_playbook(settings, playbook.strip())
    category = _category_of(book.id)
    target = show_system(UnitOfWork(settings), system).name if system else _default_system()
    require_engine()  # before the drill incident is recorded: nothing written without one
    result = incidents.report(
        UnitOfWork(settings),
        IncidentIn(
            system=target,
            title=f"Drill: {book.title}",
            summary=f"Tabletop exercise of playbook {book.id}; no real incident.",
            severity=severity,
            category=category,
            source="drill",
            is_drill=True,
        ),
        Actor.cli(),
        notify=not unattended,
    )
    i = result.incident
    spec = response_run(
        i.id,
        system=i.system,
        tier=i.system_tier,
        severity=i.severity,
        category=i.category,
        playbook=book.id,
        drill=True,
        unattended=unattended,
    )
    try:
        run_id, name, url = start_run(
            spec.deployment, spec.parameters, name=spec.name, tags=spec.tags
        )
    except AimsError as exc:
        params = " ".join(f"--param {k}={json.dumps(v)}" for k, v in spec.parameters.items())
        raise AimsError(
            f"drill incident {i.id} recorded, but its run did not start ({exc.message}); start it "
            f"with `prefect deployment run {DEPLOYMENT} {params}`",
            "engine",
        ) from None
    typer.echo(
        f"drill incident {i.id}: {i.severity} {i.category} on {i.system}, playbook {book.id}"
    )
    typer.echo(f"started run {name} ({run_id})\n{url}")
    if unattended:
        typer.echo("unattended: the run answers its own waits; messages go to the log only")
    else:
        typer.echo(
            "the run asks people like a real incident (approvals, the root cause, the lessons: "
            "in Slack, the run's forms, or `aims asks list` and `aims answer`); hooks are only "
            "rehearsed"
        )


def playbooks(
    file: Path | None = typer.Option(
        None, "--file", "-f", help="Check this playbook file (named ID.yaml) instead."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the playbooks as JSON."),
) -> None:
    """The playbooks in force (packaged, or the organisation's), every problem listed."""
    settings = get_settings()
    if file is not None:
        try:
            text = file.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read {file}: {exc}", "file") from None
        from aims_core.rules.incident import incident_policy

        severities = incident_policy(settings).classification.severity_ids
        book = parse_playbook(text, file.stem, str(file), severities=severities)
        typer.echo(f"{file}: playbook {book.id} is valid ({len(book.steps)} steps)")
        return
    good, problems = check_playbooks(settings)
    if as_json:
        print_json(good)
    else:
        print_table(
            f"Playbooks ({len(good)})",
            ["id", "title", "steps", "approvals", "hooks", "source"],
            [
                (
                    b.id,
                    b.title,
                    ", ".join(s.id for s in b.steps),
                    sum(1 for s in b.steps if s.approval),
                    ", ".join(s.hook.kind for s in b.steps if s.hook) or "-",
                    b.source,
                )
                for b in good
            ],
        )
    if problems:
        typer.echo(f"error: {len(problems)} problem(s):", err=True)
        for p in problems:
            typer.echo(f"  {p}", err=True)
        raise typer.Exit(1)


def resume(
    incident_id: int = typer.Argument(..., metavar="ID", help="The incident's id."),
) -> None:
    """Say what the incident's run waits for. Its waits are asks (approvals, the root cause, the
    lessons, a closure amendment): answering one resumes the run (`aims approve`, `aims answer`,
    `aims incident rca|lessons --as`); a run still waiting under an older incident key is woken
    to re-read the record."""
    typer.echo(wake(incidents.get_incident(UnitOfWork(), incident_id)))


def wake(incident: IncidentOut) -> str:
    """Resume the incident's run if it waits under one of the incident's own keys (a run from
    before its waits were asks); a run waiting for an ask is named with how to answer it (the
    answer resumes it). Says what happened."""
    from uuid import UUID

    run_id = incident.flow_run_id
    if not run_id:
        return f"incident {incident.id} has no run"
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(run_id)).state
    except Exception as exc:
        why = type(exc).__name__
        return f"flow run {run_id}: engine not reachable ({why}); later: `aims incident resume`"

    if state is None or state.is_final():
        return f"flow run {run_id} has ended ({state.name if state else '?'})"
    if not state.is_paused():
        return f"flow run {run_id} is {state.name}: it re-reads the record at its next wait"
    key = state.state_details.pause_key or ""
    if key.startswith("approval-"):
        ask = key.split("-")[1]
        return (
            f"flow run {run_id} waits for ask {ask}: answering it resumes the run "
            f"(`aims asks show {ask}`)"
        )
    if not key.startswith(f"incident-{incident.id}-"):
        return f"flow run {run_id} waits for {key}"
    return engine.wake(run_id, attempts=10, retry="try again shortly")
