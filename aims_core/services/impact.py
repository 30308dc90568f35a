"""AI system impact assessments (6.1.4, 8.4, A.5): start, answer, complete, decide, render.

The flow asks the assessor one section per ask (`section_asks`; the form is the section's
questions, `aims_core/ask_forms/questionnaires.py`) and records each answer through `answer`, as
`aims impact answer` and an answers file do: each checked against its question, all or nothing. The
database is authoritative: the flow re-reads `missing_required` after every wait. An approved
assessment is rendered (Markdown + HTML, `aims_core.reports`) and kept as `impact-assessment`
evidence: the Markdown on `system:<name>` (what gates look for), the HTML on
`impact-assessment:<id>`. No Prefect here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from aims_core import reports
from aims_core.ask_forms.questionnaires import IMPACT_SECTION, impact_parts, part_subject
from aims_core.errors import Conflict, InvalidInput, NotFound, refuse_answers
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import (
    AISystem,
    ApprovalRequest,
    ApprovalStatus,
    Decision,
    Evidence,
    ImpactAssessment,
    ImpactStatus,
    as_utc,
)
from aims_core.rules.impact_questionnaire import Answer, Questionnaire, questionnaire
from aims_core.services import evidence
from aims_core.services.approvals import ApprovalRequestIn, approved_by, rejection_reasons
from aims_core.services.people import get_person
from aims_core.services.runs import take_over_open
from aims_core.services.systems import get_system
from aims_core.uow import Actor, UnitOfWork, locked

__all__ = [
    "EVIDENCE_KIND",
    "ImpactAssessmentOut",
    "ImpactResult",
    "RenderedAssessment",
    "answer",
    "approval_key",
    "approval_spec",
    "check_answers",
    "complete",
    "get",
    "list_assessments",
    "missing_required",
    "open_for",
    "record_decision",
    "render",
    "section_asks",
    "start",
    "subject",
]

EVIDENCE_KIND: Final = "impact-assessment"
OPEN: Final = (ImpactStatus.draft, ImpactStatus.answered)
DETAILS_MAX: Final = 2800  # the approval's details also go into a Slack section (3,000 chars)


class ImpactAssessmentOut(BaseModel):
    id: int
    system: str
    risk_tier: str
    questionnaire: str
    status: ImpactStatus
    assessor: str
    answers: dict[str, Answer]
    answered: int
    required: int
    missing_required: list[str]
    request_id: int | None
    evidence_id: int | None
    html_evidence_id: int | None
    flow_run_id: str | None
    created_at: datetime
    completed_at: datetime | None

    @property
    def subject(self) -> str:
        return subject(self.id)


class ImpactResult(BaseModel):
    """What an impact-assessment run returns. Defined here, not in the flow module, so the
    persisted result unpickles anywhere (served flows load their module by file path)."""

    assessment_id: int
    system: str
    status: str
    request_id: int | None
    evidence_id: int | None
    html_evidence_id: int | None
    approvals: list[str]
    rejections: list[str]


class RenderedAssessment(BaseModel):
    markdown: str
    html: str


def subject(assessment_id: int) -> str:
    return f"impact-assessment:{assessment_id}"


def approval_key(assessment_id: int) -> str:
    """The idempotency key of the assessment's approval request."""
    return f"impact-assessment-{assessment_id}-approval"


def _evidence_keys(assessment_id: int) -> tuple[str, str]:
    return f"impact-assessment-{assessment_id}", f"impact-assessment-{assessment_id}-html"


def _now() -> datetime:
    return datetime.now(UTC)


# --- reading -----------------------------------------------------------------------------------


def _load(session: Session, assessment_id: int, *, lock: bool = False) -> ImpactAssessment:
    q = (
        select(ImpactAssessment)
        .where(ImpactAssessment.id == assessment_id)
        .options(selectinload(ImpactAssessment.system).selectinload(AISystem.owner))
    )
    if lock:
        q = q.with_for_update(of=ImpactAssessment)
    row = session.scalar(q)
    if row is None:
        raise NotFound(
            f"no impact assessment {assessment_id} (see `aims impact list`)", "assessment"
        )
    return row


def _questionnaire_of(row: ImpactAssessment) -> Questionnaire:
    """The loaded questionnaire, if it is the one the assessment was started with."""
    q = questionnaire()
    if row.questionnaire != q.ref:
        raise Conflict(
            f"impact assessment {row.id} uses questionnaire {row.questionnaire}, but "
            f"{q.ref} is loaded: finish it with the version it started with",
            "questionnaire",
        )
    return q


