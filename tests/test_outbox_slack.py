"""The notification outbox and its Slack delivery, against the fake Slack Web API.

The real slack-sdk `WebClient` talks to tests/fakes/slack_api.py on 127.0.0.1; time moves by
passing `now=` to the delivery pass, never by sleeping (only Retry-After sleeps, 1 s at most).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from demo_org import with_demo_organisation
from fakes.slack_api import FakeSlack, fake_slack, slack_settings
from pydantic import SecretStr, ValidationError
from slack_sdk import WebClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from aims_core.approval_codes import personal_code
from aims_core.cli import notifications_cmd
from aims_core.errors import NotFound
from aims_core.messages import (
    APPROVE_ACTION_ID,
    PERSONAL_CODE_PLACEHOLDER,
    REJECT_ACTION_ID,
    fmt_utc,
)
from aims_core.models import (
    AISystem,
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStatus,
    AuditEvent,
    Decision,
    Evidence,
    Notification,
    NotificationStatus,
    Outcome,
    Person,
)
from aims_core.services import outbox
from aims_core.services.outbox import NotificationIn, backoff
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork
from notifications.slack import DeliveryReport, deliver_due, make_client

__all__ = ["fake_slack"]  # the fixture, imported for this module's tests

OWNER = "credit.owner@northwind.example"  # U0DEMO004
GOVERNANCE = "governance@northwind.example"  # U0DEMO002
ETHICS = "ethics@northwind.example"  # U0DEMO007
PROCUREMENT = "procurement@northwind.example"  # no Slack id
REQUESTER = "ds.lead@northwind.example"
OPS_CHANNEL = "C0AIMSOPS"


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def org(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    return with_demo_organisation(request, settings)


def _person(s: Any, email: str) -> Person:
    person = s.scalar(select(Person).where(Person.email == email))
    assert person is not None
    return person


def make_request(
    settings: Settings,
    approvers: list[str],
    *,
    quorum: int = 1,
    evidence: int = 0,
    deadline: datetime | None = None,
) -> int:
    """An open approval request written straight to the tables (the approval service is
    another module's business; the outbox reads only rows)."""
    key = settings.evidence_key_bytes()
    assert key is not None
    with UnitOfWork(settings) as uow:
        s = uow.session
        system = s.scalar(select(AISystem).where(AISystem.name == "credit-scoring"))
        assert system is not None
        evidence_ids = []
        for i in range(evidence):
            row = Evidence(
                seq=10_000 + i,
                subject="system:credit-scoring",
                kind="vv-report",
                title=f"Validation report {i + 1}",
                content="ok",
                media_type="text/plain",
                content_sha256=f"{i:02d}" + "ab" * 31,
                size=2,
                actor="tester",
                channel="test",
                idempotency_key=f"test-evidence-{i}",
                prev_chain="0" * 64,
                chain="1" * 64,
            )
            s.add(row)
            s.flush()
            evidence_ids.append(row.id)
        req = ApprovalRequest(
            idempotency_key=f"gate-test-{datetime.now(UTC).timestamp()}",
            subject="gate:credit-scoring:validation",
            activity="stage-gate",
            system_id=system.id,
            title="Stage gate: credit-scoring → validation",
            details="**Stage**: development → validation\n\nSee [the plan](https://example.org/p).",
            requester_id=_person(s, REQUESTER).id,
            requested_by=REQUESTER,
            quorum=quorum,
            deadline=deadline or datetime(2026, 11, 30, 17, 0, tzinfo=UTC),
            evidence_ids=evidence_ids,
            flow_run_id="run-123",
        )
        s.add(req)
        s.flush()
        for email in approvers:
            p = _person(s, email)
            s.add(ApprovalApprover(request_id=req.id, person_id=p.id))
        uow.commit()
        return req.id


def decide(
    settings: Settings,
    request_id: int,
    email: str,
    outcome: Outcome,
    comment: str = "",
    at: datetime | None = None,
) -> None:
    """Record a decision and close the request the way the approval service would."""
    at = at or datetime(2026, 11, 24, 10, 15, tzinfo=UTC)
    with UnitOfWork(settings) as uow:
        s = uow.session
        req = s.get(ApprovalRequest, request_id)
        assert req is not None
        s.add(
            Decision(
                request_id=request_id,
                person_id=_person(s, email).id,
                outcome=outcome,
                comment=comment,
                channel="slack",
                actor=email,
                round=req.round,
                decided_at=at,
            )
        )
        s.flush()
        s.refresh(req)
        approvals = sum(1 for d in req.decisions if d.outcome == Outcome.approve)
        if outcome == Outcome.reject:
            req.status, req.decided_at = ApprovalStatus.rejected, at
        elif approvals >= req.quorum:
            req.status, req.decided_at = ApprovalStatus.approved, at
        uow.commit()


def queue_messages(settings: Settings, request_id: int) -> list[Notification]:
    with UnitOfWork(settings) as uow:
        rows = outbox.queue_approval_messages(
            uow.session, request_id, settings.evidence_key_bytes()
        )
        uow.commit()
        return rows


def queue_updates(settings: Settings, request_id: int) -> list[Notification]:
    with UnitOfWork(settings) as uow:
        rows = outbox.queue_decision_updates(uow.session, request_id)
        uow.commit()
        return rows


def statuses(settings: Settings) -> dict[str, NotificationStatus]:
    return {n.idempotency_key: n.status for n in outbox.list_notifications(UnitOfWork(settings))}


def fast_client(s: Settings, **kw: Any) -> WebClient:
    kw.setdefault("timeout", 2.0)
    kw.setdefault("rate_limit_retries", 1)
    client = make_client(s, **kw)
    assert client is not None
    return client


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [el for b in blocks if b["type"] == "actions" for el in b["elements"]]


def block_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# --- approval messages -------------------------------------------------------------------------


def test_approval_dms_with_buttons_reach_slack(org: Settings, fake_slack: FakeSlack) -> None:
    rid = make_request(org, [OWNER, GOVERNANCE, PROCUREMENT], quorum=2, evidence=2)
    rows = queue_messages(org, rid)
    assert sorted(r.target for r in rows) == ["dm", "dm", "log"]
    key = org.evidence_key_bytes()
    assert key is not None
    with UnitOfWork(org).read() as uow:
        ids = {e: _person(uow.session, e).id for e in (OWNER, GOVERNANCE, PROCUREMENT)}
    # The stored rows hold a placeholder, never a personal code (the database keeps only hashes).
    for r in rows:
        assert PERSONAL_CODE_PLACEHOLDER in block_text(r.blocks or [])
        for pid in ids.values():
            assert personal_code(key, rid, pid, 0) not in block_text(r.blocks or [])

    s = slack_settings(org, fake_slack)
    report = deliver_due(s, fast_client(s))
    assert (report.sent, report.logged, report.retried, report.failed) == (2, 1, 0, 0)

    opened = {c.params["users"] for c in fake_slack.calls("conversations.open")}
    assert opened == {"U0DEMO004", "U0DEMO002"}
    assert all(
        c.headers["authorization"] == f"Bearer {fake_slack.token}" for c in fake_slack.requests
    )
    assert len(fake_slack.messages) == 2
    for user, email in (("U0DEMO004", OWNER), ("U0DEMO002", GOVERNANCE)):
        channel = fake_slack.dm_channel(user)
        (msg,) = [m for m in fake_slack.messages if m.channel == channel]
        assert msg.blocks[0] == {
            "type": "header",
            "text": {"type": "plain_text", "text": "Stage gate: credit-scoring → validation"},
        }
        btns = buttons(msg.blocks)
        assert [(b["action_id"], b["style"], b["value"]) for b in btns] == [
            (APPROVE_ACTION_ID, "primary", str(rid)),
            (REJECT_ACTION_ID, "danger", str(rid)),
        ]
        text = block_text(msg.blocks)
        # The approver's own code, in a context block, and nobody else's.
        code_blocks = [b for b in msg.blocks if b["type"] == "context" and "code" in text]
        assert personal_code(key, rid, ids[email], 0) in json.dumps(code_blocks)
        others = [pid for e, pid in ids.items() if e != email]
        assert all(personal_code(key, rid, pid, 0) not in text for pid in others)
        for expected in (
            "gate:credit-scoring:validation",
            "credit-scoring",
            "*Risk tier*\\nhigh",
            "2 of 3 approvers",
            "2026-11-30 17:00 UTC",
            "Validation report 1",
            "Validation report 2",
            "<https://example.org/p|the plan>",
            "<@U0DEMO006>",  # the requester
        ):
            assert expected in text, expected

    db = {n.recipient: n for n in outbox.list_notifications(UnitOfWork(org))}
    assert db[OWNER].status == NotificationStatus.sent
    assert db[OWNER].slack_channel == fake_slack.dm_channel("U0DEMO004")
    assert db[OWNER].slack_ts
    assert db[PROCUREMENT].status == NotificationStatus.logged

    # A second pass finds nothing to do.
    assert deliver_due(s, fast_client(s)).processed == 0
    assert len(fake_slack.calls("chat.postMessage")) == 2


def test_decision_update_edits_the_original_and_never_overtakes_it(
    org: Settings, fake_slack: FakeSlack
) -> None:
    rid = make_request(org, [OWNER, GOVERNANCE], quorum=1)
    queue_messages(org, rid)
    s = slack_settings(org, fake_slack)
    client = fast_client(s)
    t0 = datetime.now(UTC)

    # The first message fails once (500): it waits 5 s; the other one goes out.
    fake_slack.fail_with(500, times=1, methods={"chat.postMessage"})
    first = deliver_due(s, client, now=t0)
    assert (first.sent, first.retried) == (1, 1)
    (waiting,) = [n for n in outbox.list_notifications(UnitOfWork(org)) if n.status == "queued"]
    (posted,) = [n for n in outbox.list_notifications(UnitOfWork(org)) if n.status == "sent"]
    waiting_dm = fake_slack.dm_channel(waiting.recipient_slack_id or "")
    assert waiting_dm and posted.slack_channel != waiting_dm

    # Decided meanwhile: both messages get an update queued.
    decide(org, rid, GOVERNANCE, Outcome.approve)
    assert len(queue_updates(org, rid)) == 2
    assert len(queue_updates(org, rid)) == 2  # idempotent
    with UnitOfWork(org).read() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Notification)) == 4

    # Still within the backoff: the posted message is updated; the other update waits behind
    # its original.
    t1 = datetime.now(UTC)
    assert t1 < t0 + timedelta(seconds=5)
    second = deliver_due(s, client, now=t1)
    assert (second.sent, second.updated, second.retried) == (0, 1, 0)
    assert [c.params["channel"] for c in fake_slack.calls("chat.update")] == [posted.slack_channel]

    # 6 s later: the original goes out, then its update, in one pass.
    third = deliver_due(s, client, now=t0 + timedelta(seconds=6))
    assert (third.sent, third.updated) == (1, 1)
    waiting_calls = [
        (r.method, r.outcome)
        for r in fake_slack.requests
        if r.params.get("channel") == waiting_dm and r.method.startswith("chat.")
    ]
    assert waiting_calls == [
        ("chat.postMessage", "http-500"),
        ("chat.postMessage", "ok"),
        ("chat.update", "ok"),
    ]

    assert len(fake_slack.messages) == 2
    for msg in fake_slack.messages:
        assert msg.updates == 1
        assert buttons(msg.blocks) == []  # nobody can click a stale button
        assert buttons(msg.history[0]["blocks"])  # the original had them
        assert msg.blocks[0]["text"]["text"] == "Stage gate: credit-scoring → validation"
        assert "Approved by <@U0DEMO002> at 2026-11-24 10:15 UTC" in block_text(msg.blocks)
        assert "code" not in block_text(msg.blocks).lower()
    assert set(statuses(org).values()) == {NotificationStatus.sent}


