"""`aims capa`: corrective actions (ISO/IEC 42001 10.2).

`open` records the CAPA and starts its `capa` run (the CAPA is recorded even when the engine is
down; `start` begins the run later). While the run asks for a step (containment, root cause, the
plan's next action, an action's completion, the verification), the step's command answers that
ask as `--as EMAIL`, with the same checks as Slack and the Prefect UI (someone it was put to),
and the answer resumes the run. With no ask open for the step (no run, or the step given ahead of
the run), the command records it directly, through the same service, and wakes the run if that
completed the step it waits for.
"""

from __future__ import annotations

import typer

from aims_core import processes
from aims_core.cli._base import print_json, print_table
from aims_core.cli.engine import run_ended, wake
from aims_core.errors import Conflict, InvalidInput
from aims_core.models import CapaStatus
from aims_core.services import capa as capas
from aims_core.services.approvals import ApprovalRequestIn, ApprovalRequestOut
from aims_core.services.capa import CapaOut
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(
    no_args_is_help=True,
    help="Corrective actions (10.2): containment, root cause, actions, verification, closure.",
)

DEPLOYMENT = processes.CAPA.id


# --- waking the run --------------------------------------------------------------------------


def _wake(out: CapaOut, before: CapaStatus | None, *, quiet: bool = False) -> None:
    """Resume the run if this command completed the step it waits for (the status moved; with
    `before` None: always)."""
    if out.status is before or not out.flow_run_id:
        return
    line = wake(
        out.flow_run_id,
        attempts=30,
        ended=f"`aims capa start {out.id}`",
        retry=f"once the engine is up: `aims capa resume {out.id}`",
    )
    if not quiet:
        typer.echo(line)


def _status(capa_id: int) -> CapaStatus:
    return capas.get_capa(UnitOfWork(), capa_id).status


def _done(out: CapaOut, what: str, before: CapaStatus, as_json: bool) -> None:
    if as_json:
        print_json(out)
    else:
        typer.echo(f"CAPA {out.id}: {what}; now {out.status.value}\nnext: {out.next_step}")
    _wake(out, before, quiet=as_json)


def _start(out: CapaOut) -> str:
    """Start the CAPA's run and say so; without the engine, say so and how to start it later."""
    from aims_core.cli.engine import EngineNotRunning, start_run

    try:
        run_id, name, url = start_run(
            DEPLOYMENT, {"capa_id": out.id}, name=capas.run_name(out), tags=capas.run_tags(out)
        )
    except EngineNotRunning as exc:
        return (
            f"CAPA {out.id} is recorded, but its run was not started: {exc.message}\n"
            f"once the engine runs: `aims capa start {out.id}` (or record the steps here)"
        )
    capas.attach_run(UnitOfWork(), out.id, run_id, Actor.cli())
    return f"started run {name} ({run_id})\n{url}"


def _open_ask(spec: ApprovalRequestIn) -> ApprovalRequestOut | None:
    """The run's ask for this step, if it is open."""
    from aims_core.cli.approvals_cmd import open_ask

    return open_ask(spec.idempotency_key)


def _answer(
    ask: ApprovalRequestOut, what: str, email: str | None, answer: dict[str, object]
) -> None:
    """Answer the run's open ask for a step as `email` (required then)."""
    from aims_core.cli.approvals_cmd import answer_open_ask

    answer_open_ask(ask, email, answer, asker="the CAPA's run", what=f"for {what}")


AS_HELP = "Who answers (required while the CAPA's run asks for this step)."


# --- commands --------------------------------------------------------------------------------


