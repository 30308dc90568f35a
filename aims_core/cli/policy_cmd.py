"""`aims policy`: Policies, their versions, reviews and exceptions (5.2, A.2).

`propose` records a new version and starts its `policy-approval` run (the version is recorded
even when the engine is down; `submit` starts the run later). Everything else only reads or
writes records and works without the engine.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from aims_core.cli._base import print_json, print_table
from aims_core.errors import InvalidInput
from aims_core.services import policies
from aims_core.services.policies import VersionOut
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(
    no_args_is_help=True, help="Policies, their versions, reviews and exceptions (5.2, A.2)."
)
exception_app = typer.Typer(
    no_args_is_help=True, help="Exceptions to a policy: granted until they expire (A.2)."
)
app.add_typer(exception_app, name="exception")

ORGANISATION = typer.Option(
    "the organisation", "--organisation", help="The organisation's name, as the document says it."
)


def _day(value: object) -> str:
    return f"{value:%Y-%m-%d}" if value else "-"


@app.command("add")
def add(
    key: str = typer.Argument(..., help="Short id, e.g. ai-policy."),
    title: str = typer.Option(..., "--title"),
    owner: str = typer.Option(..., "--owner", metavar="EMAIL", help="Who keeps it reviewed."),
    review_months: int = typer.Option(12, "--review-months", help="Months between reviews."),
    template: str | None = typer.Option(
        None, "--template", help="The document template it is rendered from (see `render`)."
    ),
) -> None:
    """Register a governed policy; its text comes with `aims policy propose`."""
    out = policies.add_policy(
        UnitOfWork(),
        {
            "key": key,
            "title": title,
            "owner": owner,
            "review_interval_months": review_months,
            "template": template,
        },
        Actor.cli(),
    )
    typer.echo(
        f"added policy {out.key}: {out.title} (owner {out.owner}, review every "
        f"{out.review_interval_months} months)\nnext: `aims policy propose {out.key} "
        + ("--from-template`" if out.template else "--file TEXT.md`")
    )


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Policies with the version in force, the last review and when the next one is due."""
    rows = policies.list_policies(UnitOfWork())
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Policies ({len(rows)})",
        [
            "key",
            "title",
            "owner",
            "version",
            "status",
            "last review",
            "next due",
            "overdue",
            "exc.",
        ],
        [
            (
                p.key,
                p.title,
                p.owner,
                f"v{p.version}" if p.version else "-",
                p.status + (f" (v{p.pending_version})" if p.pending_version else ""),
                _day(p.last_reviewed_at),
                _day(p.next_review_due),
                "OVERDUE" if p.overdue else "",
                p.open_exceptions or "",
            )
            for p in rows
        ],
    )


