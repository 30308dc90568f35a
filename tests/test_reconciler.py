"""The approval reconciler: resume what was decided, remind, escalate, deliver; once.

The service is tested directly, on SQLite and PostgreSQL, with an injected `resume` standing in
for the Prefect API (the session's one real Prefect API belongs to the flow tests) and time moved
by `now=`, never by sleeping. The flow's tasks are called through `.fn`.

Demo organisation: for `stage-gate` on credit-scoring the RACI has credit.owner Accountable
(manager: the CEO), compliance and ethics Consulted; governance is the governance lead.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from demo_org import with_demo_organisation
from fakes.slack_api import FakeSlack, fake_slack, slack_settings
from sqlalchemy import func, select

from aims_core.models import AuditEvent, Notification, NotificationStatus, Outcome, Person
from aims_core.ports import ResumeOutcome
from aims_core.services import approvals
from aims_core.services.approvals import ApprovalRequestIn, ApprovalRequestOut, DecisionIn
from aims_core.services.outbox import KIND_ESCALATION, KIND_REMINDER
from aims_core.services.reconcile import RECONCILER, ReconcileReport
from aims_core.services.reconcile import reconcile as reconcile_pass
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork
from notifications.slack import SlackDelivery


def reconcile(settings: Settings, **kw: Any) -> ReconcileReport:
    """A whole pass as `aims approvals reconcile` runs it: delivering through Slack at the end."""
    return reconcile_pass(settings, delivery=SlackDelivery(settings), **kw)


__all__ = ["fake_slack"]  # the fixture, imported for this module's tests

D = "@northwind.example"
CEO, GOV, COMPLIANCE, CREDIT_OWNER, ETHICS, DS = (
    f"{n}{D}" for n in ("ceo", "governance", "compliance", "credit.owner", "ethics", "ds.lead")
)
SLACK_ID = {CEO: "U0DEMO001", GOV: "U0DEMO002", CREDIT_OWNER: "U0DEMO004", ETHICS: "U0DEMO007"}
H = timedelta(hours=1)
ROOT = Path(__file__).resolve().parent.parent


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def org(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    return with_demo_organisation(request, settings)


def make_request(
    settings: Settings,
    actor: Actor,
    key: str,
    *,
    roles: tuple[str, ...] = ("system-owner", "governance-lead"),
    quorum: int = 1,
    deadline: datetime | None = None,
    flow_run_id: str | None = None,
) -> ApprovalRequestOut:
    return approvals.create_request(
        UnitOfWork(settings),
        ApprovalRequestIn(
            idempotency_key=key,
            subject="system:credit-scoring",
            activity="stage-gate",
            system="credit-scoring",
            title=f"Stage gate {key}",
            approver_roles=list(roles),
            quorum=quorum,
            requester=DS,
            deadline=deadline,
            flow_run_id=flow_run_id,
        ),
        actor,
    )


def decide(settings: Settings, request_id: int, person: str, outcome: Outcome) -> None:
    approvals.decide(
        UnitOfWork(settings),
        DecisionIn(request_id=request_id, person=person, outcome=outcome, comment="because"),
        Actor(who=person, channel="cli"),
    )


class FakeResume:
    """Stands in for `resume_through_prefect`: records the ids, answers `answer`, and (like the real
    one) marks the request resumed when the run was resumed or had ended."""

    def __init__(self, answer: ResumeOutcome | Exception = ResumeOutcome.resumed) -> None:
        self.answer = answer
        self.calls: list[int] = []

    def __call__(self, settings: Settings, request_id: int) -> ResumeOutcome:
        self.calls.append(request_id)
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer in (ResumeOutcome.resumed, ResumeOutcome.finished):
            approvals.mark_resumed(UnitOfWork(settings), request_id)
        return self.answer


def events(settings: Settings, action: str, request_id: int) -> list[dict[str, Any]]:
    """The request's audit events of one action: actor, channel and details."""
    with UnitOfWork(settings).read() as uow:
        return [
            {"actor": e.actor, "channel": e.channel, **e.details}
            for e in uow.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == action, AuditEvent.subject == f"approval:{request_id}")
                .order_by(AuditEvent.id)
            )
        ]


