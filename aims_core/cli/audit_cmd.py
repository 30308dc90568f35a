"""`aims audit`: the internal audit programme, audits, findings and reports (9.2).

`plan` builds the programme (records only); `start` begins an audit's `internal-audit` run,
which asks the auditor for the fieldwork one entry at a time; `finding` and `complete` answer
the run's open entry (`--as` the auditor: the same checks as Slack and the Prefect UI), or, when
no run asks, record directly; `report` writes the report at any time.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from aims_core import processes
from aims_core.cli._base import print_json, print_table
from aims_core.cli.engine import run_ended, wake
from aims_core.errors import Conflict, InvalidInput
from aims_core.models import AuditStatus
from aims_core.services import audits
from aims_core.services.approvals import ApprovalRequestOut
from aims_core.services.audits import AuditOut
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(
    no_args_is_help=True, help="The internal audit programme, audits, findings and reports (9.2)."
)

DEPLOYMENT = processes.INTERNAL_AUDIT.id


def _audit_rows(rows: list[AuditOut]) -> list[tuple[object, ...]]:
    return [
        (
            a.id,
            a.period,
            a.status.value,
            len(a.scope),
            ", ".join(a.areas),
            ", ".join(a.systems) or "-",
            a.auditor or "unassigned",
            len(a.findings),
        )
        for a in rows
    ]


AUDIT_COLUMNS = ["id", "period", "status", "reqs", "areas", "systems", "auditor", "findings"]


@app.command("plan")
def plan(
    cycle_years: int | None = typer.Option(
        None, "--cycle-years", help="Years to cover everything in (default AIMS_AUDIT_CYCLE_YEARS)."
    ),
    start: str | None = typer.Option(
        None, "--start", help="First period, e.g. 2026Q4 (default: the current one)."
    ),
    name: str | None = typer.Option(None, "--name", help="The programme's name (its identity)."),
    as_json: bool = typer.Option(False, "--json", help="Print the programme as JSON."),
) -> None:
    """Build the audit programme: every clause and Annex A control allocated to the periods of
    the cycle, one planned audit per period with an independent auditor. Idempotent by name."""
    result = audits.plan_programme(
        UnitOfWork(), {"cycle_years": cycle_years, "start": start, "name": name}, Actor.cli()
    )
    p = result.programme
    if as_json:
        print_json(result)
        return
    verb = "planned" if result.created else "already planned (unchanged)"
    typer.echo(
        f"programme {p.name!r} {verb}: {len(p.audits)} audits, {p.periods[0]} to {p.periods[-1]}"
    )
    print_table(f"Audits of {p.name}", AUDIT_COLUMNS, _audit_rows(p.audits))
    for area, why in result.yearly.items():
        typer.echo(f"every year: {area}: {why}")
    for line in result.unassigned:
        typer.echo(f"unassigned: {line}")
    typer.echo("coverage: " + ", ".join(p.coverage.lines()))
    if p.coverage.missing:
        typer.echo(f"not covered: {', '.join(p.coverage.missing)}")


@app.command("list")
def list_(
    programme: str | None = typer.Option(None, "--programme", help="Only this programme's."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List audits in the order they are planned."""
    rows = audits.list_audits(UnitOfWork(), programme=programme)
    if as_json:
        print_json(rows)
        return
    print_table(f"Audits ({len(rows)})", AUDIT_COLUMNS, _audit_rows(rows))


