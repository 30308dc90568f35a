"""The approval reconciler's policy: resume what was decided, remind, escalate.

A suspended run cannot look after itself: it has no process while it waits, and it cannot wait
again after its own timeout. So whatever must happen *around* a wait happens here, on a schedule
(flows/approval_reconciler.py), from the database alone:

- **resume**: a decision committed while the Prefect API was unreachable left `resume_pending`
  set; each such request's run is resumed now. A failure is counted, never raised: the request
  stays pending and the next pass tries again.
- **remind**: an open request whose last reminder (or creation) is older than
  `approval_reminder_every_hours` and which has had fewer than `approval_max_reminders` gets a
  reminder to the approvers who have not decided.
- **escalate**: an open request past its deadline, not yet escalated, is escalated once to the
  Accountable's manager and the governance leads.
- **deliver**: the flow's delivery step (or, for `aims approvals reconcile`, the `Delivery`
  given to `reconcile`) sends the messages above now, not at the next delivery pass.

The policy numbers are settings (data, not code). Each reminder and escalation is queued and
recorded in *one* transaction, with the request row locked and the conditions checked again
under the lock, so a reminder is recorded if and only if it was queued, and two overlapping
passes (or a pass run twice at the same `now`) change nothing the second time.

No Prefect and no Slack here: the run is resumed through the `Runs` port and, when a caller
wants the whole pass to deliver too, the messages go out through the `Delivery` port.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from pydantic import Field, computed_field

from aims_core.models import APPROVAL_KIND, ApprovalRequest, ApprovalStatus
from aims_core.ports import Delivery, DeliveryReport, ResumeOutcome, Runs
from aims_core.services import approvals, outbox
from aims_core.services.passes import Failure, PassReport
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork, locked

__all__ = [
    "RECONCILER",
    "Failure",
    "ReconcileReport",
    "ResumeFn",
    "escalate_overdue",
    "reconcile",
    "remind_approvers",
    "resume_decided",
    "resume_request",
    "wait_key",
]

log = logging.getLogger("aims.reconcile")

#: Who the audit trail names for the reconciler's reminders and escalations.
RECONCILER: Final = Actor(who="aims-reconciler", channel="schedule")

#: `resume(settings, request_id) -> ResumeOutcome`: the real one talks to the Prefect API.
ResumeFn = Callable[[Settings, int], ResumeOutcome | str]

Step = Literal["resume", "remind", "escalate"]

NOBODY: Final = (
    "nobody to escalate to: the Accountable has no active manager and no person holds the "
    "governance-lead role"
)


class ReconcileReport(PassReport):
    """What one pass did (or one step of it: the flow merges the steps' reports).

    `*_ids` name the requests; the counts are derived from them, so they cannot disagree.
    `deferred`: the run could not be resumed now (Prefect unreachable, run not suspended yet)
    and stays pending. `ended`: the waiting run had already ended, so there was nothing to resume
    (it is marked resumed all the same).
    """

    resumed_ids: list[int] = Field(default_factory=list)
    deferred_ids: list[int] = Field(default_factory=list)
    ended_ids: list[int] = Field(default_factory=list)
    reminded_ids: list[int] = Field(default_factory=list)
    escalated_ids: list[int] = Field(default_factory=list)
    delivery: DeliveryReport | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def resumed(self) -> int:
        return len(self.resumed_ids)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def deferred(self) -> int:
        return len(self.deferred_ids)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reminded(self) -> int:
        return len(self.reminded_ids)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def escalated(self) -> int:
        return len(self.escalated_ids)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> int:
        return len(self.failures)

    def merged(self, other: ReconcileReport) -> ReconcileReport:
        """This report plus another step's (ids concatenated; `other`'s delivery if it has one)."""
        out = super().merged(other)
        out.delivery = other.delivery or self.delivery
        return out

    def summary(self) -> str:
        """One line for logs and the CLI: `resumed 1, deferred 0, reminded 2, escalated 1, ...`."""
        parts = [
            f"resumed {self.resumed}",
            f"deferred {self.deferred}",
            f"reminded {self.reminded}",
            f"escalated {self.escalated}",
        ]
        if self.ended_ids:
            parts.append(f"already ended {len(self.ended_ids)}")
        if self.failures:
            parts.append(f"failed {self.failed}")
        if self.delivery is not None:
            parts.append(f"delivered {_delivered(self.delivery)}")
        return ", ".join(parts)

    def markdown(self) -> str:
        """The operator's view of the pass (the flow publishes it as an artifact)."""
        rows = [
            ("resumed", "decided while Prefect was unreachable; run resumed now", self.resumed_ids),
            ("deferred", "run not resumable yet: tried again next pass", self.deferred_ids),
            ("already ended", "the waiting run had ended: nothing to resume", self.ended_ids),
            ("reminded", "approvers who have not decided were reminded", self.reminded_ids),
            (
                "escalated",
                "past the deadline: manager and governance lead told",
                self.escalated_ids,
            ),
        ]
        lines = [
            f"## Approval reconciler, {self.at:%Y-%m-%d %H:%M} UTC",
            "",
            "| step | count | requests | meaning |",
            "|---|---:|---|---|",
        ]
        lines += [f"| {name} | {len(ids)} | {_ids(ids)} | {why} |" for name, why, ids in rows]
        if self.delivery is not None:
            d = self.delivery
            lines += [
                "",
                f"**Delivery**: sent {d.sent}, updated {d.updated}, logged {d.logged}, "
                f"retried {d.retried}, failed {d.failed}"
                + (
                    f", possible duplicates {d.possible_duplicates}"
                    if d.possible_duplicates
                    else ""
                )
                + (f". Stopped: {d.stopped}" if d.stopped else ""),
            ]
        if self.failures:
            lines += ["", "### Failures (tried again next pass)", ""]
            lines += [f"- {f.step} #{f.id}: {_cell(f.error)}" for f in self.failures]
        return "\n".join(lines) + "\n"


