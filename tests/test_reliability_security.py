"""Reliability suite, issue 9, promises 6 (forged Slack requests), 7 (authorisation) and 10
(secrets), on SQLite and PostgreSQL.

Everything is real: the bridge's FastAPI app (in process, TestClient) with slack-sdk's signature
verifier, the approval service and its CLI, the Prefect UI form's decision step, the intake
routes, the fake Slack Web API on 127.0.0.1, and for the log files the HTTP app started as
`aims up` starts it. Builds on tests/test_bridge.py (signing, clicks, the bridge fixtures),
tests/test_approvals.py and tests/test_intake.py rather than repeating their single cases.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fakes.slack_api import FakeSlack, fake_slack, slack_settings
from fakes.slack_signing import block_actions_payload, encode_interaction, sign
from fakes.socket_mode_server import FakeSocketModeServer
from fastapi.testclient import TestClient
from pydantic import SecretStr
from records import count
from sqlalchemy import text
from test_approvals import audits, person_id
from test_bridge import (
    COMPLIANCE,
    CREDIT_OWNER,
    ETHICS,
    GOVERNANCE,
    NOBODY,
    REQUESTER,
    SECRET,
    ResumeRecorder,
    bridge_settings,
    click,
    client,
    make_request,
    resume,
)
from test_intake import TOKEN, webhook

from aims_core.approval_codes import personal_code
from aims_core.db import get_engine
from aims_core.messages import APPROVE_ACTION_ID, REJECT_ACTION_ID
from aims_core.models import Base, Decision, Incident
from aims_core.services import approvals
from aims_core.services.demo import load_demo
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork
from notifications.app import MAX_BODY_BYTES, create_app
from notifications.fake_slack import TEAM_ID

# Fixtures imported for this module's tests.
__all__ = ["bridge_settings", "client", "fake_slack", "resume"]

D = "@northwind.example"
EMAIL = {
    COMPLIANCE: f"compliance{D}",
    ETHICS: f"ethics{D}",
    CREDIT_OWNER: f"credit.owner{D}",
    GOVERNANCE: f"governance{D}",
    REQUESTER: f"ds.lead{D}",
}
APPROVERS = (COMPLIANCE, ETHICS, CREDIT_OWNER)


def table_counts(settings: Settings) -> dict[str, int]:
    """Rows in every table of the AIMS database: a write anywhere shows."""
    return {t.name: count(settings, t) for t in Base.metadata.sorted_tables}


# --- 6. forged Slack requests ------------------------------------------------------------------

Forgery = Callable[[dict[str, Any], random.Random], tuple[Any, dict[str, str]]]


def _headers(ts: int | str | None, signature: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if ts is not None:
        headers["X-Slack-Request-Timestamp"] = str(ts)
    if signature is not None:
        headers["X-Slack-Signature"] = signature
    return headers


def _signed(payload: dict[str, Any], secret: str = SECRET, ts: int | None = None) -> Any:
    ts = int(time.time()) if ts is None else ts
    body = encode_interaction(payload)
    return body, _headers(ts, sign(secret, body, ts))


def _resigned_elsewhere(change: Callable[[dict[str, Any]], None]) -> Forgery:
    """Signed as sent, then `change`d on the way: the body no longer matches its signature."""

    def forge(payload: dict[str, Any], rng: random.Random) -> Any:
        _, headers = _signed(payload)
        altered = json.loads(json.dumps(payload))
        change(altered)
        return encode_interaction(altered), headers

    return forge


def _with_signature(make: Callable[[str, random.Random], str | None]) -> Forgery:
    def forge(payload: dict[str, Any], rng: random.Random) -> Any:
        body, headers = _signed(payload)
        forged = make(headers["X-Slack-Signature"], rng)
        return body, _headers(headers["X-Slack-Request-Timestamp"], forged)

    return forge


def _flip_hex(signature: str, rng: random.Random) -> str:
    i = rng.randrange(3, len(signature))
    digit = "0123456789abcdef".replace(signature[i], "")[rng.randrange(15)]
    return signature[:i] + digit + signature[i + 1 :]


def _other_team(team: str | None, user_team: str) -> Forgery:
    def forge(payload: dict[str, Any], rng: random.Random) -> Any:
        p = json.loads(json.dumps(payload))
        p["team"] = {"id": team, "domain": "elsewhere"} if team else None
        p["user"]["team_id"] = user_team
        return _signed(p)

    return forge


def _oversized_body(chunked: bool) -> Forgery:
    def forge(payload: dict[str, Any], rng: random.Random) -> Any:
        p = json.loads(json.dumps(payload))
        p["padding"] = "x" * MAX_BODY_BYTES  # correctly signed, but no Slack payload is this big
        body, headers = _signed(p)
        if not chunked:
            return body, headers
        return (body[i : i + 4096] for i in range(0, len(body), 4096)), headers

    return forge


def _too_many(field: str) -> Forgery:
    def forge(payload: dict[str, Any], rng: random.Random) -> Any:
        p = json.loads(json.dumps(payload))
        if field == "actions":
            p["actions"] = p["actions"] * 51
        else:
            p["actions"][0]["value"] = p["actions"][0]["value"] + " " * 2001
        return _signed(p)

    return forge


def _toggle(path: str, choices: list[str]) -> Callable[[dict[str, Any]], None]:
    """Change the value at `path` (dots; digits index lists) to the next of `choices`."""

    def change(p: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = p
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        current = node[last]
        node[last] = choices[(choices.index(current) + 1) % len(choices)]

    return change


def _forgeries(request_ids: list[int]) -> dict[str, tuple[int, Forgery]]:
    """Every way of forging a click, with the status it must get; 45 per genuine click."""
    f: dict[str, tuple[int, Forgery]] = {}
    for i in range(3):
        f[f"bad-signature:random-{i}"] = (
            401,
            _with_signature(lambda s, r: "v0=" + r.randbytes(32).hex()),
        )
        f[f"bad-signature:one-digit-{i}"] = (401, _with_signature(_flip_hex))
    f["bad-signature:truncated"] = (401, _with_signature(lambda s, r: s[:-1]))
    f["bad-signature:uppercase"] = (401, _with_signature(lambda s, r: "v0=" + s[3:].upper()))
    f["bad-signature:other-scheme"] = (401, _with_signature(lambda s, r: "v1=" + s[3:]))
    f["bad-signature:missing"] = (401, _with_signature(lambda s, r: None))
    f["bad-signature:empty"] = (401, _with_signature(lambda s, r: ""))
    for name, secret in {
        "empty": "",
        "one-char-short": SECRET[:-1],
        "one-char-more": SECRET + "0",
        "uppercase": SECRET.upper(),
        "random": "f" * 8 + SECRET[8:][::-1],
    }.items():
        f[f"wrong-secret:{name}"] = (
            401,
            lambda p, r, secret=secret: _signed(p, secret=secret),
        )
    for seconds in (301, 600, 3600, 86_400, 30 * 86_400):
        f[f"stale:{seconds}s"] = (
            401,
            lambda p, r, s=seconds: _signed(p, ts=int(time.time()) - s),
        )
    # Future stamps start well past the window's edge: Slack's check is abs(now - ts) > 300 with
    # whole-second stamps, so a stamp 301 s ahead is inside the window a second later.
    for seconds in (330, 600, 3600, 86_400):
        f[f"future:{seconds}s"] = (
            401,
            lambda p, r, s=seconds: _signed(p, ts=int(time.time()) + s),
        )
    for name, ts in {"missing": None, "not-a-number": "soon", "empty": ""}.items():
        f[f"timestamp:{name}"] = (
            401,
            lambda p, r, ts=ts: (encode_interaction(p), _headers(ts, "v0=" + "0" * 64)),
        )

    def replayed(p: dict[str, Any], r: random.Random) -> Any:
        body, old = _signed(p, ts=int(time.time()) - 3600)
        return body, _headers(int(time.time()), old["X-Slack-Signature"])

    f["stale:replayed-with-a-fresh-timestamp"] = (401, replayed)
    tampered: dict[str, Callable[[dict[str, Any]], None]] = {
        "approve-reject": _toggle("actions.0.action_id", [APPROVE_ACTION_ID, REJECT_ACTION_ID]),
        "other-request": _toggle("actions.0.value", [str(r) for r in request_ids]),
        "other-user": _toggle("user.id", list(APPROVERS)),
        "other-team": _toggle("team.id", [TEAM_ID, "T0EVIL001"]),
        "type": _toggle("type", ["block_actions", "block_actions "]),
    }
    for name, change in tampered.items():
        f[f"tampered:{name}"] = (401, _resigned_elsewhere(change))

    def appended(p: dict[str, Any], r: random.Random) -> Any:
        body, headers = _signed(p)
        return body + b"&payload=%7B%7D", headers

    def cut(p: dict[str, Any], r: random.Random) -> Any:
        body, headers = _signed(p)
        return body[: r.randrange(10, len(body) - 1)], headers

    def one_byte(p: dict[str, Any], r: random.Random) -> Any:
        body, headers = _signed(p)
        i = r.randrange(len(body))
        return body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :], headers

    f["tampered:bytes-appended"] = (401, appended)
    f["tampered:truncated"] = (401, cut)
    f["tampered:one-byte"] = (401, one_byte)
    f["other-team:team-and-user"] = (400, _other_team("T0EVIL001", "T0EVIL001"))
    f["other-team:enterprise-neighbour"] = (400, _other_team("E0GRID01", "T0AIMS"))
    f["other-team:user-team-only"] = (400, _other_team(None, "T0EVIL002"))
    f["other-team:lowercase-ours"] = (400, _other_team(TEAM_ID.lower(), TEAM_ID.lower()))
    f["oversized:body"] = (413, _oversized_body(chunked=False))
    f["oversized:chunked-body"] = (413, _oversized_body(chunked=True))
    f["oversized:too-many-actions"] = (400, _too_many("actions"))
    f["oversized:button-value"] = (400, _too_many("value"))
    return f


def test_forged_slack_requests_are_refused_and_write_nothing(
    client: TestClient,
    bridge_settings: Settings,
    resume: ResumeRecorder,
    reliability: Any,
) -> None:
    """≥ 1,000 forged variants of genuine clicks (eligible approvers on open requests of the demo
    organisation): each refused with its status, no row written anywhere; then the genuine click
    is a decision, and its identical re-deliveries are answered 200 and write nothing."""
    requests = [make_request(bridge_settings, quorum=3, key=f"forged-{i}") for i in range(4)]
    genuine = [
        block_actions_payload(user, rid, action)
        for rid in requests
        for user in APPROVERS
        for action in ("approve", "reject")
    ]
    forgeries = _forgeries(requests)
    rng = random.Random(20260906)
    before = table_counts(bridge_settings)
    statuses: dict[int, int] = {}
    wrong: list[str] = []
    sent = 0

    for i, payload in enumerate(genuine):
        for name, (status, forge) in forgeries.items():
            body, headers = forge(payload, rng)
            response = client.post("/slack/interactions", content=body, headers=headers)
            sent += 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code != status or response.json().get("ok") is not False:
                wrong.append(f"{name} on click {i}: {response.status_code} {response.text[:80]}")

    assert sent >= 1000
    assert wrong == []
    assert table_counts(bridge_settings) == before
    assert resume.calls == []

    # The genuine click, once, and Slack re-delivering it unchanged inside the window.
    body, headers = _signed(block_actions_payload(COMPLIANCE, requests[0]))
    first = client.post("/slack/interactions", content=body, headers=headers)
    assert first.status_code == 200 and "is recorded" in first.json()["text"], first.text
    after_first = table_counts(bridge_settings)
    assert after_first["decision"] == before["decision"] + 1
    redeliveries = [
        client.post("/slack/interactions", content=body, headers=headers) for _ in range(3)
    ]
    assert [r.status_code for r in redeliveries] == [200, 200, 200]
    assert all("already recorded" in r.json()["text"] for r in redeliveries)
    assert table_counts(bridge_settings) == after_first
    assert resume.calls == []  # 1 of 3: nothing to resume yet

    reliability.record(
        "forged-slack",
        requests=sent,
        refused=sent,
        kinds=len(forgeries),
        genuine_clicks_forged=len(genuine),
        refused_401=statuses.get(401, 0),
        refused_400=statuses.get(400, 0),
        refused_413=statuses.get(413, 0),
        rows_written=sum(table_counts(bridge_settings).values()) - sum(after_first.values()),
        redeliveries=len(redeliveries),
        redelivery_rows_written=0,
    )


def test_the_workspace_is_learned_from_the_bot_token_or_clicks_are_refused(
    settings: Settings,
    actor: Actor,
    fake_slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
    reliability: Any,
) -> None:
    """Without AIMS_SLACK_TEAM_ID the bridge asks Slack which workspace the bot token is in (once)
    and refuses clicks from any other; with neither, a correctly signed click is 503 and writes
    nothing (never "any team will do")."""
    load_demo(UnitOfWork(settings), actor)
    rid = make_request(settings, quorum=3)
    signing = {"slack_signing_secret": SecretStr(SECRET)}
    before = table_counts(settings)
    with TestClient(create_app(settings.model_copy(update=signing))) as c:
        unconfigured = click(c, COMPLIANCE, rid)
    assert unconfigured.status_code == 503
    assert "AIMS_SLACK_TEAM_ID" in unconfigured.json()["error"]
    assert table_counts(settings) == before

    learning = slack_settings(settings, fake_slack, **signing)
    assert learning.slack_team_id is None
    with TestClient(create_app(learning, resume=ResumeRecorder())) as c:
        other = [click(c, user, rid, team_id="T0EVIL001") for user in APPROVERS]
        assert [r.status_code for r in other] == [400, 400, 400]
        assert table_counts(settings) == before
        ours = click(c, ETHICS, rid)
        assert ours.status_code == 200 and "is recorded" in ours.json()["text"]
        assert click(c, CREDIT_OWNER, rid, team_id="T0EVIL001").status_code == 400
    assert len(fake_slack.calls("auth.test")) == 1
    assert count(settings, Decision) == 1

    reliability.record(
        "forged-slack", other_team_refused=4, unconfigured_refused=1, auth_test_calls=1
    )


# --- 7. authorisation --------------------------------------------------------------------------


def _expire_training(settings: Settings, email: str) -> None:
    """A year passes for `email`'s training records: every one of them has expired."""
    pid = person_id(settings, email)
    with get_engine(settings.effective_database_url).begin() as conn:
        changed = conn.execute(
            text(
                "UPDATE training_record SET completed_at = :c, expires_at = :e WHERE person_id = :p"
            ),
            {
                "c": datetime.now(UTC) - timedelta(days=800),
                "e": datetime.now(UTC) - timedelta(days=1),
                "p": pid,
            },
        )
        assert changed.rowcount >= 1