def notes(settings: Settings, kind: str, request_id: int) -> list[tuple[str, str]]:
    """(idempotency key, recipient email) of the request's notifications of one kind."""
    with UnitOfWork(settings).read() as uow:
        rows = uow.session.scalars(
            select(Notification)
            .where(Notification.kind == kind, Notification.request_id == request_id)
            .order_by(Notification.id)
        ).all()
        return [(r.idempotency_key, r.recipient.email if r.recipient else "") for r in rows]


def snapshot(settings: Settings) -> dict[str, Any]:
    """Everything a pass may change: audit trail, outbox, the requests' bookkeeping."""
    with UnitOfWork(settings).read() as uow:
        s = uow.session
        return {
            "audit": s.scalar(select(func.count()).select_from(AuditEvent)),
            "outbox": s.scalar(select(func.count()).select_from(Notification)),
            "queued": s.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.status == NotificationStatus.queued)
            ),
            "requests": [
                (r.id, r.resume_pending, r.reminders_sent, r.last_reminded_at, r.escalated_at)
                for r in approvals.list_requests(UnitOfWork(settings))
            ],
        }


def quiet(report: ReconcileReport) -> bool:
    return not (
        report.resumed_ids
        or report.deferred_ids
        or report.ended_ids
        or report.reminded_ids
        or report.escalated_ids
        or report.failures
        or (report.delivery is not None and report.delivery.processed)
    )


# --- resume ------------------------------------------------------------------------------------


def test_decided_request_is_resumed_once(org: Settings, actor: Actor) -> None:
    decided = make_request(org, actor, "resume-1", flow_run_id="run-decided")
    waiting = make_request(org, actor, "resume-2", flow_run_id="run-waiting")
    no_run = make_request(org, actor, "resume-3")
    decide(org, decided.id, CREDIT_OWNER, Outcome.approve)
    decide(org, no_run.id, CREDIT_OWNER, Outcome.approve)  # no run waits: nothing to resume
    assert approvals.get_request(UnitOfWork(org), decided.id).resume_pending

    resume = FakeResume()
    report = reconcile(org, resume=resume)
    assert resume.calls == [decided.id]
    assert report.resumed_ids == [decided.id] and report.resumed == 1
    assert not approvals.get_request(UnitOfWork(org), decided.id).resume_pending
    assert waiting.id not in resume.calls

    again = reconcile(org, resume=resume)
    assert resume.calls == [decided.id], "marked resumed: never resumed again"
    assert again.resumed == 0


def test_deferred_or_failing_resume_stays_pending(org: Settings, actor: Actor) -> None:
    req = make_request(org, actor, "resume-deferred", flow_run_id="run-x")
    decide(org, req.id, CREDIT_OWNER, Outcome.reject)

    deferred = FakeResume(ResumeOutcome.deferred)
    report = reconcile(org, resume=deferred)
    assert report.deferred_ids == [req.id] and report.resumed == 0
    assert approvals.get_request(UnitOfWork(org), req.id).resume_pending

    broken = FakeResume(ConnectionError("Prefect API unreachable"))
    report = reconcile(org, resume=broken)  # counted, never raised
    assert [(f.step, f.id) for f in report.failures] == [("resume", req.id)]
    assert "Prefect API unreachable" in report.failures[0].error
    assert approvals.get_request(UnitOfWork(org), req.id).resume_pending

    ended = FakeResume(ResumeOutcome.finished)
    report = reconcile(org, resume=ended)
    assert report.ended_ids == [req.id] and report.resumed == 0
    assert reconcile(org, resume=ended).ended_ids == []
    assert ended.calls == [req.id]


# --- reminders ---------------------------------------------------------------------------------


