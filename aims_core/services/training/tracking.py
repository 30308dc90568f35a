"""The daily pass over training records: reminders before expiry, one escalation after (7.2).

Reminders go to the holder at each of `training_reminder_days` before expiry (once per threshold
per record); one escalation goes to the manager (else the governance leads) after expiry. All
are queued in the outbox with stable keys, so a repeated pass sends nothing twice.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import ClassVar, Final, Literal

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.errors import AimsError
from aims_core.models import Person, TrainingRecord, as_utc
from aims_core.services import directory, outbox
from aims_core.services.passes import PassReport
from aims_core.services.training.competence import Required, newest, required
from aims_core.services.training.days import local_day, now_utc, zone_of
from aims_core.services.training.queries import rows
from aims_core.services.training.schemas import MatrixRow, Notice, Status
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork, locked

__all__ = ["GOVERNANCE_LEAD", "TRACKER", "TickReport", "run_name", "tick"]

log = logging.getLogger("aims.training")

GOVERNANCE_LEAD: Final = "governance-lead"
#: Who the audit trail names for the daily pass's reminders and escalations.
TRACKER: Final = Actor(who="aims-training-tracker", channel="schedule")


class TickReport(PassReport):
    """What one daily pass did, and the expired trainings it found. Defined in the service,
    not in the flow module, so the flow's persisted result unpickles anywhere."""

    reminders: list[Notice] = Field(default_factory=list)
    escalations: list[Notice] = Field(default_factory=list)
    expired: list[MatrixRow] = Field(default_factory=list)
    missing: int = 0

    summary_parts: ClassVar[tuple[tuple[str, str], ...]] = (
        ("reminders", "reminded"),
        ("escalations", "escalated"),
        ("expired", "expired"),
        ("missing", "missing"),
    )

    def markdown(self) -> str:
        """The artifact of a pass: what was sent, and who is blocked from deciding."""
        out = [f"# Training renewals {self.at:%Y-%m-%d %H:%M} UTC", "", self.summary(), ""]
        for head, notices in (("Reminders", self.reminders), ("Escalations", self.escalations)):
            out += [f"## {head} ({len(notices)})", ""]
            if not notices:
                out.append("none")
            else:
                out += [
                    "| person | training | expires | days left | told |",
                    "|---|---|---|---:|---|",
                ]
                out += [
                    f"| {n.person} | {n.title} ({n.training}) | {n.expires_on} | {n.days_left} "
                    f"| {', '.join(n.told)} |"
                    for n in notices
                ]
            out.append("")
        out += [f"## Expired: may not approve ({len(self.expired)})", ""]
        if not self.expired:
            out.append("none")
        else:
            out += ["| person | training | expired on |", "|---|---|---|"]
            out += [
                f"| {r.email} | {r.title} ({r.training}) | {r.expires_on} |" for r in self.expired
            ]
        out.append("")
        if self.failures:
            out += [f"## Failures ({len(self.failures)})", ""]
            out += [f"- {f.step} record {f.id}: {f.error}" for f in self.failures]
        return "\n".join(out).rstrip() + "\n"


def run_name(settings: Settings, at: datetime) -> str:
    """`training renewals 2026-11-24`: the day of the pass in the organisation's zone."""
    return f"training renewals {local_day(at, zone_of(settings))}"


def _notify(session: Session, key: str, kind: str, about: Person, to: Person, text: str) -> None:
    """A message to one person about `about`'s training, queued in the caller's transaction."""
    outbox.tell(
        session,
        to,
        key=key,
        kind=kind,
        subject=f"person:{about.email}",
        thread_key=f"training-{about.id}-to-{to.id}",
        text=text,
    )


def _lock_current(session: Session, record_id: int) -> tuple[TrainingRecord, Required] | None:
    """The record locked, if it still counts (newest of its person and training, person active,
    training required); None otherwise."""
    row = locked(session, TrainingRecord, record_id)
    if row is None or not row.person.active:
        return None
    counts = newest(session, [row.person_id]).get((row.person_id, row.training))
    req = required(session, [row.person_id]).get(row.person_id, {}).get(row.training)
    if counts is None or counts.id != row.id or req is None:
        return None
    return row, req


def _renew_hint(person: Person, training: str) -> str:
    return (
        f"Once renewed: `aims training record {person.email} {training} "
        "--completed YYYY-MM-DD --evidence FILE`"
    )