def _request(session: Session, row: ImpactAssessment) -> ApprovalRequest | None:
    q = select(ApprovalRequest).options(
        selectinload(ApprovalRequest.decisions).selectinload(Decision.person)
    )
    if row.request_id is not None:
        return session.scalar(q.where(ApprovalRequest.id == row.request_id))
    return session.scalar(q.where(ApprovalRequest.idempotency_key == approval_key(row.id)))


def _out(session: Session, row: ImpactAssessment) -> ImpactAssessmentOut:
    q = questionnaire()
    answers = dict(row.answers or {})
    same_version = row.questionnaire == q.ref
    missing = q.missing_required(answers) if same_version else []
    request = _request(session, row)
    html_id = None
    if row.evidence_id is not None:
        html_id = session.scalar(
            select(Evidence.id).where(Evidence.idempotency_key == _evidence_keys(row.id)[1])
        )
    return ImpactAssessmentOut(
        id=row.id,
        system=row.system.name,
        risk_tier=row.system.risk_tier.value,
        questionnaire=row.questionnaire,
        status=row.status,
        assessor=row.created_by,
        answers=answers,
        answered=len(answers),
        required=len(q.required_ids()) if same_version else 0,
        missing_required=missing,
        request_id=request.id if request else None,
        evidence_id=row.evidence_id,
        html_evidence_id=html_id,
        flow_run_id=row.flow_run_id,
        created_at=as_utc(row.created_at),
        completed_at=as_utc(row.completed_at) if row.completed_at else None,
    )


def get(uow: UnitOfWork, assessment_id: int) -> ImpactAssessmentOut:
    with uow.read():
        return _out(uow.session, _load(uow.session, assessment_id))


def list_assessments(uow: UnitOfWork, *, system: str | None = None) -> list[ImpactAssessmentOut]:
    """Assessments, newest first; with `system`, only that system's."""
    with uow.read():
        s = uow.session
        q = (
            select(ImpactAssessment)
            .options(selectinload(ImpactAssessment.system))
            .order_by(ImpactAssessment.id.desc())
        )
        if system is not None:
            q = q.where(ImpactAssessment.system_id == get_system(s, system).id)
        return [_out(s, row) for row in s.scalars(q)]


def _open_row(session: Session, system_id: int) -> ImpactAssessment | None:
    return session.scalar(
        select(ImpactAssessment)
        .where(ImpactAssessment.system_id == system_id, ImpactAssessment.status.in_(OPEN))
        .order_by(ImpactAssessment.id.desc())
    )


def open_for(uow: UnitOfWork, system: str) -> ImpactAssessmentOut | None:
    """The system's assessment still being answered or approved, if there is one."""
    with uow.read():
        row = _open_row(uow.session, get_system(uow.session, system).id)
        return _out(uow.session, row) if row else None


def missing_required(uow: UnitOfWork, assessment_id: int) -> list[str]:
    """Required questions still unanswered, in questionnaire order (what the flow waits for)."""
    with uow.read():
        row = _load(uow.session, assessment_id)
        return _questionnaire_of(row).missing_required(dict(row.answers or {}))


# --- writing -----------------------------------------------------------------------------------


def start(
    uow: UnitOfWork,
    system: str,
    actor: Actor,
    *,
    assessor: str | None = None,
    flow_run_id: str | None = None,
    take_over: bool = False,
) -> ImpactAssessmentOut:
    """Open a new assessment of `system` (one open assessment per system at a time).

    Idempotent for the flow: the same `flow_run_id` gets its assessment back, so a re-run writes
    nothing. `take_over` lets a new run continue the open assessment of a run that ended
    without finishing it (answers kept). The assessor defaults to the system's owner and can
    never approve the assessment.
    """
    flow_run_id = str(flow_run_id) if flow_run_id else None
    with uow:
        s = uow.session
        target = get_system(s, system)
        # Lock the system row: two concurrent starts queue here instead of opening two.
        locked(s, AISystem, target.id)
        person = get_person(s, assessor, "assessor") if assessor else target.owner
        existing = _open_row(s, target.id)
        if existing is not None:
            take_over_open(
                uow,
                actor,
                existing,
                flow_run_id,
                take_over=take_over,
                action="impact.run-replaced",
                subject=subject(existing.id),
                refusal=f"impact assessment {existing.id} of {target.name} is still "
                f"{existing.status.value}: finish it first (`aims impact show {existing.id}`)",
                field="system",
            )
            return _out(s, existing)
        q = questionnaire()
        row = ImpactAssessment(
            system=target,
            questionnaire=q.ref,
            answers={},
            status=ImpactStatus.draft,
            flow_run_id=flow_run_id,
            created_by=person.email,
        )
        s.add(row)
        s.flush()
        uow.audit(
            actor,
            "impact.started",
            subject(row.id),
            system=target.name,
            questionnaire=q.ref,
            assessor=person.email,
            flow_run_id=flow_run_id,
        )
        out = _out(s, row)
        uow.commit()
    return out