def test_rejection_partial_quorum_reminder_and_escalation_messages(
    org: Settings, fake_slack: FakeSlack
) -> None:
    rid = make_request(org, [OWNER, GOVERNANCE, ETHICS], quorum=2)
    queue_messages(org, rid)
    s = slack_settings(org, fake_slack)
    client = fast_client(s)
    deliver_due(s, client)

    # Partial quorum: only the decided approver's message changes.
    decide(org, rid, OWNER, Outcome.approve)
    (progress,) = queue_updates(org, rid)
    assert progress.kind == "approval-update"
    # Reminder 1 goes to the two who have not decided; escalation to the CEO.
    with UnitOfWork(org) as uow:
        reminders = outbox.queue_reminder(uow.session, rid, 1, org.evidence_key_bytes())
        escalations = outbox.queue_escalation(uow.session, rid, ["ceo@northwind.example"])
        assert {r.recipient.email for r in reminders if r.recipient} == {GOVERNANCE, ETHICS}
        uow.commit()
    assert len(escalations) == 1
    report = deliver_due(s, client)
    assert (report.sent, report.updated) == (3, 1)

    owner_msg = next(
        m for m in fake_slack.messages if m.channel == fake_slack.dm_channel("U0DEMO004")
    )
    assert buttons(owner_msg.blocks) == []
    assert "Waiting for 1 more approval(s): 1 of 2" in block_text(owner_msg.blocks)
    ceo_msg = next(
        m for m in fake_slack.messages if m.channel == fake_slack.dm_channel("U0DEMO001")
    )
    assert buttons(ceo_msg.blocks) == []
    assert "Escalation" in ceo_msg.text
    assert "<@U0DEMO002>" in ceo_msg.text and "<@U0DEMO007>" in ceo_msg.text
    ethics_msgs = [
        m for m in fake_slack.messages if m.channel == fake_slack.dm_channel("U0DEMO007")
    ]
    assert len(ethics_msgs) == 2  # request + reminder, both with buttons
    assert all(buttons(m.blocks) for m in ethics_msgs)
    assert "Reminder 1" in ethics_msgs[1].text

    # A rejection closes it: every message with buttons (requests and reminders) is edited.
    decide(org, rid, ETHICS, Outcome.reject, comment="Bias tests missing <b>")
    updates = queue_updates(org, rid)
    assert len(updates) == 5  # 3 requests + 2 reminders
    report = deliver_due(s, client)
    assert report.updated == 5
    for m in fake_slack.messages:
        if m.channel != fake_slack.dm_channel("U0DEMO001"):
            assert buttons(m.blocks) == [], m.text
    text = block_text(fake_slack.message(ethics_msgs[0].channel, ethics_msgs[0].ts).blocks)
    assert (
        "Rejected by <@U0DEMO007> at 2026-11-24 10:15 UTC: “Bias tests missing &lt;b&gt;”" in text
    )
    assert "Approved by <@U0DEMO004>" in text
    # Closed requests get no reminders, escalations or new request messages.
    with UnitOfWork(org) as uow:
        assert outbox.queue_reminder(uow.session, rid, 2) == []
        assert outbox.queue_escalation(uow.session, rid, ["ceo@northwind.example"], n=2) == []
        assert len(outbox.queue_approval_messages(uow.session, rid)) == 3  # the existing ones
        uow.commit()


