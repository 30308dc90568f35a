"""The AI system impact assessment (6.1.4, 8.4, A.5) as a run that waits for people twice.

First for answers: one ask per section with required questions open, to the assessor, answered
in Slack (a modal per section), the Prefect UI form with their personal code, or `aims impact
answer --as` (`tasks/answers.collect_answers`); each answer is recorded once through the service
in the name of who answered, and what stays open is asked again. Then for the approval (the
shared `request_approval`), and on approval the rendered record becomes evidence.

A suspended run re-runs from the top on resume: every write before a wait is a persisted task
(cached on the re-run), and the asks of each round are fixed by a persisted task too, so their
keys are the same on every re-run and each answer is recorded once.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from aims_core.errors import AimsError
from aims_core.rules.impact_questionnaire import SCALE_MAX, QuestionKind, questionnaire
from aims_core.services import impact
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.impact import ImpactAssessmentOut, ImpactResult
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.answers import Questionnaire, answered_as, collect_answers, given
from tasks.approval import ApprovalOutcome, claim_request, request_approval
from tasks.asks import AskOutcome
from tasks.run_names import run_name
from tasks.run_tags import tag_this_run

FLOW_ACTOR = Actor(who="flow", channel="flow")


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


# --- tasks (persisted: a re-run after a resume gets them back cached) ---------------------------


@task(name="open impact assessment", persist_result=True)
def open_assessment(system: str, assessor: str | None, take_over: bool) -> int:
    """One assessment per run (the service is idempotent on the run id)."""
    out = impact.start(
        _uow(),
        system,
        FLOW_ACTOR,
        assessor=assessor,
        flow_run_id=str(flow_run.id),
        take_over=take_over,
    )
    return out.id


@task(name="complete answers", persist_result=True)
def complete_answers(assessment_id: int) -> None:
    """Freeze the answers: approvers decide on exactly what they are shown."""
    impact.complete(_uow(), assessment_id, FLOW_ACTOR)


@task(name="record impact decision", persist_result=True)
def record_decision(assessment_id: int) -> ImpactAssessmentOut:
    """Approved: the rendered record becomes evidence (once). Rejected: the status says so."""
    return impact.record_decision(_uow(), assessment_id, FLOW_ACTOR)


# --- the wait for answers: one ask per section ---------------------------------------------------


@task(name="ask for sections", persist_result=True)
def section_asks(assessment_id: int, round_: int) -> list[ApprovalRequestIn]:
    """The asks of a round, decided once: a re-run asks the same, under the same keys."""
    return impact.section_asks(_uow(), assessment_id, round_)


@task(name="record section answer", persist_result=True)
def record_answer(assessment_id: int, outcome: AskOutcome) -> str | None:
    """A section's answer, recorded once through the service in the name of who answered.

    The form checked it with each question's own rule, so a refusal here means the record moved
    on meanwhile (e.g. frozen); what stays open is asked again."""
    try:
        impact.answer(_uow(), assessment_id, given(outcome), answered_as(outcome))
    except AimsError as exc:
        get_run_logger().warning("answer to ask %d not recorded: %s", outcome.request_id, exc)
        return str(exc)
    return None


def answer_rounds(assessment_id: int) -> Questionnaire:
    """The assessment's wait for answers: its sections asked until nothing required is open."""
    return Questionnaire(
        name=f"impact-assessment-{assessment_id}",
        missing=lambda: impact.missing_required(_uow(), assessment_id),
        asks=lambda round_: section_asks(assessment_id, round_),
        apply=lambda outcome: record_answer(assessment_id, outcome),
    )


# --- the flow ------------------------------------------------------------------------------------


def _tag_run(system: str, tier: str) -> None:
    """Tag the run with its system and tier however it was started (CLI, UI, API)."""
    tag_this_run(("impact-assessment", system, tier))


def _summary(result: ImpactResult, out: ImpactAssessmentOut, outcome: ApprovalOutcome) -> str:
    q = questionnaire()
    lines = [
        f"## Impact assessment #{out.id} of {out.system}: {out.status.upper()}",
        "",
        f"- **risk tier**: {out.risk_tier}",
        f"- **questionnaire**: {out.questionnaire} ({out.answered} of {len(q.questions)} "
        "questions answered)",
        f"- **assessor**: {out.assessor}",
        f"- **approval request**: #{outcome.request_id}, {outcome.status}",
        f"- **approved by**: {', '.join(outcome.approvals) or '-'}",
    ]
    if outcome.rejections:
        lines.append(f"- **rejected by**: {', '.join(outcome.rejections)}")
    ratings = [
        f"{x.id.replace('_', ' ')} {out.answers[x.id]}/{SCALE_MAX}"
        for x in q.questions.values()
        if x.kind is QuestionKind.scale and x.id in out.answers
    ]
    if ratings:
        lines.append(f"- **ratings**: {', '.join(ratings)}")
    if result.evidence_id is not None:
        lines += [
            f"- **evidence**: #{result.evidence_id} (Markdown, on `system:{out.system}`), "
            f"#{result.html_evidence_id} (HTML, on `{out.subject}`)",
            "",
            f"Read it with `aims impact show {out.id} --markdown`.",
        ]
    else:
        lines += [
            "",
            f"No evidence recorded: start a new one with `aims impact start {out.system}`.",
        ]
    return "\n".join(lines)


@flow(
    name="impact-assessment",
    flow_run_name=run_name(lambda p: f"impact assessment {p['system']}"),
    log_prints=True,
)
def impact_assessment(
    system: str, assessor: str | None = None, take_over: bool = False
) -> ImpactResult:
    """Assess an AI system's impact: answers (asks per section), approval, record as evidence.

    `assessor` (default: the system's owner) answers and never approves; `take_over` continues
    the open assessment of a run that ended without finishing it.
    """
    assessment_id = open_assessment(system, assessor, take_over)
    assessment = impact.get(_uow(), assessment_id)
    _tag_run(assessment.system, assessment.risk_tier)
    collect_answers(answer_rounds(assessment_id))
    complete_answers(assessment_id)
    if take_over:
        claim_request(impact.get(_uow(), assessment_id).request_id)
    outcome = request_approval(
        impact.approval_spec(_uow(), assessment_id, flow_run_id=str(flow_run.id))
    )
    out = record_decision(assessment_id)
    result = ImpactResult(
        assessment_id=out.id,
        system=out.system,
        status=out.status.value,
        request_id=outcome.request_id,
        evidence_id=out.evidence_id,
        html_evidence_id=out.html_evidence_id,
        approvals=outcome.approvals,
        rejections=outcome.rejections,
    )
    create_markdown_artifact(
        key=f"impact-assessment-{out.id}",
        markdown=_summary(result, out, outcome),
        description=f"Impact assessment of {out.system}",
    )
    return result
