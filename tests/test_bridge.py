"""The Slack bridge: signed clicks over HTTP and envelopes over Socket Mode become decisions.

Every click here is a real, correctly signed `block_actions` request (tests/fakes/slack_signing)
posted to the FastAPI app in process, or a Socket Mode envelope sent by a local websocket server
(tests/fakes/socket_mode_server) to slack-sdk's own SocketModeClient; on SQLite and PostgreSQL.
Nothing reaches slack.com. Prefect is not involved: the resume step is injected and recorded (the
real one is exercised by the end-to-end tests).

The demo organisation's gate on credit-scoring: ds.lead (U0DEMO006) asks; compliance (U0DEMO003),
ethics (U0DEMO007) and credit.owner (U0DEMO004) may decide; governance (U0DEMO002) may not.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from fakes.slack_api import FakeSlack, fake_slack, slack_settings
from fakes.slack_signing import block_actions_payload, encode_interaction, sign, signed_interaction
from fakes.socket_mode_server import FakeSocketModeServer
from fastapi.testclient import TestClient
from records import count
from sqlalchemy import select
from typer.testing import CliRunner

from aims_core.cli import bridge_cmd
from aims_core.cli._base import AimsGroup
from aims_core.db import dispose_engine, session_factory
from aims_core.models import ApprovalRequest, ApprovalStatus, AuditEvent, Decision, Outcome
from aims_core.services import approvals, outbox
from aims_core.services.demo import load_demo
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork
from notifications import interactions
from notifications.app import MAX_BODY_BYTES, create_app
from notifications.fake_slack import TEAM_ID
from notifications.slack import deliver_due
from notifications.socket_mode import SocketModeBridge

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
COMPLIANCE, ETHICS, CREDIT_OWNER = "U0DEMO003", "U0DEMO007", "U0DEMO004"
GOVERNANCE, REQUESTER, NOBODY = "U0DEMO002", "U0DEMO006", "U0NOBODY99"
RUN_ID = "7d0a3bd6-0f8e-4d55-9a43-3c3e0f7c1a11"

__all__ = ["fake_slack"]  # the fixture, imported for this module's tests


# --- fixtures and helpers ----------------------------------------------------------------------


class ResumeRecorder:
    """Stands in for `resume_through_prefect`: records each call, resumes nothing."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, settings: Settings, request_id: int) -> str:
        with self.lock:
            self.calls.append(request_id)
        return "recorded"