# --- idempotency, ordering, outages ------------------------------------------------------------


def test_queueing_is_idempotent(org: Settings, fake_slack: FakeSlack, actor: Actor) -> None:
    data = NotificationIn(
        idempotency_key="hello-1",
        kind="info",
        subject="org:northwind",
        target=OPS_CHANNEL,
        text="Quarterly review pack is ready",
    )
    first = outbox.queue_notification(UnitOfWork(org), data, actor)
    second = outbox.queue_notification(UnitOfWork(org), data, actor)
    assert first.id == second.id
    rid = make_request(org, [OWNER, GOVERNANCE])
    a = [r.id for r in queue_messages(org, rid)]
    b = [r.id for r in queue_messages(org, rid)]
    assert a == b and len(a) == 2
    with UnitOfWork(org).read() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Notification)) == 3
        audits = uow.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "notification.queued")
        ).all()
        assert len(audits) == 1

    fake_slack.add_channel(OPS_CHANNEL)
    s = slack_settings(org, fake_slack)
    assert deliver_due(s, fast_client(s)).sent == 3
    assert deliver_due(s, fast_client(s), now=datetime.now(UTC) + timedelta(hours=1)).sent == 0
    assert len(fake_slack.calls("chat.postMessage")) == 3
    assert len(fake_slack.messages) == 3


