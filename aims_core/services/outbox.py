"""The notification outbox: messages are rows first, delivered after.

A service that needs to tell someone something queues a row *in its own transaction* (`queue`), so
the message exists exactly when the change it announces exists; a delivery step sends the rows
later (notifications/slack.py). A Slack outage therefore delays messages and loses none, and a
re-run flow step that queues the same idempotency key again writes nothing.

Delivery is at least once and ordered per `thread_key`: a row is never sent while an earlier row of
the same thread is still queued, so an update ("Approved by …") never overtakes the message it
edits, and a reminder never arrives before the request it reminds of. Failed sends go back to the
queue with exponential backoff; permanent errors are marked failed for an operator.

Nothing here imports Slack: the rows hold Block Kit as plain JSON (aims_core/messages.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from aims_core.errors import InvalidInput, NotFound
from aims_core.messages import (
    ApprovalView,
    DecisionLine,
    EvidenceLine,
    SlackMessage,
    approval_request_message,
    decision_update_message,
    escalation_message,
    mention,
    progress_update_message,
    reminder_message,
)
from aims_core.models import (
    ApprovalRequest,
    ApprovalStatus,
    Evidence,
    Notification,
    NotificationStatus,
    Outcome,
    Person,
    as_utc,
)
from aims_core.uow import Actor, UnitOfWork

log = logging.getLogger(__name__)

TARGET_DM: Final = "dm"  # the recipient's Slack DM
TARGET_LOG: Final = "log"  # no Slack for this recipient: written to the log at delivery
TARGET_DEFAULT: Final = "default"  # settings.slack_channel at delivery (logged when unset)
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")

KIND_APPROVAL: Final = "approval-request"
KIND_REMINDER: Final = "approval-reminder"
KIND_ESCALATION: Final = "approval-escalation"
KIND_DECISION_UPDATE: Final = "approval-update"

BACKOFF_BASE: Final = timedelta(seconds=5)
BACKOFF_CAP: Final = timedelta(minutes=10)
#: A claimed row is invisible to other delivery passes this long: longer than one send can take
#: (client timeout x retries + Retry-After sleeps), short enough that a crashed pass's rows return.
CLAIM_LEASE: Final = timedelta(minutes=5)

#: The actor of delivery-side audit events (failures, requeues by the scheduler).
NOTIFIER: Final = Actor(who="aims-notifier", channel="schedule")


utc = as_utc  # kept under its old name: callers normalise times passed in by users and tests


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 5 s, 10 s, 20 s, … capped at 10 min.

    No jitter: one delivery loop drains the outbox, so there is no herd to spread, and a
    deterministic schedule is what an operator reading `next_attempt_at` expects.
    """
    if attempts < 1:
        return timedelta(0)
    exp = min(attempts - 1, 16)  # 5 s * 2**16 is far past the cap; keeps the int small
    return min(BACKOFF_BASE * (2**exp), BACKOFF_CAP)


# --- boundary models ---------------------------------------------------------------------------


