"""Reading assessments: one, all, the open one, the latest approved (each as a whole, with its
answers and maturity)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from aims_core import catalog
from aims_core.errors import InvalidInput, NotFound
from aims_core.models import ApprovalRequest, GapAssessment, GapStatus, as_utc
from aims_core.rules.gap import area_of, maturity_rule
from aims_core.services.gap.maturity import compute_maturity
from aims_core.services.gap.schemas import (
    OPEN,
    GapAssessmentOut,
    Maturity,
    RequirementOut,
    approval_key,
)
from aims_core.settings import Settings
from aims_core.uow import UnitOfWork, locked


def _load(session: Session, assessment_id: int, *, lock: bool = False) -> GapAssessment:
    """The assessment with its answers; `lock`: locked until commit (writers wait their turn)."""
    if lock:
        row = locked(session, GapAssessment, assessment_id)
    else:
        row = session.scalar(
            select(GapAssessment)
            .where(GapAssessment.id == assessment_id)
            .options(selectinload(GapAssessment.answers))
        )
    if row is None:
        raise NotFound(f"no gap assessment {assessment_id} (see `aims gap list`)", "assessment")
    return row


def _out(session: Session, settings: Settings, row: GapAssessment) -> GapAssessmentOut:
    titles = {r.id: r.title for r in catalog.requirements()}
    reqs = [
        RequirementOut(
            requirement=a.requirement_id,
            title=titles[a.requirement_id],
            area=area_of(a.requirement_id),
            suggested_status=a.suggested_status,
            suggested_records=list(a.suggested_records or []),
            suggested_note=a.suggested_note or "",
            status=a.status,
            note=a.note,
            evidence=list(a.evidence or []),
            answered_by=a.answered_by,
        )
        for a in row.answers
    ]
    if row.maturity:
        maturity: Maturity | None = Maturity.model_validate(row.maturity)
    else:
        maturity = compute_maturity(
            maturity_rule(settings), {r.requirement: r.status for r in reqs}
        )
    request_id = row.request_id or session.scalar(
        select(ApprovalRequest.id).where(ApprovalRequest.idempotency_key == approval_key(row.id))
    )
    return GapAssessmentOut(
        id=row.id,
        status=row.status,
        assessor=row.created_by,
        requirements=reqs,
        answered=sum(1 for r in reqs if r.status),
        total=len(reqs),
        suggested=sum(1 for r in reqs if r.suggested_status),
        missing=[r.requirement for r in reqs if not r.status],
        maturity=maturity,
        request_id=request_id,
        evidence_id=row.evidence_id,
        flow_run_id=row.flow_run_id,
        created_at=as_utc(row.created_at),
        completed_at=as_utc(row.completed_at) if row.completed_at else None,
        approved_at=as_utc(row.approved_at) if row.approved_at else None,
    )


def get(uow: UnitOfWork, assessment_id: int) -> GapAssessmentOut:
    with uow.read():
        return _out(uow.session, uow.settings, _load(uow.session, assessment_id))


def list_assessments(uow: UnitOfWork) -> list[GapAssessmentOut]:
    """Every assessment, newest first."""
    with uow.read():
        s = uow.session
        rows = s.scalars(
            select(GapAssessment)
            .options(selectinload(GapAssessment.answers))
            .order_by(GapAssessment.id.desc())
        )
        return [_out(s, uow.settings, r) for r in rows]


def _open_row(session: Session) -> GapAssessment | None:
    return session.scalar(
        select(GapAssessment)
        .where(GapAssessment.status.in_(OPEN))
        .options(selectinload(GapAssessment.answers))
        .order_by(GapAssessment.id.desc())
    )


def open_assessment(uow: UnitOfWork) -> GapAssessmentOut | None:
    """The assessment still being answered or approved, if there is one."""
    with uow.read():
        row = _open_row(uow.session)
        return _out(uow.session, uow.settings, row) if row else None


def latest_approved(uow: UnitOfWork) -> GapAssessmentOut | None:
    with uow.read():
        s = uow.session
        row = s.scalar(
            select(GapAssessment)
            .where(GapAssessment.status == GapStatus.approved)
            .options(selectinload(GapAssessment.answers))
            .order_by(GapAssessment.approved_at.desc(), GapAssessment.id.desc())
        )
        return _out(s, uow.settings, row) if row else None


def resolve(uow: UnitOfWork, target: str | None) -> int:
    """An assessment id; none given: the open one, else the latest approved."""
    if target and target.strip():
        if not target.strip().isdigit():
            raise InvalidInput(f"'{target}' is not an assessment id (a number)", "assessment")
        return int(target)
    found = open_assessment(uow) or latest_approved(uow)
    if found is None:
        raise NotFound("no gap assessment yet: start one with `aims gap start`", "assessment")
    return found.id