def test_reminders_follow_the_interval_and_stop_at_the_max(
    org: Settings, actor: Actor, fake_slack: FakeSlack
) -> None:
    settings = slack_settings(org, fake_slack)
    assert (settings.approval_reminder_every_hours, settings.approval_max_reminders) == (24, 3)
    req = make_request(settings, actor, "remind-1")
    t0 = req.created_at

    assert reconcile(settings, now=t0 + 23 * H).reminded == 0, "not before the interval"

    for n in (1, 2, 3):
        now = t0 + n * 24 * H + n * timedelta(minutes=1)
        assert reconcile(settings, now=now - timedelta(minutes=2)).reminded == 0
        report = reconcile(settings, now=now)
        assert report.reminded_ids == [req.id]
        state = approvals.get_request(UnitOfWork(settings), req.id)
        assert (state.reminders_sent, state.last_reminded_at) == (n, now)
        assert report.delivery is not None and report.delivery.sent == 1

    assert reconcile(settings, now=t0 + 30 * 24 * H).reminded == 0, "stops at the max"
    assert approvals.get_request(UnitOfWork(settings), req.id).reminders_sent == 3

    audited = events(settings, "approval.reminded", req.id)
    assert [e["reminders_sent"] for e in audited] == [1, 2, 3]
    assert {(e["actor"], e["channel"]) for e in audited} == {(RECONCILER.who, RECONCILER.channel)}
    assert audited[0]["recipients"] == [CREDIT_OWNER]

    dm = fake_slack.dm_channel(SLACK_ID[CREDIT_OWNER])
    texts = [m.text for m in fake_slack.messages if m.channel == dm]
    assert [t.split(":")[0] for t in texts] == ["Reminder 1", "Reminder 2", "Reminder 3"]
    assert all(req.title in t for t in texts)
    assert all(m.actions() for m in fake_slack.messages), "reminders keep the buttons"


def test_reminders_go_only_to_approvers_who_have_not_decided(org: Settings, actor: Actor) -> None:
    req = make_request(
        org, actor, "remind-undecided", roles=("compliance-officer", "ethics-committee"), quorum=2
    )
    assert sorted(req.approvers) == sorted([COMPLIANCE, ETHICS, CREDIT_OWNER])
    decide(org, req.id, COMPLIANCE, Outcome.approve)

    report = reconcile(org, now=req.created_at + 25 * H)
    assert report.reminded_ids == [req.id]
    assert sorted(email for _, email in notes(org, KIND_REMINDER, req.id)) == sorted(
        [CREDIT_OWNER, ETHICS]
    )
    assert report.delivery is not None and report.delivery.logged == 2  # no Slack token


def test_policy_numbers_come_from_settings(org: Settings, actor: Actor) -> None:
    settings = org.model_copy(
        update={"approval_reminder_every_hours": 2, "approval_max_reminders": 1}
    )
    req = make_request(settings, actor, "remind-policy")
    assert reconcile(settings, now=req.created_at + 1.5 * H).reminded == 0
    assert reconcile(settings, now=req.created_at + 2 * H).reminded_ids == [req.id]
    assert reconcile(settings, now=req.created_at + 9 * H).reminded == 0

    none = org.model_copy(update={"approval_max_reminders": 0})
    other = make_request(none, actor, "remind-none")
    assert reconcile(none, now=other.created_at + 99 * H).reminded == 0
    assert approvals.get_request(UnitOfWork(none), other.id).reminders_sent == 0


def test_decided_requests_are_neither_reminded_nor_escalated(org: Settings, actor: Actor) -> None:
    req = make_request(org, actor, "decided-quiet")
    decide(org, req.id, CREDIT_OWNER, Outcome.approve)
    report = reconcile(org, now=req.created_at + 999 * H)
    assert (report.reminded, report.escalated) == (0, 0)
    assert notes(org, KIND_REMINDER, req.id) == notes(org, KIND_ESCALATION, req.id) == []


# --- escalation --------------------------------------------------------------------------------