def _check_answers(q: Questionnaire, answers: Mapping[str, object]) -> dict[str, Answer | None]:
    """Every answer checked against its question; InvalidInput names each problem."""
    if not isinstance(answers, Mapping) or not answers:
        raise InvalidInput("no answers given", "answers")
    checked: dict[str, Answer | None] = {}
    problems: list[tuple[str, str]] = []
    for qid, value in answers.items():
        question = q.questions.get(str(qid))
        if question is None:
            problems.append((str(qid), "no such question (see `aims impact questions`)"))
            continue
        try:
            checked[question.id] = question.check(value)
        except ValueError as exc:
            problems.append((question.id, str(exc)))
            continue
        if checked[question.id] is None and question.required:
            problems.append((question.id, "required: give an answer"))
    refuse_answers(problems)
    return checked


def check_answers(uow: UnitOfWork, assessment_id: int, answers: Mapping[str, object]) -> None:
    """Check answers as `answer` would, writing nothing (InvalidInput names each problem)."""
    with uow.read():
        _check_answers(_questionnaire_of(_load(uow.session, assessment_id)), answers)


def answer(
    uow: UnitOfWork, assessment_id: int, answers: Mapping[str, object], actor: Actor
) -> ImpactAssessmentOut:
    """Record answers (merged into earlier ones); a blank answer clears an optional question.

    All or nothing: an unknown question, a value that does not fit its question or a blank
    required answer refuses the whole call and writes nothing. Answers freeze once the
    assessment is complete (the approvers decide on what they were shown).
    """
    with uow:
        s = uow.session
        row = _load(s, assessment_id, lock=True)
        if row.status is not ImpactStatus.draft:
            raise Conflict(
                f"impact assessment {row.id} is {row.status.value}: its answers are frozen",
                "assessment",
            )
        checked = _check_answers(_questionnaire_of(row), answers)
        merged = dict(row.answers or {})
        changed: dict[str, Answer | None] = {}
        for qid, value in checked.items():
            if merged.get(qid) == value:
                continue
            changed[qid] = value
            if value is None:
                merged.pop(qid, None)
            else:
                merged[qid] = value
        if changed:
            row.answers = merged  # a new dict: JSON columns do not track in-place changes
            s.flush()
            uow.audit(actor, "impact.answered", subject(row.id), answers=changed)
        out = _out(s, row)
        uow.commit()
    return out


def complete(uow: UnitOfWork, assessment_id: int, actor: Actor) -> ImpactAssessmentOut:
    """Freeze the answers once every required question is answered (status `answered`).

    Idempotent: an assessment past draft comes back unchanged.
    """
    with uow:
        s = uow.session
        row = _load(s, assessment_id, lock=True)
        if row.status is ImpactStatus.draft:
            missing = _questionnaire_of(row).missing_required(dict(row.answers or {}))
            if missing:
                raise InvalidInput(
                    f"{len(missing)} required question(s) unanswered: {', '.join(missing)}",
                    "answers",
                )
            row.status = ImpactStatus.answered
            row.completed_at = _now()
            s.flush()
            uow.audit(actor, "impact.completed", subject(row.id), answered=len(row.answers))
            uow.commit()
        return _out(s, row)