def test_slack_outage_500_and_429_loses_nothing_and_keeps_thread_order(
    settings: Settings, fake_slack: FakeSlack, actor: Actor
) -> None:
    threads = 10
    with UnitOfWork(settings) as uow:
        for i in range(100):
            outbox.queue(
                uow.session,
                NotificationIn(
                    idempotency_key=f"bulk-{i:03d}",
                    kind="info",
                    subject="org:northwind",
                    target=OPS_CHANNEL,
                    thread_key=f"thread-{i % threads}",
                    text=f"message {i:03d} of thread {i % threads}",
                ),
            )
        uow.commit()
    fake_slack.add_channel(OPS_CHANNEL)
    # Failures in waves between successes: some threads stall while others go on.
    post = {"chat.postMessage"}
    fake_slack.fail_with(500, times=2, methods=post, after=5)
    fake_slack.fail_with(502, times=4, methods=post, after=20)  # 3 in a row stop a pass
    fake_slack.rate_limit(retry_after=1, times=2, methods=post, after=50)  # outlasts 1 retry
    s = slack_settings(settings, fake_slack)
    client = fast_client(s, rate_limit_retries=1)

    total = DeliveryReport()
    t = datetime.now(UTC)
    passes = 0
    while passes < 30:  # bounded: each pass moves 11 minutes on (past the backoff cap)
        passes += 1
        r = deliver_due(s, client, now=t)
        for f in ("sent", "retried", "failed", "possible_duplicates", "logged"):
            setattr(total, f, getattr(total, f) + getattr(r, f))
        if all(v == NotificationStatus.sent for v in statuses(settings).values()):
            break
        t += timedelta(minutes=11)
    assert passes < 30

    outcomes = [r.outcome for r in fake_slack.calls("chat.postMessage")]
    assert outcomes.count("http-500") == 2
    assert outcomes.count("http-502") == 4
    assert outcomes.count("http-429") == 2
    assert passes >= 3
    assert total.sent == 100 and total.failed == 0 and total.logged == 0
    assert total.possible_duplicates == 0
    # All 100 arrived, exactly once each, and in queue order within every thread.
    texts = [m.text for m in fake_slack.messages]
    assert sorted(texts) == sorted(f"message {i:03d} of thread {i % threads}" for i in range(100))
    assert len(set(texts)) == 100
    for k in range(threads):
        seq = [int(t.split()[1]) for t in texts if t.endswith(f"thread {k}")]
        assert seq == sorted(seq) and len(seq) == 10


