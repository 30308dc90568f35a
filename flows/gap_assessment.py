"""The ISO/IEC 42001 gap assessment as a run that waits for people twice.

First for answers, area by area (clauses 4-10, then each Annex A objective): the run suspends
with a Prefect UI form for the first area that still has requirements not assessed, pre-filled
with what the records suggest; answers may equally come from `aims gap record` (which wakes the
run once every requirement is assessed). After every wait the run re-reads the database, which
is authoritative, and waits again only for what is still missing, under a new key. Then for the
approval (the shared `request_approval`); on approval the maturity is frozen, the implementation
plan made and the report kept as evidence.

A suspended run re-runs from the top on resume: every write before a wait is a persisted task
(cached on the re-run), and the area of each round is fixed by a persisted task, so a round's
key and form are the same on every re-run and its answers are recorded once. No flow retries.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field, create_model

from aims_core.rules.gap import Conformity, area_of, areas, describe
from aims_core.services import gap
from aims_core.services.gap import GapAssessmentOut, GapResult
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.answers import Questionnaire, collect_answers, slug
from tasks.approval import ApprovalOutcome, claim_request, request_approval
from tasks.run_names import scheduled_run_name
from tasks.run_tags import tag_this_run

FLOW_ACTOR = Actor(who="flow", channel="flow")
#: The UI form cannot tell who typed it: answers from it are recorded as coming from the UI.
UI_ACTOR = Actor(who="prefect-ui", channel="ui")
ACCEPT = "accept_suggestions"


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


def field_name(requirement: str) -> str:
    """`A.6.2.4` → `r_a_6_2_4` (a form field; never a BaseModel or RunInput attribute)."""
    return "r_" + slug(requirement).replace("-", "_")


# --- tasks (persisted: a re-run after a resume gets them back cached) ---------------------------


@task(name="open gap assessment", persist_result=True)
def open_assessment(assessor: str | None, take_over: bool) -> int:
    """One assessment per run, pre-filled from the records (idempotent on the run id)."""
    out = gap.start(
        _uow(), FLOW_ACTOR, assessor=assessor, flow_run_id=str(flow_run.id), take_over=take_over
    )
    return out.id


@task(name="choose area", persist_result=True)
def choose_area(assessment_id: int, round_: int) -> str:
    """The area a round asks for, decided once: a re-run shows the same form, same key."""
    missing = gap.get(_uow(), assessment_id).missing
    return area_of(missing[0]) if missing else areas()[0][0]


@task(name="complete answers", persist_result=True)
def complete_answers(assessment_id: int) -> None:
    gap.complete(_uow(), assessment_id, FLOW_ACTOR)


@task(name="record gap decision", persist_result=True)
def record_decision(assessment_id: int) -> GapAssessmentOut:
    """Approved: maturity frozen, plan made, report kept as evidence (once)."""
    return gap.record_decision(_uow(), assessment_id, FLOW_ACTOR)


# --- the wait for answers -----------------------------------------------------------------------

Choice = Literal["", "conforming", "partially-conforming", "not-conforming", "not-applicable"]


def area_form(a: GapAssessmentOut, area: str, refusal: str | None) -> type[RunInput]:
    """The resume form of one area: a status and a note per requirement, pre-filled with the
    answers so far, each described with what the records suggest."""
    titles = dict(areas())
    reqs = [r for r in a.requirements if r.area == area]
    fields: dict[str, Any] = {
        ACCEPT: (
            bool,
            Field(
                default=False,
                title="Confirm the suggested statuses",
                description="Take the suggested status for every requirement left blank here.",
            ),
        )
    }
    for r in reqs:
        hint = (
            f"suggested from records: {describe(r.suggested_status)} "
            f"({'; '.join(r.suggested_records) or 'none found'})"
            if r.suggested_status
            else "no records bear on it"
        )
        fields[field_name(r.requirement)] = (
            Choice,
            Field(default=r.status or "", title=f"{r.requirement} {r.title}", description=hint),
        )
        fields[f"note_{field_name(r.requirement)[2:]}"] = (
            str,
            Field(default=r.note, title=f"{r.requirement} note (justify not-applicable)"),
        )
    form = create_model(f"GapArea{slug(area).title()}", __base__=RunInput, **fields)  # type: ignore[call-overload]
    open_here = a.missing_in(area)
    lines = [
        f"### Gap assessment #{a.id}: {area} {titles[area]}",
        "",
        f"- **assessor**: {a.assessor}",
        f"- **progress**: {a.answered} of {a.total} requirements assessed"
        + (f"; still open here: {', '.join(open_here)}" if open_here else ""),
    ]
    if refusal:
        lines.append(f"- **your last answers were not recorded**: {refusal}")
    lines += [
        "",
        "Choose a status per requirement (" + ", ".join(c.value for c in Conformity) + "; "
        "not-applicable needs a note) and press Resume: blank stays as it is, and the next area "
        "with open requirements follows. Or from a shell: "
        f"`aims gap record REQ --status STATUS --note TEXT --assessment {a.id}`, "
        "`--file answers.yaml` or `--accept-suggestions`; the run goes on once every "
        "requirement is assessed.",
    ]
    return form.with_initial_data(description="\n".join(lines))


def form_answers(a: GapAssessmentOut, area: str, answer: RunInput) -> dict[str, Any]:
    """What the person gave: statuses set (with their notes), plus the suggestions confirmed."""
    given = answer.model_fields_set
    out: dict[str, Any] = {}
    for r in (r for r in a.requirements if r.area == area):
        name = field_name(r.requirement)
        status = getattr(answer, name) if name in given else ""
        if status:
            note = getattr(answer, f"note_{name[2:]}", "") or ""
            if status != r.status or note != r.note:
                out[r.requirement] = {"status": status, "note": note, "evidence": r.evidence}
        elif getattr(answer, ACCEPT, False) and r.suggested_status and not r.status:
            note = r.suggested_note or "confirmed from records"
            out[r.requirement] = {"status": r.suggested_status, "note": note}
    return out


def answer_rounds(assessment_id: int) -> Questionnaire[GapAssessmentOut, str]:
    """The assessment's wait for answers: an area per round, until every requirement has one."""
    return Questionnaire(
        key_prefix=f"gap-{assessment_id}",
        part_name="area",
        open_name="requirement(s)",
        load=lambda: gap.get(_uow(), assessment_id),
        missing=lambda a: a.missing,
        part=lambda round_: choose_area(assessment_id, round_),
        form=area_form,
        answers=form_answers,
        record=lambda answers: gap.record(_uow(), assessment_id, answers, UI_ACTOR),
    )


