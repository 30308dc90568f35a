"""Reliability promises 1, 3 and 4 (issue 9): each test injects the fault and fails if the
promise breaks, then records what it saw (`reliability.record`, see tests/reliability.py).

1. Slack outage: 100 notifications in 22 threads (approval DMs, their reminders and the updates
   that follow each decision; incident timelines in a channel) go through one outage of the fake
   Slack Web API: HTTP 500, then 429, then hangs. After recovery all 100 are delivered, none
   lost, in order per thread; the only duplicates are the hung posts (one each, counted).
3. Killed mid-step: `aims evidence add` is SIGKILLed inside the evidence transaction (the record,
   its audit event and the new chain head written, not committed), and once more after the
   commit but before the anchor file moved. No half record; the chain verifies; a retry with the
   same idempotency key completes the step exactly once (and heals the lagging anchor).
4. Database unavailable: the HTTP app's intake on a private PostgreSQL cluster that is stopped
   and started again under it: 503 "retry" while it is down, nothing half-written, the retried
   request recorded exactly once by the same app object.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes.slack_api import FakeSlack, fake_slack, slack_settings
from fastapi.testclient import TestClient
from pg_cluster import PrivateCluster, StopMode, private_cluster
from pydantic import SecretStr
from records import count
from sqlalchemy import create_engine, select, text
from test_approvals import gate
from test_intake import StartRecorder, start
from test_outbox_slack import OPS_CHANNEL, fast_client, queue_messages, queue_updates, statuses

from aims_core.database import initialise
from aims_core.db import dispose_engine, get_engine
from aims_core.models import (
    AuditEvent,
    Evidence,
    EvidenceHead,
    Incident,
    IncidentEvent,
    Notification,
    NotificationStatus,
)
from aims_core.services import approvals, outbox
from aims_core.services import evidence as ev
from aims_core.services.approvals import DecisionIn
from aims_core.services.demo import load_demo
from aims_core.services.outbox import NotificationIn
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork
from notifications.app import create_app
from notifications.fake_slack import RecordedRequest
from notifications.intake import firing_webhook
from notifications.slack import DeliveryReport, deliver_due

__all__ = ["fake_slack", "start"]  # fixtures, imported for this module's tests


# --- 1. Slack outage ---------------------------------------------------------------------------

GATES = 6  # x 14 notifications: 3 approval DMs, 3 reminders, 2 progress and 6 final updates
CHANNEL_THREADS = 4  # x 4 incident-timeline messages in the ops channel
CLIENT_TIMEOUT = 5.0  # generous: on a loaded machine a healthy call must never time out
HANG = 1.0  # seconds the fake Slack hangs while the client gives up after HANG_TIMEOUT
HANG_TIMEOUT = 0.4
PERIOD = timedelta(seconds=15)  # the delivery loop's period: each pass moves the clock this much
MAX_PASSES = 200  # the bound on passes (backoff tops out at 10 minutes: 40 passes)


@dataclass
class Outage:
    """Runs delivery passes as the delivery loop would, one every PERIOD of a simulated clock:
    rows in backoff wait while later rows become due (and must not overtake their thread)."""

    settings: Settings
    fake: FakeSlack
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    total: DeliveryReport = field(default_factory=DeliveryReport)
    passes: int = 0

    def deliver(self, timeout: float = CLIENT_TIMEOUT) -> DeliveryReport:
        self.passes += 1
        client = fast_client(self.settings, timeout=timeout, rate_limit_retries=1)
        report = deliver_due(self.settings, client, now=self.now)
        for name in ("sent", "updated", "logged", "retried", "failed", "possible_duplicates"):
            setattr(self.total, name, getattr(self.total, name) + getattr(report, name))
        self.fake.wait_idle()  # a hung request is carried out (as Slack would) before we go on
        self.now += PERIOD
        return report

    def during(self, period: timedelta, timeout: float = CLIENT_TIMEOUT) -> DeliveryReport:
        """The passes of a period of (simulated) time; what they did, summed."""
        summed = DeliveryReport()
        for _ in range(int(period / PERIOD)):
            report = self.deliver(timeout)
            for name in ("sent", "updated", "retried", "possible_duplicates"):
                setattr(summed, name, getattr(summed, name) + getattr(report, name))
        return summed


def _ops_message(settings: Settings, i: int) -> None:
    thread = i % CHANNEL_THREADS
    outbox.queue_notification(
        UnitOfWork(settings),
        NotificationIn(
            idempotency_key=f"incident-{thread}-timeline-{i:02d}",
            kind="info",
            subject=f"incident:{thread + 1}",
            target=OPS_CHANNEL,
            thread_key=f"incident-{thread}",
            text=f"incident {thread + 1} timeline entry {i:02d}",
        ),
        Actor(who="aims-notifier", channel="schedule"),
    )


def _decide_all(settings: Settings, request_ids: list[int], nth: int) -> None:
    """The `nth` approver of every request approves; the decision updates are queued."""
    for rid in request_ids:
        req = approvals.get_request(UnitOfWork(settings), rid)
        who = req.approvers[nth]
        approvals.decide(
            UnitOfWork(settings),
            DecisionIn(request_id=rid, person=who, outcome="approve"),
            Actor(who=who, channel="slack"),
        )
        queue_updates(settings, rid)


def _delivered(req: RecordedRequest) -> bool:
    return req.outcome in ("ok", "hang+ok")


def test_slack_outage_of_500_429_and_hangs_loses_nothing_and_keeps_thread_order(
    org: UnitOfWork, fake_slack: FakeSlack, reliability: Any
) -> None:
    settings = slack_settings(org.settings, fake_slack)
    fake_slack.add_channel(OPS_CHANNEL)
    flow = Actor(who="flow:stage-gate", channel="flow")
    rids = [
        approvals.create_request(
            UnitOfWork(settings),
            gate(idempotency_key=f"outage-gate-{g}", title=f"Deploy credit-scoring v2.{g}"),
            flow,
        ).id
        for g in range(GATES)
    ]

    # 09:00 Slack is fine: approval DMs and the first timeline entries are queued; the first
    # ten calls go through, then Slack answers 500 to everything.
    for rid in rids:
        queue_messages(settings, rid)
    for i in range(8):
        _ops_message(settings, i)
    run = Outage(settings, fake_slack)
    fake_slack.fail_with(500, times=None, after=10)
    first = run.deliver()
    assert first.sent > 0 and first.stopped and "errors in a row" in first.stopped

    # The 500s go on for 3 minutes; meanwhile reminders and timeline entries pile up.
    with UnitOfWork(settings) as uow:
        for rid in rids:
            outbox.queue_reminder(uow.session, rid, 1, settings.evidence_key_bytes())
        uow.commit()
    for i in range(8, 12):
        _ops_message(settings, i)
    assert run.during(timedelta(minutes=3)).sent == 0

    # Then a minute of 429s: one short Retry-After (the client sleeps 1 s and retries), then
    # long ones that stop each pass and leave the row waiting in the outbox. The first
    # approvals come in.
    fake_slack.clear_failures()
    fake_slack.rate_limit(retry_after=1, times=1)
    fake_slack.rate_limit(retry_after=30, times=None)
    _decide_all(settings, rids, 0)
    assert run.during(timedelta(minutes=1)).sent == 0

    # Then Slack hangs for 30 s: every chat call is carried out only after the client gave up
    # (which is how duplicates happen). The second approvals close every request.
    fake_slack.clear_failures()
    fake_slack.hang(HANG, times=None, methods={"chat.postMessage", "chat.update"})
    _decide_all(settings, rids, 1)
    for i in range(12, 16):
        _ops_message(settings, i)
    assert run.during(timedelta(seconds=30), timeout=HANG_TIMEOUT).possible_duplicates > 0

    # Recovery: the loop goes on every 15 s; rows in backoff go out as they come due.
    fake_slack.clear_failures()
    while run.passes < MAX_PASSES:
        run.deliver()
        if set(statuses(settings).values()) == {NotificationStatus.sent}:
            break
    assert set(statuses(settings).values()) == {NotificationStatus.sent}, statuses(settings)

    rows = outbox.list_notifications(UnitOfWork(settings), limit=1000)  # oldest first
    posts = [n for n in rows if n.updates_id is None]
    updates = [n for n in rows if n.updates_id is not None]
    by_id = {n.id: n for n in rows}
    threads = {n.thread_key for n in rows}
    assert len(rows) == GATES * 14 + CHANNEL_THREADS * 4 == 100
    assert (len(posts), len(updates), len(threads)) == (52, 48, GATES * 3 + CHANNEL_THREADS)
    assert run.total.sent + run.total.updated == 100  # each row delivered once, by the books

    calls = fake_slack.requests
    outcomes = Counter(r.outcome for r in calls)
    hung_posts = Counter(
        (r.params["channel"], r.params["text"])
        for r in calls
        if r.method == "chat.postMessage" and r.outcome == "hang+ok"
    )
    assert outcomes["http-500"] >= 6 and outcomes["http-429"] >= 3
    assert sum(hung_posts.values()) >= 2

    # None lost: every post is at Slack where its row says, every update applied to its post,
    # and each message ends as its thread's last update left it (approved, no buttons).
    messages = {(m.channel, m.ts): m for m in fake_slack.messages}
    for n in posts:
        msg = messages[(n.slack_channel, n.slack_ts)]
        versions = [v["text"] for v in msg.history] + [msg.text]
        mine = [u.text for u in updates if u.updates_id == n.id]
        collapsed = [t for i, t in enumerate(versions) if i == 0 or t != versions[i - 1]]
        assert collapsed == [n.text, *mine], (n.idempotency_key, versions)
        if n.request_id is not None:
            assert msg.actions() == [] and ": approved." in msg.text, msg.text

    # In order per thread: the first call that reached Slack for each row, in arrival order,
    # follows the rows' queue order within every thread.
    row_of: dict[tuple[str, ...], int] = {}
    for n in posts:
        row_of[("post", n.slack_channel or "", n.text)] = n.id
    for u in updates:
        original = by_id[u.updates_id or 0]
        row_of[("update", original.slack_channel or "", original.slack_ts or "", u.text)] = u.id
    arrived: dict[str, list[int]] = defaultdict(list)
    for r in calls:
        if not _delivered(r) or r.method not in ("chat.postMessage", "chat.update"):
            continue
        p = r.params
        key = (
            ("post", p["channel"], p["text"])
            if r.method == "chat.postMessage"
            else ("update", p["channel"], p["ts"], p["text"])
        )
        rid = row_of[key]
        seen = arrived[by_id[rid].thread_key]
        if rid not in seen:
            seen.append(rid)
    out_of_order = 0
    for thread in threads:
        expected = [n.id for n in rows if n.thread_key == thread]
        out_of_order += arrived[thread] != expected
    assert out_of_order == 0

    # Duplicates: messages no row points to. Each is a hung post carried out after the client
    # gave up (at most one per hung request); none come from the 500s or the 429s.
    tracked = {(n.slack_channel, n.slack_ts) for n in posts}
    orphans = Counter(
        (m.channel, m.text) for m in fake_slack.messages if (m.channel, m.ts) not in tracked
    )
    assert all(orphans[k] <= hung_posts[k] for k in orphans), (orphans, hung_posts)
    duplicates = sum(orphans.values())
    assert duplicates == sum(hung_posts.values()) == run.total.possible_duplicates
    assert len(fake_slack.messages) == len(posts) + duplicates

    reliability.record(
        "slack-outage",
        notifications=len(rows),
        threads=len(threads),
        delivered=run.total.sent + run.total.updated,
        lost=0,
        out_of_order=out_of_order,
        http_500=outcomes["http-500"],
        http_429=outcomes["http-429"],
        hung_requests=sum(1 for r in calls if r.outcome.startswith("hang+")),
        duplicates=duplicates,
        duplicates_reported=run.total.possible_duplicates,
        passes=run.passes,
    )


# --- 3. Engine killed mid-step -----------------------------------------------------------------

AIMS = Path(sys.executable).with_name("aims")  # the console script of this venv
ADD_EVIDENCE = (
    "evidence", "add", "--subject", "system:credit-scoring", "--kind", "vv-report",
    "--title", "Validation report v2", "--text", "V&V passed: AUC 0.81, drift none",
    "--json",
)  # fmt: skip
STEP_TIMEOUT = 60  # seconds any one `aims` process may take


@dataclass(frozen=True)
class ChainState:
    """Everything an evidence append touches: rows, audit events, head row and anchor."""

    records: int
    audit_events: int
    head: tuple[int, str]
    anchor: tuple[int, str] | None


def chain_state(settings: Settings) -> ChainState:
    with get_engine(settings.effective_database_url).connect() as conn:
        head = conn.execute(select(EvidenceHead.count, EvidenceHead.head)).one()
    anchor = ev.read_anchor(settings)
    return ChainState(
        records=count(settings, Evidence),
        audit_events=count(settings, AuditEvent),
        head=(head.count, head.head),
        anchor=(anchor.count, anchor.head) if anchor else None,
    )


def aims_step(
    tmp_path: Path, key: str, fault: str | None = None, ready: Path | None = None
) -> subprocess.Popen[str]:
    """`aims evidence add ... --idempotency-key KEY` as its own process (the test's database,
    from the AIMS_* environment the `settings` fixture exported), with a fault point armed."""
    env = dict(os.environ)
    if fault:
        env["AIMS_TEST_FAULT"] = fault
    if ready:
        env["AIMS_TEST_FAULT_READY"] = str(ready)
    return subprocess.Popen(
        [str(AIMS), *ADD_EVIDENCE, "--idempotency-key", key],
        cwd=tmp_path,  # no developer .env is read
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def completed_step(tmp_path: Path, key: str) -> dict[str, Any]:
    proc = aims_step(tmp_path, key)
    out, err = proc.communicate(timeout=STEP_TIMEOUT)
    assert proc.returncode == 0, err
    return json.loads(out)


def killed(proc: subprocess.Popen[str]) -> None:
    proc.communicate(timeout=STEP_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL, proc.returncode


def verified(run_cli: Any) -> dict[str, Any]:
    """`aims evidence verify --json`: exit 0 and intact, or the test fails with its reason."""
    result = run_cli("evidence", "verify", "--json")
    report = json.loads(result.output)
    assert result.exit_code == 0 and report["intact"], report
    return report


def appended_events(settings: Settings, key: str) -> int:
    with UnitOfWork(settings).read() as uow:
        events = uow.session.scalars(
            select(AuditEvent.details).where(AuditEvent.action == "evidence.appended")
        )
        return sum(1 for d in events if d.get("idempotency_key") == key)


@pytest.fixture
def chain(settings: Settings, actor: Actor) -> Settings:
    """Three records already on the chain, the anchor at the head."""
    for i in range(3):
        ev.append(
            settings,
            {"subject": "system:credit-scoring", "kind": "vv-report", "title": f"run {i}",
             "text": f"run {i}"},
            actor,
        )  # fmt: skip
    return settings


def test_killed_inside_the_evidence_transaction_leaves_no_half_record_and_the_retry_completes_once(
    chain: Settings, tmp_path: Path, run_cli: Any, reliability: Any
) -> None:
    key = "gate-credit-scoring-validation-vv-report"
    before = chain_state(chain)
    assert before.records == 3 and before.anchor == before.head

    # The step stops inside its transaction: record, audit event and new head written, not
    # committed. Nothing of it is visible; then it is SIGKILLed there.
    ready = tmp_path / "inside-the-transaction"
    proc = aims_step(tmp_path, key, fault="evidence-before-commit", ready=ready)
    deadline = time.monotonic() + STEP_TIMEOUT
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the step never reached the fault point"
        time.sleep(0.02)
    assert chain_state(chain) == before
    os.kill(proc.pid, signal.SIGKILL)
    killed(proc)

    # No half record: no row, no audit event, head and anchor where they were; it verifies.
    assert chain_state(chain) == before
    assert count(chain, Evidence, Evidence.idempotency_key == key) == 0
    assert verified(run_cli)["count"] == 3

    # The retry (a Prefect retry, an operator repeating the command) completes it; a second
    # retry writes nothing.
    started = time.monotonic()
    retry = completed_step(tmp_path, key)
    retry_seconds = time.monotonic() - started
    assert (retry["replayed"], retry["seq"]) == (False, 4)
    again = completed_step(tmp_path, key)
    assert (again["replayed"], again["id"], again["chain"]) == (True, retry["id"], retry["chain"])
    after = chain_state(chain)
    assert after.records == 4 and after.head == (4, retry["chain"]) == after.anchor
    assert count(chain, Evidence, Evidence.idempotency_key == key) == 1
    assert appended_events(chain, key) == 1
    assert verified(run_cli)["count"] == 4

    reliability.record(
        "killed-mid-step",
        fault_point="evidence-before-commit",
        killed=True,
        half_records=0,
        verify_after_kill="intact",
        retries=2,
        records_written=1,
        retry_seconds=round(retry_seconds, 2),
    )


def test_killed_after_commit_before_the_anchor_moves_verify_passes_and_the_retry_heals_it(
    chain: Settings, tmp_path: Path, run_cli: Any, reliability: Any
) -> None:
    key = "gate-credit-scoring-validation-vv-report"
    before = chain_state(chain)

    # SIGKILL (by itself) right after the commit: the anchor outside the database lags.
    killed(aims_step(tmp_path, key, fault="evidence-before-anchor"))
    after = chain_state(chain)
    assert (after.records, after.head[0]) == (4, 4)
    assert after.audit_events == before.audit_events + 1
    assert after.anchor == before.anchor  # not moved
    report = verified(run_cli)  # the database ahead of its anchor is accepted
    assert (report["count"], report["anchor_count"]) == (4, 3)

    # The retry writes nothing new and moves the anchor up to the head.
    retry = completed_step(tmp_path, key)
    assert (retry["replayed"], retry["seq"]) == (True, 4)
    healed = chain_state(chain)
    assert healed.anchor == healed.head == after.head
    assert healed.records == 4 and appended_events(chain, key) == 1
    report = verified(run_cli)
    assert (report["count"], report["anchor_count"]) == (4, 4)

    reliability.record(
        "killed-mid-step",
        fault_point="evidence-before-anchor",
        killed=True,
        half_records=0,
        verify_after_kill="intact",
        anchor_lag_healed=True,
        records_written=1,
    )


# --- 4. Database unavailable -------------------------------------------------------------------

INTAKE_TOKEN = "intake-" + "r" * 40
AUTH = {"Authorization": f"Bearer {INTAKE_TOKEN}"}
OUTAGE_ANSWER_SECONDS = 10  # a request while the database is down is answered within this


def report_incident(fingerprint: str, title: str) -> dict[str, Any]:
    return {
        "system": "credit-scoring",
        "severity": "SEV3",
        "category": "data-issue",
        "title": title,
        "summary": "Upstream CRM export dropped the income column for one region.",
        "fingerprint": fingerprint,
    }


def intake_footprint(settings: Settings) -> dict[str, int]:
    return {
        m.__tablename__: count(settings, m)
        for m in (Incident, IncidentEvent, Notification, AuditEvent)
    }


@pytest.fixture(scope="module")
def private_db(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrivateCluster, Settings]]:
    """The AIMS database (demo organisation) alone on a private PostgreSQL cluster, shared by
    this module's outage tests (each stops and restarts it; their incidents differ)."""
    actor = Actor(who="tester@example.org", channel="test")
    with private_cluster() as cluster:
        admin = create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE aims"))
        admin.dispose()
        data = tmp_path_factory.mktemp("private-db")
        (data / "evidence.key").write_text("test-key-private-cluster\n")
        settings = Settings(
            data_dir=data, database_url=cluster.url("aims"), intake_token=SecretStr(INTAKE_TOKEN)
        )
        initialise(settings, actor)
        load_demo(UnitOfWork(settings), actor)
        try:
            yield cluster, settings
        finally:
            dispose_engine(settings.effective_database_url)