@pytest.fixture
def authorisation(bridge_settings: Settings) -> Settings:
    """The demo organisation with compliance's required training expired."""
    _expire_training(bridge_settings, EMAIL[COMPLIANCE])
    return bridge_settings


def _refusals(settings: Settings, channel: str) -> list[tuple[str, str, str]]:
    return sorted(
        (e.details["reason"], e.details.get("person") or "", e.actor)
        for e in audits(settings, "approval.refused")
        if e.channel == channel
    )


def test_slack_clicks_that_may_not_decide_are_refused_and_audited(
    client: TestClient, authorisation: Settings, reliability: Any
) -> None:
    rid = make_request(authorisation, quorum=2)
    cases = {
        GOVERNANCE: "not-eligible",
        REQUESTER: "requester",
        COMPLIANCE: "training",
        NOBODY: "unknown-person",
    }
    answers = {user: click(client, user, rid) for user in cases}

    for user in cases:
        assert answers[user].status_code == 200  # Slack shows the why, not an error
        assert answers[user].json()["text"].startswith("Not recorded:"), answers[user].text
    assert count(authorisation, Decision) == 0
    assert _refusals(authorisation, "slack") == sorted(
        (reason, EMAIL.get(user, ""), f"slack:{user}") for user, reason in cases.items()
    )
    # The same request is decidable by someone who may: the refusals were about the person.
    assert click(client, ETHICS, rid).status_code == 200
    assert count(authorisation, Decision) == 1
    reliability.record(
        "authorisation", channel="slack", attempts=len(cases), refused=len(cases), audited=4
    )


