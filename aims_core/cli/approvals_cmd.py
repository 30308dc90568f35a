"""`aims approvals list/show`, `aims approve`, `aims reject`: the operator channel for decisions.

The CLI is trusted as far as database access is, so it needs no personal code; it records the OS
user beside the approver it claims to speak for, and goes through the same service (and the same
checks) as Slack and the Prefect UI.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import typer

from aims_core import processes
from aims_core.cli._base import print_json, print_table
from aims_core.errors import AimsError
from aims_core.models import ApprovalStatus, Outcome
from aims_core.services import approvals
from aims_core.services.approvals import ApprovalRequestOut, DecisionIn
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(no_args_is_help=True, help="Approval requests: what waits for whom.")


class StatusFilter(StrEnum):
    open = "open"
    approved = "approved"
    rejected = "rejected"
    cancelled = "cancelled"
    all = "all"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def _progress(r: ApprovalRequestOut) -> str:
    text = f"{len(r.approvals)}/{r.quorum}"
    return f"{text}, {len(r.rejections)} rejected" if r.rejections else text


@app.command("list")
def list_(
    mine: str | None = typer.Option(
        None, "--mine", metavar="EMAIL", help="Only requests this approver may decide."
    ),
    status: StatusFilter = typer.Option(StatusFilter.open, "--status", help="Which requests."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List approval requests (open ones by default); with --mine and open, those still
    waiting for that approver's answer."""
    wanted = None if status is StatusFilter.all else ApprovalStatus(status.value)
    rows = approvals.list_requests(
        UnitOfWork(),
        status=wanted,
        approver=mine,
        undecided_only=mine is not None and wanted is ApprovalStatus.open,
    )
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Approval requests ({status.value}: {len(rows)})",
        ["id", "title", "subject", "status", "approvals", "approvers", "deadline"],
        [
            (
                r.id,
                r.title,
                r.subject,
                r.status.value,
                _progress(r),
                ", ".join(r.approvers),
                _when(r.deadline),
            )
            for r in rows
        ],
    )