@pytest.mark.postgres
@pytest.mark.parametrize("stop_mode", ["fast", "immediate"])
def test_intake_answers_503_while_postgresql_is_down_and_records_the_retry_once_after(
    private_db: tuple[PrivateCluster, Settings],
    start: StartRecorder,
    stop_mode: StopMode,
    reliability: Any,
) -> None:
    cluster, settings = private_db
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        first = client.post(
            "/incidents", headers=AUTH, json=report_incident(f"{stop_mode}-1", "Up")
        )
        assert first.status_code == 201, first.text
        assert client.get("/healthz").status_code == 200
        before = intake_footprint(settings)

        cluster.stop(stop_mode)
        fingerprint = f"{stop_mode}-2"
        body = report_incident(fingerprint, "Income field empty for 4% of applications")
        started = time.monotonic()
        down = client.post("/incidents", headers=AUTH, json=body)
        answer_seconds = time.monotonic() - started
        assert down.status_code == 503, down.text
        error = down.json()["error"]
        assert "database is unavailable" in error and "retry" in error, error
        assert "Traceback" not in down.text and "psycopg" not in down.text
        assert down.headers.get("Retry-After")
        assert answer_seconds < OUTAGE_ANSWER_SECONDS
        alert = firing_webhook(
            {"alertname": "IncomeFieldEmpty", "ai_system": "credit-scoring", "severity": "SEV3"},
            {"summary": "income field empty"},
            f"{stop_mode}-alert",
        )
        alertmanager = client.post("/alertmanager", headers=AUTH, json=alert)
        assert alertmanager.status_code == 503, alertmanager.text  # Alertmanager retries a 5xx
        health_down = client.get("/healthz")
        assert health_down.status_code == 503, health_down.text

        # The same app object, no restart: the database is back.
        cluster.start()
        assert intake_footprint(settings) == before  # nothing half-written during the outage
        health_up = client.get("/healthz")
        assert health_up.status_code == 200, health_up.text
        retried = client.post("/incidents", headers=AUTH, json=body)
        assert retried.status_code == 201, retried.text
        repeat = client.post("/incidents", headers=AUTH, json=body)  # the caller retries again
        assert repeat.status_code == 200 and repeat.json()["attached"] is True, repeat.text

    incident_id = retried.json()["incident_id"]
    assert repeat.json()["incident_id"] == incident_id
    recorded = count(settings, Incident, Incident.fingerprint == fingerprint)
    assert recorded == 1
    assert count(settings, Incident) == before["incident"] + 1
    assert len(start.calls) == 2  # one playbook run per incident, none for the outage or repeat

    reliability.record(
        "database-unavailable",
        stop_mode=stop_mode,
        status_while_down=down.status_code,
        answer_ms_while_down=round(answer_seconds * 1000),
        healthz=f"{health_down.status_code} → {health_up.status_code}",
        status_after_restart=retried.status_code,
        half_written=0,
        incidents_recorded=recorded,
        app_restarted=False,
    )