# --- the flow ------------------------------------------------------------------------------------


def _summary(out: GapAssessmentOut, outcome: ApprovalOutcome, tasks: int) -> str:
    lines = [
        f"## Gap assessment #{out.id}: {out.status.upper()}",
        "",
        f"- **assessor**: {out.assessor}",
        f"- **approval request**: #{outcome.request_id}, {outcome.status}",
        f"- **approved by**: {', '.join(outcome.approvals) or '-'}",
    ]
    if outcome.rejections:
        lines.append(f"- **rejected by**: {', '.join(outcome.rejections)}")
    if out.maturity and out.evidence_id is not None:
        lines += [
            f"- **overall maturity**: {out.maturity.overall} ({out.maturity.overall_name})",
            "- **by clause**: "
            + ", ".join(f"{k} {v}" for k, v in out.maturity.levels("clause").items()),
            f"- **implementation plan**: {tasks} task(s) (`aims plan show`)",
            f"- **evidence**: #{out.evidence_id} (on `{out.subject}`)",
            "",
            f"Report: `aims gap report {out.id} --output DIR`.",
        ]
    else:
        lines += ["", "No plan made: revise with `aims gap start` (a new assessment)."]
    return "\n".join(lines)


@flow(name="gap-assessment", flow_run_name=scheduled_run_name(gap.run_name), log_prints=True)
def gap_assessment(assessor: str | None = None, take_over: bool = False) -> GapResult:
    """Assess the AIMS against ISO/IEC 42001: answers (form or CLI), approval, maturity, plan.

    `assessor` answers and never approves; `take_over` continues the open assessment of a run
    that ended without finishing it.
    """
    from aims_core.services import plan

    assessment_id = open_assessment(assessor, take_over)
    tag_this_run(("gap-assessment",))
    collect_answers(answer_rounds(assessment_id))
    complete_answers(assessment_id)
    if take_over:
        claim_request(gap.get(_uow(), assessment_id).request_id)
    outcome = request_approval(
        gap.approval_spec(_uow(), assessment_id, flow_run_id=str(flow_run.id))
    )
    out = record_decision(assessment_id)
    tasks = len(plan.list_tasks(_uow(), assessment_id=out.id))
    create_markdown_artifact(
        key=f"gap-assessment-{out.id}",
        markdown=_summary(out, outcome, tasks),
        description=f"Gap assessment #{out.id}",
    )
    return GapResult(
        assessment_id=out.id,
        status=out.status.value,
        request_id=outcome.request_id,
        evidence_id=out.evidence_id,
        overall=out.maturity.overall if out.maturity and out.evidence_id else None,
        plan_tasks=tasks,
        approvals=outcome.approvals,
        rejections=outcome.rejections,
    )
