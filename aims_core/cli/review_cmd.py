"""`aims review`: Management reviews: the prepared pack, minutes and decisions (9.3).

`prepare` writes the pack without the engine; `start` starts the `management-review` run, which
prepares the pack and asks top management for their word on the minutes (waits suspended);
`minutes --as` answers that ask, as Slack and the Prefect UI form do. Decisions are
recorded with `decide` while the minutes are not approved; the next review reports them under
input a).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import typer

from aims_core import processes
from aims_core.cli._base import console, print_json, print_table
from aims_core.uow import Actor, UnitOfWork

if TYPE_CHECKING:
    from aims_core.services.reviews import ReviewOut

app = typer.Typer(
    no_args_is_help=True, help="Management reviews: the prepared pack, minutes and decisions (9.3)."
)

DEPLOYMENT = processes.MANAGEMENT_REVIEW.id


def _reviews() -> ModuleType:
    """The service, imported when a command runs: pandas and matplotlib cost about a second at
    import, and `aims --help` must not pay it."""
    from aims_core.services import reviews

    return reviews


def _period(period: str | None) -> str:
    uow = UnitOfWork()
    if period is None:
        return _reviews().default_period(None, uow.settings.timezone)
    _reviews().period_bounds(period, uow.settings.timezone)  # a bad period fails here, plainly
    return period.strip()


@app.command("prepare")
def prepare(
    period: str | None = typer.Option(
        None, "--period", help="The quarter, e.g. 2026Q4 (default: the last full quarter)."
    ),
    output: Path | None = typer.Option(
        None, "--output", help="Directory of the pack (default: <reviews dir>/<period>)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the review as JSON."),
) -> None:
    """Gather the 9.3.2 inputs and write the pack (HTML, Markdown, Excel) without the engine."""
    con = console()
    with con.status("preparing the management review") as status:
        out = _reviews().prepare(
            UnitOfWork(), _period(period), output, Actor.cli(), progress=status.update
        )
    if as_json:
        print_json(out)
        return
    typer.echo(f"prepared management review {out.period} ({out.status.value})")
    for ext, path in out.files().items():
        typer.echo(f"  {ext:5} {path}")
    typer.echo(
        f"evidence: {', '.join(f'#{i}' for i in out.pack_evidence_ids)}\n"
        f"next: record decisions with `aims review decide {out.period} ...`; ask top "
        f"management to approve the minutes with `aims review start --period {out.period}`"
    )


@app.command("start")
def start(
    period: str | None = typer.Option(
        None, "--period", help="The quarter, e.g. 2026Q4 (default: the last full quarter)."
    ),
) -> None:
    """Start the management-review run: pack, then the minutes approval (waits suspended)."""
    from aims_core.cli.engine import start_run

    p = _period(period)
    run_id, name, url = start_run(
        DEPLOYMENT, {"period": p}, name=f"management review {p}", tags=["management-review", p]
    )
    typer.echo(f"started run {name} ({run_id})\n{url}")


@app.command("decide")
def decide(
    period: str = typer.Argument(..., help="The review's quarter, e.g. 2026Q4."),
    decision: str = typer.Option(..., "--decision", help="What was decided, in one line."),
    kind: str = typer.Option(..., "--kind", help="improvement, change or resources."),
    owner: str = typer.Option(..., "--owner", metavar="EMAIL", help="Who carries it out."),
    due: datetime = typer.Option(..., "--due", formats=["%Y-%m-%d"], help="YYYY-MM-DD."),
) -> None:
    """Record a decision of the review (9.3.3) as a tracked action."""
    out = _reviews().decide(
        UnitOfWork(),
        period,
        {"decision": decision, "kind": kind, "owner": owner, "due": due.date()},
        Actor.cli(),
    )
    typer.echo(
        f"recorded action {out.id} of review {out.review}: ({out.kind}) {out.decision} — "
        f"{out.owner}, due {out.due}"
    )


@app.command("minutes")
def minutes(
    period: str = typer.Argument(..., help="The review's quarter, e.g. 2026Q4."),
    email: str = typer.Option(..., "--as", metavar="EMAIL", help="Who answers (top management)."),
    approve: bool = typer.Option(
        None, "--approve/--reject", help="Approve the minutes, or reject them (--notes: why)."
    ),
    notes: str = typer.Option("", "--notes", help="The meeting's conclusions; why, to reject."),
    attendees: str = typer.Option("", "--attendees", help="Who took part in the review."),
) -> None:
    """Answer the review run's ask on the minutes, with the same checks as Slack and the UI."""
    from aims_core.cli.approvals_cmd import answer_ask
    from aims_core.errors import Conflict, InvalidInput

    if approve is None:
        raise InvalidInput("give --approve or --reject", "approve")
    review = _reviews().get_review(UnitOfWork(), period)
    if review.request_id is None:
        raise Conflict(f"no run asks for the minutes of {review.period} yet", "period")
    answer = {
        "outcome": "approve" if approve else "reject",
        "notes": notes,
        "attendees": attendees,
    }
    answer_ask(review.request_id, email, answer)


@app.command("action-done")
def action_done(
    action_id: int = typer.Argument(..., metavar="ID", help="The review action."),
    outcome: str = typer.Option(..., "--outcome", help="What came of it."),
) -> None:
    """Close a review action with its outcome (kept as evidence)."""
    out = _reviews().action_done(UnitOfWork(), action_id, outcome, Actor.cli())
    typer.echo(f"action {out.id} of review {out.review}: done ({out.outcome})")


def _show(r: ReviewOut) -> None:
    typer.echo(
        f"management review {r.period}: {r.status.value}\n"
        f"  period:   {r.period_start:%Y-%m-%d} to {r.period_end:%Y-%m-%d} (UTC bounds)\n"
        f"  prepared: {r.prepared_at:%Y-%m-%d %H:%M} UTC by {r.prepared_by}\n"
        f"  approved: {f'{r.approved_at:%Y-%m-%d %H:%M} UTC' if r.approved_at else '-'}\n"
        f"  request:  {r.request_id or '-'}   run: {r.flow_run_id or '-'}"
    )
    for ext, path in r.files().items():
        typer.echo(f"  {ext:8}  {path}")
    print_table(
        f"Decisions ({len(r.actions)})",
        ["id", "kind", "decision", "owner", "due", "status", "outcome"],
        [(a.id, a.kind, a.decision, a.owner, a.due, a.status, a.outcome) for a in r.actions],
    )
    if r.minutes:
        typer.echo(r.minutes)


@app.command("show")
def show(
    period: str = typer.Argument(..., help="The review's quarter, e.g. 2026Q4."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with the figures)."),
) -> None:
    """One review: status, pack, decisions, minutes."""
    out = _reviews().get_review(UnitOfWork(), period)
    if as_json:
        print_json(out)
    else:
        _show(out)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Management reviews, newest first."""
    rows = _reviews().list_reviews(UnitOfWork())
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Management reviews ({len(rows)})",
        ["period", "status", "prepared", "approved", "decisions", "open", "request"],
        [
            (
                r.period,
                r.status.value,
                f"{r.prepared_at:%Y-%m-%d}",
                f"{r.approved_at:%Y-%m-%d}" if r.approved_at else "",
                len(r.actions),
                sum(a.status in ("open", "overdue") for a in r.actions),
                r.request_id,
            )
            for r in rows
        ],
    )