def test_concurrent_passes_send_each_notification_once(
    settings: Settings, fake_slack: FakeSlack
) -> None:
    with UnitOfWork(settings) as uow:
        for i in range(40):
            outbox.queue(
                uow.session,
                NotificationIn(
                    idempotency_key=f"c-{i:02d}",
                    kind="info",
                    subject="org:x",
                    target=OPS_CHANNEL,
                    thread_key=f"t-{i % 4}",
                    text=f"c {i:02d} t {i % 4}",
                ),
            )
        uow.commit()
    fake_slack.add_channel(OPS_CHANNEL)
    s = slack_settings(settings, fake_slack)
    reports: list[DeliveryReport] = []

    def run() -> None:
        reports.append(deliver_due(s, fast_client(s)))

    workers = [threading.Thread(target=run) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    while not all(v == NotificationStatus.sent for v in statuses(settings).values()):
        reports.append(deliver_due(s, fast_client(s)))  # what the others left to a later pass
        assert len(reports) < 20
    assert sum(r.sent for r in reports) == 40
    texts = [m.text for m in fake_slack.messages]
    assert len(texts) == len(set(texts)) == 40
    for k in range(4):
        seq = [t for t in texts if t.endswith(f"t {k}")]
        assert seq == sorted(seq)


def test_rate_limit_is_retried_by_the_client_handler(fake_slack: FakeSlack, tmp_path: Any) -> None:
    s = Settings(data_dir=tmp_path, slack_bot_token=SecretStr(fake_slack.token))
    s = slack_settings(s, fake_slack)
    client = fast_client(s, rate_limit_retries=1)
    fake_slack.rate_limit(retry_after=1, times=1)
    assert client.auth_test()["ok"] is True
    assert [r.outcome for r in fake_slack.calls("auth.test")] == ["http-429", "ok"]


def test_a_long_retry_after_waits_in_the_outbox_not_in_the_loop(
    settings: Settings, fake_slack: FakeSlack, actor: Actor
) -> None:
    fake_slack.add_channel(OPS_CHANNEL)
    for key in ("r1", "r2"):
        outbox.queue_notification(
            UnitOfWork(settings),
            {
                "idempotency_key": key,
                "kind": "info",
                "subject": "org:x",
                "target": OPS_CHANNEL,
                "text": key,
            },
            actor,
        )
    fake_slack.rate_limit(retry_after=30, times=1)
    s = slack_settings(settings, fake_slack)
    t0 = datetime.now(UTC)
    started = time.monotonic()
    report = deliver_due(s, fast_client(s, rate_limit_retries=3), now=t0)
    assert time.monotonic() - started < 2  # the handler did not sleep 30 s
    assert (report.retried, report.processed) == (1, 1)
    assert report.stopped == "rate limited by Slack (Retry-After 30 s)"
    first = outbox.get_notification(UnitOfWork(settings), "r1")
    assert first.next_attempt_at >= t0 + timedelta(seconds=30)
    assert deliver_due(s, fast_client(s), now=t0 + timedelta(seconds=29)).sent == 1  # r2
    assert deliver_due(s, fast_client(s), now=t0 + timedelta(seconds=30)).sent == 1  # r1


def test_permanent_errors_fail_and_are_not_retried(
    settings: Settings, fake_slack: FakeSlack, actor: Actor
) -> None:
    fake_slack.add_channel(OPS_CHANNEL)
    for key, target in (("kicked", OPS_CHANNEL), ("lost", "C0NOWHERE"), ("fine", OPS_CHANNEL)):
        outbox.queue_notification(
            UnitOfWork(settings),
            NotificationIn(
                idempotency_key=key, kind="info", subject="org:x", target=target, text=key
            ),
            actor,
        )
    fake_slack.error("not_in_channel", times=1, methods={"chat.postMessage"})
    s = slack_settings(settings, fake_slack)
    client = fast_client(s)
    t0 = datetime.now(UTC)
    report = deliver_due(s, client, now=t0)
    assert (report.sent, report.failed, report.retried) == (1, 2, 0)
    got = {n.idempotency_key: n for n in outbox.list_notifications(UnitOfWork(settings))}
    assert got["lost"].status == NotificationStatus.failed
    assert got["lost"].last_error == "channel_not_found"
    assert got["kicked"].last_error == "not_in_channel"
    calls = len(fake_slack.requests)
    assert deliver_due(s, client, now=t0 + timedelta(days=1)).processed == 0
    assert len(fake_slack.requests) == calls  # not retried
    with UnitOfWork(settings).read() as uow:
        failed = uow.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "notification.failed")
        ).all()
        assert {e.details["key"] for e in failed} == {"lost", "kicked"}

    # An operator fixed the membership: requeued, it goes out.
    assert outbox.requeue(UnitOfWork(settings), actor, [got["kicked"].id]) == 1
    assert deliver_due(s, client, now=t0 + timedelta(days=1)).sent == 1
    assert statuses(settings)["kicked"] == NotificationStatus.sent