@app.command("open")
def open_(
    title: str = typer.Option(..., "--title", help="The nonconformity, in one line."),
    owner: str = typer.Option(..., "--owner", metavar="EMAIL", help="Who owns the CAPA."),
    system: str | None = typer.Option(None, "--system", help="The AI system concerned."),
    incident: int | None = typer.Option(None, "--incident", help="The incident it comes from."),
    control: str | None = typer.Option(
        None, "--control", help="The clause or Annex A control not met (e.g. A.6.2.6)."
    ),
    description: str = typer.Option("", "--description", help="What happened, in detail."),
    containment: str = typer.Option(
        "", "--containment", help="Containment already done (the CAPA starts at root cause)."
    ),
    source: str | None = typer.Option(
        None,
        "--source",
        help="incident, audit-finding or manual (default: incident with --incident, else manual).",
    ),
    verify_after_days: int | None = typer.Option(
        None,
        "--verify-after-days",
        help="Days from the last action to the effectiveness check (default: the CAPA policy's).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the CAPA as JSON."),
) -> None:
    """Open a CAPA and start its run (it waits, suspended, for each step)."""
    out = capas.open_capa(
        UnitOfWork(),
        {
            "title": title,
            "owner": owner,
            "system": system,
            "incident_id": incident,
            "control_id": control,
            "description": description,
            "source": source or ("incident" if incident else "manual"),
            "verify_after_days": verify_after_days,
            "containment": containment,
        },
        Actor.cli(),
    )
    started = _start(out)
    if as_json:  # the CAPA with its run, if one started; what happened on stderr
        print_json(capas.get_capa(UnitOfWork(), out.id))
        typer.echo(started, err=True)
        return
    typer.echo(f"opened CAPA {out.id}: {out.title} (owner {out.owner})")
    similar = capas.similar_open(UnitOfWork(), out.id)
    if similar:
        typer.echo(
            "similar open CAPAs (same system or control): "
            + ", ".join(f"{c.id} {c.title!r}" for c in similar)
        )
    typer.echo(f"{started}\nnext: {out.next_step}")


@app.command("start")
def start(capa_id: int = typer.Argument(..., metavar="ID", help="The CAPA.")) -> None:
    """Start the run of a CAPA recorded while the engine was down, or whose run has ended."""
    out = capas.get_capa(UnitOfWork(), capa_id)
    if out.status is CapaStatus.closed:
        raise Conflict(f"CAPA {out.id} is closed: nothing to follow", "capa")
    if out.flow_run_id:
        ended = run_ended(out.flow_run_id)
        if ended is None:
            raise InvalidInput(
                f"CAPA {out.id} is followed by run {out.flow_run_id}, and the engine cannot be "
                "asked whether it still goes on: start the engine first (`aims up`)",
                "engine",
            )
        if not ended:
            raise Conflict(
                f"CAPA {out.id} is already followed by run {out.flow_run_id} "
                f"(`aims capa resume {out.id}` wakes it)",
                "capa",
            )
    typer.echo(_start(out))