def test_cli_approvals_that_may_not_decide_are_refused_and_audited(
    authorisation: Settings, run_cli: Any, reliability: Any
) -> None:
    rid = make_request(authorisation, quorum=2)
    cases = {GOVERNANCE: "not-eligible", REQUESTER: "requester", COMPLIANCE: "training"}
    for user in cases:
        for verb in ("approve", "reject"):
            result = run_cli(verb, str(rid), "--as", EMAIL[user], "--comment", "no")
            assert result.exit_code == 2, result.output
            assert result.stderr.startswith("error: "), result.stderr
    assert count(authorisation, Decision) == 0
    refused = _refusals(authorisation, "cli")
    assert [(r, p) for r, p, _ in refused] == sorted(
        (reason, EMAIL[user]) for user, reason in cases.items() for _ in range(2)
    )
    assert all(who.endswith(f" as {p}") for _, p, who in refused)  # OS user beside the claim
    ok = run_cli("approve", str(rid), "--as", EMAIL[ETHICS])
    assert ok.exit_code == 0, ok.output
    reliability.record("authorisation", channel="cli", attempts=6, refused=6, audited=6)


def test_ui_form_decisions_without_the_right_code_are_refused_and_audited(
    authorisation: Settings, reliability: Any
) -> None:
    """The Prefect UI resume form's step (`tasks/approval.py`), as a resumed run calls it."""
    from prefect.logging import disable_run_logger

    from tasks.approval import ApprovalInput, _decide_from_ui

    rid = make_request(authorisation, quorum=2)
    other = make_request(authorisation, quorum=2, key="another-gate")
    key = authorisation.evidence_key_bytes()
    assert key

    def code(user: str, request_id: int = rid) -> str:
        """The person's code as it stands now (each form read naming them advances it)."""
        found = approvals.current_code(
            UnitOfWork(authorisation), request_id, person_id(authorisation, EMAIL[user])
        )
        assert found
        return found

    cases: list[tuple[str, str, str]] = [  # (who is claimed, code typed, expected reason)
        (ETHICS, "", "bad-code"),
        (ETHICS, "ABCDE-FGHIJ", "bad-code"),
        (ETHICS, code(CREDIT_OWNER), "bad-code"),  # another approver's code
        (ETHICS, code(ETHICS, other), "bad-code"),  # the right person's code for another request
        (ETHICS, code(ETHICS)[:-1], "bad-code"),
        (GOVERNANCE, code(ETHICS), "not-eligible"),
        (REQUESTER, code(ETHICS), "requester"),
        (COMPLIANCE, code(COMPLIANCE), "training"),  # the right code, expired training
    ]
    with disable_run_logger():
        answers = [
            _decide_from_ui(
                authorisation,
                rid,
                ApprovalInput(approver=EMAIL[u], decision="approve", code=c),
            )
            for u, c, _ in cases
        ]
    assert all(a for a in answers), answers  # each says why it did not count
    assert count(authorisation, Decision) == 0
    assert _refusals(authorisation, "ui") == sorted(
        (reason, EMAIL[u], f"ui-claim:{EMAIL[u]}") for u, _, reason in cases
    )
    # Five wrong codes named ETHICS: the UI is locked for them on this request, right code or not.
    with disable_run_logger():
        locked = _decide_from_ui(
            authorisation,
            rid,
            ApprovalInput(approver=EMAIL[ETHICS], decision="approve", code=code(ETHICS)),
        )
        accepted = _decide_from_ui(
            authorisation,
            rid,
            ApprovalInput(
                approver=EMAIL[CREDIT_OWNER], decision="approve", code=code(CREDIT_OWNER)
            ),
        )
    assert locked is not None and "locked" in locked
    assert accepted is None and count(authorisation, Decision) == 1
    reliability.record(
        "authorisation",
        channel="ui",
        attempts=len(cases) + 1,
        refused=len(cases) + 1,
        audited=len(cases) + 1,
    )