def test_a_refused_token_stops_the_pass(settings: Settings, fake_slack: FakeSlack) -> None:
    fake_slack.add_channel(OPS_CHANNEL)
    with UnitOfWork(settings) as uow:
        for i in range(3):
            outbox.queue(
                uow.session,
                {
                    "idempotency_key": f"t{i}",
                    "kind": "info",
                    "subject": "org:x",
                    "target": OPS_CHANNEL,
                    "text": f"t{i}",
                },
            )
        uow.commit()
    s = slack_settings(settings, fake_slack, slack_bot_token=SecretStr("xoxb-wrong"))
    report = deliver_due(s, fast_client(s))
    assert (report.failed, report.processed) == (1, 1)
    assert report.stopped and "invalid_auth" in report.stopped
    assert statuses(settings) == {
        "t0": NotificationStatus.failed,
        "t1": NotificationStatus.queued,
        "t2": NotificationStatus.queued,
    }


def test_a_hang_is_retried_and_counted_as_possible_duplicate(
    settings: Settings, fake_slack: FakeSlack, actor: Actor
) -> None:
    fake_slack.add_channel(OPS_CHANNEL)
    outbox.queue_notification(
        UnitOfWork(settings),
        {
            "idempotency_key": "slow",
            "kind": "info",
            "subject": "org:x",
            "target": OPS_CHANNEL,
            "text": "slow one",
        },
        actor,
    )
    fake_slack.hang(1.0, times=1, methods={"chat.postMessage"})
    s = slack_settings(settings, fake_slack)
    client = fast_client(s, timeout=0.3)
    t0 = datetime.now(UTC)
    first = deliver_due(s, client, now=t0)
    assert (first.retried, first.possible_duplicates) == (1, 1)
    (row,) = outbox.list_notifications(UnitOfWork(settings))
    assert row.status == NotificationStatus.queued and "possible duplicate" in (
        row.last_error or ""
    )
    fake_slack.wait_idle()
    second = deliver_due(s, client, now=t0 + timedelta(seconds=5))
    assert second.sent == 1
    # Slack did post the hung request: at-least-once delivery, and the report said so.
    assert [m.text for m in fake_slack.messages] == ["slow one", "slow one"]


