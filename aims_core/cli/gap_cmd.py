"""`aims gap` and `aims plan`: the ISO/IEC 42001 gap assessment and its implementation plan.

`gap start` opens an assessment pre-filled from the records and begins its `gap-assessment`
run, which asks for answers area by area (one ask each: Slack, the Prefect UI with a personal
code); `gap record --as` answers those asks through the same answer service, and without a run
asking records directly (and wakes the run once every requirement is assessed). The run asks
for approval; on approval the plan is made. Reading commands need no engine.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from aims_core import processes
from aims_core.ask_forms.questionnaires import ACCEPT, evidence_name, field_name, note_name
from aims_core.cli._base import print_json, print_table, read_answers
from aims_core.cli.engine import wake
from aims_core.errors import InvalidInput
from aims_core.models import GapStatus
from aims_core.rules.gap import Conformity, area_of, assessable, describe
from aims_core.services import gap, plan
from aims_core.services.gap import GapAssessmentOut
from aims_core.services.gap import report as gap_report
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(no_args_is_help=True, help="Gap assessment against ISO/IEC 42001, maturity.")
plan_app = typer.Typer(no_args_is_help=True, help="The implementation plan made from the gaps.")

DEPLOYMENT = processes.GAP_ASSESSMENT.id
STATUSES = ", ".join(c.value for c in Conformity)


def _progress(a: GapAssessmentOut) -> str:
    return f"{a.answered} of {a.total} requirements assessed ({a.suggested} suggested from records)"


@app.command("requirements")
def requirements(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What an assessment covers: leaf clauses and Annex A controls, by area."""
    rows = [(area_of(r.id), r.id, r.title) for r in assessable()]
    if as_json:
        print_json([{"area": a, "requirement": i, "title": t} for a, i, t in rows])
        return
    print_table(f"Requirements ({len(rows)}); statuses: {STATUSES}", ["area", "id", "title"], rows)


@app.command("start")
def start(
    assessor: str | None = typer.Option(
        None, "--assessor", metavar="EMAIL", help="Who assesses (never an approver)."
    ),
) -> None:
    """Open a gap assessment pre-filled from the records and start its run (needs the engine)."""
    from aims_core.cli.engine import known_person, run_ended, start_run

    uow = UnitOfWork()
    assessor = known_person(assessor, "--assessor")
    take_over = False
    existing = gap.open_assessment(uow)
    if existing is not None:
        ended = run_ended(existing.flow_run_id) if existing.flow_run_id else True
        if ended is None:
            raise InvalidInput(
                f"gap assessment {existing.id} is open in run {existing.flow_run_id}, and the "
                "engine cannot be asked whether that run goes on: start the engine first "
                "(`aims up`)",
                "engine",
            )
        if not ended:
            raise InvalidInput(
                f"gap assessment {existing.id} is still {existing.status.value} in run "
                f"{existing.flow_run_id}: record answers with `aims gap record {existing.id} ...`",
                "assessment",
            )
        take_over = True
    run_id, name, url = start_run(
        DEPLOYMENT,
        {"assessor": assessor, "take_over": take_over},
        name=gap.run_name(datetime.now(UTC)),
        tags=["gap-assessment"],
    )
    typer.echo(f"started run {name} ({run_id})\n{url}")
    typer.echo(
        "answer the run's asks area by area in Slack, the Prefect UI, or with "
        "`aims gap record REQ --status STATUS --as EMAIL` / `aims gap record --file answers.yaml "
        "--as EMAIL`"
    )


def _target(assessment: str | None) -> int:
    return gap.resolve(UnitOfWork(), assessment)


