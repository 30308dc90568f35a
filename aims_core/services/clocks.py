"""Regulatory clocks: deadlines counted from `aware_at`, with reminders and escalation.

A clock is started by the incident service (at report, or when a person confirms a serious
incident) from the rules in `regulatory_clocks.yaml`. Nothing waits on it: a scheduled pass
(`tick`, flows/incident_clocks.py) looks at every clock that is not met and

- **reminds** at each configured fraction of the clock's span, once per fraction (a pass that
  finds several fractions passed at once sends one reminder, for the latest, and records them all);
- marks a clock past its deadline **overdue** and **escalates** it once to the escalation role;
- runs one **delivery** pass of the outbox, so the messages go out now.

As in the approval reconciler, each clock is handled in one transaction with its row locked and
the conditions checked again under the lock: a reminder is recorded if and only if it was queued,
and a pass repeated at the same `now` changes nothing. `now` is injectable; tests move it.

Timeline rows are written here (`timeline_event`), not in the incident service, because clocks
write them too and the incident service imports this module. No Prefect here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, computed_field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aims_core.errors import InvalidInput, NotFound
from aims_core.messages import escape, fmt_utc
from aims_core.models import (
    ClockStatus,
    Evidence,
    Incident,
    IncidentEvent,
    IncidentStatus,
    Person,
    RegulatoryClock,
    as_utc,
)
from aims_core.ports import Delivery, DeliveryReport
from aims_core.rules.incident import (
    IncidentFacts,
    IncidentPolicy,
    Start,
    incident_policy,
)
from aims_core.services import outbox
from aims_core.services.directory import role_holders
from aims_core.services.passes import PassReport
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork, locked

__all__ = [
    "CLOCKS",
    "KIND_CLOCK_OVERDUE",
    "KIND_CLOCK_REMINDER",
    "ClockOut",
    "ClockReport",
    "ReminderSent",
    "clock_out",
    "clocks_markdown",
    "fmt_left",
    "mark_met",
    "running_clocks",
    "tick",
    "timeline_event",
]

log = logging.getLogger("aims.clocks")

#: Who the audit trail names for the scheduled pass.
CLOCKS: Final = Actor(who="aims-clocks", channel="schedule")
KIND_CLOCK_REMINDER: Final = "clock-reminder"
KIND_CLOCK_OVERDUE: Final = "clock-overdue"
KIND_CLOCK_STARTED: Final = "clock-started"
OPEN_STATUSES: Final = (ClockStatus.running, ClockStatus.overdue)


# --- boundary models ---------------------------------------------------------------------------


class ClockOut(BaseModel):
    id: int
    incident_id: int
    rule: str
    label: str
    started_at: datetime
    deadline: datetime
    status: ClockStatus
    time_left_seconds: int | None = Field(
        description="Until the deadline (negative: overdue); None once met or stopped."
    )
    reminders_fired: list[float]
    escalated_at: datetime | None
    met_at: datetime | None = None
    system: str = ""
    is_drill: bool = False


class ReminderSent(BaseModel):
    clock_id: int
    fraction: float


class ClockReport(PassReport):
    """What one pass did; counts are derived from the ids, so they cannot disagree."""

    reminded: list[ReminderSent] = Field(default_factory=list)
    overdue_ids: list[int] = Field(default_factory=list)
    escalated_ids: list[int] = Field(default_factory=list)
    delivery: DeliveryReport | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reminders(self) -> int:
        return len(self.reminded)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def escalated(self) -> int:
        return len(self.escalated_ids)

    def summary(self) -> str:
        parts = [
            f"reminded {self.reminders}",
            f"overdue {len(self.overdue_ids)}",
            f"escalated {self.escalated}",
        ]
        if self.failures:
            parts.append(f"failed {len(self.failures)}")
        if self.delivery is not None:
            d = self.delivery
            parts.append(f"delivered {d.sent + d.updated + d.logged}")
        return ", ".join(parts)


# --- helpers -----------------------------------------------------------------------------------


def _now(value: datetime | None) -> datetime:
    return as_utc(value or datetime.now(UTC))


def fmt_left(seconds: int | None) -> str:
    """`9 d 23 h`, `5 h 12 min`, `14 min`, `overdue by 3 h 0 min`: time left at a glance."""
    if seconds is None:
        return "-"
    minutes = abs(seconds) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        span = f"{days} d {hours} h"
    elif hours:
        span = f"{hours} h {mins} min"
    else:
        span = f"{mins} min"
    return span if seconds >= 0 else f"overdue by {span}"


def clock_out(row: RegulatoryClock, incident: Incident, now: datetime | None = None) -> ClockOut:
    deadline = as_utc(row.deadline)
    left = None
    if row.status in OPEN_STATUSES:
        left = int((deadline - _now(now)).total_seconds())
    return ClockOut(
        id=row.id,
        incident_id=row.incident_id,
        rule=row.rule,
        label=row.label,
        started_at=as_utc(row.started_at),
        deadline=deadline,
        status=row.status,
        time_left_seconds=left,
        reminders_fired=list(row.reminders_fired or []),
        escalated_at=as_utc(row.escalated_at) if row.escalated_at else None,
        met_at=as_utc(row.met_at) if row.met_at else None,
        system=incident.system.name,
        is_drill=incident.is_drill,
    )


def clocks_of(session: Session, incident_id: int) -> list[RegulatoryClock]:
    return list(
        session.scalars(
            select(RegulatoryClock)
            .where(RegulatoryClock.incident_id == incident_id)
            .order_by(RegulatoryClock.deadline, RegulatoryClock.id)
        )
    )


def timeline_event(
    session: Session,
    incident_id: int,
    kind: str,
    text: str,
    actor: Actor,
    *,
    data: dict[str, Any] | None = None,
    key: str | None = None,
    at: datetime | None = None,
) -> tuple[IncidentEvent, bool]:
    """Append one timeline line; with `key`, a known key returns the existing line (False)."""
    if key is not None:
        existing = session.scalar(select(IncidentEvent).where(IncidentEvent.idempotency_key == key))
        if existing is not None:
            return existing, False
    row = IncidentEvent(
        incident_id=incident_id,
        at=_now(at),
        kind=kind[:40],
        text=text,
        data=data or {},
        actor=actor.who,
        idempotency_key=key,
    )
    try:
        with session.begin_nested():  # a concurrent writer of the same key costs only this row
            session.add(row)
            session.flush()
    except IntegrityError:
        existing = session.scalar(select(IncidentEvent).where(IncidentEvent.idempotency_key == key))
        if existing is None:
            raise
        return existing, False
    return row, True


def card(header: str, body: str, context: str) -> list[dict[str, Any]]:
    """A plain Block Kit card: header, one mrkdwn section, one context line (Slack's limits)."""
    return [
        {"type": "header", "text": {"type": "plain_text", "text": header[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context[:2000]}]},
    ]


def notify_people(
    session: Session,
    people: Sequence[Person],
    *,
    key: str,
    kind: str,
    subject: str,
    text: str,
    blocks: list[dict[str, Any]],
) -> list[str]:
    """One DM per person (a log row for people without Slack); returns their emails.
    `key` is the message's key: each row's is `{key}-to-{person id}`, so a re-run writes nothing."""
    seen: set[int] = set()
    out = []
    for p in people:
        if p.id in seen:
            continue
        seen.add(p.id)
        outbox.tell(
            session,
            p,
            key=f"{key}-to-{p.id}"[:200],
            kind=kind,
            subject=subject,
            thread_key=f"{subject}-to-{p.id}",
            text=text[:3000],
            blocks=blocks,
        )
        out.append(p.email)
    return out


def _drill(incident: Incident) -> str:
    return "[DRILL] " if incident.is_drill else ""


# --- starting, moving, meeting (called inside the incident service's transactions) -------------


def start_clocks(
    session: Session,
    incident: Incident,
    start: Start,
    facts: IncidentFacts,
    policy: IncidentPolicy,
    actor: Actor,
    *,
    now: datetime | None = None,
) -> list[RegulatoryClock]:
    """Start every clock `start` sets running for this incident (from `aware_at`); a clock of
    a rule already running for it is kept, not restarted. Returns the rules' clocks."""
    out = []
    aware = as_utc(incident.aware_at)
    existing = {c.rule: c for c in clocks_of(session, incident.id)}
    for plan in policy.clocks.plan(start, facts, policy.classification):
        if plan.rule.id in existing:
            out.append(existing[plan.rule.id])
            continue
        row = RegulatoryClock(
            incident_id=incident.id,
            rule=plan.rule.id,
            label=plan.label,
            started_at=aware,
            deadline=aware + plan.span,
            status=ClockStatus.running,
            reminders_fired=[],
        )
        session.add(row)
        session.flush()
        timeline_event(
            session,
            incident.id,
            KIND_CLOCK_STARTED,
            f"clock started: {plan.label}; deadline {fmt_utc(row.deadline)}",
            actor,
            data={"clock_id": row.id, "rule": row.rule, "deadline": row.deadline.isoformat()},
            at=now,
        )
        out.append(row)
    return out


def move_clocks(
    session: Session, incident: Incident, new_aware: datetime, now: datetime
) -> list[tuple[RegulatoryClock, datetime]]:
    """Shift every clock not yet met to count from `new_aware`; an overdue clock whose new
    deadline is ahead runs again (and may be escalated again). Returns (clock, old deadline)."""
    moved = []
    for c in clocks_of(session, incident.id):
        if c.status not in OPEN_STATUSES:
            continue
        span = as_utc(c.deadline) - as_utc(c.started_at)
        old = as_utc(c.deadline)
        c.started_at = new_aware
        c.deadline = new_aware + span
        if c.status is ClockStatus.overdue and c.deadline > now:
            c.status = ClockStatus.running
            c.escalated_at = None
        moved.append((c, old))
    return moved


def meet_on_status(
    session: Session,
    incident: Incident,
    status: IncidentStatus,
    policy: IncidentPolicy,
    actor: Actor,
    now: datetime,
) -> list[RegulatoryClock]:
    """Clocks whose rule is met by the incident reaching `status` (internal SLAs); closing a
    drill stops its other clocks, so an exercise never escalates to anyone later."""
    changed = []
    for c in clocks_of(session, incident.id):
        if c.status not in OPEN_STATUSES:
            continue
        rule = policy.clocks.rule(c.rule)
        if rule is not None and status in rule.met_on_status:
            c.status, c.met_at = ClockStatus.met, now
            timeline_event(
                session,
                incident.id,
                "clock-met",
                f"clock met ({status.value}): {c.label}",
                actor,
                data={"clock_id": c.id, "rule": c.rule, "late": now > as_utc(c.deadline)},
                at=now,
            )
            changed.append(c)
        elif status is IncidentStatus.closed and incident.is_drill:
            c.status = ClockStatus.stopped
            timeline_event(
                session,
                incident.id,
                "clock-stopped",
                f"clock stopped (drill closed): {c.label}",
                actor,
                data={"clock_id": c.id, "rule": c.rule},
                at=now,
            )
            changed.append(c)
    return changed


def check_evidence(session: Session, evidence_id: int, incident_id: int) -> Evidence:
    """The evidence record, which must be about this incident (`incident:<id>`)."""
    ev = session.get(Evidence, evidence_id)
    if ev is None:
        raise NotFound(f"no evidence record {evidence_id}", field="evidence")
    if ev.subject != f"incident:{incident_id}":
        raise InvalidInput(
            f"evidence {evidence_id} is about {ev.subject}, not incident:{incident_id}: record "
            f"it with `aims evidence add --subject incident:{incident_id} ...`",
            field="evidence",
        )
    return ev


# --- reading -----------------------------------------------------------------------------------


def running_clocks(uow: UnitOfWork, *, now: datetime | None = None) -> list[ClockOut]:
    """Every clock not met yet (running or overdue), soonest deadline first."""
    at = _now(now)
    with uow.read():
        rows = uow.session.execute(
            select(RegulatoryClock, Incident)
            .join(Incident, Incident.id == RegulatoryClock.incident_id)
            .where(RegulatoryClock.status.in_(OPEN_STATUSES))
            .order_by(RegulatoryClock.deadline, RegulatoryClock.id)
        ).all()
        return [clock_out(c, i, at) for c, i in rows]


def get_clock(uow: UnitOfWork, clock_id: int, *, now: datetime | None = None) -> ClockOut:
    with uow.read():
        row = uow.session.get(RegulatoryClock, clock_id)
        if row is None:
            raise NotFound(f"no clock {clock_id} (see `aims incidents clocks`)", field="clock")
        incident = uow.session.get(Incident, row.incident_id)
        assert incident is not None
        return clock_out(row, incident, now)


def clocks_markdown(clocks: Sequence[ClockOut], report: ClockReport | None = None) -> str:
    """The operator's view: running clocks with time left (the flow's artifact)."""
    at = report.at if report else datetime.now(UTC)
    lines = [f"## Incident clocks, {at:%Y-%m-%d %H:%M} UTC", ""]
    if report is not None:
        lines += [f"This pass: {report.summary()}.", ""]
    if not clocks:
        return "\n".join([*lines, "No clock is running."]) + "\n"
    lines += [
        "| clock | incident | system | rule | deadline (UTC) | time left | status | reminders |",
        "|---:|---:|---|---|---|---|---|---|",
    ]
    for c in clocks:
        label = c.label.replace("|", "\\|")
        drill = " (drill)" if c.is_drill else ""
        fired = ", ".join(f"{f:.0%}" for f in c.reminders_fired) or "-"
        lines.append(
            f"| {c.id} | #{c.incident_id}{drill} | {c.system} | {label} | "
            f"{c.deadline:%Y-%m-%d %H:%M} | {fmt_left(c.time_left_seconds)} | "
            f"{c.status.value} | {fired} |"
        )
    if report is not None and report.failures:
        lines += ["", "### Failures (tried again next pass)", ""]
        lines += [f"- {f.step} clock {f.id}: {f.error}" for f in report.failures]
    return "\n".join(lines) + "\n"


# --- the scheduled pass ------------------------------------------------------------------------


def reminder_at(started_at: datetime, deadline: datetime, fraction: float) -> datetime:
    """When the reminder at `fraction` of the span is due (tests use it to hit it exactly)."""
    start = as_utc(started_at)
    return start + (as_utc(deadline) - start) * fraction


def _subject(incident_id: int) -> str:
    return f"incident:{incident_id}"


def _remind(
    uow: UnitOfWork, policy: IncidentPolicy, clock_id: int, now: datetime
) -> ReminderSent | None:
    """Queue the reminder for the latest passed fraction not yet fired and record every passed
    fraction, in one transaction; None when nothing is due (any more)."""
    s = uow.session
    c = locked(s, RegulatoryClock, clock_id)
    if c is None or c.status is not ClockStatus.running or now >= as_utc(c.deadline):
        return None
    rule = policy.clocks.rule(c.rule)
    fired = [float(f) for f in c.reminders_fired or []]
    due = [
        f
        for f in policy.clocks.reminders(rule)
        if f not in fired and now >= reminder_at(c.started_at, c.deadline, f)
    ]
    if not due:
        return None
    incident = s.get(Incident, c.incident_id)
    assert incident is not None
    fraction = max(due)
    left = int((as_utc(c.deadline) - now).total_seconds())
    people = role_holders(s, policy.clocks.remind_roles(rule))
    if policy.clocks.remind_system_owner(rule):
        people.append(incident.system.owner)
    head = f"{_drill(incident)}Reminder: {fraction:.0%} of the time used"
    text = (
        f"{head}: {c.label} for incident #{incident.id} ({incident.system.name}). Deadline "
        f"{fmt_utc(c.deadline)}, {fmt_left(left)} left."
    )
    body = (
        f":alarm_clock: *{escape(c.label)}*\nIncident #{incident.id} on "
        f"*{escape(incident.system.name)}*: {escape(incident.title)}\n"
        f"Deadline *{fmt_utc(c.deadline)}* ({fmt_left(left)} left). "
        f"When it is done: `aims incidents clock-met {c.id} --evidence ID`."
    )
    recipients = notify_people(
        s,
        people,
        key=f"clock-{c.id}-reminder-{fraction:g}",
        kind=KIND_CLOCK_REMINDER,
        subject=_subject(incident.id),
        text=text,
        blocks=card(
            head, body, f"Clock {c.id} · rule `{c.rule}` · aware at {fmt_utc(c.started_at)}"
        ),
    )
    c.reminders_fired = sorted({*fired, *due})
    timeline_event(
        s,
        incident.id,
        "clock-reminder",
        f"reminder ({fraction:.0%} of the time used): {c.label}",
        CLOCKS,
        data={"clock_id": c.id, "fractions": due, "recipients": recipients},
        at=now,
    )
    uow.audit(
        CLOCKS,
        "incident.clock-reminded",
        _subject(incident.id),
        clock_id=c.id,
        rule=c.rule,
        fractions=due,
        recipients=recipients,
    )
    uow.commit()
    return ReminderSent(clock_id=c.id, fraction=fraction)


def _overdue(uow: UnitOfWork, clock_id: int, now: datetime) -> bool:
    s = uow.session
    c = locked(s, RegulatoryClock, clock_id)
    if c is None or c.status is not ClockStatus.running or now < as_utc(c.deadline):
        return False
    c.status = ClockStatus.overdue
    timeline_event(
        s,
        c.incident_id,
        "clock-overdue",
        f"deadline {fmt_utc(c.deadline)} passed and the clock is not met: {c.label}",
        CLOCKS,
        data={"clock_id": c.id, "rule": c.rule},
        at=now,
    )
    uow.audit(CLOCKS, "incident.clock-overdue", _subject(c.incident_id), clock_id=c.id)
    uow.commit()
    return True


class _Nobody(Exception):
    pass


def _escalate(uow: UnitOfWork, policy: IncidentPolicy, clock_id: int, now: datetime) -> bool:
    """Queue the escalation and record it, once; _Nobody when no one holds the role (not
    recorded: every pass tries again until someone can be told)."""
    s = uow.session
    c = locked(s, RegulatoryClock, clock_id)
    if c is None or c.status is not ClockStatus.overdue or c.escalated_at is not None:
        return False
    roles = policy.clocks.escalate_to_roles(policy.clocks.rule(c.rule))
    people = role_holders(s, roles)
    if not people:
        raise _Nobody(f"nobody holds the escalation role(s) {', '.join(roles)}")
    incident = s.get(Incident, c.incident_id)
    assert incident is not None
    late = int((now - as_utc(c.deadline)).total_seconds())
    head = f"{_drill(incident)}Overdue: incident #{incident.id} deadline passed"
    text = (
        f"{head}: {c.label} ({incident.system.name}) was due {fmt_utc(c.deadline)}, "
        f"{fmt_left(-late)}, and is not met."
    )
    body = (
        f":rotating_light: *{escape(c.label)}*\nIncident #{incident.id} on "
        f"*{escape(incident.system.name)}* ({incident.severity}, {incident.category}): "
        f"{escape(incident.title)}\nDeadline *{fmt_utc(c.deadline)}*, {fmt_left(-late)}. "
        f"Once reported: `aims incidents clock-met {c.id} --evidence ID`."
    )
    recipients = notify_people(
        s,
        people,
        # Per deadline: a clock moved by an aware-at correction and missed again is escalated
        # again.
        key=f"clock-{c.id}-overdue-{as_utc(c.deadline):%Y%m%dT%H%M%S}",
        kind=KIND_CLOCK_OVERDUE,
        subject=_subject(incident.id),
        text=text,
        blocks=card(head, body, f"Clock {c.id} · escalated to {', '.join(roles)}"),
    )
    c.escalated_at = now
    timeline_event(
        s,
        incident.id,
        "clock-escalated",
        f"escalated to {', '.join(roles)}: {c.label}",
        CLOCKS,
        data={"clock_id": c.id, "recipients": recipients},
        at=now,
    )
    uow.audit(
        CLOCKS,
        "incident.clock-escalated",
        _subject(incident.id),
        clock_id=c.id,
        roles=roles,
        recipients=recipients,
        deadline=as_utc(c.deadline).isoformat(),
    )
    uow.commit()
    return True


def tick(
    settings: Settings, *, now: datetime | None = None, delivery: Delivery | None = None
) -> ClockReport:
    """One pass over every clock not met: remind, mark overdue, escalate, and, given a
    `delivery`, send what it queued. Idempotent: a second pass at the same `now` finds nothing
    to do. Failures are counted, never raised. The flow delivers in its own step."""
    at = _now(now)
    report = ClockReport(at=at)
    policy = incident_policy(settings)
    with UnitOfWork(settings).read() as uow:
        ids = list(
            uow.session.scalars(
                select(RegulatoryClock.id)
                .where(
                    RegulatoryClock.status.in_(OPEN_STATUSES),
                    RegulatoryClock.escalated_at.is_(None),
                )
                .order_by(RegulatoryClock.deadline, RegulatoryClock.id)
            )
        )
    for clock_id in ids:
        step: Literal["remind", "overdue", "escalate"] = "remind"
        try:
            with UnitOfWork(settings) as uow:
                sent = _remind(uow, policy, clock_id, at)
            if sent is not None:
                report.reminded.append(sent)
            step = "overdue"
            with UnitOfWork(settings) as uow:
                if _overdue(uow, clock_id, at):
                    report.overdue_ids.append(clock_id)
            step = "escalate"
            with UnitOfWork(settings) as uow:
                if _escalate(uow, policy, clock_id, at):
                    report.escalated_ids.append(clock_id)
        except _Nobody as exc:
            report.note_failure("escalate", clock_id, str(exc))
        except Exception as exc:  # one bad clock must not hold the others up
            log.exception("clock %d: %s failed", clock_id, step)
            report.note_failure(step, clock_id, exc)
    if delivery is not None:
        # Never earlier than the wall clock: the rows just queued are due from when written.
        report.delivery = delivery.deliver_due(now=max(at, datetime.now(UTC)))
    log.info("incident clocks: %s", report.summary())
    return report


def mark_met(
    uow: UnitOfWork, clock_id: int, actor: Actor, evidence_id: int | None = None
) -> ClockOut:
    """The obligation is done (report filed, SLA kept). Idempotent: a met clock stays as it is.
    `evidence_id`, if given, must be evidence about the clock's incident (the report sent)."""
    now = datetime.now(UTC)
    with uow:
        s = uow.session
        c = locked(s, RegulatoryClock, clock_id)
        if c is None:
            raise NotFound(f"no clock {clock_id} (see `aims incidents clocks`)", field="clock")
        incident = s.get(Incident, c.incident_id)
        assert incident is not None
        if evidence_id is not None:
            check_evidence(s, evidence_id, incident.id)
        if c.status is ClockStatus.met:
            return clock_out(c, incident, now)
        if c.status is ClockStatus.stopped:
            raise InvalidInput(f"clock {clock_id} was stopped; nothing to meet", field="clock")
        c.status, c.met_at = ClockStatus.met, now
        late = now > as_utc(c.deadline)
        timeline_event(
            s,
            incident.id,
            "clock-met",
            f"clock met{' (late)' if late else ''}: {c.label}"
            + (f"; evidence {evidence_id}" if evidence_id else ""),
            actor,
            data={"clock_id": c.id, "rule": c.rule, "evidence_id": evidence_id, "late": late},
            at=now,
        )
        uow.audit(
            actor,
            "incident.clock-met",
            _subject(incident.id),
            clock_id=c.id,
            rule=c.rule,
            evidence_id=evidence_id,
            late=late,
        )
        out = clock_out(c, incident, now)
        uow.commit()
    return out