@app.command("show")
def show(
    audit_id: int = typer.Argument(..., metavar="AUDIT", help="The audit's id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """An audit: scope and why, checklist, findings, what it waits for."""
    a = audits.get_audit(UnitOfWork(), audit_id)
    if as_json:
        print_json(a)
        return
    typer.echo(f"audit {a.id}: {a.title}")
    typer.echo(f"programme {a.programme} · period {a.period} · status {a.status.value}")
    typer.echo(f"auditor: {a.auditor or 'unassigned'} · systems: {', '.join(a.systems) or '-'}")
    print_table(
        "Checklist",
        ["requirement", "question", "look for", "records held", "why in scope"],
        [
            (
                i["control"],
                i["question"],
                "; ".join(i["look_for"]),
                "; ".join(i["records"]) or "-",
                a.scope_reasons.get(i["control"], ""),
            )
            for i in a.checklist
        ],
    )
    if a.findings:
        print_table(
            "Findings",
            ["id", "requirement", "kind", "system", "CAPA", "statement"],
            [
                (f.id, f.control_id, f.kind.value, f.system, f.capa_id, f.statement)
                for f in a.findings
            ],
        )
    typer.echo(f"next: {a.next_step()}")


@app.command("assign")
def assign(
    audit_id: int = typer.Argument(..., metavar="AUDIT", help="The audit's id."),
    auditor: str = typer.Option(..., "--auditor", metavar="EMAIL", help="The auditor."),
) -> None:
    """Assign an auditor; refused, naming the conflict, if they would audit their own work."""
    a = audits.assign_auditor(UnitOfWork(), audit_id, auditor, Actor.cli())
    typer.echo(f"audit {a.id} ({a.period}): auditor {a.auditor_name} <{a.auditor}>")


@app.command("start")
def start(audit_id: int = typer.Argument(..., metavar="AUDIT", help="The audit's id.")) -> None:
    """Start the audit's run: it marks the audit in progress, publishes the checklist and waits
    (suspended) for the fieldwork."""
    from aims_core.cli.engine import start_run

    a = audits.check_startable(UnitOfWork(), audit_id)
    if a.flow_run_id and a.status is not AuditStatus.planned:
        ended = run_ended(a.flow_run_id)
        if ended is None:
            raise InvalidInput(
                f"audit {a.id} is followed by run {a.flow_run_id}, and the engine cannot be asked "
                "whether it still goes on: start the engine first (`aims up`)",
                "engine",
            )
        if not ended:
            raise Conflict(f"audit {a.id} is already followed by run {a.flow_run_id}", "audit")
    run_id, name, url = start_run(
        DEPLOYMENT, {"audit_id": a.id}, name=audits.run_name(a), tags=audits.run_tags(a)
    )
    audits.start_audit(UnitOfWork(), a.id, run_id, Actor.cli())
    typer.echo(f"started run {name} ({run_id})\n{url}")


#: How long `finding`/`complete` wait for the run to ask its next entry (it is recording the last).
NEXT_ENTRY_WAIT = 20.0


def _run_asks(audit_id: int) -> ApprovalRequestOut | None:
    """The fieldwork entry the audit's run asks now; None when no run asks (the direct path).
    Between two entries (the run recording the last answer) waits for the next one."""
    deadline = time.monotonic() + NEXT_ENTRY_WAIT
    while True:
        ask = audits.open_fieldwork_ask(UnitOfWork(), audit_id)
        if ask is not None:
            return ask
        a = audits.get_audit(UnitOfWork(), audit_id)
        if a.status is not AuditStatus.in_progress or not a.flow_run_id:
            return None
        if run_ended(a.flow_run_id) is not False:  # ended, or no engine: nothing is asking
            return None
        if time.monotonic() > deadline:
            raise Conflict(
                f"audit {audit_id}'s run {a.flow_run_id} is not asking for fieldwork yet: try "
                "again in a moment",
                "audit",
            )
        time.sleep(0.5)


def _answer(
    audit_id: int, ask: ApprovalRequestOut, email: str | None, answer: dict[str, object]
) -> None:
    from aims_core.cli.approvals_cmd import answer_open_ask

    answer_open_ask(ask, email, answer, asker=f"audit {audit_id}'s run", what="for the fieldwork")


AS_HELP = "The auditor answering (required while the audit's run asks)."


@app.command("finding")
def finding(
    audit_id: int = typer.Argument(..., metavar="AUDIT", help="The audit's id."),
    control: str = typer.Option(..., "--control", help="The requirement (in the audit's scope)."),
    kind: str = typer.Option(..., "--kind", help="major-nc, minor-nc, observation or opportunity."),
    statement: str = typer.Option(..., "--statement", help="What was found, and against what."),
    system: str | None = typer.Option(None, "--system", help="The AI system concerned."),
    seen: str | None = typer.Option(
        None, "--seen", help="What you saw: records, interviews, samples, evidence ids."
    ),
    evidence: Path | None = typer.Option(
        None, "--evidence", help="A file to keep as evidence (only when no run asks)."
    ),
    email: str | None = typer.Option(None, "--as", metavar="EMAIL", help=AS_HELP),
) -> None:
    """Record a finding of the fieldwork; a nonconformity opens its CAPA at once. While the
    audit's run asks, this answers its open entry in the auditor's name (`--as`)."""
    ask = _run_asks(audit_id)
    if ask is not None:
        if evidence is not None:
            raise InvalidInput(
                "the run's fieldwork entry takes what you saw as text (--seen); keep the file "
                f"with `aims evidence add --subject audit:{audit_id} --file ...` and name its id",
                "evidence",
            )
        answer = {"control": control, "kind": kind, "statement": statement, "evidence": seen}
        _answer(audit_id, ask, email, answer | ({"system": system} if system else {}))
        return
    f = audits.record_finding(
        UnitOfWork(),
        audit_id,
        {
            "control": control,
            "kind": kind,
            "statement": statement,
            "system": system,
            "evidence": evidence,
            "evidence_note": seen,
        },
        Actor.cli(),
    )
    typer.echo(
        f"finding {f.id} recorded in audit {audit_id}: {f.kind.value} on {f.control_id}"
        + (f" ({f.system})" if f.system else "")
        + f", evidence #{f.evidence_id}"
    )
    if f.capa_id:
        typer.echo(f"opened CAPA {f.capa_id} (its run starts with the audit's report)")


@app.command("complete")
def complete(
    audit_id: int = typer.Argument(..., metavar="AUDIT", help="The audit's id."),
    email: str | None = typer.Option(None, "--as", metavar="EMAIL", help=AS_HELP),
) -> None:
    """Fieldwork done: the run renders the report and asks for its approval. While the audit's
    run asks, this answers its open entry in the auditor's name (`--as`)."""
    ask = _run_asks(audit_id)
    if ask is not None:
        _answer(audit_id, ask, email, {"complete": True})
        return
    a = audits.complete_fieldwork(UnitOfWork(), audit_id, Actor.cli())
    typer.echo(f"audit {a.id}: fieldwork complete, {len(a.findings)} finding(s); now reporting")
    if not a.flow_run_id:
        typer.echo(f"no run follows it: `aims audit start {a.id}` renders and asks for approval")
        return
    typer.echo(
        wake(a.flow_run_id, attempts=30, retry=f"`aims audit start {a.id}` once the engine is up")
    )


@app.command("report")
def report(
    audit_id: int = typer.Argument(..., metavar="AUDIT", help="The audit's id."),
    output: Path = typer.Option(Path("."), "--output", help="Directory to write into."),
) -> None:
    """Write the audit's report (HTML and Markdown) as it stands now."""
    html, md = audits.render_report(UnitOfWork(), audit_id, output)
    typer.echo(f"wrote {html}\nwrote {md}")
