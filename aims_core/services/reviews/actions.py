"""The decisions of a management review (9.3.3): each one a tracked action with an owner and a
due date. The owner is told; closing it keeps what came of it as evidence; the next review
reports it under input a)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import ManagementReview, Person, ReviewAction, ReviewStatus, as_utc
from aims_core.services import evidence, outbox
from aims_core.services.inputs import validated
from aims_core.services.people import active_person
from aims_core.services.reviews.periods import as_of, period_bounds, subject
from aims_core.services.reviews.queries import action_out, load_review
from aims_core.services.reviews.schemas import EVIDENCE_KIND, ActionOut, DecisionIn
from aims_core.uow import Actor, UnitOfWork, locked


def notify(s: Session, key: str, kind: str, period: str, person: Person, text: str) -> None:
    """A message to an action's owner, queued in the caller's transaction (DM, else the log)."""
    outbox.tell(
        s,
        person,
        key=key,
        kind=kind,
        subject=subject(period),
        thread_key=f"review-{period}-to-{person.id}",
        text=text,
    )


def decide(
    uow: UnitOfWork,
    period: str,
    data: DecisionIn | Mapping[str, Any],
    actor: Actor,
    now: datetime | None = None,
) -> ActionOut:
    """Record a decision of the review as a tracked action (owner told); refused once the
    minutes are approved: they are final."""
    data = validated(DecisionIn, data)
    at = as_of(now)
    zone = ZoneInfo(uow.settings.timezone)
    if data.due < at.astimezone(zone).date():
        raise InvalidInput(f"{data.due} is in the past", "due")
    period_bounds(period, uow.settings.timezone)
    with uow:
        s = uow.session
        row = load_review(s, period.strip(), lock=True)
        if row.status is ReviewStatus.approved:
            raise Conflict(
                f"the minutes of {row.period} are approved: record the decision in the next review",
                "period",
            )
        owner = active_person(s, data.owner, "owner")
        action = ReviewAction(
            review_id=row.id,
            decision=data.decision,
            kind=data.kind,
            owner=owner,
            due_at=datetime.combine(data.due, time(23, 59, 59), zone).astimezone(UTC),
            status="open",
            outcome="",
            recorded_by=actor.who,
            created_at=at,
            reminders_sent=0,
        )
        s.add(action)
        s.flush()
        uow.audit(
            actor, "review.decision", subject(row.period), action_id=action.id,
            decision=data.decision, kind=data.kind, owner=owner.email, due=data.due.isoformat(),
        )  # fmt: skip
        notify(
            s,
            f"review-action-{action.id}-assigned",
            "review-action",
            row.period,
            owner,
            f"Management review {row.period} decided ({data.kind}): {data.decision}. "
            f"You own it, due {data.due}. When done: `aims review action-done {action.id} "
            "--outcome ...`",
        )
        out = action_out(action, row.period, at)
        uow.commit()
    return out


def action_done(
    uow: UnitOfWork, action_id: int, outcome: str, actor: Actor, now: datetime | None = None
) -> ActionOut:
    """Close an action with what came of it (kept as evidence). A repeat changes nothing."""
    text = (outcome or "").strip()
    if not text:
        raise InvalidInput("say what came of it", "outcome")
    at = as_of(now)
    with uow:
        s = uow.session
        action = locked(s, ReviewAction, action_id)
        if action is None:
            raise NotFound(f"no review action {action_id} (see `aims review show`)", "action")
        period = s.scalar(
            select(ManagementReview.period).where(ManagementReview.id == action.review_id)
        )
        assert period is not None
        if action.status == "done":
            return action_out(action, period, at)
        if action.status != "open":
            raise Conflict(f"action {action_id} is {action.status}", "action")
        action.status, action.done_at, action.outcome = "done", at, text
        ev = evidence.append_in(
            uow,
            EvidenceIn(
                subject=subject(period),
                kind=EVIDENCE_KIND,
                title=f"Management review {period}: action {action.id} done",
                text=f"# Action {action.id} of management review {period}: done\n\n"
                f"- **decision** ({action.kind}): {action.decision}\n"
                f"- **owner**: {action.owner.email}\n- **due**: {as_utc(action.due_at):%Y-%m-%d}\n"
                f"- **done**: {at:%Y-%m-%d %H:%M} UTC, recorded by {actor.who}\n\n{text}\n",
                media_type="text/markdown; charset=utf-8",
                idempotency_key=f"review-action-{action.id}-done",
            ),
            actor,
        )
        s.flush()
        uow.audit(
            actor, "review.action-done", subject(period), action_id=action.id, outcome=text,
            evidence_id=ev.id,
        )  # fmt: skip
        out = action_out(action, period, at)
        uow.commit()
    evidence.sync_anchor(uow.settings)
    return out