@app.command("list")
def list_(
    open_only: bool = typer.Option(False, "--open", help="Only CAPAs not closed."),
    system: str | None = typer.Option(None, "--system", help="Only this system's CAPAs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List CAPAs, newest first."""
    rows = capas.list_capas(UnitOfWork(), open_only=open_only, system=system)
    if as_json:
        print_json(rows)
        return
    print_table(
        f"CAPAs ({len(rows)})",
        ["id", "title", "system", "source", "owner", "status", "attempt", "actions", "created"],
        [
            (
                c.id,
                c.title,
                c.system,
                c.source,
                c.owner,
                c.status.value,
                c.attempt,
                f"{len(c.current_actions) - len(c.open_actions)}/{len(c.current_actions)}",
                f"{c.created_at:%Y-%m-%d}",
            )
            for c in rows
        ],
    )


@app.command("show")
def show(
    capa_id: int = typer.Argument(..., metavar="ID", help="The CAPA."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with similar open CAPAs)."),
    markdown: bool = typer.Option(False, "--markdown", help="Print checklist and timeline."),
) -> None:
    """Show a CAPA: its steps so far, actions, verifications and similar open CAPAs."""
    uow = UnitOfWork()
    if markdown:
        typer.echo(capas.report_markdown(uow, capa_id), nl=False)
        return
    c = capas.get_capa(uow, capa_id)
    similar = capas.similar_open(uow, capa_id)
    if as_json:
        print_json(
            {
                **c.model_dump(mode="json"),
                "similar_open": [s.model_dump(mode="json") for s in similar],
            }
        )
        return
    origin = f"incident {c.incident_id}" if c.incident_id else c.source
    lines = [
        f"CAPA {c.id}: {c.title}",
        f"  status:       {c.status.value} (attempt {c.attempt})",
        f"  source:       {origin} · system {c.system or '-'} · control {c.control_id or '-'}",
        f"  owner:        {c.owner}",
        f"  next:         {c.next_step}",
    ]
    if c.containment:
        lines.append(f"  containment:  {c.containment}")
    if c.root_cause:
        lines.append(f"  root cause:   {c.root_cause.root_cause} ({c.root_cause.method})")
    if c.verification_due_at:
        lines.append(f"  verify from:  {c.verification_due_at:%Y-%m-%d %H:%M} UTC")
    if c.flow_run_id:
        lines.append(f"  flow run:     {c.flow_run_id}")
    typer.echo("\n".join(lines))
    if c.actions:
        print_table(
            "Actions",
            ["id", "attempt", "action", "owner", "due", "done", "evidence"],
            [
                (
                    a.id,
                    a.attempt,
                    a.title,
                    a.owner,
                    a.due,
                    f"{a.done_at:%Y-%m-%d}" if a.done_at else "",
                    a.evidence_id,
                )
                for a in c.actions
            ],
        )
    if c.verifications:
        print_table(
            "Effectiveness verifications",
            ["#", "attempt", "result", "verifier", "at", "evidence"],
            [
                (
                    v.number,
                    v.attempt,
                    ("effective" if v.effective else "not effective")
                    + (f", closure {v.closure}" if v.closure else ""),
                    v.verifier or v.recorded_by,
                    f"{v.at:%Y-%m-%d}",
                    v.evidence,
                )
                for v in c.verifications
            ],
        )
    if similar:
        print_table(
            "Similar open CAPAs (same system or control)",
            ["id", "title", "system", "control", "status"],
            [(s.id, s.title, s.system, s.control_id, s.status.value) for s in similar],
        )
    else:
        typer.echo("similar open CAPAs: none")


@app.command("containment")
def containment(
    capa_id: int = typer.Argument(..., metavar="ID", help="The CAPA."),
    text: str = typer.Option(..., "--text", help="What was done to contain and correct it."),
    email: str | None = typer.Option(None, "--as", metavar="EMAIL", help=AS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the CAPA as JSON."),
) -> None:
    """Record containment and correction (react to the nonconformity)."""
    before = _status(capa_id)
    if before is CapaStatus.containment:
        ask = _open_ask(capas.containment_spec(UnitOfWork(), capa_id))
        if ask is not None:
            _answer(ask, "containment", email, {"containment": text})
            return
    out = capas.record_containment(UnitOfWork(), capa_id, text, Actor.cli())
    _done(out, "containment recorded", before, as_json)


@app.command("rca")
def rca(
    capa_id: int = typer.Argument(..., metavar="ID", help="The CAPA."),
    why: list[str] = typer.Option([], "--why", help="One why of the 5 whys; repeat, in order."),
    cause: list[str] = typer.Option(
        [],
        "--cause",
        metavar="CATEGORY=TEXT",
        help=f"A fishbone cause ({', '.join(capas.FISHBONE)}); repeat.",
    ),
    root_cause: str = typer.Option(..., "--root-cause", help="The root cause to remove."),
    method: str | None = typer.Option(
        None, "--method", help="5-whys, fishbone or other (default: from what is given)."
    ),
    email: str | None = typer.Option(None, "--as", metavar="EMAIL", help=AS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the CAPA as JSON."),
) -> None:
    """Record the root cause analysis (with the similar open CAPAs found now)."""
    fishbone: dict[str, list[str]] = {}
    for item in cause:
        category, sep, text = item.partition("=")
        if not sep:
            raise InvalidInput(f"'{item}' is not CATEGORY=TEXT", "cause")
        fishbone.setdefault(category.strip().lower(), []).append(text)
    chosen = method or ("fishbone" if fishbone and not why else "5-whys" if why else "other")
    before = _status(capa_id)
    if before is CapaStatus.root_cause:
        ask = _open_ask(capas.root_cause_spec(UnitOfWork(), capa_id))
        if ask is not None:
            unknown = sorted(set(fishbone) - set(capas.FISHBONE))
            if unknown:
                raise InvalidInput(
                    f"'{unknown[0]}' is not a fishbone category ({', '.join(capas.FISHBONE)})",
                    "cause",
                )
            answer = {"method": chosen, "whys": why, "root_cause": root_cause, **fishbone}
            _answer(ask, "the root cause", email, answer)
            return
    out = capas.record_root_cause(
        UnitOfWork(),
        capa_id,
        {"method": chosen, "whys": why, "fishbone": fishbone, "root_cause": root_cause},
        Actor.cli(),
    )
    _done(out, f"root cause recorded (attempt {out.attempt})", before, as_json)


@app.command("action")
def action(
    capa_id: int = typer.Argument(..., metavar="ID", help="The CAPA."),
    title: str = typer.Option(..., "--title", help="What is to be done."),
    owner: str = typer.Option(..., "--owner", metavar="EMAIL", help="Who does it."),
    due: str = typer.Option(..., "--due", metavar="YYYY-MM-DD", help="By when."),
    last: bool = typer.Option(
        True,
        "--last/--more",
        help="While the run asks for the plan: this action completes it (--last), or the run "
        "asks for the next one (--more).",
    ),
    email: str | None = typer.Option(None, "--as", metavar="EMAIL", help=AS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the CAPA as JSON."),
) -> None:
    """Plan a corrective action (the first one starts tracking)."""
    before = _status(capa_id)
    if before in (CapaStatus.action_plan, CapaStatus.tracking):
        ask = _open_ask(capas.plan_spec(UnitOfWork(), capa_id))
        if ask is not None:
            answer = {"title": title, "owner": owner, "due": due, "plan_complete": last}
            _answer(ask, "the action plan", email, answer)
            return
    out = capas.add_action(
        UnitOfWork(), capa_id, {"title": title, "owner": owner, "due": due}, Actor.cli()
    )
    added = out.current_actions[-1]
    _done(out, f"action {added.id} planned for {added.owner}, due {added.due}", before, as_json)


@app.command("done")
def done(
    action_id: int = typer.Argument(..., metavar="ACTION_ID", help="The action (see `show`)."),
    evidence: str = typer.Option(
        "", "--evidence", help="What shows it is done (required while the run asks)."
    ),
    email: str | None = typer.Option(None, "--as", metavar="EMAIL", help=AS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the CAPA as JSON."),
) -> None:
    """Mark an action done; the last one schedules the effectiveness verification."""
    before = _status(capas.capa_of_action(UnitOfWork(), action_id))
    if before is CapaStatus.tracking:
        ask = _open_ask(capas.completion_spec(UnitOfWork(), action_id))
        if ask is not None:
            _answer(ask, f"action {action_id}'s completion", email, {"evidence": evidence})
            return
    out = capas.complete_action(UnitOfWork(), action_id, evidence, Actor.cli())
    _done(out, f"action {action_id} done", before, as_json)


@app.command("verify")
def verify(
    capa_id: int = typer.Argument(..., metavar="ID", help="The CAPA."),
    effective: bool = typer.Option(
        ..., "--effective/--ineffective", help="Did the actions remove the problem?"
    ),
    evidence: str = typer.Option(..., "--evidence", help="What shows it has (not) recurred."),
    verifier: str = typer.Option(..., "--as", metavar="EMAIL", help="The verifier."),
    as_json: bool = typer.Option(False, "--json", help="Print the CAPA as JSON."),
) -> None:
    """Record the effectiveness verification (effective: closure; ineffective: root cause).

    Ineffective sends the CAPA back to root cause with the next attempt, its plan empty. While
    the CAPA's run asks for the verification, this answers that ask, with the same checks as
    Slack and the UI (a verifier role; not the CAPA's owner).
    """
    from aims_core.services import approvals

    if _status(capa_id) is CapaStatus.verification:
        key = capas.verification_spec(UnitOfWork(), capa_id).idempotency_key
        ask = approvals.request_by_key(UnitOfWork(), key)
        if ask is not None and ask.status == "open":
            from aims_core.cli.approvals_cmd import answer_ask

            result = "effective" if effective else "ineffective"
            answer_ask(ask.id, verifier, {"result": result, "evidence": evidence})
            return
    before = _status(capa_id)
    out = capas.record_verification(
        UnitOfWork(), capa_id, effective, evidence, Actor.cli(), verifier=verifier
    )
    what = "verified effective" if effective else "NOT effective: back to root cause"
    _done(out, what, before, as_json)


@app.command("resume")
def resume(capa_id: int = typer.Argument(..., metavar="ID", help="The CAPA.")) -> None:
    """Wake the CAPA's run (if an earlier wake did not reach it); it re-reads the database."""
    out = capas.get_capa(UnitOfWork(), capa_id)
    if not out.flow_run_id or out.status is CapaStatus.closed:
        typer.echo(f"CAPA {out.id} is {out.status.value}: no run waits for it")
        return
    _wake(out, before=None)


@app.command("tick")
def tick(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """One tracking pass now: reminders, escalations, due verifications, delivery.

    Action reminders and overdue escalations, verifications fallen due (their runs woken), then
    one delivery of the queued messages. The engine schedules the same pass.
    """
    from aims_core.cli import engine
    from notifications.slack import deliver_due

    settings = get_settings()
    report = capas.tick(settings, runs=engine.runs())
    delivery = deliver_due(settings)
    if as_json:
        print_json({**report.model_dump(mode="json"), "delivery": delivery.model_dump()})
        return
    typer.echo(f"CAPA tracking: {report.summary()}")
    for f in report.failures:
        typer.echo(f"  {f.step} #{f.id}: {f.error}")
