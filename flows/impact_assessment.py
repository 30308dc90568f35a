"""The AI system impact assessment (6.1.4, 8.4, A.5) as a run that waits for people twice.

First for answers: the run suspends with a Prefect UI form for the first section that still has
unanswered required questions; answers may equally come from `aims impact answer` (which wakes
the run once nothing required is missing). After every wait the run re-reads the database, which
is authoritative, and waits again only for what is still missing, under a new key. Then for the
approval (the shared `request_approval`), and on approval the rendered record becomes evidence.

A suspended run re-runs from the top on resume: every write before a wait is a persisted task
(cached on the re-run), and the form of each wait round is fixed by a persisted task too, so a
round's key and form are the same on every re-run and its answers are recorded once.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field, create_model

from aims_core.rules.impact_questionnaire import (
    SCALE_MAX,
    Question,
    QuestionKind,
    questionnaire,
)
from aims_core.services import impact
from aims_core.services.impact import ImpactAssessmentOut, ImpactResult
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.answers import Questionnaire, collect_answers
from tasks.approval import ApprovalOutcome, claim_request, request_approval
from tasks.run_names import run_name
from tasks.run_tags import tag_this_run

FLOW_ACTOR = Actor(who="flow", channel="flow")
#: The UI form cannot tell who typed it: answers from it are recorded as coming from the UI.
UI_ACTOR = Actor(who="prefect-ui", channel="ui")


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


@task(name="choose section", persist_result=True)
def choose_section(assessment_id: int, round_: int) -> int:
    """The section a round asks for, decided once: a re-run shows the same form, same key."""
    missing = impact.missing_required(_uow(), assessment_id)
    return questionnaire().section_number(missing[0]) if missing else 1


@task(name="complete answers", persist_result=True)
def complete_answers(assessment_id: int) -> None:
    """Freeze the answers: approvers decide on exactly what they are shown."""
    impact.complete(_uow(), assessment_id, FLOW_ACTOR)


@task(name="record impact decision", persist_result=True)
def record_decision(assessment_id: int) -> ImpactAssessmentOut:
    """Approved: the rendered record becomes evidence (once). Rejected: the status says so."""
    return impact.record_decision(_uow(), assessment_id, FLOW_ACTOR)


# --- the wait for answers -----------------------------------------------------------------------


def _field(question: Question, current: object) -> tuple[Any, Any]:
    """A form field per question; blank (or 0 on a scale) means "leave as it is"."""
    required = "required" if question.required else "optional"
    controls = ", ".join(question.controls)
    if question.kind is QuestionKind.scale:
        return (
            int,
            Field(
                default=current if isinstance(current, int) else 0,
                ge=0,
                le=SCALE_MAX,
                title=question.text,
                description=f"{question.describe_kind()}; 0 = not answered · {required} · "
                f"{controls}",
            ),
        )
    if question.kind is QuestionKind.choice:
        options = Literal[("", *question.options)]  # type: ignore[valid-type]
        return (
            options,
            Field(
                default=current if current in question.options else "",
                title=question.text,
                description=f"{required} · {controls}",
            ),
        )
    return (
        str,
        Field(
            default=current if isinstance(current, str) else "",
            title=question.text,
            description=f"{required} · {controls}",
        ),
    )


def section_form(
    assessment: ImpactAssessmentOut, number: int, refusal: str | None
) -> type[RunInput]:
    """The resume form of one section, pre-filled with the answers so far, and a description
    saying what is assessed, how far it is, and how else to answer."""
    q = questionnaire()
    section = q.sections[number - 1]
    fields = {
        question.id: _field(question, assessment.answers.get(question.id))
        for question in section.questions
    }
    form = create_model(f"ImpactSection{number}", __base__=RunInput, **fields)  # type: ignore[call-overload]
    open_here = [x.id for x in section.questions if x.id in assessment.missing_required]
    lines = [
        f"### Impact assessment #{assessment.id} of {assessment.system}: "
        f"section {number} of {len(q.sections)}, {section.title}",
        "",
        f"- **system**: {assessment.system}, risk tier **{assessment.risk_tier}**",
        f"- **assessor**: {assessment.assessor}",
        f"- **progress**: {assessment.required - len(assessment.missing_required)} of "
        f"{assessment.required} required questions answered"
        + (f"; still open here: {', '.join(open_here)}" if open_here else ""),
    ]
    if refusal:
        lines.append(f"- **your last answers were not recorded**: {refusal}")
    if section.description:
        lines += ["", section.description.strip()]
    lines += [
        "",
        "Fill in what you can and press Resume: blank fields (0 on a scale) stay as they are, "
        "and the next section with open questions follows. Or answer from a shell, all "
        f"sections at once: `aims impact answer {assessment.id} --file answers.yaml` "
        f"(or `--question ID --value VALUE`; see `aims impact questions`): the run goes on "
        "once every required question is answered.",
    ]
    return form.with_initial_data(description="\n".join(lines))


def form_answers(assessment: ImpactAssessmentOut, number: int, answer: RunInput) -> dict[str, Any]:
    """What the person actually gave: fields present in the stored input and not blank."""
    given = {name: getattr(answer, name) for name in answer.model_fields_set}
    return {name: value for name, value in given.items() if value not in ("", 0, None)}


def answer_rounds(assessment_id: int) -> Questionnaire[ImpactAssessmentOut, int]:
    """The assessment's wait for answers: a section per round, until nothing required is open."""
    return Questionnaire(
        key_prefix=f"impact-{assessment_id}",
        part_name="section",
        open_name="required question(s)",
        load=lambda: impact.get(_uow(), assessment_id),
        missing=lambda assessment: assessment.missing_required,
        part=lambda round_: choose_section(assessment_id, round_),
        form=section_form,
        answers=form_answers,
        record=lambda answers: impact.answer(_uow(), assessment_id, answers, UI_ACTOR),
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
    """Assess an AI system's impact: answers (form or CLI), approval, record kept as evidence.

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