class NotificationIn(BaseModel):
    """A message to queue. `target`: a Slack channel id (C…/G…/D…), "dm" (the recipient's DM),
    "log" (log only), "default" (the configured channel); omitted: "dm" with a recipient, else
    "default". An update (`updates` = the key of an earlier notification) edits that message in
    place and inherits its target, recipient and thread."""

    model_config = ConfigDict(extra="forbid")

    idempotency_key: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=40)
    subject: str = Field(min_length=1, max_length=200)
    recipient: str | None = Field(default=None, max_length=320, description="A person's email.")
    target: str | None = Field(default=None, max_length=120)
    thread_key: str | None = Field(default=None, min_length=1, max_length=200)
    text: str = Field(min_length=1, description="Fallback text: notifications, logs, CLI.")
    blocks: list[dict[str, Any]] | None = None
    request_id: int | None = None
    updates: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("recipient")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else None

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is None or value in (TARGET_DM, TARGET_LOG, TARGET_DEFAULT):
            return value
        if not _CHANNEL_ID.match(value):
            raise ValueError(
                f"{value!r} is not a Slack channel id (C…, G…, D…) nor dm, log or default"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> NotificationIn:
        if self.updates is not None:
            if self.target is not None or self.recipient is not None:
                raise ValueError("an update inherits target and recipient from the original")
        elif self.target == TARGET_DM and self.recipient is None:
            raise ValueError("target 'dm' needs a recipient")
        return self


class OriginalRef(BaseModel):
    """Where the message an update edits was posted (channel + ts), once it was."""

    id: int
    idempotency_key: str
    status: NotificationStatus
    slack_channel: str | None
    slack_ts: str | None


class NotificationOut(BaseModel):
    id: int
    idempotency_key: str
    kind: str
    subject: str
    recipient: str | None
    recipient_id: int | None
    recipient_slack_id: str | None
    target: str
    thread_key: str
    text: str
    blocks: list[dict[str, Any]] | None
    request_id: int | None
    updates_id: int | None
    original: OriginalRef | None
    status: NotificationStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    slack_channel: str | None
    slack_ts: str | None


def notification_out(row: Notification, session: Session) -> NotificationOut:
    original = session.get(Notification, row.updates_id) if row.updates_id else None
    return NotificationOut(
        id=row.id,
        idempotency_key=row.idempotency_key,
        kind=row.kind,
        subject=row.subject,
        recipient=row.recipient.email if row.recipient else None,
        recipient_id=row.recipient_id,
        recipient_slack_id=row.recipient.slack_user_id if row.recipient else None,
        target=row.target,
        thread_key=row.thread_key,
        text=row.text,
        blocks=row.blocks,
        request_id=row.request_id,
        updates_id=row.updates_id,
        original=OriginalRef(
            id=original.id,
            idempotency_key=original.idempotency_key,
            status=original.status,
            slack_channel=original.slack_channel,
            slack_ts=original.slack_ts,
        )
        if original
        else None,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=utc(row.next_attempt_at),
        last_error=row.last_error,
        created_at=utc(row.created_at),
        sent_at=utc(row.sent_at) if row.sent_at else None,
        slack_channel=row.slack_channel,
        slack_ts=row.slack_ts,
    )


# --- queueing ----------------------------------------------------------------------------------


def _by_key(session: Session, key: str) -> Notification | None:
    return session.scalar(select(Notification).where(Notification.idempotency_key == key))


def _queue(session: Session, data: NotificationIn) -> tuple[Notification, bool]:
    existing = _by_key(session, data.idempotency_key)
    if existing is not None:
        return existing, False
    if data.request_id is not None and session.get(ApprovalRequest, data.request_id) is None:
        raise NotFound(f"no approval request {data.request_id}", field="request_id")
    recipient: Person | None = None
    if data.recipient is not None:
        recipient = session.scalar(select(Person).where(Person.email == data.recipient))
        if recipient is None:
            raise NotFound(f"no person with email '{data.recipient}'", field="recipient")
    original: Notification | None = None
    if data.updates is not None:
        original = _by_key(session, data.updates)
        if original is None:
            raise NotFound(f"no notification with key '{data.updates}'", field="updates")
        if original.updates_id is not None:
            raise InvalidInput("update the original message, not an update of it", "updates")
    if original is not None:
        # Same thread as the original: the ordering rule then keeps the edit behind the post.
        target, recipient_id, thread_key = (
            original.target,
            original.recipient_id,
            original.thread_key,
        )
    else:
        target = data.target or (TARGET_DM if recipient else TARGET_DEFAULT)
        recipient_id = recipient.id if recipient else None
        thread_key = data.thread_key or data.idempotency_key
    row = Notification(
        idempotency_key=data.idempotency_key,
        kind=data.kind,
        subject=data.subject,
        recipient_id=recipient_id,
        target=target,
        thread_key=thread_key,
        text=data.text,
        blocks=data.blocks,
        request_id=data.request_id,
        updates_id=original.id if original else None,
        status=NotificationStatus.queued,
        attempts=0,
        next_attempt_at=datetime.now(UTC),
    )
    try:
        # A savepoint: a concurrent writer of the same key (PostgreSQL) costs only this insert,
        # not the caller's whole transaction.
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        existing = _by_key(session, data.idempotency_key)
        if existing is None:
            raise
        return existing, False
    return row, True


def queue(session: Session, data: NotificationIn | dict[str, Any]) -> Notification:
    """Queue a notification inside the caller's transaction. Idempotent: a known key returns the
    existing row and writes nothing. The caller audits its own change; the row is the record."""
    if not isinstance(data, NotificationIn):
        data = NotificationIn.model_validate(data)
    return _queue(session, data)[0]


def tell(
    session: Session,
    person: Person,
    *,
    key: str,
    kind: str,
    subject: str,
    thread_key: str,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    request_id: int | None = None,
) -> Notification:
    """Queue a message to one person in the caller's transaction: their Slack DM, or the log for
    someone without a Slack user (so nobody's message is lost to a missing id). Idempotent."""
    data = NotificationIn(
        idempotency_key=key,
        kind=kind,
        subject=subject,
        recipient=person.email,
        target=TARGET_DM if person.slack_user_id else TARGET_LOG,
        thread_key=thread_key,
        text=text,
        blocks=blocks,
        request_id=request_id,
    )
    return _queue(session, data)[0]


def queue_notification(
    uow: UnitOfWork, data: NotificationIn | dict[str, Any], actor: Actor
) -> NotificationOut:
    """Queue in a transaction of its own, audited (for callers that change nothing else)."""
    if not isinstance(data, NotificationIn):
        data = NotificationIn.model_validate(data)
    with uow:
        row, created = _queue(uow.session, data)
        if created:
            uow.audit(
                actor, "notification.queued", row.subject, key=row.idempotency_key, kind=row.kind
            )
        out = notification_out(row, uow.session)
        uow.commit()
    return out


# --- delivery bookkeeping ----------------------------------------------------------------------


def _deliverable(now: datetime) -> list[Any]:
    """Queued, due, not behind an earlier queued row of its thread, not an update whose
    original is still queued (belt and braces: updates share the original's thread)."""
    earlier = aliased(Notification)
    original = aliased(Notification)
    return [
        Notification.status == NotificationStatus.queued,
        Notification.next_attempt_at <= now,
        ~exists().where(
            earlier.thread_key == Notification.thread_key,
            earlier.id < Notification.id,
            earlier.status == NotificationStatus.queued,
        ),
        ~exists().where(
            original.id == Notification.updates_id,
            original.status == NotificationStatus.queued,
        ),
    ]


def due(uow: UnitOfWork, now: datetime | None = None, limit: int = 100) -> list[NotificationOut]:
    """The rows a delivery pass may send now, oldest first (at most one per thread)."""
    now = utc(now or datetime.now(UTC))
    with uow.read():
        rows = uow.session.scalars(
            select(Notification).where(*_deliverable(now)).order_by(Notification.id).limit(limit)
        ).all()
        return [notification_out(r, uow.session) for r in rows]


def queued_ids(uow: UnitOfWork, subject: str, limit: int) -> list[int]:
    """The subject's queued notifications, oldest first (what is sent now for one subject)."""
    with uow.read():
        return list(
            uow.session.scalars(
                select(Notification.id)
                .where(
                    Notification.subject == subject,
                    Notification.status == NotificationStatus.queued,
                )
                .order_by(Notification.id)
                .limit(limit)
            )
        )


def claim(
    uow: UnitOfWork,
    notification_id: int,
    now: datetime | None = None,
    lease: timedelta = CLAIM_LEASE,
) -> NotificationOut | None:
    """Take one due row for sending: moves its next attempt past the lease and counts the
    attempt, in one compare-and-set UPDATE. None when it is not deliverable any more (another
    pass took it, it was sent, or an earlier row of its thread is queued again)."""
    now = utc(now or datetime.now(UTC))
    with uow:
        result = uow.session.execute(
            update(Notification)
            .where(Notification.id == notification_id, *_deliverable(now))
            .values(next_attempt_at=now + lease, attempts=Notification.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        row = uow.session.get(Notification, notification_id)
        assert row is not None
        out = notification_out(row, uow.session)
        uow.commit()
    return out


def _transition(uow: UnitOfWork, notification_id: int, **values: Any) -> Notification | None:
    """Move a queued row on; a row that is no longer queued is left alone (returns None)."""
    result = uow.session.execute(
        update(Notification)
        .where(
            Notification.id == notification_id,
            Notification.status == NotificationStatus.queued,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return uow.session.get(Notification, notification_id)


def mark_sent(uow: UnitOfWork, notification_id: int, channel: str, ts: str) -> bool:
    """Delivered: Slack's channel and ts are kept, so a later update can edit this message."""
    with uow:
        row = _transition(
            uow,
            notification_id,
            status=NotificationStatus.sent,
            sent_at=datetime.now(UTC),
            slack_channel=channel,
            slack_ts=ts,
            last_error=None,
        )
        uow.commit()
    return row is not None


def mark_retry(
    uow: UnitOfWork, notification_id: int, error: str, next_attempt_at: datetime
) -> bool:
    """A transient failure: stays queued until `next_attempt_at` (see `backoff`)."""
    with uow:
        row = _transition(
            uow, notification_id, next_attempt_at=utc(next_attempt_at), last_error=error[:2000]
        )
        uow.commit()
    return row is not None


def mark_failed(uow: UnitOfWork, notification_id: int, error: str, actor: Actor = NOTIFIER) -> bool:
    """A permanent failure (channel_not_found, invalid_auth, …): kept, audited, not retried.
    `requeue` sends it again once an operator has fixed the cause."""
    with uow:
        row = _transition(
            uow, notification_id, status=NotificationStatus.failed, last_error=error[:2000]
        )
        if row is not None:
            uow.audit(
                actor,
                "notification.failed",
                row.subject,
                key=row.idempotency_key,
                kind=row.kind,
                error=error[:500],
            )
        uow.commit()
    return row is not None


def mark_logged(uow: UnitOfWork, notification_id: int, reason: str = "") -> bool:
    """Written to the log instead of Slack (no token, or a recipient without Slack)."""
    with uow:
        row = _transition(
            uow,
            notification_id,
            status=NotificationStatus.logged,
            sent_at=datetime.now(UTC),
            last_error=reason or None,
        )
        uow.commit()
    return row is not None


def requeue(
    uow: UnitOfWork, actor: Actor, ids: Sequence[int] | None = None, now: datetime | None = None
) -> int:
    """Failed rows back to the queue (all failed ones when `ids` is None), audited."""
    now = utc(now or datetime.now(UTC))
    with uow:
        stmt = select(Notification).where(Notification.status == NotificationStatus.failed)
        if ids is not None:
            stmt = stmt.where(Notification.id.in_(list(ids)))
        rows = uow.session.scalars(stmt.order_by(Notification.id)).all()
        for row in rows:
            row.status = NotificationStatus.queued
            row.next_attempt_at = now
            uow.audit(actor, "notification.requeued", row.subject, key=row.idempotency_key)
        uow.commit()
    return len(rows)


def list_notifications(
    uow: UnitOfWork,
    status: NotificationStatus | str | None = None,
    limit: int = 100,
    request_id: int | None = None,
) -> list[NotificationOut]:
    """The newest `limit` rows (optionally of one status or request), oldest first."""
    with uow.read():
        stmt = select(Notification)
        if status is not None:
            if status not in {s.value for s in NotificationStatus}:
                known = ", ".join(s.value for s in NotificationStatus)
                raise InvalidInput(f"unknown status '{status}' (one of: {known})", "status")
            stmt = stmt.where(Notification.status == NotificationStatus(status))
        if request_id is not None:
            stmt = stmt.where(Notification.request_id == request_id)
        rows = uow.session.scalars(stmt.order_by(Notification.id.desc()).limit(limit)).all()
        return [notification_out(r, uow.session) for r in reversed(rows)]


def get_notification(uow: UnitOfWork, key: str) -> NotificationOut:
    with uow.read():
        row = _by_key(uow.session, key)
        if row is None:
            raise NotFound(f"no notification with key '{key}'", field="key")
        return notification_out(row, uow.session)


# --- the messages of human decisions -----------------------------------------------------------


def _request(session: Session, request_id: int) -> ApprovalRequest:
    req = session.get(ApprovalRequest, request_id)
    if req is None:
        raise NotFound(f"no approval request {request_id}", field="request_id")
    return req


def approval_view(session: Session, req: ApprovalRequest) -> ApprovalView:
    """What the approval messages show, read straight from the ORM rows."""
    evidence: list[EvidenceLine] = []
    ids = [int(i) for i in (req.evidence_ids or [])]
    if ids:
        found = {e.id: e for e in session.scalars(select(Evidence).where(Evidence.id.in_(ids)))}
        evidence = [
            EvidenceLine(
                id=i, title=found[i].title, kind=found[i].kind, sha256=found[i].content_sha256
            )
            for i in ids
            if i in found
        ]
    requester = (
        mention(req.requester.slack_user_id, req.requester.name)
        if req.requester
        else req.requested_by
    )
    return ApprovalView(
        request_id=req.id,
        kind=req.kind,
        title=req.title,
        subject=req.subject,
        activity=req.activity,
        system=req.system.name if req.system else None,
        risk_tier=req.system.risk_tier.value if req.system else None,
        stage=req.system.lifecycle_stage.value if req.system else None,
        details=req.details or "",
        quorum=req.quorum,
        approver_count=len(req.approvers),
        round=req.round,
        deadline=utc(req.deadline) if req.deadline else None,
        requester=requester,
        evidence=evidence,
        flow_run_id=req.flow_run_id,
    )


def _personal(
    session: Session,
    *,
    key: str,
    kind: str,
    req: ApprovalRequest,
    person: Person,
    thread_key: str,
    message: SlackMessage,
) -> Notification:
    return tell(
        session,
        person,
        key=key,
        kind=kind,
        subject=req.subject,
        thread_key=thread_key,
        text=message.text,
        blocks=message.blocks,
        request_id=req.id,
    )


def _thread(req: ApprovalRequest, person_id: int) -> str:
    """One thread per request and approver: the request, its reminders and its updates."""
    return f"approval-{req.id}-to-{person_id}"


def _undecided(req: ApprovalRequest) -> list[Person]:
    decided = {d.person_id for d in req.decisions}
    return [a.person for a in req.approvers if a.person_id not in decided]


def _to_undecided(
    session: Session, req: ApprovalRequest, kind: str, key: str, message: SlackMessage
) -> list[Notification]:
    """`message` to each approver who has not decided yet, on their thread of the request; the
    row's key is `{key}-to-{person id}`."""
    return [
        _personal(
            session,
            key=f"{key}-to-{p.id}",
            kind=kind,
            req=req,
            person=p,
            thread_key=_thread(req, p.id),
            message=message,
        )
        for p in _undecided(req)
    ]


def queue_approval_messages(
    session: Session, request_id: int, key: bytes | None = None
) -> list[Notification]:
    """One DM per eligible approver who has not decided yet, for the request's current round.

    Approvers without a Slack id get a "log" row (they decide from the CLI or the UI). With the
    evidence `key` configured the DM offers the approver's personal code for the Prefect UI form;
    the code is rendered at delivery, never stored in the row. A request that is no longer open
    gets no new messages (its existing ones for this round are returned). Idempotent.
    """
    req = _request(session, request_id)
    if req.status != ApprovalStatus.open:
        prefix = f"approval-{req.id}-r{req.round}-to-"
        return list(
            session.scalars(
                select(Notification)
                .where(
                    Notification.request_id == req.id,
                    Notification.kind == KIND_APPROVAL,
                    Notification.updates_id.is_(None),
                    Notification.idempotency_key.startswith(prefix, autoescape=True),
                )
                .order_by(Notification.id)
            )
        )
    message = approval_request_message(approval_view(session, req), with_code=key is not None)
    return _to_undecided(session, req, KIND_APPROVAL, f"approval-{req.id}-r{req.round}", message)


def queue_reminder(
    session: Session, request_id: int, n: int, key: bytes | None = None
) -> list[Notification]:
    """Reminder number `n` to every approver of an open request who has not decided. The
    caller (the reconciler) records `reminders_sent` / `last_reminded_at` on the request."""
    if n < 1:
        raise InvalidInput("reminder numbers start at 1", field="n")
    req = _request(session, request_id)
    if req.status != ApprovalStatus.open:
        return []
    message = reminder_message(approval_view(session, req), n, with_code=key is not None)
    return _to_undecided(session, req, KIND_REMINDER, f"approval-{req.id}-reminder-{n}", message)


def queue_escalation(
    session: Session, request_id: int, contacts: list[str], n: int = 1
) -> list[Notification]:
    """Escalation `n` of an open request to `contacts` (emails: the Accountable's manager, the
    governance lead): who is holding it up. No buttons: a contact need not be eligible."""
    req = _request(session, request_id)
    if req.status != ApprovalStatus.open:
        return []
    people: list[Person] = []
    for email in dict.fromkeys(c.strip().lower() for c in contacts):
        person = session.scalar(select(Person).where(Person.email == email))
        if person is None:
            raise NotFound(f"no person with email '{email}'", field="contacts")
        people.append(person)
    view = approval_view(session, req)
    waiting = [mention(p.slack_user_id, p.name) for p in _undecided(req)]
    approvals = sum(1 for d in req.decisions if d.outcome == Outcome.approve)
    overdue = req.deadline is not None and utc(req.deadline) <= datetime.now(UTC)
    message = escalation_message(view, waiting, approvals, overdue=overdue)
    return [
        _personal(
            session,
            key=f"approval-{req.id}-escalation-{n}-to-{p.id}",
            kind=KIND_ESCALATION,
            req=req,
            person=p,
            thread_key=f"approval-{req.id}-escalation-to-{p.id}",
            message=message,
        )
        for p in people
    ]


def _decision_lines(req: ApprovalRequest) -> list[DecisionLine]:
    return [
        DecisionLine(
            who=mention(d.person.slack_user_id, d.person.name),
            outcome=d.outcome.value,
            at=utc(d.decided_at),
            comment=d.comment or "",
        )
        for d in req.decisions
    ]


def queue_decision_updates(session: Session, request_id: int) -> list[Notification]:
    """Edit every earlier message with buttons of this request, so nobody clicks a stale one.

    Decided (approved, rejected, cancelled): every approval and reminder message shows the
    outcome ("Approved by <@U…> at … UTC") and loses its buttons. Still open (partial quorum):
    only the messages of the people who decided are edited ("waiting for 1 more approval").
    Each update shares its original's thread, so it is never sent before it. Idempotent.
    """
    req = _request(session, request_id)
    originals = session.scalars(
        select(Notification)
        .where(
            Notification.request_id == req.id,
            Notification.kind.in_((KIND_APPROVAL, KIND_REMINDER)),
            Notification.updates_id.is_(None),
        )
        .order_by(Notification.id)
    ).all()
    if not originals:
        return []
    view = approval_view(session, req)
    out: list[Notification] = []
    if req.status == ApprovalStatus.open:
        lines = _decision_lines(req)
        by_person = {d.person_id: (d, ln) for d, ln in zip(req.decisions, lines, strict=True)}
        approvals = sum(1 for d in req.decisions if d.outcome == Outcome.approve)
        for original in originals:
            if original.recipient_id not in by_person:
                continue
            decision, line = by_person[original.recipient_id]
            message = progress_update_message(view, line, approvals)
            out.append(
                _update(session, original, f"{original.idempotency_key}-d{decision.id}", message)
            )
        return out
    message = decision_update_message(
        view,
        req.status.value,
        _decision_lines(req),
        utc(req.decided_at) if req.decided_at else None,
    )
    for original in originals:
        out.append(_update(session, original, f"{original.idempotency_key}-final", message))
    return out


def _update(
    session: Session, original: Notification, key: str, message: SlackMessage
) -> Notification:
    data = NotificationIn(
        idempotency_key=key,
        kind=KIND_DECISION_UPDATE,
        subject=original.subject,
        text=message.text,
        blocks=message.blocks,
        request_id=original.request_id,
        updates=original.idempotency_key,
    )
    return _queue(session, data)[0]


def queue_request_messages(uow: UnitOfWork, request_id: int, key: bytes | None = None) -> int:
    """`queue_approval_messages` in a unit of work of its own (a flow step that opened the
    request; the services that decide queue theirs in their own transaction): one DM per
    approver who has not decided yet (idempotent); how many the round has."""
    with uow:
        rows = queue_approval_messages(uow.session, request_id, key)
        uow.commit()
        return len(rows)