def _remind(settings: Settings, record_id: int, now: datetime) -> Notice | None:
    zone = zone_of(settings)
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        found = _lock_current(s, record_id)
        if found is None:
            return None
        row, req = found
        if as_utc(row.expires_at) <= now:
            return None
        expires_on = local_day(row.expires_at, zone)
        days_left = (expires_on - local_day(now, zone)).days
        sent = set(row.reminders_sent or [])
        due = {t for t in settings.training_reminder_days if days_left <= t}
        new = due - sent
        if not new:
            return None
        # A record first seen inside several thresholds gets one reminder: the nearest one.
        threshold = min(new)
        person = row.person
        _notify(
            s,
            f"training-record-{row.id}-reminder-{threshold}",
            "training-reminder",
            person,
            person,
            f"Reminder: your training '{req.title}' ({row.training}) expires on {expires_on} "
            f"(in {days_left} day(s)). After that you may not approve AIMS decisions until it is "
            f"renewed. {_renew_hint(person, row.training)}",
        )
        row.reminders_sent = sorted(sent | due, reverse=True)
        uow.audit(
            TRACKER,
            "training.reminded",
            f"person:{person.email}",
            record_id=row.id,
            training=row.training,
            threshold=threshold,
            expires=expires_on.isoformat(),
        )
        uow.commit()
    return Notice(
        record_id=record_id,
        person=person.email,
        training=row.training,
        title=req.title,
        expires_on=expires_on,
        days_left=days_left,
        threshold=threshold,
        told=[person.email],
    )


def _escalate(settings: Settings, record_id: int, now: datetime) -> Notice | None:
    zone = zone_of(settings)
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        found = _lock_current(s, record_id)
        if found is None:
            return None
        row, req = found
        if row.escalated_at is not None or as_utc(row.expires_at) > now:
            return None
        person = row.person
        # The manager; without one, the governance leads; never the person (already told).
        contacts = directory.escalation_contacts(
            s, person, [GOVERNANCE_LEAD], roles_only_without_manager=True, skip_person=True
        )
        if not contacts:
            # Not marked escalated: tried (and shown failing) every pass until someone can be told.
            raise AimsError(
                f"nobody to escalate to: {person.email} has no active manager and nobody else "
                f"holds the role {GOVERNANCE_LEAD}"
            )
        expires_on = local_day(row.expires_at, zone)
        what = f"'{req.title}' ({row.training})"
        _notify(
            s,
            f"training-record-{row.id}-expired",
            "training-expired",
            person,
            person,
            f"Your required training {what} expired on {expires_on}: you may not approve AIMS "
            f"decisions until it is renewed. {_renew_hint(person, row.training)}",
        )
        for c in contacts:
            _notify(
                s,
                f"training-record-{row.id}-escalation-to-{c.id}",
                "training-escalation",
                person,
                c,
                f"Expired training: {person.name} <{person.email}> has not renewed the required "
                f"training {what} (expired on {expires_on}, roles: {', '.join(req.roles)}) and "
                "may not approve AIMS decisions until it is renewed.",
            )
        row.escalated_at = now
        uow.audit(
            TRACKER,
            "training.escalated",
            f"person:{person.email}",
            record_id=row.id,
            training=row.training,
            expires=expires_on.isoformat(),
            contacts=[c.email for c in contacts],
        )
        uow.commit()
    return Notice(
        record_id=record_id,
        person=person.email,
        training=row.training,
        title=req.title,
        expires_on=expires_on,
        days_left=(expires_on - local_day(now, zone)).days,
        told=[person.email, *(c.email for c in contacts)],
    )


def tick(settings: Settings, now: datetime | None = None) -> TickReport:
    """One daily pass: remind holders before expiry, escalate expired trainings once, and list
    who is blocked. Each record is locked and checked again before anything is queued, so a
    repeated or overlapping pass queues nothing twice; one bad record never holds up the rest.
    Queued messages go out with the next delivery pass."""
    at = now_utc(now)
    report = TickReport(at=at)
    with UnitOfWork(settings).read() as uow:
        matrix = rows(uow.session, settings, at)
        escalated = {
            r.id
            for r in uow.session.scalars(
                select(TrainingRecord).where(TrainingRecord.escalated_at.is_not(None))
            )
        }
    report.expired = [r for r in matrix if r.status is Status.expired]
    report.missing = sum(1 for r in matrix if r.status is Status.missing)
    records = {r.record_id: r for r in matrix if r.record_id is not None}
    # One loop in matrix order (not one per step), so reminders and escalations are queued in
    # the order the records come; a failing record is reported and the others go on.
    for record_id, r in records.items():
        if r.status is Status.expired and record_id in escalated:
            continue
        step: Literal["remind", "escalate"] = "escalate" if r.status is Status.expired else "remind"
        try:
            if step == "escalate":
                notice = _escalate(settings, record_id, at)
                if notice:
                    report.escalations.append(notice)
            else:
                notice = _remind(settings, record_id, at)
                if notice:
                    report.reminders.append(notice)
        except Exception as exc:  # one bad record must not hold the others up
            log.exception("%s of training record %d failed", step, record_id)
            report.note_failure(step, record_id, exc)
    return report