@app.command("record")
def record(
    requirement: list[str] = typer.Argument(
        None, metavar="[REQ]...", help="Requirement id(s) to record (e.g. 5.2 A.6.2.4)."
    ),
    status: str | None = typer.Option(None, "--status", help=f"One of: {STATUSES}."),
    note: str = typer.Option("", "--note", help="Notes; the justification for not-applicable."),
    evidence: list[str] = typer.Option(
        [], "--evidence", metavar="REF", help="Evidence link (record id, URL); repeatable."
    ),
    file: Path | None = typer.Option(
        None, "--file", "-f", help="YAML: requirement id -> status or {status, note, evidence}."
    ),
    accept_suggestions: bool = typer.Option(
        False, "--accept-suggestions", help="Confirm the suggested status of unanswered ones."
    ),
    assessment: str | None = typer.Option(
        None, "--assessment", metavar="ID", help="Default: the open assessment."
    ),
    email: str | None = typer.Option(
        None, "--as", metavar="EMAIL", help="Who answers (required while the run asks)."
    ),
) -> None:
    """Record conformity (all or nothing); wakes the waiting run once every requirement has one.

    While the assessment's run asks for an area, answers in that area (and
    --accept-suggestions) answer its ask (`--as`: someone it was put to), with the same checks
    as Slack and the Prefect UI; the run records them.
    """
    from aims_core.cli._part_asks import answer_parts, fields_of, open_part_asks

    answers: dict[str, Any] = (
        read_answers(file, "requirement ids", '"5.2": conforming') if file else {}
    )
    if requirement:
        if status is None:
            raise InvalidInput(f"give --status ({STATUSES}) for {', '.join(requirement)}", "status")
        for req in requirement:
            answers[req] = {"status": status, "note": note, "evidence": evidence}
    elif status is not None:
        raise InvalidInput("--status needs the requirement id(s) it applies to", "requirement")
    if not answers and not accept_suggestions:
        raise InvalidInput(
            "give REQ --status STATUS, --file answers.yaml or --accept-suggestions", "answers"
        )
    target = _target(assessment)
    asks = open_part_asks(gap.subject(target))
    to_asks: dict[int, dict[str, Any]] = {}
    asked: set[str] = set()
    for ask in asks:
        fields = fields_of(ask)
        part: dict[str, Any] = {ACCEPT: True} if accept_suggestions else {}
        for req, given in answers.items():
            if field_name(req) in fields:
                part |= _ask_fields(req, given)
                asked.add(req)
        if part:
            to_asks[ask.id] = part
    direct = {k: v for k, v in answers.items() if k not in asked}
    if direct and to_asks:  # checked before anything goes to an ask: all or nothing
        gap.check_answers(direct)
    answer_parts(f"gap assessment {target}", asks, email, to_asks)
    uow = UnitOfWork()
    out = gap.get(uow, target)
    if direct:
        out = gap.record(uow, target, direct, Actor.cli())
    if accept_suggestions and not to_asks:
        out = gap.accept_suggestions(uow, target, Actor.cli())
    if to_asks:
        typer.echo(f"answered {len(to_asks)} area(s) through the run's asks: it records them")
    typer.echo(f"gap assessment {out.id}: {_progress(out)}")
    if out.missing:
        more = " …" if len(out.missing) > 12 else ""
        typer.echo(f"not assessed yet: {', '.join(out.missing[:12])}{more}")
    elif out.status is GapStatus.draft and out.flow_run_id and not to_asks:
        typer.echo(
            wake(
                out.flow_run_id,
                attempts=10,
                resumed="resumed (next: approval)",
                ended="`aims gap start` continues it",
                retry=f"once the engine is up: `aims gap resume {out.id}`",
            )
        )


def _ask_fields(requirement: str, given: object) -> dict[str, Any]:
    """One requirement's answer (a status, or {status, note, evidence}) as its area form's
    fields; what is left out stays as recorded."""
    if not isinstance(given, dict):
        given = {"status": given}
    out: dict[str, Any] = {field_name(requirement): given.get("status")}
    if given.get("note"):
        out[note_name(requirement)] = given["note"]
    links = given.get("evidence")
    if links:
        out[evidence_name(requirement)] = [links] if isinstance(links, str) else links
    return out


@app.command("resume")
def resume(assessment: str | None = typer.Argument(None, metavar="[ID]")) -> None:
    """Wake the run of a fully assessed assessment (if an earlier wake did not reach it)."""
    out = gap.get(UnitOfWork(), _target(assessment))
    if out.missing:
        raise InvalidInput(f"{len(out.missing)} requirement(s) not assessed yet", "answers")
    if out.status is not GapStatus.draft or not out.flow_run_id:
        typer.echo(f"gap assessment {out.id} is {out.status.value}: no run waits for answers")
        return
    typer.echo(wake(out.flow_run_id, attempts=10, retry="start the engine: `aims up`"))


