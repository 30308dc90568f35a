"""`aims impact`: AI system impact assessments (6.1.4, 8.4, A.5).

`start` begins an `impact-assessment` run, which asks the assessor section by section (Slack,
the Prefect UI form with their personal code, or `answer --as` here, which answers the open asks
through the same answer service); without a run asking, `answer` records directly and wakes the
run once every required question is answered. An assessment is named by its id or by its
system's name (its open assessment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from aims_core import processes
from aims_core.cli._base import print_json, print_table, read_answers
from aims_core.cli.engine import run_ended, wake
from aims_core.errors import InvalidInput, NotFound
from aims_core.models import ImpactStatus
from aims_core.rules.impact_questionnaire import questionnaire
from aims_core.services import impact
from aims_core.services.impact import ImpactAssessmentOut
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(
    no_args_is_help=True, help="AI system impact assessments: questions, answers, records."
)

DEPLOYMENT = processes.IMPACT_ASSESSMENT.id
SHOWN_MAX = 80  # characters of a text answer in the `show` table


def _resolve(target: str) -> int:
    """An assessment id, or a system name standing for its open assessment."""
    target = target.strip()
    if target.isdigit():
        return int(target)
    found = impact.open_for(UnitOfWork(), target)
    if found is None:
        raise NotFound(
            f"{target} has no open impact assessment (start one: `aims impact start {target}`)",
            "assessment",
        )
    return found.id


def _progress(a: ImpactAssessmentOut) -> str:
    done = a.required - len(a.missing_required)
    return f"{done} of {a.required} required questions answered"


@app.command("questions")
def questions(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    template: bool = typer.Option(
        False, "--template", help="Print a blank answers file for `aims impact answer --file`."
    ),
) -> None:
    """The questionnaire: sections, question ids, kinds and the Annex A controls they evidence."""
    q = questionnaire()
    if as_json:
        print_json(q)
        return
    if template:
        typer.echo(_template(), nl=False)
        return
    typer.echo(
        f"{q.title} ({q.ref}); approved by {', '.join(q.approval.approver_roles)}, quorum "
        + ", ".join(f"{k} {v}" for k, v in q.approval.quorum.items())
    )
    for n, section in enumerate(q.sections, 1):
        print_table(
            f"{n}. {section.title} ({section.id})",
            ["id", "question", "kind", "required", "controls"],
            [
                (
                    x.id,
                    x.text,
                    x.describe_kind(),
                    "yes" if x.required else "",
                    ", ".join(x.controls),
                )
                for x in section.questions
            ],
        )


def _template() -> str:
    """An answers file with every question as a comment and an empty (= unanswered) value."""
    q = questionnaire()
    lines = [
        f"# Answers to {q.title} ({q.ref}): `aims impact answer ID|SYSTEM --file THIS_FILE`.",
        "# Leave a value empty to answer it later; multi-line text: `key: |` and indent.",
    ]
    for n, section in enumerate(q.sections, 1):
        lines += ["", f"# --- {n}. {section.title} ---"]
        for x in section.questions:
            need = "required" if x.required else "optional"
            lines += [f"# {x.text} ({x.describe_kind()}; {need})", f"{x.id}:"]
    return "\n".join(lines) + "\n"


@app.command("start")
def start(
    system: str = typer.Argument(..., metavar="SYSTEM", help="The AI system to assess."),
    assessor: str | None = typer.Option(
        None, "--assessor", metavar="EMAIL", help="Who answers (default: the system's owner)."
    ),
) -> None:
    """Start an impact assessment run; it waits (suspended) for answers, then for approval."""
    from aims_core.cli.engine import known_person, start_run
    from aims_core.services.systems import show_system

    uow = UnitOfWork()
    target = show_system(uow, system)
    assessor = known_person(assessor, "--assessor")
    take_over = False
    existing = impact.open_for(uow, target.name)
    if existing is not None:
        ended = run_ended(existing.flow_run_id) if existing.flow_run_id else True
        if ended is None:
            raise InvalidInput(
                f"impact assessment {existing.id} of {target.name} is open in run "
                f"{existing.flow_run_id}, and the engine cannot be asked whether that run still "
                "goes on: start the engine first (`aims up`)",
                "engine",
            )
        if not ended:
            raise InvalidInput(
                f"impact assessment {existing.id} of {target.name} is still "
                f"{existing.status.value} in run {existing.flow_run_id}: answer it with "
                f"`aims impact answer {existing.id} ...`",
                "system",
            )
        take_over = True  # its run ended unfinished: the new run continues it
    run_id, name, url = start_run(
        DEPLOYMENT,
        {"system": target.name, "assessor": assessor, "take_over": take_over},
        name=f"impact assessment {target.name}",
        tags=["impact-assessment", target.name, target.risk_tier.value],
    )
    typer.echo(f"started run {name} ({run_id})\n{url}")
    if existing is not None:
        typer.echo(f"it continues impact assessment {existing.id} ({_progress(existing)})")
    typer.echo(
        "answer the run's asks in Slack, the Prefect UI, or with "
        f"`aims impact answer {target.name} --file answers.yaml --as EMAIL` "
        "(see `aims impact questions`)"
    )


@app.command("answer")
def answer(
    target: str = typer.Argument(..., metavar="ID|SYSTEM", help="Assessment id or system name."),
    question: list[str] = typer.Option(
        [], "--question", "-q", metavar="ID", help="A question id; repeat with --value."
    ),
    value: list[str] = typer.Option(
        [], "--value", "-v", metavar="VALUE", help="The answer to the --question before it."
    ),
    file: Path | None = typer.Option(
        None, "--file", "-f", help="YAML mapping question id -> answer (several at once)."
    ),
    email: str | None = typer.Option(
        None, "--as", metavar="EMAIL", help="Who answers (required while the run asks)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the assessment as JSON."),
) -> None:
    """Record answers (all or nothing); wakes the waiting run once nothing required is missing.

    While the assessment's run asks for a section, answers to that section answer its ask
    (`--as`: the assessor), with the same checks as Slack and the Prefect UI; the run records
    them. A blank --value clears an optional answer (not through an ask: blank leaves it).
    """
    from aims_core.cli._part_asks import answer_parts, fields_of, open_part_asks

    if len(question) != len(value):
        raise InvalidInput(
            f"give one --value per --question ({len(question)} questions, {len(value)} values)",
            "value",
        )
    answers: dict[str, Any] = (
        read_answers(file, "question ids", "severity_individuals: 3") if file else {}
    )
    answers.update(zip(question, value, strict=True))
    if not answers:
        raise InvalidInput("give --question ID --value VALUE or --file answers.yaml", "answers")
    assessment_id = _resolve(target)
    asks = open_part_asks(impact.subject(assessment_id))
    to_asks: dict[int, dict[str, Any]] = {}
    for ask in asks:
        part = {k: v for k, v in answers.items() if k in fields_of(ask) and v != ""}
        if part:
            to_asks[ask.id] = part
    asked = {k for part in to_asks.values() for k in part}
    direct = {k: v for k, v in answers.items() if k not in asked}
    what = f"impact assessment {assessment_id}"
    if direct and to_asks:  # checked before anything goes to an ask: all or nothing
        impact.check_answers(UnitOfWork(), assessment_id, direct)
    answer_parts(what, asks, email, to_asks)
    out = impact.get(UnitOfWork(), assessment_id)
    if direct:
        out = impact.answer(UnitOfWork(), assessment_id, direct, Actor.cli())
    if as_json:
        print_json(out)
    else:
        if direct:
            typer.echo(
                f"recorded {len(direct)} answer(s) on impact assessment {out.id} ({out.system}): "
                f"{_progress(out)}"
            )
        if to_asks:
            typer.echo(f"answered {len(asked)} question(s) through the run's asks: it records them")
        if out.missing_required and not to_asks:
            typer.echo(f"still open: {', '.join(out.missing_required)}")
    if not out.missing_required and not to_asks:
        _wake(out, quiet=as_json)


def _wake(out: ImpactAssessmentOut, *, quiet: bool = False) -> None:
    """Resume the run waiting for answers: it re-reads them from the database and goes on."""
    if out.status is not ImpactStatus.draft or not out.flow_run_id:
        return
    line = wake(
        out.flow_run_id,
        attempts=10,
        resumed="resumed (next: approval)",
        ended=f"`aims impact start {out.system}`",
        retry=f"once the engine is up: `aims impact resume {out.id}`",
    )
    if not quiet:
        typer.echo(line)


@app.command("resume")
def resume(
    target: str = typer.Argument(..., metavar="ID|SYSTEM", help="Assessment id or system name."),
) -> None:
    """Wake the run of a fully answered assessment (if an earlier wake did not reach it)."""
    out = impact.get(UnitOfWork(), _resolve(target))
    if out.missing_required:
        raise InvalidInput(
            f"still open: {', '.join(out.missing_required)}; the run waits for them", "answers"
        )
    if out.status is not ImpactStatus.draft or not out.flow_run_id:
        typer.echo(f"impact assessment {out.id} is {out.status.value}: no run waits for answers")
        return
    _wake(out)


@app.command("show")
def show(
    target: str = typer.Argument(..., metavar="ID|SYSTEM", help="Assessment id or system name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    markdown: bool = typer.Option(
        False, "--markdown", help="Print the rendered record (Markdown)."
    ),
    html: bool = typer.Option(False, "--html", help="Print the rendered record (HTML)."),
) -> None:
    """Show an assessment: status, progress, answers, approval and evidence."""
    if sum((as_json, markdown, html)) > 1:
        raise InvalidInput("give at most one of --json, --markdown, --html", "format")
    assessment_id = _resolve(target)
    if markdown or html:
        rendered = impact.render(UnitOfWork(), assessment_id)
        typer.echo(rendered.markdown if markdown else rendered.html, nl=False)
        return
    a = impact.get(UnitOfWork(), assessment_id)
    if as_json:
        print_json(a)
        return
    lines = [
        f"impact assessment {a.id}: {a.system} ({a.risk_tier} risk), {a.questionnaire}",
        f"  status:    {a.status.value}, {_progress(a)}",
        f"  assessor:  {a.assessor}",
    ]
    if a.missing_required:
        lines.append(f"  open:      {', '.join(a.missing_required)}")
    if a.request_id:
        lines.append(f"  approval:  request {a.request_id} (`aims approvals show {a.request_id}`)")
    if a.evidence_id:
        lines.append(f"  evidence:  {a.evidence_id} (Markdown), {a.html_evidence_id} (HTML)")
    if a.flow_run_id:
        lines.append(f"  flow run:  {a.flow_run_id}")
    typer.echo("\n".join(lines))
    q = questionnaire()
    if a.questionnaire != q.ref:
        return
    rows = []
    for n, section in enumerate(q.sections, 1):
        for x in section.questions:
            shown = a.answers.get(x.id)
            text = "" if shown is None else " ".join(str(shown).split())
            if len(text) > SHOWN_MAX:
                text = text[: SHOWN_MAX - 1] + "…"
            rows.append((n, x.id, "yes" if x.required else "", text or "-"))
    print_table("Answers", ["section", "question", "required", "answer"], rows)


@app.command("list")
def list_(
    system: str | None = typer.Option(None, "--system", help="Only this system's assessments."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List impact assessments, newest first."""
    rows = impact.list_assessments(UnitOfWork(), system=system)
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Impact assessments ({len(rows)})",
        ["id", "system", "status", "answered", "assessor", "request", "evidence", "created"],
        [
            (
                a.id,
                a.system,
                a.status.value,
                f"{a.required - len(a.missing_required)}/{a.required}",
                a.assessor,
                a.request_id,
                a.evidence_id,
                a.created_at.strftime("%Y-%m-%d %H:%M UTC"),
            )
            for a in rows
        ],
    )
