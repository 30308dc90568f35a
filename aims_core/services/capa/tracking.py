"""Tracking a CAPA on a schedule: action reminders and escalations, verifications falling due.

One pass (`tick`, run by the approval reconciler and `aims capa tick`) looks afresh at the
database with an injectable `now`: it reminds action owners before and on due dates, escalates
an overdue action once, tells the owner and the verifiers when an effectiveness verification
falls due and wakes the CAPA's run sleeping until that date. Each record is handled in its own
transaction; one that fails is counted in the report and tried again by the next pass.

Waking a run goes through the `Runs` port the caller passes (the Prefect adapter in production):
the domain never talks to the orchestrator itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar, Final

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.errors import AimsError
from aims_core.models import Capa, CapaAction, CapaStatus, as_utc
from aims_core.ports import ResumeOutcome, Runs
from aims_core.rules.capa import CapaPolicy, capa_policy
from aims_core.services.capa.queries import capa_out, listing, load_capa, results_of
from aims_core.services.capa.recording import head, notify
from aims_core.services.capa.schemas import OPEN, UNTIL_DUE, CapaOut, at_or_now, subject
from aims_core.services.directory import escalation_contacts, role_holders
from aims_core.services.passes import PassReport, each
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork, locked

log = logging.getLogger("aims.capa")

#: Who the audit trail names for scheduled reminders, escalations and wake-ups.
TRACKER: Final = Actor(who="aims-capa-tracker", channel="schedule")


class TickReport(PassReport):
    """What one tracking pass did: action ids reminded/escalated, CAPA ids announced (verification
    due, its people told) and woken (their run resumed), deferred (Prefect unreachable) or
    ended (their run had ended)."""

    reminded_ids: list[int] = Field(default_factory=list)
    escalated_ids: list[int] = Field(default_factory=list)
    announced_ids: list[int] = Field(default_factory=list)
    woken_ids: list[int] = Field(default_factory=list)
    deferred_ids: list[int] = Field(default_factory=list)
    ended_ids: list[int] = Field(default_factory=list)

    summary_parts: ClassVar[tuple[tuple[str, str], ...]] = (
        ("reminded_ids", "reminded"),
        ("escalated_ids", "escalated"),
        ("announced_ids", "verification due"),
        ("woken_ids", "woken"),
    )

    def summary(self) -> str:
        """The base summary, with `deferred N` (before `failed N`) when runs were deferred."""
        parts = [f"{label} {len(getattr(self, name))}" for name, label in self.summary_parts]
        if self.deferred_ids:
            parts.append(f"deferred {len(self.deferred_ids)}")
        if self.failures:
            parts.append(f"failed {len(self.failures)}")
        return ", ".join(parts)


def _acted(ids: list[int], done: list[tuple[int, bool]]) -> None:
    """Count the records a step acted on (a step returns False when a repeat found nothing)."""
    ids.extend(record_id for record_id, acted in done if acted)


# --- action reminders and escalations ----------------------------------------------------------


def _open_actions(session: Session) -> list[CapaAction]:
    """Actions not done yet of the current attempt of open CAPAs, oldest first."""
    return [
        a
        for a in session.scalars(
            select(CapaAction)
            .join(Capa, Capa.id == CapaAction.capa_id)
            .where(
                CapaAction.done_at.is_(None),
                CapaAction.attempt == Capa.attempt,
                Capa.status.in_(OPEN),
            )
            .order_by(CapaAction.id)
        )
    ]


def _reminders_due(policy: CapaPolicy, action: CapaAction, now: datetime) -> int:
    """How many of the action's reminders have fallen due by `now`."""
    return sum(1 for t in policy.tracking.reminder_times(action.due_at) if t <= now)


