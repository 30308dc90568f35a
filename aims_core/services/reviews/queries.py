"""Reading management reviews back: the review of a period, its actions and their status."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from aims_core.errors import NotFound
from aims_core.models import ManagementReview, ReviewAction, as_utc
from aims_core.services.reviews.periods import as_of, period_bounds
from aims_core.services.reviews.schemas import ActionOut, ActionRow, ReviewOut
from aims_core.uow import UnitOfWork


def action_row(a: ReviewAction, period: str, owner: str, now: datetime) -> ActionRow:
    """An action as reported under input a): an open one past its due date is `overdue`."""
    status = a.status
    if status == "open" and as_utc(a.due_at) < now:
        status = "overdue"
    return ActionRow(
        id=a.id,
        review=period,
        decision=a.decision,
        kind=a.kind,
        owner=owner,
        due=as_utc(a.due_at).date(),
        status=status,
        done_at=as_utc(a.done_at) if a.done_at else None,
        outcome=a.outcome,
    )


def action_out(a: ReviewAction, period: str, now: datetime) -> ActionOut:
    row = action_row(a, period, a.owner.email, now)
    return ActionOut(
        **row.model_dump(),
        recorded_by=a.recorded_by,
        created_at=as_utc(a.created_at),
        reminders_sent=a.reminders_sent,
    )


def review_out(row: ManagementReview, now: datetime | None = None) -> ReviewOut:
    at = as_of(now)
    return ReviewOut(
        id=row.id,
        period=row.period,
        status=row.status,
        period_start=as_utc(row.period_start),
        period_end=as_utc(row.period_end),
        pack_dir=row.pack_dir,
        pack_evidence_ids=list(row.pack_evidence_ids or []),
        request_id=row.request_id,
        flow_run_id=row.flow_run_id,
        minutes=row.minutes,
        prepared_by=row.prepared_by,
        prepared_at=as_utc(row.prepared_at),
        approved_at=as_utc(row.approved_at) if row.approved_at else None,
        actions=[action_out(a, row.period, at) for a in row.actions],
        inputs=dict(row.inputs or {}),
    )


def load_review(s: Session, period: str, *, lock: bool = False) -> ManagementReview:
    """The review of `period` with its actions (locked until commit with `lock`)."""
    q = (
        select(ManagementReview)
        .where(ManagementReview.period == period)
        .options(selectinload(ManagementReview.actions).selectinload(ReviewAction.owner))
    )
    if lock:
        q = q.with_for_update(of=ManagementReview)
    row = s.scalar(q)
    if row is None:
        raise NotFound(
            f"no management review for {period}: prepare it first "
            f"(`aims review prepare --period {period}` or `aims review start --period {period}`)",
            "period",
        )
    return row


def get_review(uow: UnitOfWork, period: str, now: datetime | None = None) -> ReviewOut:
    period_bounds(period, uow.settings.timezone)
    with uow.read():
        return review_out(load_review(uow.session, period.strip()), now)


def find_review(uow: UnitOfWork, period: str) -> ReviewOut | None:
    """The review of a period, or None if it was never prepared."""
    with uow.read():
        row = uow.session.scalar(
            select(ManagementReview.id).where(ManagementReview.period == period)
        )
    return None if row is None else get_review(uow, period)


def list_reviews(uow: UnitOfWork, now: datetime | None = None) -> list[ReviewOut]:
    with uow.read():
        rows = uow.session.scalars(
            select(ManagementReview)
            .options(selectinload(ManagementReview.actions).selectinload(ReviewAction.owner))
            .order_by(ManagementReview.period_start.desc())
        )
        return [review_out(r, now) for r in rows]