def test_escalation_past_the_deadline_once(
    org: Settings, actor: Actor, fake_slack: FakeSlack
) -> None:
    settings = slack_settings(org, fake_slack, approval_max_reminders=0)
    created = datetime.now().astimezone()
    req = make_request(settings, actor, "escalate-1", deadline=created + 2 * H)

    assert reconcile(settings, now=created + 1 * H).escalated == 0, "not before the deadline"
    now = req.deadline + timedelta(minutes=5)  # type: ignore[operator]
    report = reconcile(settings, now=now)
    assert report.escalated_ids == [req.id]
    assert approvals.get_request(UnitOfWork(settings), req.id).escalated_at == now
    # The Accountable (credit.owner)'s manager, and the governance lead.
    assert sorted(email for _, email in notes(settings, KIND_ESCALATION, req.id)) == [CEO, GOV]
    assert report.delivery is not None and report.delivery.sent == 2
    for who in (CEO, GOV):
        dm = fake_slack.dm_channel(SLACK_ID[who])
        (message,) = [m for m in fake_slack.messages if m.channel == dm]
        assert message.text.startswith("Escalation:")
        assert not message.actions(), "an escalation has no buttons"

    for later in (now, now + 5 * H, now + 50 * H):
        assert reconcile(settings, now=later).escalated == 0
    assert len(notes(settings, KIND_ESCALATION, req.id)) == 2
    (event,) = events(settings, "approval.escalated", req.id)
    assert sorted(event["contacts"]) == [CEO, GOV]
    assert event["actor"] == RECONCILER.who


def test_escalation_without_anyone_to_tell_is_a_failure_not_a_record(
    org: Settings, actor: Actor
) -> None:
    req = make_request(org, actor, "escalate-nobody", deadline=datetime.now().astimezone())
    with UnitOfWork(org) as uow:  # nobody to tell: no governance lead, no manager
        for p in uow.session.scalars(select(Person).where(Person.email.in_([CEO, GOV]))):
            p.active = False
        uow.commit()
    report = reconcile(org, now=req.created_at + H)
    assert report.escalated == 0
    assert [(f.step, f.id) for f in report.failures] == [("escalate", req.id)]
    assert approvals.get_request(UnitOfWork(org), req.id).escalated_at is None


# --- the whole pass ----------------------------------------------------------------------------


def test_second_run_at_the_same_now_changes_nothing(org: Settings, actor: Actor) -> None:
    t0 = datetime.now().astimezone()
    decided = make_request(org, actor, "idem-decided", flow_run_id="run-idem")
    decide(org, decided.id, CREDIT_OWNER, Outcome.approve)
    overdue = make_request(org, actor, "idem-overdue", deadline=t0 + H)
    now = t0 + 25 * H

    resume = FakeResume()
    first = reconcile(org, now=now, resume=resume)
    assert first.resumed_ids == [decided.id]
    assert first.reminded_ids == [overdue.id]
    assert first.escalated_ids == [overdue.id]
    assert first.delivery is not None and first.delivery.logged == 3  # 1 reminder, 2 escalations
    assert first.summary().startswith("resumed 1, deferred 0, reminded 1, escalated 1")
    markdown = first.markdown()
    assert f"| reminded | 1 | #{overdue.id} |" in markdown and "**Delivery**" in markdown

    before = snapshot(org)
    second = reconcile(org, now=now, resume=resume)
    assert quiet(second), second.model_dump()
    assert snapshot(org) == before
    assert resume.calls == [decided.id]


def test_overlapping_passes_act_once(org: Settings, actor: Actor) -> None:
    req = make_request(org, actor, "overlap", deadline=datetime.now().astimezone())
    now = req.created_at + 25 * H
    reports: list[ReconcileReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(reconcile(org, now=now, resume=FakeResume()))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sum(r.reminded for r in reports) == 1
    assert sum(r.escalated for r in reports) == 1
    assert len(events(org, "approval.reminded", req.id)) == 1
    assert len(events(org, "approval.escalated", req.id)) == 1


def test_flow_tasks_call_the_service(org: Settings, actor: Actor) -> None:
    """The flow's steps, without a Prefect run (the tasks read settings from AIMS_* env)."""
    from flows.approval_reconciler import (
        escalate_overdue,
        remind_approvers,
        resume_decided_runs,
    )
    from tasks.delivery import deliver_afresh

    req = make_request(org, actor, "flow-steps", deadline=datetime.now().astimezone())
    now = req.created_at + 25 * H
    assert resume_decided_runs.fn(now).resumed == 0
    report = remind_approvers.fn(now).merged(escalate_overdue.fn(now))
    assert (report.reminded_ids, report.escalated_ids) == ([req.id], [req.id])
    assert deliver_afresh.fn("approval-reconciler")["logged"] == 3


def test_the_service_does_not_import_prefect() -> None:
    code = "import sys, aims_core.services.reconcile; sys.exit('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