def _ids(ids: list[int]) -> str:
    return ", ".join(f"#{i}" for i in ids) or "-"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:300]


def _delivered(d: DeliveryReport) -> int:
    return d.sent + d.updated + d.logged


def _utc(value: datetime | None) -> datetime:
    return outbox.utc(value or datetime.now(UTC))


def _subject(request_id: int) -> str:
    return f"approval:{request_id}"  # the approval service's audit subject


# --- resume ------------------------------------------------------------------------------------


def wait_key(request_id: int, round_: int) -> str:
    """The suspend key of a request's round: lowercase, digits and dashes (Prefect requires it),
    one per round (a reused key would silently return the earlier round's answer)."""
    return f"approval-{request_id}-round-{round_}"


def resume_request(
    settings: Settings, request_id: int, runs: Runs, *, attempts: int = 5, delay: float = 0.5
) -> ResumeOutcome:
    """Resume the request's run if it is decided and not yet resumed; mark it resumed.

    The database is authoritative: the run, once resumed, re-reads the outcome from it. So a
    resume that fails (API down, run not suspended yet) loses nothing: `resume_pending` stays set
    and the next pass tries again."""
    with UnitOfWork(settings).read() as uow:
        req = uow.session.get(ApprovalRequest, request_id)
        if req is None or not req.flow_run_id or not req.resume_pending:
            return ResumeOutcome.nothing_to_do
        if req.status is ApprovalStatus.open:
            return ResumeOutcome.nothing_to_do
        flow_run_id, status, kind = req.flow_run_id, req.status, req.kind
    # What the waiting form takes, marked as no one's answer ("-"): the run re-reads the outcome.
    run_input: dict[str, object] = (
        {
            "approver": "-",
            "decision": "approve" if status is ApprovalStatus.approved else "reject",
            "code": "",
            "comment": f"decided: {status.value}",
        }
        if kind == APPROVAL_KIND
        else {"person": "-", "code": ""}
    )
    outcome = runs.resume(flow_run_id, run_input, attempts=attempts, delay=delay)
    if outcome in (ResumeOutcome.resumed, ResumeOutcome.finished):
        approvals.mark_resumed(UnitOfWork(settings), request_id)
    return outcome


def _resume_with(runs: Runs | None) -> ResumeFn:
    """The pass's resume, without lingering: a run that is not suspended yet is retried by the
    next pass rather than waited for here (one stuck run must not slow every pass down)."""

    def resume(settings: Settings, request_id: int) -> ResumeOutcome:
        if runs is None:
            raise RuntimeError("no run orchestrator given to the pass: cannot resume runs")
        return resume_request(settings, request_id, runs, attempts=1, delay=0)

    return resume


def resume_decided(
    settings: Settings,
    *,
    now: datetime | None = None,
    runs: Runs | None = None,
    resume: ResumeFn | None = None,
) -> ReconcileReport:
    """Resume the run of every decided request still marked `resume_pending`.

    By default through `runs` (`resume_request`); `resume` replaces that (tests). Any failure is
    counted, never raised: the request stays pending.
    """
    resume = resume or _resume_with(runs)
    report = ReconcileReport(at=_utc(now))
    for req in approvals.pending_resumes(UnitOfWork(settings)):
        try:
            outcome = ResumeOutcome(resume(settings, req.id))
        except Exception as exc:  # Prefect or the database erroring: retried next pass
            log.warning("resume of request %d failed: %s", req.id, exc)
            report.note_failure("resume", req.id, exc)
            continue
        if outcome is ResumeOutcome.resumed:
            report.resumed_ids.append(req.id)
        elif outcome is ResumeOutcome.deferred:
            report.deferred_ids.append(req.id)
        elif outcome is ResumeOutcome.finished:
            report.ended_ids.append(req.id)
        # nothing-to-do: another channel resumed it since pending_resumes read it.
    return report


# --- reminders ---------------------------------------------------------------------------------


def _reminder_due(
    settings: Settings,
    *,
    reminders_sent: int,
    since: datetime,
    now: datetime,
) -> bool:
    every = timedelta(hours=settings.approval_reminder_every_hours)
    return reminders_sent < settings.approval_max_reminders and outbox.utc(since) + every <= now