def test_intake_without_the_right_token_is_refused_and_audited(
    authorisation: Settings, reliability: Any
) -> None:
    configured = authorisation.model_copy(update={"intake_token": SecretStr(TOKEN)})
    incident = {
        "system": "credit-scoring",
        "severity": "SEV3",
        "category": "data-issue",
        "title": "Income field empty",
    }
    headers = {
        "missing-token": {},
        "missing-token:basic": {"Authorization": f"Basic {TOKEN}"},
        "missing-token:empty-bearer": {"Authorization": "Bearer  "},
        "wrong-token": {"Authorization": "Bearer " + "y" * len(TOKEN)},
        "wrong-token:prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
        "wrong-token:longer": {"Authorization": f"Bearer {TOKEN}0"},
    }
    before = table_counts(configured)
    with TestClient(create_app(configured)) as c:
        answers = [
            (case, c.post(path, json=body, headers=h))
            for case, h in headers.items()
            for path, body in (("/incidents", incident), ("/alertmanager", webhook()))
        ]
    assert [(case, a.status_code) for case, a in answers] == [(case, 401) for case, _ in answers]
    after = table_counts(configured)
    assert after["incident"] == before["incident"] == count(configured, Incident)
    assert {k: after[k] - before[k] for k in after if after[k] != before[k]} == {
        "audit_event": len(answers)
    }
    events = audits(configured, "intake.refused")
    assert sorted((e.details["reason"], e.subject) for e in events) == sorted(
        (case.split(":")[0], f"intake:{path}")
        for case, _ in headers.items()
        for path in ("/incidents", "/alertmanager")
    )
    assert all(e.channel == "api" and e.actor.startswith("api:unauthenticated") for e in events)
    assert not any(TOKEN[:-1] in json.dumps(e.details) + e.actor for e in events)
    reliability.record(
        "authorisation",
        channel="intake",
        attempts=len(answers),
        refused=len(answers),
        audited=len(events),
    )