def approval_spec(
    uow: UnitOfWork, assessment_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn:
    """The approval request for a completed assessment: roles and quorum from the questionnaire,
    the assessor as requester (so never an approver), a short summary as details."""
    with uow.read():
        s = uow.session
        row = _load(s, assessment_id)
        if row.status is ImpactStatus.draft:
            raise Conflict(
                f"impact assessment {row.id} is not complete yet: "
                f"{len(_questionnaire_of(row).missing_required(row.answers))} required "
                "question(s) unanswered",
                "assessment",
            )
        q = _questionnaire_of(row)
        system = row.system
        return ApprovalRequestIn(
            idempotency_key=approval_key(row.id),
            subject=subject(row.id),
            activity=q.approval.activity,
            system=system.name,
            title=f"Approve the impact assessment of {system.name} (#{row.id})",
            details=_summary(q, row),
            approver_roles=list(q.approval.approver_roles),
            quorum=q.approval.quorum_for(system.risk_tier),
            requester=row.created_by,
            flow_run_id=flow_run_id,
        )


def _summary(q: Questionnaire, row: ImpactAssessment) -> str:
    """What an approver sees first (Slack, the UI form): ratings and choices, then where the
    full answers are."""
    answers = row.answers or {}
    lines = [
        f"Impact assessment **#{row.id}** of **{row.system.name}** "
        f"({row.system.risk_tier.value} risk), questionnaire {q.ref}, assessed by "
        f"{row.created_by}.",
        "",
    ]
    for question in q.questions.values():
        value = answers.get(question.id)
        if value is None or question.kind == "text":
            continue
        shown = f"{value}/5" if question.kind == "scale" else str(value)
        lines.append(f"- {question.id.replace('_', ' ')}: **{shown}**")
    lines += ["", f"Full answers: `aims impact show {row.id} --markdown`"]
    text = "\n".join(lines)
    return text if len(text) <= DETAILS_MAX else text[: DETAILS_MAX - 1] + "…"


def record_decision(uow: UnitOfWork, assessment_id: int, actor: Actor) -> ImpactAssessmentOut:
    """Apply the decision the approval request holds (the database decides, not the caller).

    Approved: render the record and keep it as evidence, in the same transaction as the status
    change. Rejected (or cancelled): status rejected, reasons in the audit trail. Idempotent: a
    decided assessment comes back unchanged, so its evidence is written once.
    """
    with uow:
        s = uow.session
        row = _load(s, assessment_id, lock=True)
        if row.status in (ImpactStatus.approved, ImpactStatus.rejected):
            return _out(s, row)
        request = _request(s, row)
        if row.status is not ImpactStatus.answered or request is None:
            raise Conflict(
                f"impact assessment {row.id} has no approval request yet ({row.status.value})",
                "assessment",
            )
        if request.status is ApprovalStatus.open:
            raise Conflict(f"approval request {request.id} is still open", "request")
        q = _questionnaire_of(row)
        row.request_id = request.id
        if request.status is ApprovalStatus.approved:
            row.status = ImpactStatus.approved
            s.flush()
            rendered = _render(row, q, request)
            md_key, html_key = _evidence_keys(row.id)
            html = evidence.append_in(
                uow,
                EvidenceIn(
                    subject=subject(row.id),
                    kind=EVIDENCE_KIND,
                    title=f"Impact assessment of {row.system.name} (#{row.id}), HTML record",
                    data=rendered.html.encode("utf-8"),
                    file_name=f"impact-assessment-{row.id}-{row.system.name}.html",
                    media_type="text/html; charset=utf-8",
                    idempotency_key=html_key,
                ),
                actor,
            )
            md = evidence.append_in(
                uow,
                EvidenceIn(
                    subject=f"system:{row.system.name}",
                    kind=EVIDENCE_KIND,
                    title=f"Impact assessment of {row.system.name} (#{row.id}, {q.ref}), approved",
                    text=rendered.markdown,
                    media_type="text/markdown; charset=utf-8",
                    idempotency_key=md_key,
                ),
                actor,
            )
            row.evidence_id = md.id
            s.flush()
            uow.audit(
                actor,
                "impact.approved",
                subject(row.id),
                request_id=request.id,
                approvals=approved_by(request),
                evidence_id=md.id,
                html_evidence_id=html.id,
            )
        else:
            row.status = ImpactStatus.rejected
            s.flush()
            uow.audit(
                actor,
                "impact.rejected",
                subject(row.id),
                request_id=request.id,
                request_status=request.status.value,
                reasons=rejection_reasons(request),
            )
        out = _out(s, row)
        uow.commit()
    if out.evidence_id is not None:
        evidence.sync_anchor(uow.settings)
    return out


# --- asking for answers -----------------------------------------------------------------------


def section_asks(uow: UnitOfWork, assessment_id: int, round_: int) -> list[ApprovalRequestIn]:
    """The asks of one round: one per section (or chunk of a long one, `impact_parts`) that
    still has required questions open, to the assessor. Round `round_` asks again for what
    earlier rounds left open; the details show what is answered so far."""
    with uow.read():
        row = _load(uow.session, assessment_id)
        q = _questionnaire_of(row)
        if row.status is not ImpactStatus.draft:
            return []
        answers = dict(row.answers or {})
        missing = set(q.missing_required(answers))
        numbers = {s.id: n for n, s in enumerate(q.sections, 1)}
        specs = []
        for section_id, chunk, of, questions in impact_parts():
            open_here = [x.id for x in questions if x.id in missing]
            if not open_here:
                continue
            section = q.sections[numbers[section_id] - 1]
            part = f" (part {chunk} of {of})" if of > 1 else ""
            specs.append(
                ApprovalRequestIn(
                    idempotency_key=f"impact-assessment-{row.id}-{section_id}-{chunk}-r{round_}",
                    kind=IMPACT_SECTION,
                    subject=part_subject(subject(row.id), section_id, chunk, of),
                    activity=q.approval.activity,
                    system=row.system.name,
                    title=f"Impact assessment #{row.id} of {row.system.name}: section "
                    f"{numbers[section_id]} of {len(q.sections)}, {section.title}{part}"[:300],
                    details=_section_details(row, section.description, questions, open_here),
                    approver_people=[row.created_by],
                )
            )
        return specs


def _section_details(
    row: ImpactAssessment, description: str, questions: list[Any], open_here: list[str]
) -> str:
    answers = row.answers or {}
    lines = [
        description.strip(),
        "",
        f"Still open here: {', '.join(open_here)}. Blank leaves an answer as it is; what stays "
        "open is asked again. All sections at once from a shell: "
        f"`aims impact answer {row.id} --file answers.yaml --as EMAIL`.",
    ]
    given = [
        f"- {x.id}: {' '.join(str(answers[x.id]).split())[:200]}"
        for x in questions
        if x.id in answers
    ]
    if given:
        lines += ["", "Answered so far:", *given]
    text = "\n".join(lines).strip()
    return text if len(text) <= DETAILS_MAX else text[: DETAILS_MAX - 1] + "…"


# --- rendering ---------------------------------------------------------------------------------


def _render(
    row: ImpactAssessment, q: Questionnaire, request: ApprovalRequest | None
) -> RenderedAssessment:
    context = _context(row, q, request)
    return RenderedAssessment(
        markdown=reports.render("impact_assessment.md.j2", **context),
        html=reports.render("impact_assessment.html.j2", **context),
    )


def _context(
    row: ImpactAssessment, q: Questionnaire, request: ApprovalRequest | None
) -> dict[str, Any]:
    """Everything a template shows, from the database only (a re-render gives the same text)."""
    answers = row.answers or {}
    system = row.system
    sections = [
        {
            "number": n,
            "id": section.id,
            "title": section.title,
            "description": section.description.strip(),
            "questions": [
                {
                    "id": question.id,
                    "text": question.text,
                    "kind": question.kind.value,
                    "describe_kind": question.describe_kind(),
                    "required": question.required,
                    "controls": question.controls,
                    "answer": answers.get(question.id),
                }
                for question in section.questions
            ],
        }
        for n, section in enumerate(q.sections, 1)
    ]
    controls = sorted(
        {c for s in q.sections for question in s.questions for c in question.controls}
    )
    decision = None
    if request is not None:
        decision = {
            "request_id": request.id,
            "status": request.status.value,
            "quorum": request.quorum,
            "decided_at": request.decided_at,
            "decisions": [
                {
                    "email": d.person.email,
                    "name": d.person.name,
                    "outcome": d.outcome.value,
                    "comment": d.comment,
                    "channel": d.channel,
                    "at": d.decided_at,
                }
                for d in request.decisions
            ],
        }
    return {
        "assessment": {
            "id": row.id,
            "status": row.status.value,
            "assessor": row.created_by,
            "created_at": row.created_at,
            "completed_at": row.completed_at,
            "answered": len(answers),
            "total": len(q.questions),
            "missing_required": q.missing_required(answers),
        },
        "questionnaire": {"id": q.id, "version": q.version, "ref": q.ref, "title": q.title},
        "system": {
            "name": system.name,
            "purpose": system.purpose,
            "risk_tier": system.risk_tier.value,
            "criticality": system.criticality.value,
            "stage": system.lifecycle_stage.value,
            "owner": f"{system.owner.name} <{system.owner.email}>",
            "vendor": system.vendor.name if system.vendor else None,
        },
        "sections": sections,
        "controls": ["6.1.4", "8.4", *controls],
        "decision": decision,
    }


def render(uow: UnitOfWork, assessment_id: int) -> RenderedAssessment:
    """The record as it stands (a draft renders too, marked as such)."""
    with uow.read():
        s = uow.session
        row = _load(s, assessment_id)
        return _render(row, _questionnaire_of(row), _request(s, row))