def due_reminders(settings: Settings, now: datetime | None = None) -> TickReport:
    """Remind action owners before and on due dates, escalate overdue actions once.

    Per action at most one reminder per pass (a late-planned action gets the latest reminder
    due, not all the missed ones), and one escalation ever: to the owner's manager and the
    policy's escalation role. Each is queued and recorded in one transaction with the action
    locked and the condition checked again, so a repeat at the same `now` does nothing.
    """
    at = at_or_now(now)
    report = TickReport(at=at)
    policy = capa_policy(settings)
    with UnitOfWork(settings).read() as uow:
        candidates = [
            (
                a.id,
                _reminders_due(policy, a, at) > a.reminders_sent,
                a.escalated_at is None and policy.tracking.escalation_time(a.due_at) <= at,
            )
            for a in _open_actions(uow.session)
        ]
    # Action by action (its reminder, then its escalation), as the messages are queued.
    for action_id, remind, escalate in candidates:
        if remind:
            done = each(report, "remind", [action_id], lambda i: _remind(settings, policy, i, at))
            _acted(report.reminded_ids, done)
        if escalate:
            done = each(
                report, "escalate", [action_id], lambda i: _escalate(settings, policy, i, at)
            )
            _acted(report.escalated_ids, done)
    return report


def _remind(settings: Settings, policy: CapaPolicy, action_id: int, now: datetime) -> bool:
    """Queue the latest reminder due, with the action locked and the condition checked again."""
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        action = locked(s, CapaAction, action_id)
        if action is None or action.done_at is not None:
            return False
        n = _reminders_due(policy, action, now)
        if n <= action.reminders_sent:
            return False
        row = load_capa(s, action.capa_id)
        due = as_utc(action.due_at).date()
        days = (due - now.date()).days
        when = "today" if days == 0 else ("overdue" if days < 0 else f"in {days} day(s)")
        notify(
            s,
            f"capa-action-{action.id}-reminder-{n}",
            "capa-reminder",
            row,
            action.owner,
            f"Reminder: action {action.id} of {head(row)} — {action.title} — is due {when} "
            f"({due}). When done: `aims capa done {action.id} --evidence ...`",
        )
        action.reminders_sent = n
        uow.audit(
            TRACKER,
            "capa.action-reminded",
            subject(row.id),
            action_id=action.id,
            reminder=n,
            owner=action.owner.email,
            due=due.isoformat(),
        )
        uow.commit()
    return True


def _escalate(settings: Settings, policy: CapaPolicy, action_id: int, now: datetime) -> bool:
    """Tell the owner's manager and the escalation role, once ever, with the action locked."""
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        action = locked(s, CapaAction, action_id)
        if (
            action is None
            or action.done_at is not None
            or action.escalated_at is not None
            or policy.tracking.escalation_time(action.due_at) > now
        ):
            return False
        contacts = escalation_contacts(s, action.owner, [policy.tracking.escalation_role])
        if not contacts:
            # Not recorded as escalated: tried (and shown failing) every pass until someone can
            # be told.
            raise AimsError(
                f"nobody to escalate to: {action.owner.email} has no active manager and nobody "
                f"holds the role {policy.tracking.escalation_role}"
            )
        row = load_capa(s, action.capa_id)
        due = as_utc(action.due_at).date()
        for p in contacts:
            notify(
                s,
                f"capa-action-{action.id}-escalation-to-{p.id}",
                "capa-escalation",
                row,
                p,
                f"Overdue: action {action.id} of {head(row)} — {action.title} — owned by "
                f"{action.owner.name} <{action.owner.email}>, was due {due}.",
            )
        action.escalated_at = now
        uow.audit(
            TRACKER,
            "capa.action-escalated",
            subject(row.id),
            action_id=action.id,
            owner=action.owner.email,
            due=due.isoformat(),
            contacts=[p.email for p in contacts],
        )
        uow.commit()
    return True


# --- verifications falling due ----------------------------------------------------------------


#: `wake(settings, capa) -> ResumeOutcome`: the default (`waking_through(runs)`) asks the engine.
WakeFn = Callable[[Settings, CapaOut], ResumeOutcome | str]