def test_backoff_schedule(settings: Settings, fake_slack: FakeSlack, actor: Actor) -> None:
    assert [backoff(n).total_seconds() for n in range(0, 10)] == [
        0,
        5,
        10,
        20,
        40,
        80,
        160,
        320,
        600,
        600,
    ]
    assert backoff(1000) == timedelta(minutes=10)

    fake_slack.add_channel(OPS_CHANNEL)
    outbox.queue_notification(
        UnitOfWork(settings),
        {
            "idempotency_key": "b",
            "kind": "info",
            "subject": "org:x",
            "target": OPS_CHANNEL,
            "text": "b",
        },
        actor,
    )
    fake_slack.fail_with(503, times=None)
    s = slack_settings(settings, fake_slack)
    client = fast_client(s)
    t = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    for attempt, wait in enumerate([5, 10, 20, 40], start=1):
        assert deliver_due(s, client, now=t).retried == 1
        (row,) = outbox.list_notifications(UnitOfWork(settings))
        assert row.attempts == attempt
        assert row.next_attempt_at == t + timedelta(seconds=wait)
        assert row.last_error == "HTTP 503"
        before = len(fake_slack.requests)
        assert deliver_due(s, client, now=t + timedelta(seconds=wait - 1)).processed == 0
        assert len(fake_slack.requests) == before  # not due yet: Slack not called
        t += timedelta(seconds=wait)
    fake_slack.clear_failures()
    assert deliver_due(s, client, now=t).sent == 1


def test_claim_is_exclusive(settings: Settings, actor: Actor) -> None:
    out = outbox.queue_notification(
        UnitOfWork(settings),
        {"idempotency_key": "c", "kind": "info", "subject": "org:x", "target": "log", "text": "c"},
        actor,
    )
    now = datetime.now(UTC)
    assert outbox.claim(UnitOfWork(settings), out.id, now) is not None
    assert outbox.claim(UnitOfWork(settings), out.id, now) is None  # leased to the first pass
    assert outbox.due(UnitOfWork(settings), now) == []
    assert len(outbox.due(UnitOfWork(settings), now + outbox.CLAIM_LEASE)) == 1  # lease expired


# --- without Slack ----------------------------------------------------------------------------


