"""Reading policies: the version in force, the one waiting for approval, reviews, exceptions.

Everything here only reads; the outward models are built from the rows in the caller's session.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from aims_core.errors import NotFound
from aims_core.models import (
    AISystem,
    ApprovalRequest,
    ExceptionStatus,
    Policy,
    PolicyException,
    PolicyReview,
    PolicyVersion,
    PolicyVersionStatus,
    as_utc,
)
from aims_core.services import approvals
from aims_core.services.policies.due import as_of, next_review_due
from aims_core.services.policies.schemas import (
    PENDING,
    ExceptionOut,
    PolicyDetail,
    PolicyOut,
    ReviewOut,
    VersionOut,
)
from aims_core.uow import UnitOfWork


def load_policy(session: Session, key: str, *, lock: bool = False) -> Policy:
    """The policy with its owner and versions (locked until commit with `lock`)."""
    q = (
        select(Policy)
        .where(Policy.key == key.strip().lower())
        .options(selectinload(Policy.owner), selectinload(Policy.versions))
    )
    if lock:
        q = q.with_for_update(of=Policy)
    row = session.scalar(q)
    if row is None:
        raise NotFound(f"no policy '{key}' (see `aims policy list`)", "policy")
    return row


def rejection_reasons(session: Session, request_id: int | None) -> list[str]:
    if request_id is None:
        return []
    req = session.get(ApprovalRequest, request_id)
    if req is None:
        return []
    return approvals.rejection_reasons(req, bare_email_if_no_comment=True)


def version_out(session: Session, row: Policy, v: PolicyVersion) -> VersionOut:
    return VersionOut(
        id=v.id,
        policy=row.key,
        version=v.version,
        status=v.status,
        content_sha256=v.content_sha256,
        change_note=v.change_note,
        request_id=v.request_id,
        evidence_id=v.evidence_id,
        flow_run_id=v.flow_run_id,
        created_by=v.created_by,
        created_at=as_utc(v.created_at),
        approved_at=as_utc(v.approved_at) if v.approved_at else None,
        reasons=(
            rejection_reasons(session, v.request_id)
            if v.status is PolicyVersionStatus.rejected
            else []
        ),
    )


def current_version(row: Policy) -> PolicyVersion | None:
    """The approved version in force, if any."""
    approved = [v for v in row.versions if v.status is PolicyVersionStatus.approved]
    return approved[-1] if approved else None


def pending_version(row: Policy) -> PolicyVersion | None:
    """The version proposed and not yet decided (one at a time per policy)."""
    return next((v for v in row.versions if v.status in PENDING), None)


def policy_out(session: Session, row: Policy, now: datetime) -> PolicyOut:
    current, pending = current_version(row), pending_version(row)
    due = next_review_due(row)
    open_exceptions = session.scalar(
        select(func.count())
        .select_from(PolicyException)
        .where(
            PolicyException.policy_id == row.id,
            PolicyException.status == ExceptionStatus.open,
        )
    )
    return PolicyOut(
        id=row.id,
        key=row.key,
        title=row.title,
        owner=row.owner.email,
        owner_name=row.owner.name,
        review_interval_months=row.review_interval_months,
        template=row.template,
        version=current.version if current else None,
        status=row.versions[-1].status.value if row.versions else "no version",
        pending_version=pending.version if pending else None,
        last_reviewed_at=as_utc(row.last_reviewed_at) if row.last_reviewed_at else None,
        next_review_due=due,
        overdue=due <= now,
        open_exceptions=open_exceptions or 0,
    )


def exception_out(session: Session, e: PolicyException) -> ExceptionOut:
    system = session.get(AISystem, e.system_id) if e.system_id else None
    return ExceptionOut(
        id=e.id,
        policy=e.policy.key,
        title=e.title,
        reason=e.reason,
        system=system.name if system else None,
        owner=e.owner.email,
        granted_by=e.granted_by,
        expires_at=as_utc(e.expires_at),
        status=e.status,
        reminders_sent=list(e.reminders_sent or []),
        closed_at=as_utc(e.closed_at) if e.closed_at else None,
    )


def select_exceptions(
    session: Session, *, policy_id: int | None = None, open_only: bool = False
) -> list[PolicyException]:
    """Exceptions (of one policy, open ones only) by expiry, with policy and owner loaded."""
    q = select(PolicyException).options(
        selectinload(PolicyException.policy),
        selectinload(PolicyException.owner),
    )
    if policy_id is not None:
        q = q.where(PolicyException.policy_id == policy_id)
    if open_only:
        q = q.where(PolicyException.status == ExceptionStatus.open)
    return list(session.scalars(q.order_by(PolicyException.expires_at, PolicyException.id)))


def list_policies(uow: UnitOfWork, *, now: datetime | None = None) -> list[PolicyOut]:
    """Every policy with its version in force, last review and computed next review."""
    at = as_of(now)
    with uow.read():
        s = uow.session
        rows = s.scalars(
            select(Policy)
            .options(selectinload(Policy.owner), selectinload(Policy.versions))
            .order_by(Policy.key)
        )
        return [policy_out(s, r, at) for r in rows]


def get_policy(uow: UnitOfWork, key: str, *, now: datetime | None = None) -> PolicyDetail:
    at = as_of(now)
    with uow.read():
        s = uow.session
        row = load_policy(s, key)
        reviews = s.scalars(
            select(PolicyReview)
            .where(PolicyReview.policy_id == row.id)
            .order_by(PolicyReview.reviewed_at)
        )
        return PolicyDetail(
            **policy_out(s, row, at).model_dump(),
            versions=[version_out(s, row, v) for v in row.versions],
            reviews=[
                ReviewOut(
                    reviewed_at=as_utc(r.reviewed_at),
                    reviewer=r.reviewer,
                    outcome=r.outcome,
                    notes=r.notes,
                    evidence_id=r.evidence_id,
                )
                for r in reviews
            ],
            exceptions=[exception_out(s, e) for e in select_exceptions(s, policy_id=row.id)],
        )


def version_body(uow: UnitOfWork, key: str, version: int | None = None) -> tuple[int, str]:
    """The text of `version` (default: the approved version in force)."""
    with uow.read():
        row = load_policy(uow.session, key)
        if version is None:
            v = current_version(row)
            if v is None:
                raise NotFound(f"policy '{row.key}' has no approved version yet", "version")
        else:
            v = next((x for x in row.versions if x.version == version), None)
            if v is None:
                raise NotFound(f"policy '{row.key}' has no version {version}", "version")
        return v.version, v.body


def get_version(uow: UnitOfWork, version_id: int) -> VersionOut:
    with uow.read():
        s = uow.session
        v = s.get(PolicyVersion, version_id)
        if v is None:
            raise NotFound(f"no policy version {version_id}", "version")
        return version_out(s, s.get_one(Policy, v.policy_id), v)


def list_exceptions(uow: UnitOfWork, *, open_only: bool = False) -> list[ExceptionOut]:
    with uow.read():
        s = uow.session
        return [exception_out(s, e) for e in select_exceptions(s, open_only=open_only)]