@pytest.fixture
def bridge_settings(settings: Settings, actor: Actor, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test database with the demo org, and a signing secret and the workspace's team id
    from the environment."""
    monkeypatch.setenv("AIMS_SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("AIMS_SLACK_TEAM_ID", TEAM_ID)
    s = Settings(data_dir=settings.data_dir, database_url=settings.database_url)
    assert s.slack_signing_secret is not None
    load_demo(UnitOfWork(s), actor)
    return s


@pytest.fixture
def resume() -> ResumeRecorder:
    return ResumeRecorder()


@pytest.fixture
def client(bridge_settings: Settings, resume: ResumeRecorder) -> Iterator[TestClient]:
    with TestClient(create_app(bridge_settings, resume=resume)) as c:
        yield c


def make_request(settings: Settings, quorum: int = 1, key: str = "gate-1") -> int:
    """A gate on credit-scoring asked by ds.lead, attached to a (pretend) waiting run."""
    out = approvals.create_request(
        UnitOfWork(settings),
        approvals.ApprovalRequestIn(
            idempotency_key=key,
            subject="gate:credit-scoring:validation-deployment",
            activity="stage-gate",
            system="credit-scoring",
            title="Deploy credit-scoring v2 to production",
            approver_roles=["compliance-officer", "ethics-committee", "governance-lead"],
            quorum=quorum,
            requester="ds.lead@northwind.example",
            deadline=datetime.now(UTC) + timedelta(days=3),
            flow_run_id=RUN_ID,
        ),
        Actor(who="flow", channel="flow"),
    )
    return out.id


def decisions(settings: Settings) -> list[Decision]:
    with session_factory(settings.effective_database_url)() as s:
        return list(s.scalars(select(Decision).order_by(Decision.id)))


def audits(settings: Settings, action: str) -> list[AuditEvent]:
    with session_factory(settings.effective_database_url)() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def request_row(settings: Settings, request_id: int) -> ApprovalRequest:
    with session_factory(settings.effective_database_url)() as s:
        row = s.get(ApprovalRequest, request_id)
        assert row is not None
        return row


def click(
    client: TestClient,
    user: str,
    request_id: int | str,
    action: str = "approve",
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    **payload_changes: Any,
) -> httpx.Response:
    payload = block_actions_payload(user, request_id, action, **payload_changes)  # type: ignore[arg-type]
    body, headers = signed_interaction(secret, payload, timestamp)
    return client.post("/slack/interactions", content=body, headers=headers)


def post_signed_body(client: TestClient, body: bytes) -> httpx.Response:
    ts = int(time.time())
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sign(SECRET, body, ts),
    }
    return client.post("/slack/interactions", content=body, headers=headers)


# --- HTTP: decisions ---------------------------------------------------------------------------


def test_signed_click_from_an_approver_commits_one_decision(
    client: TestClient, bridge_settings: Settings, resume: ResumeRecorder
) -> None:
    rid = make_request(bridge_settings)

    response = click(client, COMPLIANCE, rid)

    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral"
    assert f"#{rid} is approved" in response.json()["text"]
    (d,) = decisions(bridge_settings)
    assert (d.request_id, d.outcome, d.channel, d.actor) == (
        rid,
        Outcome.approve,
        "slack",
        f"slack:{COMPLIANCE}",
    )
    row = request_row(bridge_settings, rid)
    assert row.status is ApprovalStatus.approved
    # The run is resumed afterwards, in the background, with this request; the injected resume
    # leaves `resume_pending` set, as the real one does when Prefect cannot be reached.
    assert resume.calls == [rid]
    assert row.resume_pending is True
    (event,) = audits(bridge_settings, "approval.decided")
    assert (event.actor, event.channel) == (f"slack:{COMPLIANCE}", "slack")


def test_the_same_click_three_times_is_one_decision_and_one_resume(
    client: TestClient, bridge_settings: Settings, resume: ResumeRecorder
) -> None:
    rid = make_request(bridge_settings)
    payload = block_actions_payload(COMPLIANCE, rid)
    body, headers = signed_interaction(SECRET, payload)

    answers = [client.post("/slack/interactions", content=body, headers=headers) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert "already recorded" in answers[1].json()["text"]
    assert count(bridge_settings, Decision) == 1
    assert len(audits(bridge_settings, "approval.decided")) == 1
    assert resume.calls == [rid]


def test_a_reject_click_decides_nothing_and_without_a_modal_says_how_else_to_reject(
    client: TestClient, bridge_settings: Settings, resume: ResumeRecorder
) -> None:
    """Reject opens a modal asking why (tests/test_slack_modals.py records the typed reason);
    with no bot token to open it, the clicker is told the other channels, and nothing is
    decided (a rejection is never recorded without its reason)."""
    rid = make_request(bridge_settings, quorum=2)

    response = click(client, ETHICS, rid, "reject")

    assert response.status_code == 200
    text = response.json()["text"]
    assert "Nothing is recorded yet" in text
    assert f'`aims reject {rid} --as ethics@northwind.example --comment "why"`' in text
    assert decisions(bridge_settings) == []
    assert request_row(bridge_settings, rid).status is ApprovalStatus.open
    assert resume.calls == []


def test_quorum_two_of_three_through_two_clicks(
    client: TestClient, bridge_settings: Settings, resume: ResumeRecorder
) -> None:
    rid = make_request(bridge_settings, quorum=2)

    first = click(client, COMPLIANCE, rid)
    assert first.status_code == 200
    assert "1 of 2 approvals so far" in first.json()["text"]
    assert request_row(bridge_settings, rid).status is ApprovalStatus.open
    assert resume.calls == []  # a partial quorum leaves the run waiting

    second = click(client, CREDIT_OWNER, rid)
    assert second.status_code == 200
    assert "approved (2 of 2)" in second.json()["text"]
    assert request_row(bridge_settings, rid).status is ApprovalStatus.approved
    assert resume.calls == [rid]
    assert {d.actor for d in decisions(bridge_settings)} == {
        f"slack:{COMPLIANCE}",
        f"slack:{CREDIT_OWNER}",
    }

    # The third approver is too late: refused with a reason, nothing written, no second resume.
    late = click(client, ETHICS, rid)
    assert late.status_code == 200
    assert "no longer open" in late.json()["text"]
    assert count(bridge_settings, Decision) == 2
    assert resume.calls == [rid]


def test_changing_ones_mind_is_refused(client: TestClient, bridge_settings: Settings) -> None:
    rid = make_request(bridge_settings, quorum=2)
    assert click(client, COMPLIANCE, rid).status_code == 200

    response = click(client, COMPLIANCE, rid, "reject")

    assert response.status_code == 200
    assert "cannot be changed" in response.json()["text"]
    (d,) = decisions(bridge_settings)
    assert d.outcome is Outcome.approve


def test_clicks_on_buttons_that_are_not_ours_are_ignored(
    client: TestClient, bridge_settings: Settings, resume: ResumeRecorder
) -> None:
    rid = make_request(bridge_settings)
    other = click(client, COMPLIANCE, rid, action_id="some_other_button")
    shortcut = post_signed_body(
        client, encode_interaction({"type": "shortcut", "user": {"id": COMPLIANCE}})
    )

    assert (other.status_code, other.content) == (200, b"")
    assert (shortcut.status_code, shortcut.content) == (200, b"")
    assert count(bridge_settings, Decision) == 0
    assert count(bridge_settings, AuditEvent, AuditEvent.action.like("approval.%")) == 1
    assert resume.calls == []


# --- HTTP: refused, nothing decided ------------------------------------------------------------


def _forged(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body, headers | {"X-Slack-Signature": "v0=" + "0" * 64}


def _wrong_secret(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    ts = int(headers["X-Slack-Request-Timestamp"])
    return body, headers | {"X-Slack-Signature": sign("not-the-secret", body, ts)}


def _resigned_at(offset: int):  # type: ignore[no-untyped-def]
    def change(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        ts = int(time.time()) + offset
        return body, headers | {
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sign(SECRET, body, ts),
        }

    return change


def _tampered(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    # Signed for compliance, then the user id is swapped for governance's.
    return body.replace(COMPLIANCE.encode(), GOVERNANCE.encode()), headers


def _without(*names: str):  # type: ignore[no-untyped-def]
    def change(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        return body, {k: v for k, v in headers.items() if k not in names}

    return change


def _timestamp_not_a_number(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body, headers | {"X-Slack-Request-Timestamp": "yesterday"}


def _replayed_with_new_timestamp(
    body: bytes, headers: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    # An old click with a fresh timestamp but its old signature.
    return body, headers | {"X-Slack-Request-Timestamp": str(int(time.time()) + 1)}


@pytest.mark.parametrize(
    "change",
    [
        _forged,
        _wrong_secret,
        _resigned_at(-6 * 60),  # stale: older than Slack's 5 minutes
        _resigned_at(6 * 60),  # from the future
        _tampered,
        _without("X-Slack-Signature"),
        _without("X-Slack-Request-Timestamp"),
        _without("X-Slack-Signature", "X-Slack-Request-Timestamp"),
        _timestamp_not_a_number,
        _replayed_with_new_timestamp,
    ],
    ids=[
        "forged",
        "wrong-secret",
        "stale",
        "future",
        "tampered",
        "no-signature",
        "no-timestamp",
        "no-headers",
        "timestamp-not-a-number",
        "replayed",
    ],
)
def test_bad_signatures_are_refused_with_nothing_written(
    client: TestClient, bridge_settings: Settings, resume: ResumeRecorder, change: Any
) -> None:
    rid = make_request(bridge_settings)
    body, headers = signed_interaction(
        SECRET, block_actions_payload(COMPLIANCE, rid), int(time.time()) - 2
    )
    events_before = count(bridge_settings, AuditEvent)
    body, headers = change(body, headers)

    response = client.post("/slack/interactions", content=body, headers=headers)

    assert response.status_code == 401
    assert count(bridge_settings, Decision) == 0
    assert count(bridge_settings, AuditEvent) == events_before
    assert request_row(bridge_settings, rid).status is ApprovalStatus.open
    assert resume.calls == []


def test_a_signature_just_inside_the_window_is_accepted(
    client: TestClient, bridge_settings: Settings
) -> None:
    rid = make_request(bridge_settings)
    assert click(client, COMPLIANCE, rid, timestamp=int(time.time()) - 4 * 60).status_code == 200
    assert count(bridge_settings, Decision) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"payload=",
        b"payload=not-json",
        b"payload=%5B1%2C2%5D",  # a JSON array
        b"text=hello",  # no payload field
        encode_interaction({"type": "block_actions"}) + b"&payload=%7B%7D",  # two payloads
        encode_interaction({"type": "block_actions", "actions": [{"action_id": "aims_approve"}]}),
        encode_interaction({"no": "type"}),
    ],
    ids=[
        "empty",
        "empty-payload",
        "not-json",
        "json-array",
        "no-payload-field",
        "two-payloads",
        "no-user",
        "no-type",
    ],
)
def test_malformed_payloads_are_400_with_nothing_written(
    client: TestClient, bridge_settings: Settings, body: bytes
) -> None:
    make_request(bridge_settings)
    events_before = count(bridge_settings, AuditEvent)

    response = post_signed_body(client, body)

    assert response.status_code == 400
    assert count(bridge_settings, Decision) == 0
    assert count(bridge_settings, AuditEvent) == events_before


def test_a_body_that_is_not_utf8_cannot_be_verified(
    client: TestClient, bridge_settings: Settings
) -> None:
    # Slack's bodies are URL-encoded ASCII; slack-sdk's verifier cannot read anything else.
    assert post_signed_body(client, b"payload=\xff\xfe").status_code == 401
    assert count(bridge_settings, Decision) == 0


@pytest.mark.parametrize(
    ("value", "team"),
    [
        ("abc", TEAM_ID),
        ("-1", TEAM_ID),
        ("1; drop", TEAM_ID),
        ("", TEAM_ID),
        ("2147483648", TEAM_ID),
        ("9" * 30, TEAM_ID),
        ("1", None),
    ],
    ids=[
        "value-not-int",
        "value-negative",
        "value-injected",
        "value-empty",
        "value-past-integer",
        "value-huge",
        "no-team",
    ],
)
def test_untrustworthy_button_values_and_missing_team_are_400(
    client: TestClient, bridge_settings: Settings, value: str, team: str | None
) -> None:
    rid = make_request(bridge_settings)
    payload = block_actions_payload(COMPLIANCE, value if value != "1" else rid, team_id=team)
    events_before = count(bridge_settings, AuditEvent)

    response = post_signed_body(client, encode_interaction(payload))

    assert response.status_code == 400
    assert count(bridge_settings, Decision) == 0
    assert count(bridge_settings, AuditEvent) == events_before


@pytest.mark.parametrize(
    ("user", "request_offset", "reason", "text"),
    [
        (COMPLIANCE, 10_000, "unknown-request", "there is no approval request"),
        (GOVERNANCE, 0, "not-eligible", "not one of the approvers"),
        (REQUESTER, 0, "requester", "someone else must decide it"),
        (NOBODY, 0, "unknown-person", "not linked to a person"),
    ],
)
def test_refused_clicks_answer_200_with_why_and_decide_nothing(
    client: TestClient,
    bridge_settings: Settings,
    resume: ResumeRecorder,
    user: str,
    request_offset: int,
    reason: str,
    text: str,
) -> None:
    rid = make_request(bridge_settings)
    target = rid + request_offset

    response = click(client, user, target)

    # Slack shows any non-200 as an error: the refusal is a 200 whose text says why.
    assert response.status_code == 200
    assert response.json()["text"].startswith("Not recorded:")
    assert text in response.json()["text"]
    assert count(bridge_settings, Decision) == 0
    assert request_row(bridge_settings, rid).status is ApprovalStatus.open
    assert resume.calls == []
    (event,) = audits(bridge_settings, "approval.refused")
    assert event.details["reason"] == reason
    assert (event.actor, event.channel) == (f"slack:{user}", "slack")
    assert event.subject == f"approval:{target}"


def test_no_signing_secret_is_503_and_says_what_to_set(
    settings: Settings, resume: ResumeRecorder
) -> None:
    assert settings.slack_signing_secret is None
    with TestClient(create_app(settings, resume=resume)) as c:
        body, headers = signed_interaction(SECRET, block_actions_payload(COMPLIANCE, 1))
        response = c.post("/slack/interactions", content=body, headers=headers)
    assert response.status_code == 503
    assert "AIMS_SLACK_SIGNING_SECRET" in response.json()["error"]


def test_an_oversized_body_is_refused_before_verification(
    client: TestClient, bridge_settings: Settings
) -> None:
    body = b"payload=" + b"x" * MAX_BODY_BYTES
    ts = int(time.time())
    headers = {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sign(SECRET, body, ts)}
    response = client.post("/slack/interactions", content=body, headers=headers)
    assert response.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b"x" * 1024

    response = client.post("/slack/interactions", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert count(bridge_settings, Decision) == 0


def test_a_database_failure_is_not_acknowledged(
    bridge_settings: Settings, resume: ResumeRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No 200 without a commit: Slack shows the clicker an error and nothing is half-done."""
    rid = make_request(bridge_settings)

    def database_down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr("notifications.app.handle_interaction", database_down)
    app = create_app(bridge_settings, resume=resume)
    with TestClient(app, raise_server_exceptions=False) as c:
        response = click(c, COMPLIANCE, rid)
    assert response.status_code == 500
    assert count(bridge_settings, Decision) == 0
    assert resume.calls == []


# --- health ------------------------------------------------------------------------------------


def test_healthz_checks_the_database(settings: Settings) -> None:
    with TestClient(create_app(settings)) as c:
        response = c.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"ok": True, "database": "ok"})