@app.command("show")
def show(
    request_id: int = typer.Argument(..., metavar="ID", help="The request id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one request: what is asked, who may decide, and who decided how, through which
    channel."""
    r = approvals.get_request(UnitOfWork(), request_id)
    if as_json:
        print_json(r)
        return
    lines = [
        f"request {r.id}: {r.title}",
        f"  subject:   {r.subject} (activity {r.activity}"
        + (f", system {r.system})" if r.system else ")"),
        f"  status:    {r.status.value}, {_progress(r)} approvals, round {r.round}",
        f"  requester: {r.requester or '-'} (requested by {r.requested_by})",
        f"  approvers: {', '.join(r.approvers)}",
        f"  deadline:  {_when(r.deadline)}",
        f"  created:   {_when(r.created_at)}"
        + (f", decided {_when(r.decided_at)}" if r.decided_at else ""),
    ]
    if r.evidence_ids:
        lines.append(f"  evidence:  {', '.join(str(i) for i in r.evidence_ids)}")
    if r.flow_run_id:
        pending = " (resume pending)" if r.resume_pending else ""
        lines.append(f"  flow run:  {r.flow_run_id}{pending}")
    typer.echo("\n".join(lines))
    if r.details:
        typer.echo("\n" + r.details)
    if r.decisions:
        print_table(
            "Decisions",
            ["person", "outcome", "channel", "actor", "round", "at", "comment"],
            [
                (
                    d.person,
                    d.outcome.value,
                    d.channel,
                    d.actor,
                    d.round,
                    _when(d.decided_at),
                    d.comment,
                )
                for d in r.decisions
            ],
        )
    else:
        typer.echo("\nno decisions yet")


@app.command("request")
def request(
    subject: str = typer.Option(..., "--subject", help="What is decided, KIND:ID (policy:ai-2)."),
    title: str = typer.Option(..., "--title", help="One line shown to the approvers."),
    role: list[str] = typer.Option(..., "--role", help="Approver role; repeat for several."),
    quorum: int = typer.Option(1, "--quorum", help="Approvals needed."),
    activity: str = typer.Option("approval", "--activity", help="RACI activity that scopes it."),
    system: str | None = typer.Option(None, "--system", help="The AI system, if any."),
    requester: str | None = typer.Option(None, "--requester", help="Your email (never approves)."),
    details: str = typer.Option("", "--details", help="Markdown shown with the request."),
) -> None:
    """Ask for a decision: starts an `approval` run that waits (suspended) for the approvers."""
    import uuid

    from aims_core.cli.engine import known_person, known_roles, known_system, start_run

    # Checked before anything starts: a run given an unknown name would only fail later.
    requester = known_person(requester, "--requester")
    system = known_system(system, "--system")
    role = known_roles(role, "--role")
    spec = approvals.ApprovalRequestIn(
        idempotency_key=f"cli-{uuid.uuid4().hex}",
        subject=subject,
        activity=activity,
        system=system,
        title=title,
        details=details,
        approver_roles=role,
        quorum=quorum,
        requester=requester,
    )
    run_id, name, url = start_run(
        processes.APPROVAL.id,
        {"spec": spec.model_dump(mode="json")},
        name=f"approval {spec.subject}: {spec.title}",
        tags=["approval", *([system] if system else [])],
    )
    typer.echo(f"started run {name} ({run_id})\n{url}")


@app.command("reconcile")
def reconcile(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """One reconciler pass now: resume decided runs, remind approvers, escalate overdue requests.

    The engine runs the same pass every 5 minutes (deployment approval-reconciler).
    """
    from aims_core.cli import engine
    from aims_core.services.reconcile import reconcile as reconcile_pass
    from notifications.slack import SlackDelivery

    settings = get_settings()
    report = reconcile_pass(settings, runs=engine.runs(), delivery=SlackDelivery(settings))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        typer.echo(report.summary())


def _decide(request_id: int, email: str, outcome: Outcome, comment: str) -> None:
    actor = Actor(who=f"{Actor.cli().who} as {email.strip().lower()}", channel="cli")
    data = DecisionIn(request_id=request_id, person=email, outcome=outcome, comment=comment)
    result = approvals.decide(UnitOfWork(), data, actor)
    verb = "approval" if outcome is Outcome.approve else "rejection"
    head = f"recorded {verb}" if result.recorded else f"{verb} already recorded"
    typer.echo(f"{head} by {data.person} on request {request_id}: {result.summary()}")
    follow_up(result)


def follow_up(result: approvals.DecisionResult) -> None:
    """After an answer recorded from the CLI, the same follow-up as a Slack click: update the
    Slack messages, then resume the waiting run (or say it is left for the reconciler)."""
    if not result.recorded:
        return
    from notifications.interactions import after_decision

    resumed = after_decision(get_settings(), result)
    if result.resume_needed:
        if str(resumed) == "resumed":
            typer.echo(f"flow run {result.flow_run_id}: resumed")
        else:
            why = resumed or "engine not reachable"
            typer.echo(
                f"flow run {result.flow_run_id}: resume pending ({why}; the approval "
                "reconciler resumes it once the engine is up)"
            )


def answer_ask(request_id: int, email: str, answer: dict[str, object]) -> None:
    """Answer the run's ask through the answer service, then what every channel does next."""
    who = email.strip().lower()
    data = approvals.DecisionIn(
        request_id=request_id, person=who, outcome=Outcome.answer, answer=answer
    )
    actor = Actor(who=f"{Actor.cli().who} as {who}", channel="cli")
    result = approvals.decide(UnitOfWork(), data, actor)
    head = "recorded answer" if result.recorded else "answer already recorded"
    typer.echo(f"{head} by {who} on ask {request_id}: {result.summary()}")
    follow_up(result)


def open_ask(key: str) -> approvals.ApprovalRequestOut | None:
    """The run's ask opened under `key`, while it is open (None: no run asks for it now)."""
    ask = approvals.request_by_key(UnitOfWork(), key)
    return ask if ask is not None and ask.status == "open" else None


def answer_open_ask(
    ask: approvals.ApprovalRequestOut,
    email: str | None,
    answer: dict[str, object],
    *,
    asker: str,
    what: str,
) -> None:
    """A domain command (`aims capa containment`, `aims incident rca`, ...) while a run asks for
    the step: it answers that ask as `email` (required then, one line naming who is asked),
    through the answer service — nothing records the step around the ask."""
    if not email:
        raise AimsError(
            f"{asker} asks {', '.join(ask.approvers)} {what} (ask {ask.id}): give --as EMAIL",
            "as",
        )
    answer_ask(ask.id, email, answer)


def approve(
    request_id: int = typer.Argument(..., metavar="REQUEST", help="The request id."),
    email: str = typer.Option(..., "--as", metavar="EMAIL", help="The approver deciding."),
    comment: str = typer.Option("", "--comment", help="Why (optional for an approval)."),
) -> None:
    """Approve a request on behalf of an eligible approver (recorded with your OS user)."""
    _decide(request_id, email, Outcome.approve, comment)


def reject(
    request_id: int = typer.Argument(..., metavar="REQUEST", help="The request id."),
    email: str = typer.Option(..., "--as", metavar="EMAIL", help="The approver deciding."),
    comment: str = typer.Option(..., "--comment", help="Why it is rejected (required)."),
) -> None:
    """Reject a request on behalf of an eligible approver (recorded with your OS user)."""
    _decide(request_id, email, Outcome.reject, comment)