# --- 10. secrets -------------------------------------------------------------------------------

SECRETS = {
    "AIMS_SLACK_BOT_TOKEN": "xoxb-4242-SECRETBOT-9f1c7e2ad5b3",
    "AIMS_SLACK_SIGNING_SECRET": "SECRETSIGN-5b7e9c1d3f2a8e6c",
    "AIMS_SLACK_APP_TOKEN": "xapp-1-A0AIMS-4242-SECRETAPP-c3d9e1",
    "AIMS_INTAKE_TOKEN": "SECRETINTAKE-8a6f4e2b0c9d7f1e3a5b",
    "AIMS_EVIDENCE_KEY": "SECRETEVIDENCEKEY-1d3f5b7e9c2a4e6f",
}


class Outputs:
    """Every text a test saw, by where it came from, scanned at the end for every secret."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def add(self, where: str, output: object) -> None:
        self.seen[where] = self.seen.get(where, "") + "\n" + str(output)

    def leaks(self, secrets: dict[str, str]) -> list[str]:
        out = []
        for where, seen in self.seen.items():
            folded = seen.lower()
            for name, value in secrets.items():
                probes = {value, value.lower(), *re.findall(r"SECRET\w{4,}", value)}
                if name.startswith("approval code"):
                    probes.add(value.replace("-", "").lower())
                if any(p.lower() in folded for p in probes):
                    out.append(f"{name} in {where}")
        return out


def test_no_secret_appears_in_logs_artifacts_errors_or_config_show(
    settings: Settings,
    actor: Actor,
    run_cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    reliability: Any,
) -> None:
    from aims_core.services import approvals, outbox, reconcile
    from aims_core.services import training as tr
    from deployments.local_engine import HttpApp, free_port
    from flows.notification_delivery import _markdown
    from notifications.slack import deliver_due

    caplog.set_level(logging.DEBUG)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    slack = FakeSlack(token=SECRETS["AIMS_SLACK_BOT_TOKEN"]).start()
    seen = Outputs()
    try:
        monkeypatch.setenv("AIMS_SLACK_API_URL", slack.base_url)
        s = Settings()
        assert s.evidence_key_bytes() == SECRETS["AIMS_EVIDENCE_KEY"].encode()
        load_demo(UnitOfWork(s), actor)

        # `aims config show`, plain and JSON; and a bad setting's error beside the secrets.
        for args in (("config", "show"), ("config", "show", "--json")):
            result = run_cli(*args)
            assert result.exit_code == 0, result.output
            assert "****** (set" in result.output
            seen.add(" ".join(args), result.output)
        monkeypatch.setenv("AIMS_TIMEZONE", "Mars/Olympus_Mons")
        bad = run_cli("config", "show")
        monkeypatch.delenv("AIMS_TIMEZONE")
        assert bad.exit_code != 0 and "Mars/Olympus_Mons" in bad.output
        seen.add("bad-config error", bad.output)

        # An approval request: DMs with personal codes, reminders, the reconciler's artifact.
        rid = make_request(s, quorum=2)
        key = s.evidence_key_bytes()
        assert key
        codes = {
            f"approval code of {u}": personal_code(key, rid, person_id(s, EMAIL[u]), 0)
            for u in APPROVERS
        }
        with UnitOfWork(s) as uow:
            outbox.queue_approval_messages(uow.session, rid, key)
            uow.commit()
        sent = deliver_due(s)
        assert sent.sent == 3
        assert any(codes[f"approval code of {COMPLIANCE}"] in str(m.blocks) for m in slack.messages)
        later = datetime.now(UTC) + timedelta(days=2)
        reminded = reconcile.remind_approvers(s, now=later)
        assert reminded.reminded_ids == [rid]
        reminded.delivery = deliver_due(s)
        seen.add("reconciler artifact", reminded.markdown())
        seen.add("training artifact", tr.tick(s).markdown())
        shown = run_cli("approvals", "show", str(rid), "--json")
        assert shown.exit_code == 0, shown.output
        seen.add("aims approvals show", shown.output)

        # The bridge: a forged click, a genuine one, a UI decision with a wrong code, intake.
        with TestClient(create_app(s, resume=ResumeRecorder())) as c:
            forged = click(c, COMPLIANCE, rid, secret=SECRET)
            assert forged.status_code == 401
            genuine = click(c, CREDIT_OWNER, rid, secret=SECRETS["AIMS_SLACK_SIGNING_SECRET"])
            assert genuine.status_code == 200, genuine.text
            wrong = c.post("/incidents", json={}, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            for r in (forged, genuine, wrong):
                seen.add("bridge answers", r.text)
        ui = approvals.DecisionIn(
            request_id=rid,
            person=EMAIL[ETHICS],
            outcome="approve",
            code=codes[f"approval code of {CREDIT_OWNER}"],
        )
        with pytest.raises(approvals.Refused) as refused:
            approvals.decide(UnitOfWork(s), ui, Actor(who="prefect-ui", channel="ui"))
        seen.add("UI refusal", refused.value)

        # Slack refusing the bot token: the delivery report, its artifact and the CLI's answer.
        revoked = s.model_copy(
            update={"slack_bot_token": SecretStr(SECRETS["AIMS_SLACK_BOT_TOKEN"] + "0")}
        )
        second = make_request(s, key="k2")
        with UnitOfWork(s) as uow:
            outbox.queue_approval_messages(uow.session, second, key)
            uow.commit()
        failed = deliver_due(revoked)
        assert failed.stopped and "invalid_auth" in " ".join([*failed.errors, failed.stopped])
        seen.add("delivery artifact (auth failure)", _markdown(failed))
        monkeypatch.setenv("AIMS_SLACK_BOT_TOKEN", SECRETS["AIMS_SLACK_BOT_TOKEN"] + "0")
        cli_failed = run_cli("notifications", "deliver")
        seen.add("aims notifications deliver (auth failure)", cli_failed.output)
        monkeypatch.setenv("AIMS_SLACK_BOT_TOKEN", SECRETS["AIMS_SLACK_BOT_TOKEN"])
        seen.add("evidence verify", run_cli("evidence", "verify").output)

        # A database that refuses the connection: the error names neither password nor host user.
        password = "SECRETDBPASSWORD-3c5e7a9b"
        monkeypatch.setenv(
            "AIMS_DATABASE_URL",
            f"postgresql+psycopg://aims:{password}@127.0.0.1:{free_port()}/aims",
        )
        down = run_cli("approvals", "list")
        assert down.exit_code != 0
        seen.add("database error", down.output)
        seen.add("config show (database url)", run_cli("config", "show").output)
        monkeypatch.setenv("AIMS_DATABASE_URL", s.effective_database_url)

        # The HTTP app as `aims up` runs it, with its log file under the data dir.
        with FakeSocketModeServer() as socket_server:
            env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
            env |= {
                "AIMS_SLACK_API_URL": socket_server.api_base_url,
                "AIMS_SLACK_TEAM_ID": TEAM_ID,
                "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
                "PREFECT_HOME": str(s.data_dir / "prefect"),
            }
            http = HttpApp(free_port(), env, s.data_dir / "prefect" / "http.log")
            http.start()
            try:
                with httpx.Client(base_url=http.url, trust_env=False, timeout=10) as h:
                    for secret in (SECRET, SECRETS["AIMS_SLACK_SIGNING_SECRET"]):
                        body, headers = _signed(block_actions_payload(ETHICS, rid), secret=secret)
                        seen.add(
                            "HTTP app",
                            h.post("/slack/interactions", content=body, headers=headers).text,
                        )
                    seen.add(
                        "HTTP app",
                        h.post(
                            "/alertmanager", json=webhook(), headers={"Authorization": "Bearer x"}
                        ).text,
                    )
                socket_server.wait_connected(timeout=30)
                eid = socket_server.send_interactive(block_actions_payload(CREDIT_OWNER, rid))
                socket_server.wait_for_ack(eid, timeout=30)
            finally:
                http.stop()
        assert (
            socket_server.api_requests[0]["authorization"]
            == f"Bearer {SECRETS['AIMS_SLACK_APP_TOKEN']}"
        )
    finally:
        slack.stop()

    logs = [
        p
        for p in s.data_dir.rglob("*")
        if p.is_file() and p.suffix in (".log", ".md", ".json", ".txt", ".csv")
    ]
    assert s.data_dir / "prefect" / "http.log" in logs
    assert "POST /slack/interactions" in (s.data_dir / "prefect" / "http.log").read_text()
    for path in logs:
        seen.add(f"file {path.relative_to(s.data_dir)}", path.read_text(errors="replace"))
    seen.add(
        "log records", "\n".join(r.getMessage() + str(r.exc_text or "") for r in caplog.records)
    )
    captured = capfd.readouterr()
    seen.add("captured stdout/stderr", captured.out + captured.err)
    secrets = {**SECRETS, **codes, "database password": password}

    leaks = seen.leaks(secrets)
    if leaks:  # say where, line by line
        for where, text_ in seen.seen.items():
            for line in text_.splitlines():
                if any(v.lower() in line.lower() for v in secrets.values()):
                    print("LEAK", where, "::", line[:300])
    assert leaks == []
    reliability.record(
        "secrets",
        secrets=len(secrets),
        outputs_scanned=len(seen.seen),
        log_records=len(caplog.records),
        files_scanned=len(logs),
        leaks=0,
    )