def test_healthz_is_503_without_a_usable_database(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    closed = _free_port()
    cases = {
        # SQLite whose directory cannot exist (its parent is a file)
        f"sqlite:///{tmp_path / 'a-file' / 'aims.db'}": "unreachable",
        # PostgreSQL on a port nobody listens on
        f"postgresql+psycopg://postgres@127.0.0.1:{closed}/aims": "unreachable",
        # A database that was never initialised
        f"sqlite:///{tmp_path / 'empty.db'}": "not initialised (run `aims init`)",
    }
    for url, state in cases.items():
        with TestClient(create_app(Settings(data_dir=tmp_path, database_url=url))) as c:
            response = c.get("/healthz")
        assert (response.status_code, response.json()) == (503, {"ok": False, "database": state})
        dispose_engine(url)


# --- the follow-up after the answer ------------------------------------------------------------


def test_follow_up_failures_never_undo_or_hide_the_decision(
    bridge_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_resume(settings: Settings, request_id: int) -> None:
        raise RuntimeError("Prefect is down")

    rid = make_request(bridge_settings)
    with TestClient(create_app(bridge_settings, resume=broken_resume)) as c:
        response = click(c, COMPLIANCE, rid)
    assert response.status_code == 200
    assert count(bridge_settings, Decision) == 1
    # The reconciler finds it: decided, a run attached, not resumed.
    assert [r.id for r in approvals.pending_resumes(UnitOfWork(bridge_settings))] == [rid]


def test_clicks_update_the_slack_messages_through_the_outbox(
    bridge_settings: Settings, fake_slack: FakeSlack, resume: ResumeRecorder
) -> None:
    """The background follow-up: the clicker's message shows the progress, the decided request's
    messages lose their buttons, and the clicker is answered privately (chat.postEphemeral)."""
    s = slack_settings(bridge_settings, fake_slack)
    rid = make_request(s, quorum=2)
    with UnitOfWork(s) as uow:
        outbox.queue_approval_messages(uow.session, rid, s.evidence_key_bytes())
        uow.commit()
    assert deliver_due(s).sent == 3
    posted = {m.channel: m for m in fake_slack.messages}
    dm = {u: fake_slack.dm_channel(u) for u in (COMPLIANCE, CREDIT_OWNER, ETHICS)}
    assert set(posted) == set(dm.values())

    def click_in_slack(c: TestClient, user: str) -> httpx.Response:
        channel = dm[user]
        assert channel is not None
        ts = posted[channel].ts
        return click(c, user, rid, channel_id=channel, message_ts=ts)

    with TestClient(create_app(s, resume=resume)) as c:
        assert click_in_slack(c, COMPLIANCE).status_code == 200
        first = fake_slack.message(dm[COMPLIANCE] or "", posted[dm[COMPLIANCE]].ts)
        assert first.updates == 1  # "waiting for 1 more approval"
        assert fake_slack.message(dm[ETHICS] or "", posted[dm[ETHICS]].ts).updates == 0
        assert resume.calls == []

        assert click_in_slack(c, CREDIT_OWNER).status_code == 200

    assert resume.calls == [rid]
    for msg in fake_slack.messages:
        assert msg.actions() == []  # nobody can click a stale button
    ephemeral = fake_slack.calls("chat.postEphemeral")
    assert [(e.params["channel"], e.params["user"]) for e in ephemeral] == [
        (dm[COMPLIANCE], COMPLIANCE),
        (dm[CREDIT_OWNER], CREDIT_OWNER),
    ]
    assert "1 of 2 approvals so far" in ephemeral[0].params["text"]


# --- Socket Mode -------------------------------------------------------------------------------


@pytest.fixture
def socket_server() -> Iterator[FakeSocketModeServer]:
    with FakeSocketModeServer() as server:
        yield server


@pytest.fixture
def socket_bridge(
    bridge_settings: Settings, socket_server: FakeSocketModeServer, resume: ResumeRecorder
) -> Iterator[SocketModeBridge]:
    s = bridge_settings.model_copy(
        update={"slack_app_token": _secret("xapp-1-A0AIMSAPP-1-test"), "slack_signing_secret": None}
    )
    bridge = SocketModeBridge(s, api_base_url=socket_server.api_base_url, resume=resume)
    bridge.connect()
    socket_server.wait_connected()
    yield bridge
    # Closing from the server's side first (and waiting until the client saw it) spares
    # slack-sdk's client its 3 s receive timeout on close.
    bridge.client.auto_reconnect_enabled = False
    socket_server.drop_connections()
    _wait_for(lambda: not bridge.client.is_connected(), timeout=5)
    bridge.close()


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def test_socket_mode_decision_is_committed_before_the_ack_and_once_only(
    socket_bridge: SocketModeBridge,
    socket_server: FakeSocketModeServer,
    bridge_settings: Settings,
    resume: ResumeRecorder,
) -> None:
    rid = make_request(bridge_settings)
    seen_at_ack: list[int] = []

    def at_ack(message: dict[str, Any]) -> None:
        if "envelope_id" in message:  # look at the database the moment the ack arrives
            seen_at_ack.append(count(bridge_settings, Decision))

    socket_server.on_client_message = at_ack
    payload = block_actions_payload(CREDIT_OWNER, rid)

    eid = socket_server.send_interactive(payload)
    ack = socket_server.wait_for_ack(eid)

    assert ack == {"envelope_id": eid}
    assert seen_at_ack == [1]  # committed before Slack was told
    assert socket_server.connections_opened == 1
    assert socket_server.api_requests[0]["authorization"] == "Bearer xapp-1-A0AIMSAPP-1-test"
    (d,) = decisions(bridge_settings)
    assert (d.channel, d.actor, d.outcome) == ("slack", f"slack:{CREDIT_OWNER}", Outcome.approve)

    # At-least-once delivery: the same envelope again, and the same click in a new envelope.
    socket_server.send_interactive(payload, envelope_id=eid)
    socket_server.wait_for_ack(eid, count=2)
    again = socket_server.send_interactive(payload)
    socket_server.wait_for_ack(again)

    assert count(bridge_settings, Decision) == 1
    assert len(audits(bridge_settings, "approval.decided")) == 1
    _wait_for(lambda: resume.calls == [rid])
    time.sleep(0.2)
    assert resume.calls == [rid]


def test_socket_mode_refusals_are_acked_and_decide_nothing(
    socket_bridge: SocketModeBridge,
    socket_server: FakeSocketModeServer,
    bridge_settings: Settings,
) -> None:
    rid = make_request(bridge_settings)
    for user in (GOVERNANCE, REQUESTER, NOBODY):
        eid = socket_server.send_interactive(block_actions_payload(user, rid))
        socket_server.wait_for_ack(eid)
    malformed = socket_server.send_interactive({"type": "block_actions", "user": {}})
    socket_server.wait_for_ack(malformed)  # retrying cannot help: acked, nothing written

    assert count(bridge_settings, Decision) == 0
    reasons = sorted(e.details["reason"] for e in audits(bridge_settings, "approval.refused"))
    assert reasons == ["not-eligible", "requester", "unknown-person"]


def test_socket_mode_leaves_the_envelope_unacked_when_the_database_fails(
    socket_bridge: SocketModeBridge,
    socket_server: FakeSocketModeServer,
    bridge_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rid = make_request(bridge_settings)

    def database_down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr("notifications.socket_mode.handle_interaction", database_down)
    payload = block_actions_payload(COMPLIANCE, rid)
    eid = socket_server.send_interactive(payload)
    with pytest.raises(TimeoutError):
        socket_server.wait_for_ack(eid, timeout=1.0)

    # Slack redelivers; by then the database is back.
    monkeypatch.setattr(
        "notifications.socket_mode.handle_interaction", interactions.handle_interaction
    )
    socket_server.send_interactive(payload, envelope_id=eid)
    socket_server.wait_for_ack(eid)
    assert count(bridge_settings, Decision) == 1


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# --- `aims bridge` as a real process -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bridge_process_serves_signed_clicks_and_socket_mode(
    bridge_settings: Settings, socket_server: FakeSocketModeServer
) -> None:
    """The bridge function as users run it: uvicorn on a port plus Socket Mode, one process."""
    rid = make_request(bridge_settings, quorum=2)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env |= {
        "AIMS_DATA_DIR": str(bridge_settings.data_dir),
        "AIMS_DATABASE_URL": bridge_settings.effective_database_url,
        "AIMS_SLACK_SIGNING_SECRET": SECRET,
        "AIMS_SLACK_APP_TOKEN": "xapp-1-A0AIMSAPP-1-test",
        "AIMS_SLACK_API_URL": socket_server.api_base_url,
        # The real resume would ask a Prefect API: point it at a closed port, so it defers.
        "PREFECT_API_URL": f"http://127.0.0.1:{_free_port()}/api",
    }
    code = f"from aims_core.cli.bridge_cmd import bridge; bridge(host='127.0.0.1', port={port})"
    log_path = bridge_settings.data_dir / "bridge.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env | {"PREFECT_HOME": str(bridge_settings.data_dir / "prefect")},
            cwd=bridge_settings.data_dir,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _healthy(base) or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, log_path.read_text()
        body, headers = signed_interaction(SECRET, block_actions_payload(COMPLIANCE, rid))
        with httpx.Client(trust_env=False, timeout=10) as http:
            started = time.monotonic()
            response = http.post(f"{base}/slack/interactions", content=body, headers=headers)
            elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert elapsed < 3  # within Slack's 3 seconds
        socket_server.wait_connected(timeout=30)
        eid = socket_server.send_interactive(block_actions_payload(ETHICS, rid))
        socket_server.wait_for_ack(eid, timeout=30)
        assert {d.actor for d in decisions(bridge_settings)} == {
            f"slack:{COMPLIANCE}",
            f"slack:{ETHICS}",
        }
        assert request_row(bridge_settings, rid).status is ApprovalStatus.approved
    except BaseException:
        print(log_path.read_text(errors="replace"))
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _healthy(base: str) -> bool:
    try:
        with httpx.Client(trust_env=False, timeout=1) as http:
            return http.get(f"{base}/healthz").json() == {"ok": True, "database": "ok"}
    except (httpx.HTTPError, json.JSONDecodeError):
        return False


def test_bridge_command_options_and_a_refused_app_token(
    settings: Settings, socket_server: FakeSocketModeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = typer.Typer(cls=AimsGroup)
    app.command("bridge")(bridge_cmd.bridge)
    app.command("other")(lambda: None)  # a group, as in `aims`
    runner = CliRunner()
    help_text = runner.invoke(app, ["bridge", "--help"]).output
    assert "--host" in help_text and "--port" in help_text and "3000" in help_text

    monkeypatch.setenv("AIMS_SLACK_APP_TOKEN", "xoxb-not-an-app-token")
    monkeypatch.setenv("AIMS_SLACK_API_URL", socket_server.api_base_url)
    result = runner.invoke(app, ["bridge", "--port", str(_free_port())])
    assert result.exit_code == 2
    assert "not_allowed_token_type" in result.output
    assert "xapp-" in result.output