@app.command("show")
def show(
    assessment: str | None = typer.Argument(None, metavar="[ID]"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """An assessment: progress, maturity, and each requirement with its suggestion."""
    a = gap.get(UnitOfWork(), _target(assessment))
    if as_json:
        print_json(a)
        return
    typer.echo(f"gap assessment {a.id}: {a.status.value}, {_progress(a)}; assessor {a.assessor}")
    if a.maturity:
        levels = ", ".join(f"{k} {v}" for k, v in a.maturity.levels().items())
        typer.echo(f"maturity: overall {a.maturity.overall} ({a.maturity.overall_name}); {levels}")
    if a.request_id:
        typer.echo(f"approval: request {a.request_id} (`aims approvals show {a.request_id}`)")
    print_table(
        "Requirements",
        ["requirement", "status", "suggested", "records", "note"],
        [
            (
                r.requirement,
                describe(r.shown_status),
                describe(r.suggested_status or "-"),
                "; ".join(r.suggested_records)[:70],
                r.note[:50],
            )
            for r in a.requirements
        ],
    )


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Gap assessments, newest first."""
    rows = gap.list_assessments(UnitOfWork())
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Gap assessments ({len(rows)})",
        ["id", "status", "assessed", "overall maturity", "assessor", "approved"],
        [
            (
                a.id,
                a.status.value,
                f"{a.answered}/{a.total}",
                a.maturity.overall if a.maturity and a.status is GapStatus.approved else "-",
                a.assessor,
                f"{a.approved_at:%Y-%m-%d}" if a.approved_at else "-",
            )
            for a in rows
        ],
    )


@app.command("report")
def report(
    assessment: str | None = typer.Argument(None, metavar="[ID]"),
    output: Path = typer.Option(Path("."), "--output", "-o", help="Directory for the files."),
) -> None:
    """Write the gap report (HTML, Markdown, charts) and the workbook (assessment, plan, RACI)."""
    files = gap_report.write_report(UnitOfWork(), _target(assessment), output)
    for kind, path in files.items():
        typer.echo(f"{kind}: {path}")


@app.command("readiness")
def readiness(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Certification readiness: per requirement what an auditor asks for, whether it exists."""
    r = gap.readiness(UnitOfWork())
    if as_json:
        print_json(r)
        return
    print_table(
        f"Certification readiness: {r.percent} % ({r.ready} of {len(r.rows)} requirements)",
        ["requirement", "ready", "an auditor asks for", "records"],
        [
            (x.requirement, "yes" if x.ready else "NO", x.asks[:70], "; ".join(x.records)[:70])
            for x in r.rows
        ],
    )


@app.command("trends")
def trends(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Overall maturity and conformity across approved assessments, oldest first."""
    points = gap.trends(UnitOfWork())
    if as_json:
        print_json(points)
        return
    print_table(
        "Gap assessment trend",
        ["assessment", "approved", "overall", "% conforming", "levels"],
        [
            (
                f"#{p.assessment_id}",
                f"{p.approved_at:%Y-%m-%d}",
                p.overall,
                p.conforming_pct,
                " ".join(f"{k}:{v}" for k, v in p.levels.items()),
            )
            for p in points
        ],
    )


# --- aims plan ---------------------------------------------------------------------------------


@plan_app.command("show")
def plan_show(
    open_only: bool = typer.Option(False, "--open", help="Only open tasks."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The current implementation plan (from the latest approved gap assessment)."""
    tasks = plan.list_tasks(UnitOfWork(), open_only=open_only)
    if as_json:
        print_json(tasks)
        return
    if not tasks:
        typer.echo("no plan yet: it is made when a gap assessment is approved (`aims gap start`)")
        return
    print_table(
        f"Implementation plan of gap assessment {tasks[0].assessment_id} ({len(tasks)} tasks)",
        ["#", "phase", "requirement", "priority", "owner", "due", "status", "closes with"],
        [
            (
                t.id,
                t.phase,
                t.requirement,
                t.priority,
                t.owner,
                f"{t.due_at:%Y-%m-%d}",
                f"{t.status.value}{' (overdue)' if t.overdue else ''}",
                t.evidence_kind,
            )
            for t in tasks
        ],
    )


@plan_app.command("export")
def plan_export(
    xlsx: Path = typer.Option(..., "--xlsx", help="The workbook to write (.xlsx)."),
) -> None:
    """Write the plan workbook: Assessment, Maturity, Plan (one row per gap) and RACI sheets."""
    plan.export_path_check(xlsx)
    uow = UnitOfWork()
    with uow.read():
        plan_of = plan.current_plan_id(uow.session)
    if plan_of is None:
        raise InvalidInput("no approved gap assessment yet, so no plan to export", "plan")
    tasks = gap_report.write_workbook(uow, plan_of, xlsx)
    typer.echo(f"wrote {xlsx}: {len(tasks)} plan task(s) of gap assessment {plan_of}")


@plan_app.command("done")
def plan_done(
    task: int = typer.Argument(..., metavar="TASK"),
    evidence: int | None = typer.Option(
        None, "--evidence", metavar="ID", help="The evidence record (default: newest that fits)."
    ),
) -> None:
    """Close a task on the evidence it names (refused without it)."""
    out = plan.close_task(UnitOfWork(), task, Actor.cli(), evidence_id=evidence)
    typer.echo(f"plan task {out.id} ({out.requirement}) done on evidence {out.evidence_id}")


@plan_app.command("tick")
def plan_tick() -> None:
    """One tracking pass now: close tasks whose evidence exists, remind, escalate."""
    from aims_core.settings import get_settings

    typer.echo(plan.tick(get_settings()).summary())