def remind_approvers(settings: Settings, *, now: datetime | None = None) -> ReconcileReport:
    """Remind the undecided approvers of every open request whose reminder is due."""
    report = ReconcileReport(at=_utc(now))
    if settings.approval_max_reminders < 1:
        return report
    for req in approvals.open_requests(UnitOfWork(settings)):
        if not _reminder_due(
            settings,
            reminders_sent=req.reminders_sent,
            since=req.last_reminded_at or req.created_at,
            now=report.at,
        ):
            continue
        try:
            if _remind(settings, req.id, report.at):
                report.reminded_ids.append(req.id)
        except Exception as exc:  # one bad request must not hold the others up
            log.exception("reminder for request %d failed", req.id)
            report.note_failure("remind", req.id, exc)
    return report


def _remind(settings: Settings, request_id: int, now: datetime) -> bool:
    """Queue reminder n+1 and record it, in one transaction; False when nothing was due after
    all (decided or reminded meanwhile) or nobody is left to remind."""
    uow = UnitOfWork(settings)
    with uow:
        req = locked(uow.session, ApprovalRequest, request_id, key_share=True)
        if (
            req is None
            or req.status is not ApprovalStatus.open
            or not _reminder_due(
                settings,
                reminders_sent=req.reminders_sent,
                since=req.last_reminded_at or req.created_at,
                now=now,
            )
        ):
            return False
        n = req.reminders_sent + 1
        rows = outbox.queue_reminder(uow.session, req.id, n, settings.evidence_key_bytes())
        if not rows:
            return False
        req.reminders_sent = n
        req.last_reminded_at = now
        uow.audit(
            RECONCILER,
            "approval.reminded",
            _subject(req.id),
            reminders_sent=n,
            max_reminders=settings.approval_max_reminders,
            recipients=[r.recipient.email for r in rows if r.recipient is not None],
        )
        uow.commit()
    return True


# --- escalation --------------------------------------------------------------------------------


def escalate_overdue(settings: Settings, *, now: datetime | None = None) -> ReconcileReport:
    """Escalate, once, every open request past its deadline to `escalation_contacts`."""
    report = ReconcileReport(at=_utc(now))
    for req in approvals.open_requests(UnitOfWork(settings)):
        if req.deadline is None or req.deadline > report.at or req.escalated_at is not None:
            continue
        try:
            contacts = approvals.escalation_contacts(UnitOfWork(settings), req.id)
            if not contacts:
                # Not recorded as escalated: it is tried (and shown failing) every pass until
                # someone can be told.
                report.failures.append(Failure(step="escalate", id=req.id, error=NOBODY))
                continue
            if _escalate(settings, req.id, contacts, report.at):
                report.escalated_ids.append(req.id)
        except Exception as exc:
            log.exception("escalation of request %d failed", req.id)
            report.note_failure("escalate", req.id, exc)
    return report


def _escalate(settings: Settings, request_id: int, contacts: list[str], now: datetime) -> bool:
    """Queue the escalation and record it, in one transaction; False when it is no longer due."""
    uow = UnitOfWork(settings)
    with uow:
        req = locked(uow.session, ApprovalRequest, request_id, key_share=True)
        if (
            req is None
            or req.status is not ApprovalStatus.open
            or req.escalated_at is not None
            or req.deadline is None
            or outbox.utc(req.deadline) > now
        ):
            return False
        rows = outbox.queue_escalation(uow.session, req.id, contacts, n=1)
        if not rows:
            return False
        req.escalated_at = now
        uow.audit(
            RECONCILER,
            "approval.escalated",
            _subject(req.id),
            contacts=[r.recipient.email for r in rows if r.recipient is not None],
            deadline=outbox.utc(req.deadline).isoformat(),
        )
        uow.commit()
    return True


# --- the whole pass -----------------------------------------------------------------------------


def reconcile(
    settings: Settings,
    *,
    now: datetime | None = None,
    runs: Runs | None = None,
    resume: ResumeFn | None = None,
    delivery: Delivery | None = None,
) -> ReconcileReport:
    """One whole pass: resume, remind, escalate (see the module docstring), then, given a
    `delivery`, one delivery pass so the messages queued here go out now.

    `now` is the pass's clock for the reminder and deadline policy (tests move it). Idempotent:
    run twice at the same `now`, the second pass finds nothing to do. The scheduled flow runs
    the steps one by one and delivers in its own step.
    """
    at = _utc(now)
    report = resume_decided(settings, now=at, runs=runs, resume=resume)
    report = report.merged(remind_approvers(settings, now=at))
    report = report.merged(escalate_overdue(settings, now=at))
    if delivery is not None:
        # Never earlier than the wall clock: the rows this pass queued are due from the moment
        # they were written, which is after a `now` taken at the start of the pass.
        report.delivery = delivery.deliver_due(now=max(at, datetime.now(UTC)))
    log.info("approval reconciler: %s", report.summary())
    return report