def waking_through(runs: Runs) -> WakeFn:
    """The default wake: resume the CAPA's run through `runs` if it is suspended waiting for the
    verification date (and only then: a run already waiting for the verifier, or running, is
    left alone)."""

    def wake(settings: Settings, c: CapaOut) -> ResumeOutcome:
        assert c.flow_run_id
        state = runs.state(c.flow_run_id)
        if state is None:  # the engine cannot be asked now: the next pass tries again
            log.warning("CAPA %d: cannot read run %s", c.id, c.flow_run_id)
            return ResumeOutcome.deferred
        if state.final:  # ended, or unknown to the engine (UNKNOWN_RUN is final)
            return ResumeOutcome.finished
        if not state.paused or UNTIL_DUE not in (state.pause_key or ""):
            return ResumeOutcome.nothing_to_do
        return runs.resume(c.flow_run_id, {}, attempts=1, delay=0)

    return wake


def wake_due_verifications(
    settings: Settings,
    now: datetime | None = None,
    *,
    runs: Runs,
    wake: WakeFn | None = None,
) -> TickReport:
    """For every CAPA whose effectiveness verification has fallen due: tell its owner and the
    verifiers (once per verification), and resume its run if it sleeps until that date, so the
    run asks the verifier. `wake` replaces the default (through `runs`) in tests; failures are
    counted, never raised."""
    at = at_or_now(now)
    wake_one = wake or waking_through(runs)
    report = TickReport(at=at)
    with UnitOfWork(settings).read() as uow:
        due = [
            capa_out(uow.session, row)
            for row in uow.session.scalars(
                listing()
                .where(Capa.status == CapaStatus.verification, Capa.verification_due_at <= at)
                .order_by(Capa.id)
            )
        ]
    outcomes = {
        ResumeOutcome.resumed: report.woken_ids,
        ResumeOutcome.deferred: report.deferred_ids,
        ResumeOutcome.finished: report.ended_ids,
    }
    # CAPA by CAPA: its people told, then its run woken (which then asks the verifier).
    for c in due:
        _acted(
            report.announced_ids,
            each(report, "announce", [c.id], lambda i: _announce(settings, i, at)),
        )
        if not c.flow_run_id:
            continue
        for _, outcome in each(
            report, "wake", [c], lambda x: ResumeOutcome(wake_one(settings, x)), key=lambda x: x.id
        ):
            if outcome in outcomes:
                outcomes[outcome].append(c.id)
    return report


def _announce(settings: Settings, capa_id: int, now: datetime) -> bool:
    """Queue the verification-due notices once per verification and due date (an action added
    meanwhile moves the date: announced again), recorded on the CAPA."""
    policy = capa_policy(settings)
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        row = load_capa(s, capa_id, lock=True)
        due = as_utc(row.verification_due_at) if row.verification_due_at else None
        n = len(results_of(row)) + 1
        announced = list((row.verification or {}).get("announced", []))
        if row.status is not CapaStatus.verification or due is None or due > now:
            return False
        marker = f"v{n}-due-{due:%Y%m%d%H%M%S}"
        if marker in announced:
            return False
        verifiers = [
            p
            for p in role_holders(s, policy.verification.verifier_roles)
            if p.id != row.owner_id or policy.verification.owner_may_verify
        ]
        for p in [row.owner, *verifiers]:
            notify(
                s,
                f"capa-{row.id}-{marker}-to-{p.id}",
                "capa-verification-due",
                row,
                p,
                f"Effectiveness verification of {head(row)} is due: has the problem recurred "
                f"since the actions of attempt {row.attempt}? A verifier records it: "
                f"`aims capa verify {row.id} --effective|--ineffective --evidence ... --as EMAIL`",
            )
        row.verification = {**(row.verification or {}), "announced": [*announced, marker]}
        uow.audit(
            TRACKER,
            "capa.verification-due",
            subject(row.id),
            verification=n,
            attempt=row.attempt,
            told=[row.owner.email, *(p.email for p in verifiers)],
        )
        uow.commit()
    return True


def tick(
    settings: Settings,
    now: datetime | None = None,
    *,
    runs: Runs,
    wake: WakeFn | None = None,
) -> TickReport:
    """One tracking pass: action reminders and escalations, then due verifications. Queued
    messages go out with the next delivery pass (the approval reconciler's, or `aims capa
    tick`'s own)."""
    at = at_or_now(now)
    return due_reminders(settings, at).merged(
        wake_due_verifications(settings, at, runs=runs, wake=wake)
    )