@app.command("show")
def show(
    key: str = typer.Argument(...),
    text: bool = typer.Option(False, "--text", help="Print the text of the version in force."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A policy's versions, reviews and exceptions (or, with --text, its approved text)."""
    if text:
        _, body = policies.version_body(UnitOfWork(), key)
        typer.echo(body, nl=False)
        return
    p = policies.get_policy(UnitOfWork(), key)
    if as_json:
        print_json(p)
        return
    typer.echo(
        f"{p.title} ({p.key}), owner {p.owner_name} <{p.owner}>; version in force: "
        f"{'v' + str(p.version) if p.version else '-'}; next review due {_day(p.next_review_due)}"
        + (" (OVERDUE)" if p.overdue else "")
    )
    print_table(
        "Versions",
        ["version", "status", "sha256", "by", "approved", "request", "note / reasons"],
        [
            (
                f"v{v.version}",
                v.status.value,
                v.content_sha256[:12],
                v.created_by,
                _day(v.approved_at),
                v.request_id or "",
                "; ".join(v.reasons) or v.change_note,
            )
            for v in p.versions
        ],
    )
    print_table(
        "Reviews",
        ["reviewed", "outcome", "reviewer", "notes", "evidence"],
        [(_day(r.reviewed_at), r.outcome, r.reviewer, r.notes, r.evidence_id) for r in p.reviews],
    )
    if p.exceptions:
        _exceptions_table(p.exceptions)


def _started(v: VersionOut) -> str:
    """Start the version's approval run; without the engine, say so and how to start it."""
    from aims_core.cli.engine import EngineNotRunning, start_run

    try:
        run_id, name, url = start_run(
            policies.DEPLOYMENT,
            {"version_id": v.id},
            name=v.run_name,
            tags=["policy", v.policy],
        )
    except EngineNotRunning as exc:
        return (
            f"v{v.version} is recorded as a draft, but its approval was not started: "
            f"{exc.message}\nonce the engine runs: `aims policy submit {v.policy}`"
        )
    return f"started run {name} ({run_id})\n{url}"


@app.command("propose")
def propose(
    key: str = typer.Argument(...),
    file: Path | None = typer.Option(None, "--file", help="The new text (Markdown)."),
    from_template: bool = typer.Option(
        False, "--from-template", help="Render the text from the policy's template."
    ),
    note: str = typer.Option("", "--note", help="What changes, for the approvers."),
    as_: str | None = typer.Option(
        None, "--as", metavar="EMAIL", help="Who proposes it (default: the owner)."
    ),
    organisation: str = ORGANISATION,
) -> None:
    """Propose a new version and start its approval (top management, by default)."""
    if (file is None) == (not from_template):
        raise InvalidInput("give either --file or --from-template", "file")
    if file is not None:
        try:
            body = file.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read {file}: {exc}", "file") from None
    else:
        body = policies.render_document(UnitOfWork(), key, organisation=organisation)
    v = policies.propose_version(
        UnitOfWork(), key, {"body": body, "change_note": note, "requester": as_}, Actor.cli()
    )
    typer.echo(f"proposed {v.policy} v{v.version} (sha256 {v.content_sha256[:12]})")
    typer.echo(_started(v))


@app.command("submit")
def submit(key: str = typer.Argument(...)) -> None:
    """Start the approval of a draft recorded while the engine was down."""
    typer.echo(_started(policies.draft_version(UnitOfWork(), key)))


@app.command("review")
def review(
    key: str = typer.Argument(...),
    outcome: str = typer.Option("unchanged", "--outcome", help="unchanged (a change: propose)."),
    notes: str = typer.Option(..., "--notes", help="What was reviewed and concluded."),
    as_: str | None = typer.Option(
        None, "--as", metavar="EMAIL", help="The reviewer (default: the owner)."
    ),
) -> None:
    """Record a periodic review that keeps the version in force."""
    p = policies.record_review(
        UnitOfWork(), key, {"outcome": outcome, "notes": notes, "reviewer": as_}, Actor.cli()
    )
    typer.echo(
        f"reviewed {p.key} v{p.version}: unchanged; next review due {_day(p.next_review_due)}"
    )


@app.command("render")
def render(
    template_or_key: str = typer.Argument(..., metavar="TEMPLATE_OR_KEY"),
    output: Path | None = typer.Option(None, "--output", help="Write here instead of stdout."),
    organisation: str = ORGANISATION,
) -> None:
    """Render a policy document (Markdown) from its template and the organisation's records."""
    text = policies.render_document(UnitOfWork(), template_or_key, organisation=organisation)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, "utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc}", "output") from None
    typer.echo(f"wrote {output} ({len(text.splitlines())} lines)")


@app.command("tick")
def tick() -> None:
    """Run the daily pass now (review reminders, exception reminders and closures)."""
    report = policies.tick(get_settings())
    typer.echo(f"policy reviews: {report.summary()}")
    for f in report.failures:
        typer.echo(f"  failed {f.step} {f.id}: {f.error}", err=True)


def _exceptions_table(rows: list[policies.ExceptionOut]) -> None:
    print_table(
        f"Policy exceptions ({len(rows)})",
        ["id", "policy", "title", "system", "owner", "expires", "status", "closed"],
        [
            (
                e.id,
                e.policy,
                e.title,
                e.system or "",
                e.owner,
                _day(e.expires_at),
                e.status.value,
                _day(e.closed_at) if e.closed_at else "",
            )
            for e in rows
        ],
    )


@exception_app.command("add")
def exception_add(
    key: str = typer.Argument(..., help="The policy."),
    title: str = typer.Option(..., "--title"),
    reason: str = typer.Option(..., "--reason"),
    owner: str = typer.Option(..., "--owner", metavar="EMAIL"),
    expires: str = typer.Option(..., "--expires", metavar="YYYY-MM-DD"),
    system: str | None = typer.Option(None, "--system", help="The AI system concerned."),
) -> None:
    """Grant an exception until the end of its expiry date."""
    try:
        day = date.fromisoformat(expires.strip())
    except ValueError:
        raise InvalidInput(f"'{expires}' is not a date YYYY-MM-DD", "expires") from None
    e = policies.add_exception(
        UnitOfWork(),
        key,
        {"title": title, "reason": reason, "owner": owner, "expires": day, "system": system},
        Actor.cli(),
    )
    typer.echo(f"exception {e.id} to {e.policy} granted until {day} (owner {e.owner})")


@exception_app.command("list")
def exception_list(
    open_only: bool = typer.Option(False, "--open", help="Only open exceptions."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Exceptions, soonest expiry first."""
    rows = policies.list_exceptions(UnitOfWork(), open_only=open_only)
    if as_json:
        print_json(rows)
    else:
        _exceptions_table(rows)


@exception_app.command("close")
def exception_close(exception_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Close an exception before it expires (the deviation has ended)."""
    e = policies.close_exception(UnitOfWork(), exception_id, Actor.cli())
    typer.echo(f"exception {e.id} to {e.policy}: {e.status.value}")
