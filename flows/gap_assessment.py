"""The ISO/IEC 42001 gap assessment as a run that waits for people twice.

First for answers: one ask per area (clauses 4-10, each Annex A objective) with requirements not
assessed, to the assessor (or the governance lead when none is named), its details saying what
the records suggest; answered in Slack, the Prefect UI form with a personal code, or `aims gap
record --as` (`tasks/answers.collect_answers`). Each answer is recorded once through the service
in the name of who answered; what stays open is asked again. Then for the approval (the shared
`request_approval`); on approval the maturity is frozen, the implementation plan made and the
report kept as evidence.

A suspended run re-runs from the top on resume: every write before a wait is a persisted task
(cached on the re-run), and the asks of each round are fixed by a persisted task, so their keys
are the same on every re-run and each answer is recorded once. No flow retries.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from aims_core.errors import AimsError
from aims_core.services import gap
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.gap import GapAssessmentOut, GapResult
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.answers import Questionnaire, answered_as, collect_answers
from tasks.approval import ApprovalOutcome, claim_request, request_approval
from tasks.asks import AskOutcome
from tasks.run_names import scheduled_run_name
from tasks.run_tags import tag_this_run

FLOW_ACTOR = Actor(who="flow", channel="flow")


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


# --- tasks (persisted: a re-run after a resume gets them back cached) ---------------------------


@task(name="open gap assessment", persist_result=True)
def open_assessment(assessor: str | None, take_over: bool) -> int:
    """One assessment per run, pre-filled from the records (idempotent on the run id)."""
    out = gap.start(
        _uow(), FLOW_ACTOR, assessor=assessor, flow_run_id=str(flow_run.id), take_over=take_over
    )
    return out.id


@task(name="complete answers", persist_result=True)
def complete_answers(assessment_id: int) -> None:
    gap.complete(_uow(), assessment_id, FLOW_ACTOR)


@task(name="record gap decision", persist_result=True)
def record_decision(assessment_id: int) -> GapAssessmentOut:
    """Approved: maturity frozen, plan made, report kept as evidence (once)."""
    return gap.record_decision(_uow(), assessment_id, FLOW_ACTOR)


# --- the wait for answers: one ask per area ------------------------------------------------------


@task(name="ask for areas", persist_result=True)
def area_asks(assessment_id: int, round_: int) -> list[ApprovalRequestIn]:
    """The asks of a round, decided once: a re-run asks the same, under the same keys."""
    return gap.area_asks(_uow(), assessment_id, round_)


@task(name="record area answer", persist_result=True)
def record_answer(assessment_id: int, outcome: AskOutcome) -> str | None:
    """An area's answer, recorded once through the service in the name of who answered.

    The form checked it, so a refusal here means the record moved on meanwhile; what stays
    open is asked again."""
    answer = {k: v for k, v in outcome.answer.items() if k not in ("answered_by", "answered_in")}
    try:
        gap.record_area_answer(_uow(), assessment_id, answer, answered_as(outcome))
    except AimsError as exc:
        get_run_logger().warning("answer to ask %d not recorded: %s", outcome.request_id, exc)
        return str(exc)
    return None


def answer_rounds(assessment_id: int) -> Questionnaire:
    """The assessment's wait for answers: its areas asked until every requirement has one."""
    return Questionnaire(
        name=f"gap-assessment-{assessment_id}",
        missing=lambda: gap.get(_uow(), assessment_id).missing,
        asks=lambda round_: area_asks(assessment_id, round_),
        apply=lambda outcome: record_answer(assessment_id, outcome),
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
    """Assess the AIMS against ISO/IEC 42001: answers (asks per area), approval, maturity, plan.

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