def test_without_a_token_everything_is_logged_and_listed(
    org: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    assert make_client(org) is None
    rid = make_request(org, [OWNER, PROCUREMENT])
    queue_messages(org, rid)
    key = org.evidence_key_bytes()
    assert key is not None
    with caplog.at_level(logging.INFO, logger="aims.notifications"):
        report = deliver_due(org)
    assert (report.logged, report.sent) == (2, 0)
    assert "Approval requested: Stage gate: credit-scoring → validation" in caplog.text
    with UnitOfWork(org).read() as uow:
        pids = [_person(uow.session, e).id for e in (OWNER, PROCUREMENT)]
    assert all(personal_code(key, rid, p, 0) not in caplog.text for p in pids)

    runner = CliRunner()
    listed = runner.invoke(notifications_cmd.app, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert {r["status"] for r in rows} == {"logged"}
    assert {r["recipient"] for r in rows} == {OWNER, PROCUREMENT}
    table = runner.invoke(notifications_cmd.app, ["list", "--status", "logged"])
    assert table.exit_code == 0 and "approval-request" in table.output
    assert runner.invoke(notifications_cmd.app, ["list", "--status", "nope"]).exit_code == 2

    decide(org, rid, OWNER, Outcome.approve)
    queue_updates(org, rid)
    delivered = runner.invoke(notifications_cmd.app, ["deliver"])
    assert delivered.exit_code == 0, delivered.output
    assert "the log" in delivered.output and "logged 2" in delivered.output


def test_cli_deliver_and_requeue_with_slack(
    settings: Settings, fake_slack: FakeSlack, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMS_SLACK_BOT_TOKEN", fake_slack.token)
    monkeypatch.setenv("AIMS_SLACK_API_URL", fake_slack.base_url.rstrip("/"))  # slash added
    monkeypatch.setenv("AIMS_SLACK_CHANNEL", OPS_CHANNEL)
    outbox.queue_notification(
        UnitOfWork(settings),
        {"idempotency_key": "d", "kind": "info", "subject": "org:x", "text": "to the default"},
        actor,
    )
    runner = CliRunner()
    result = runner.invoke(notifications_cmd.app, ["deliver", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["failed"] == 1  # channel not known to the fake yet
    fake_slack.add_channel(OPS_CHANNEL)
    requeued = runner.invoke(notifications_cmd.app, ["requeue", "--all-failed"])
    assert "requeued 1" in requeued.output
    result = runner.invoke(notifications_cmd.app, ["deliver"])
    assert "sent 1" in result.output
    assert fake_slack.messages[0].channel == OPS_CHANNEL


# --- boundaries --------------------------------------------------------------------------------


def test_notification_input_is_validated(org: Settings, actor: Actor) -> None:
    base = {"idempotency_key": "v", "kind": "info", "subject": "org:x", "text": "t"}
    with pytest.raises(ValidationError, match="not a Slack channel id"):
        NotificationIn(**base, target="#general")
    with pytest.raises(ValidationError, match="needs a recipient"):
        NotificationIn(**base, target="dm")
    with pytest.raises(ValidationError, match="inherits target"):
        NotificationIn(**base, target="log", updates="x")
    with pytest.raises(ValidationError):
        NotificationIn(**{**base, "text": ""})
    with pytest.raises(NotFound, match="no person"):
        outbox.queue_notification(UnitOfWork(org), {**base, "recipient": "nobody@x.org"}, actor)
    with pytest.raises(NotFound, match="no notification"):
        outbox.queue_notification(UnitOfWork(org), {**base, "updates": "missing"}, actor)
    out = outbox.queue_notification(UnitOfWork(org), {**base, "recipient": OWNER}, actor)
    assert (out.target, out.thread_key) == ("dm", "v")


def test_make_client(tmp_path: Any) -> None:
    assert make_client(Settings(data_dir=tmp_path)) is None
    assert make_client(Settings(data_dir=tmp_path, slack_bot_token=SecretStr("  "))) is None
    client = make_client(
        Settings(
            data_dir=tmp_path,
            slack_bot_token=SecretStr("xoxb-1"),
            slack_api_url="http://127.0.0.1:9/api",
        ),
        timeout=3,
    )
    assert client is not None
    assert client.base_url == "http://127.0.0.1:9/api/"
    assert client.timeout == 3
    assert {type(h).__name__ for h in client.retry_handlers} == {
        "ConnectionErrorRetryHandler",
        "BoundedRateLimitRetryHandler",
    }
    default = make_client(Settings(data_dir=tmp_path, slack_bot_token=SecretStr("xoxb-1")))
    assert default is not None and default.base_url == "https://slack.com/api/"


def test_fake_slack_api_shapes(fake_slack: FakeSlack) -> None:
    client = WebClient(token=fake_slack.token, base_url=fake_slack.base_url)
    assert client.auth_test()["user_id"] == "U0AIMSBOT"
    fake_slack.add_user("U0X", email="x@example.org", name="X")
    assert client.users_lookupByEmail(email="x@example.org")["user"]["id"] == "U0X"
    assert client.users_info(user="U0X")["user"]["profile"]["email"] == "x@example.org"
    dm = client.conversations_open(users="U0X")["channel"]["id"]
    assert client.conversations_open(users="U0X")["already_open"] is True
    posted = client.chat_postMessage(channel=dm, text="hi", blocks=[{"type": "divider"}])
    client.chat_update(channel=dm, ts=posted["ts"], text="edited")  # blocks kept when omitted
    (msg,) = fake_slack.messages
    assert (msg.text, msg.blocks, msg.updates) == ("edited", [{"type": "divider"}], 1)
    second = client.chat_postMessage(channel=dm, text="again")
    assert second["ts"] > posted["ts"]
    from slack_sdk.errors import SlackApiError

    for call, code in (
        (lambda: WebClient(token="nope", base_url=fake_slack.base_url).auth_test(), "invalid_auth"),
        (lambda: WebClient(base_url=fake_slack.base_url).auth_test(), "not_authed"),
        (lambda: client.chat_postMessage(channel="C0NONE", text="x"), "channel_not_found"),
        (lambda: client.chat_update(channel=dm, ts="1.2", text="x"), "message_not_found"),
        (lambda: client.users_lookupByEmail(email="no@x.org"), "users_not_found"),
    ):
        with pytest.raises(SlackApiError) as err:
            call()
        assert err.value.response["error"] == code
    # Form-encoded blocks (a JSON string) are accepted too, as Slack does.
    form = client.api_call(
        "chat.postMessage", data={"channel": dm, "blocks": json.dumps([{"type": "divider"}])}
    )
    assert fake_slack.message(dm, form["ts"]).blocks == [{"type": "divider"}]
    assert fmt_utc(datetime(2026, 11, 24, 10, 15)) == "2026-11-24 10:15 UTC"
