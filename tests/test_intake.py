"""Incident intake: `POST /alertmanager` (a real Alertmanager v4 payload), `POST /incidents` and
`aims incident report`, on SQLite and PostgreSQL.

The bridge app runs in process (TestClient) against the fake Slack Web API; the Prefect run
start is replaced by a recorder (the real one is exercised by tests/test_intake_e2e.py). The
first Slack message must be at the fake Slack *before* the HTTP response leaves the app: an ASGI
probe notes, at the moment the response starts, what the fake has received by then.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import typer
from fakes.slack_api import FakeSlack, fake_slack, slack_settings
from fastapi.testclient import TestClient
from pydantic import SecretStr
from records import count
from sqlalchemy import select
from typer.testing import CliRunner

from aims_core.cli import intake_cmd
from aims_core.cli._base import AimsGroup
from aims_core.cli.engine import EngineNotRunning
from aims_core.db import session_factory
from aims_core.models import (
    AuditEvent,
    Incident,
    IncidentEvent,
    IncidentStatus,
    Notification,
    NotificationStatus,
)
from aims_core.ports import RunStarted
from aims_core.services import intake as intake_service
from aims_core.services.demo import load_demo
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork
from deployments.prefect_runs import PrefectRuns
from notifications.app import create_app
from notifications.slack import SlackDelivery, deliver_due

__all__ = ["fake_slack"]  # the fixture, imported for this module's tests

TOKEN = "intake-" + "x" * 40
#: When the alerts began: 25 minutes ago, in Go's RFC 3339 with nanoseconds, as Alertmanager writes.
STARTED = datetime.now(UTC).replace(microsecond=482139) - timedelta(minutes=25)
STARTS_AT = STARTED.strftime("%Y-%m-%dT%H:%M:%S.%f") + "551Z"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHANNEL = "C0INCIDENTS"
SYSTEM = "cv-screening"  # high risk in the demo organisation


# --- a real Alertmanager v4 payload ------------------------------------------------------------


def alert(
    fingerprint: str = "5ab1c2d3e4f50617",
    *,
    status: str = "firing",
    system: str = SYSTEM,
    severity: str = "high",
    category: str | None = "bias",
    alertname: str = "FairnessDisparateImpactLow",
) -> dict[str, Any]:
    labels = {
        "alertname": alertname,
        "ai_system": system,
        "severity": severity,
        "team": "ml-platform",
        "job": "fairness-monitor",
        "instance": "fairness-monitor-0:9102",
        "protected_attribute": "age",
    }
    if category is not None:
        labels["category"] = category
    return {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": "cv-screening: selection-rate ratio for applicants over 50 fell to 0.61",
            "description": "Disparate impact ratio (age 50+ vs. under 50) has been below the "
            "0.8 four-fifths threshold for 30m on production traffic (2,314 applications).",
            "runbook_url": "https://runbooks.northwind.example/ai/fairness-disparate-impact",
        },
        "startsAt": STARTS_AT,
        "endsAt": (STARTED + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
        if status == "resolved"
        else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus-0:9090/graph?g0.expr=fairness_disparate_impact_ratio"
        "%7Bai_system%3D%22cv-screening%22%7D+%3C+0.8&g0.tab=1",
        "fingerprint": fingerprint,
    }


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    """The body Alertmanager 0.27 POSTs to a webhook receiver (version 4)."""
    alerts = alerts or (alert(),)
    first = alerts[0]["labels"]
    return {
        "receiver": "aims-intake",
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": list(alerts),
        "groupLabels": {"alertname": first["alertname"], "ai_system": first["ai_system"]},
        "commonLabels": {k: v for k, v in first.items() if k != "instance"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager-0:9093",
        "version": "4",
        "groupKey": '{}/{team="ml-platform"}:{ai_system="cv-screening", '
        'alertname="FairnessDisparateImpactLow"}',
        "truncatedAlerts": 0,
    }


# --- fixtures ----------------------------------------------------------------------------------


@dataclass
class StartRecorder:
    """Stands in for the Prefect adapter's `start`: records each call; fails with `error` when
    set."""

    error: Exception | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(
        self,
        deployment: str,
        parameters: dict[str, Any],
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        wait_s: float = 0,
    ) -> RunStarted:
        self.calls.append(
            {"deployment": deployment, "parameters": parameters, "name": name, "tags": tags}
        )
        if self.error is not None:
            raise self.error
        run_id = str(uuid.uuid4())
        return RunStarted(
            id=run_id, name=name or "run", url=f"http://127.0.0.1:4200/runs/flow-run/{run_id}"
        )

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> StartRecorder:
        """Every PrefectRuns built from now on starts runs here instead."""
        monkeypatch.setattr(PrefectRuns, "start", lambda _self, *a, **kw: self(*a, **kw))
        return self


class ResponseProbe:
    """ASGI middleware: at `http.response.start` (the answer leaving the app) it notes the time
    and how many chat.postMessage calls the fake Slack has received by then."""

    def __init__(self, app: Any, fake: FakeSlack, seen: list[tuple[float, int]]) -> None:
        self.app, self.fake, self.seen = app, fake, seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def probed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                posted = len(self.fake.calls("chat.postMessage", ok_only=True))
                self.seen.append((time.time(), posted))
            await send(message)

        await self.app(scope, receive, probed)


@pytest.fixture
def start(monkeypatch: pytest.MonkeyPatch) -> StartRecorder:
    return StartRecorder().patch(monkeypatch)


@pytest.fixture
def intake_settings(settings: Settings, fake_slack: FakeSlack, actor: Actor) -> Settings:
    """The demo organisation, Slack at the fake, an intake token and an incidents channel."""
    load_demo(UnitOfWork(settings), actor)
    fake_slack.add_channel(CHANNEL)
    return slack_settings(
        settings, fake_slack, intake_token=SecretStr(TOKEN), slack_channel=CHANNEL
    )


@pytest.fixture
def probe_seen() -> list[tuple[float, int]]:
    return []


@pytest.fixture
def client(
    intake_settings: Settings,
    fake_slack: FakeSlack,
    start: StartRecorder,
    probe_seen: list[tuple[float, int]],
) -> Iterator[TestClient]:
    app = create_app(intake_settings)
    app.add_middleware(ResponseProbe, fake=fake_slack, seen=probe_seen)
    with TestClient(app) as c:
        yield c


def post_alerts(client: TestClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post("/alertmanager", json=body, headers=AUTH if headers is None else headers)


def footprint(settings: Settings) -> dict[str, int]:
    """Everything intake could write."""
    return {
        m.__tablename__: count(settings, m)
        for m in (Incident, IncidentEvent, Notification, AuditEvent)
    }


def incident(settings: Settings, incident_id: int) -> Incident:
    with session_factory(settings.effective_database_url)() as s:
        row = s.get(Incident, incident_id)
        assert row is not None
        s.expunge(row)
        return row


def timeline(settings: Settings, incident_id: int) -> list[IncidentEvent]:
    with session_factory(settings.effective_database_url)() as s:
        return list(
            s.scalars(
                select(IncidentEvent)
                .where(IncidentEvent.incident_id == incident_id)
                .order_by(IncidentEvent.id)
            )
        )


def outbox_rows(settings: Settings, incident_id: int) -> list[Notification]:
    with session_factory(settings.effective_database_url)() as s:
        return list(
            s.scalars(
                select(Notification)
                .where(Notification.subject == f"incident:{incident_id}")
                .order_by(Notification.id)
            )
        )


# --- the must-show: one bias incident, first message before the answer -------------------------


def test_alertmanager_bias_alert_opens_one_incident_and_slack_hears_before_the_answer(
    client: TestClient,
    intake_settings: Settings,
    fake_slack: FakeSlack,
    start: StartRecorder,
    probe_seen: list[tuple[float, int]],
) -> None:
    sent_at = time.time()
    response = post_alerts(client, webhook(alert()))
    returned_at = time.time()

    assert response.status_code == 201, response.text
    body = response.json()
    (item,) = body["incidents"]
    assert item["created"] is True and item["attached"] is False
    assert item["fingerprint"] == "5ab1c2d3e4f50617"
    assert item["notification"]["state"] == "delivered"
    assert item["notified"] >= 1
    assert item["run"]["url"].endswith(item["run"]["id"]) and item["run_error"] is None

    # One incident, from the alert: system, mapped severity, category, aware_at = startsAt.
    assert count(intake_settings, Incident) == 1
    row = incident(intake_settings, item["incident_id"])
    assert row.source == "alertmanager" and row.fingerprint == "5ab1c2d3e4f50617"
    assert (row.severity, row.category) == ("SEV2", "bias-fairness")
    assert row.aware_at == STARTED  # the alert's startsAt (to the microsecond)
    assert row.status is IncidentStatus.open
    assert "selection-rate ratio" in row.title
    assert row.flow_run_id == item["run"]["id"]  # attached: the record points at the run

    # The first message was at the fake Slack before the response left the app.
    posts = fake_slack.calls("chat.postMessage", ok_only=True)
    assert posts, "no first message at Slack"
    ((response_started, posted_by_then),) = probe_seen
    assert posted_by_then >= 1
    assert sent_at <= posts[0].at <= response_started <= returned_at
    assert all(n.status is NotificationStatus.sent for n in outbox_rows(intake_settings, row.id))
    assert posted_by_then == len(outbox_rows(intake_settings, row.id))

    # Then the playbook run was asked for, with the incident id and a readable name.
    (call,) = start.calls
    assert call["deployment"] == "incident-response/incident-response"
    assert call["parameters"] == {"incident_id": row.id}
    assert call["name"] == f"incident {row.id} SEV2 bias: cv-screening"
    assert set(call["tags"]) == {"incident", "cv-screening", "high", "SEV2", "bias-fairness"}


def test_the_same_alert_five_times_is_one_incident_with_repeats_on_its_timeline(
    client: TestClient, intake_settings: Settings, fake_slack: FakeSlack, start: StartRecorder
) -> None:
    answers = [post_alerts(client, webhook(alert())) for _ in range(5)]

    assert [a.status_code for a in answers] == [201, 200, 200, 200, 200]
    ids = {a.json()["incidents"][0]["incident_id"] for a in answers}
    assert len(ids) == 1 and count(intake_settings, Incident) == 1
    assert [a.json()["incidents"][0]["attached"] for a in answers] == [False, *[True] * 4]
    (incident_id,) = ids
    assert len(start.calls) == 1  # one playbook run, not five
    # The repeats are on the incident's timeline, one line each.
    repeats = [e for e in timeline(intake_settings, incident_id) if "repeat" in e.kind]
    assert len(repeats) == 4
    # The responders were told once: only the first report's messages went out.
    assert len(fake_slack.calls("chat.postMessage")) == len(
        outbox_rows(intake_settings, incident_id)
    )


def test_resolved_alert_goes_on_the_timeline_and_the_incident_stays_open(
    client: TestClient, intake_settings: Settings
) -> None:
    first = post_alerts(client, webhook(alert()))
    incident_id = first.json()["incidents"][0]["incident_id"]
    before = len(timeline(intake_settings, incident_id))

    resolved = post_alerts(client, webhook(alert(status="resolved")))

    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert body["incidents"] == []
    (note,) = body["resolved"]
    assert note["incident_id"] == incident_id and "it stays open" in note["note"]
    assert len(timeline(intake_settings, incident_id)) == before + 1
    assert incident(intake_settings, incident_id).status is IncidentStatus.open
    assert count(intake_settings, Incident) == 1

    # A resolved alert nobody opened an incident for: noted as such, nothing written.
    stray = post_alerts(client, webhook(alert("0000feedbeef0000", status="resolved")))
    assert stray.status_code == 200
    assert stray.json()["resolved"][0]["incident_id"] is None
    assert count(intake_settings, Incident) == 1


def test_a_group_of_two_alerts_opens_two_incidents_each_with_its_run(
    client: TestClient, intake_settings: Settings, start: StartRecorder
) -> None:
    response = post_alerts(
        client,
        webhook(alert("aaaa000000000001"), alert("aaaa000000000002", severity="critical")),
    )

    assert response.status_code == 201, response.text
    items = response.json()["incidents"]
    assert [i["alert"] for i in items] == ["alerts[0]", "alerts[1]"]
    assert all(i["created"] and i["run"] for i in items)
    assert [c["parameters"]["incident_id"] for c in start.calls] == [
        i["incident_id"] for i in items
    ]
    assert incident(intake_settings, items[1]["incident_id"]).severity == "SEV1"


# --- bad intake: 4xx, a clear message, nothing written ----------------------------------------


BAD_INTAKE = {
    "no token": (
        {},
        webhook(),
        401,
        "missing bearer token",
    ),
    "wrong token": (
        {"Authorization": "Bearer " + "y" * 47},
        webhook(),
        401,
        "invalid intake token",
    ),
    "not bearer": (
        {"Authorization": f"Basic {TOKEN}"},
        webhook(),
        401,
        "missing bearer token",
    ),
    "malformed JSON": (AUTH, b'{"version": "4", "alerts": [', 400, "malformed JSON"),
    "not an object": (AUTH, b"[1, 2]", 400, "expected a JSON object"),
    "unknown system in the 2nd alert": (
        AUTH,
        webhook(alert("bbbb000000000001"), alert("bbbb000000000002", system="cv-screner")),
        422,
        "alerts[1].labels.ai_system: unknown AI system 'cv-screner'",
    ),
    "unknown severity": (
        AUTH,
        webhook(alert(severity="catastrophic")),
        422,
        "alerts[0].labels.severity: unknown severity 'catastrophic'",
    ),
    "unknown category": (
        AUTH,
        webhook(alert(category="gremlins")),
        422,
        "alerts[0].labels.category: unknown category 'gremlins'",
    ),
    "no ai_system label": (
        AUTH,
        webhook(alert(system="")),
        422,
        "alerts[0].labels.ai_system: missing",
    ),
    "not version 4": (
        AUTH,
        {**webhook(), "version": "3"},
        422,
        "version: Input should be '4'",
    ),
    "alert without startsAt": (
        AUTH,
        webhook({k: v for k, v in alert().items() if k != "startsAt"}),
        422,
        "alerts[0].startsAt: Field required",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INTAKE), ids=list(BAD_INTAKE))
def test_bad_intake_is_refused_with_a_clear_message_and_writes_nothing(
    client: TestClient,
    intake_settings: Settings,
    fake_slack: FakeSlack,
    start: StartRecorder,
    case: str,
) -> None:
    headers, body, status, message = BAD_INTAKE[case]
    before = footprint(intake_settings)

    if isinstance(body, bytes):
        response = client.post(
            "/alertmanager",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
        )
    else:
        response = client.post("/alertmanager", json=copy.deepcopy(body), headers=headers)

    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["ok"] is False and message in answer["error"], answer
    if status == 401:  # refused and audited (never with the token sent), nothing else written
        assert response.headers["WWW-Authenticate"] == "Bearer"
        before["audit_event"] += 1
    assert footprint(intake_settings) == before
    assert fake_slack.requests == [] and start.calls == []


def test_one_response_lists_every_bad_alert(client: TestClient, intake_settings: Settings) -> None:
    before = footprint(intake_settings)
    response = post_alerts(
        client,
        webhook(alert("c1"), alert("c2", system="nope"), alert("c3", severity="meh")),
    )
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert problems == [
        "alerts[1].labels.ai_system: unknown AI system 'nope'",
        problems[1],
    ] and problems[1].startswith("alerts[2].labels.severity: unknown severity 'meh'")
    assert "nothing was recorded" in response.json()["error"]
    assert footprint(intake_settings) == before


def test_intake_without_a_configured_token_answers_503_naming_the_variable(
    settings: Settings, actor: Actor, start: StartRecorder
) -> None:
    load_demo(UnitOfWork(settings), actor)
    before = footprint(settings)
    with TestClient(create_app(settings)) as c:
        response = c.post("/alertmanager", json=webhook(), headers=AUTH)
        incidents = c.post("/incidents", json={}, headers=AUTH)
    assert response.status_code == incidents.status_code == 503
    assert "set AIMS_INTAKE_TOKEN" in response.json()["error"]
    assert footprint(settings) == before


def test_a_body_too_large_is_refused_before_it_is_read(
    client: TestClient, intake_settings: Settings
) -> None:
    before = footprint(intake_settings)
    big = webhook(alert())
    big["commonAnnotations"] = {"padding": "x" * (1024 * 1024)}
    response = post_alerts(client, big)
    assert response.status_code == 413
    assert footprint(intake_settings) == before


# --- outages: recorded and told as far as possible, 202 with what is pending -------------------


def test_slack_outage_keeps_the_message_in_the_outbox_and_answers_202(
    client: TestClient, intake_settings: Settings, fake_slack: FakeSlack, start: StartRecorder
) -> None:
    fake_slack.fail_with(503, times=None)

    response = post_alerts(client, webhook(alert()))

    assert response.status_code == 202, response.text
    item = response.json()["incidents"][0]
    assert item["notification"]["state"] == "queued"
    assert "notification queued" in response.json()["message"]
    assert item["run"] is not None  # the playbook still started
    rows = outbox_rows(intake_settings, item["incident_id"])
    assert rows and all(r.status is NotificationStatus.queued for r in rows)
    # Intake stopped at Slack's first error: no point timing out on every row.
    assert (
        len(fake_slack.calls("chat.postMessage")) + len(fake_slack.calls("conversations.open")) == 1
    )

    # Slack back: the next delivery pass sends what waited (their backoff has passed).
    fake_slack.clear_failures()
    later = max(r.next_attempt_at for r in rows)
    deliver_due(intake_settings, now=later)
    sent = [r.status for r in outbox_rows(intake_settings, item["incident_id"])]
    assert sent == [NotificationStatus.sent] * len(rows)


def test_engine_down_still_records_and_notifies_and_says_the_run_did_not_start(
    client: TestClient, intake_settings: Settings, fake_slack: FakeSlack, start: StartRecorder
) -> None:
    start.error = EngineNotRunning(
        "the engine is not running (Prefect API at http://127.0.0.1:1/api unreachable)",
        field="engine",
    )

    response = post_alerts(client, webhook(alert()))

    assert response.status_code == 202, response.text
    item = response.json()["incidents"][0]
    assert item["run"] is None
    assert "the engine is not running" in item["run_error"]
    assert "nothing starts the run later on its own" in item["run_error"]
    assert (
        f"prefect deployment run incident-response/incident-response --param "
        f"incident_id={item['incident_id']}" in item["run_error"]
    )
    assert item["notification"]["state"] == "delivered"
    assert fake_slack.calls("chat.postMessage", ok_only=True)
    assert incident(intake_settings, item["incident_id"]).flow_run_id is None


# --- POST /incidents ---------------------------------------------------------------------------


def test_post_incidents_records_notifies_and_starts_the_run(
    client: TestClient, intake_settings: Settings, fake_slack: FakeSlack, start: StartRecorder
) -> None:
    response = client.post(
        "/incidents",
        headers=AUTH,
        json={
            "system": "credit-scoring",
            "severity": "SEV3",
            "category": "data-issue",
            "title": "Income field empty for 4% of applications since 06:00",
            "summary": "Upstream CRM export dropped the income column for one region.",
            "aware_at": "2026-11-20T06:20:00+01:00",
        },
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] is True and body["notification"]["state"] == "delivered"
    row = incident(intake_settings, body["incident_id"])
    assert (row.source, row.severity, row.category) == ("api", "SEV3", "data-issue")
    assert row.aware_at.isoformat().startswith("2026-11-20T05:20:00")
    assert start.calls[0]["parameters"] == {"incident_id": row.id}
    assert body["run"]["id"] == row.flow_run_id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"title": ""}, "title: String should have at least 1 character"),
        ({"aware_at": "2026-11-24T06:20:00"}, "aware_at: Input should have timezone info"),
        ({"system": "nope"}, "system: unknown AI system 'nope'"),
        ({"severity": "SEV9"}, "severity: unknown severity 'SEV9'"),
    ],
)
def test_post_incidents_refuses_bad_fields_by_name_and_writes_nothing(
    client: TestClient,
    intake_settings: Settings,
    fake_slack: FakeSlack,
    change: dict[str, str],
    message: str,
) -> None:
    before = footprint(intake_settings)
    good = {"system": SYSTEM, "severity": "SEV2", "category": "bias", "title": "Skewed ranking"}
    response = client.post("/incidents", headers=AUTH, json={**good, **change})
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]
    assert footprint(intake_settings) == before and fake_slack.requests == []


# --- aims incident report ----------------------------------------------------------------------


@pytest.fixture
def incident_cli(
    intake_settings: Settings, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """`aims incident report` as registered (a group holding the command), with the Slack
    settings in the environment the CLI reads."""
    monkeypatch.setenv("AIMS_SLACK_BOT_TOKEN", fake_slack.token)
    monkeypatch.setenv("AIMS_SLACK_API_URL", fake_slack.base_url)
    monkeypatch.setenv("AIMS_SLACK_CHANNEL", CHANNEL)
    group = typer.Typer(cls=AimsGroup, pretty_exceptions_enable=False)

    @group.callback()
    def incident() -> None:
        """Incidents."""

    group.command("report")(intake_cmd.report)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(group, ["report", *args])

    return invoke


def test_cli_report_delivers_the_first_message_then_starts_the_run(
    incident_cli: Any, intake_settings: Settings, fake_slack: FakeSlack, start: StartRecorder
) -> None:
    result = incident_cli(
        "--system", SYSTEM, "--severity", "SEV2", "--category", "bias",
        "--summary", "Recruiters report older applicants missing from shortlists",
        "--aware-at", "2026-11-20T09:00:00Z",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    (row_id,) = {r.id for r in _incidents(intake_settings)}
    assert f"recorded incident {row_id} (SEV2 bias-fairness on {SYSTEM})" in result.output
    assert "first message delivered to Slack" in result.output
    run = start.calls[0]
    assert run["parameters"] == {"incident_id": row_id}
    assert "started run incident" in result.output and "/runs/flow-run/" in result.output
    row = incident(intake_settings, row_id)
    assert row.title == "Recruiters report older applicants missing from shortlists"
    assert row.source == "cli" and row.aware_at.isoformat().startswith("2026-11-20T09:00:00")
    assert fake_slack.calls("chat.postMessage", ok_only=True)


def test_cli_report_with_the_engine_down_records_notifies_and_exits_3(
    incident_cli: Any, intake_settings: Settings, fake_slack: FakeSlack, start: StartRecorder
) -> None:
    start.error = EngineNotRunning("the engine is not running (Prefect API unreachable)")

    result = incident_cli(
        "--system", SYSTEM, "--severity", "SEV3", "--category", "model-failure",
        "--summary", "Parser crash on PDF CVs",
    )  # fmt: skip

    assert result.exit_code == 3, result.output
    assert "recorded incident" in result.output
    assert "the engine is not running" in result.output
    assert "prefect deployment run incident-response/incident-response" in result.output
    assert count(intake_settings, Incident) == 1
    assert fake_slack.calls("chat.postMessage", ok_only=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--severity", "SEV7"], "severity: unknown severity 'SEV7'"),
        (["--system", "nope"], "system: unknown AI system 'nope'"),
        (["--aware-at", "yesterday"], "aware_at: "),
    ],
)
def test_cli_report_bad_input_exits_2_and_writes_nothing(
    incident_cli: Any,
    intake_settings: Settings,
    fake_slack: FakeSlack,
    start: StartRecorder,
    args: list[str],
    message: str,
) -> None:
    before = footprint(intake_settings)
    base = {"--system": SYSTEM, "--severity": "SEV2", "--category": "bias", "--summary": "x"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    result = incident_cli(*[part for kv in base.items() for part in kv])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert footprint(intake_settings) == before
    assert fake_slack.requests == [] and start.calls == []


def _incidents(settings: Settings) -> list[Incident]:
    with session_factory(settings.effective_database_url)() as s:
        return list(s.scalars(select(Incident)))


def test_intake_payload_models_accept_alertmanager_json_as_sent() -> None:
    """Field names as Alertmanager writes them (camelCase), nanosecond timestamps, endsAt of a
    firing alert at year 1, unknown extra fields from newer versions."""
    from notifications.intake import AlertmanagerWebhook

    raw = webhook(alert())
    raw["alerts"][0]["someFutureField"] = True
    parsed = AlertmanagerWebhook.model_validate(json.loads(json.dumps(raw)))
    assert parsed.alerts[0].starts_at == STARTED
    assert parsed.alerts[0].ends_at is not None and parsed.alerts[0].ends_at.year == 1
    assert parsed.group_key.startswith("{}/")


def test_without_a_slack_token_the_first_message_is_logged_and_the_answer_is_201(
    settings: Settings, actor: Actor, start: StartRecorder
) -> None:
    load_demo(UnitOfWork(settings), actor)
    configured = settings.model_copy(update={"intake_token": SecretStr(TOKEN)})
    with TestClient(create_app(configured)) as c:
        response = c.post("/alertmanager", json=webhook(alert()), headers=AUTH)
    assert response.status_code == 201, response.text
    item = response.json()["incidents"][0]
    assert item["notification"]["state"] == "logged" and item["notified"] == 0
    rows = outbox_rows(configured, item["incident_id"])
    assert rows and all(r.status is NotificationStatus.logged for r in rows)


def test_an_item_refused_at_write_time_is_reported_and_the_others_stay_recorded(
    intake_settings: Settings, start: StartRecorder, monkeypatch: pytest.MonkeyPatch, actor: Actor
) -> None:
    """The check passed, then `report` refused the second alert (say the system was removed in
    between): the first stays recorded and told, the second says why, nothing is hidden."""
    from aims_core.errors import NotFound
    from aims_core.services import incidents

    real_report = incidents.report

    def report_once(uow: UnitOfWork, data: Any, who: Actor, **kw: Any) -> Any:
        if data.fingerprint == "dddd000000000002":
            raise NotFound("no AI system 'cv-screening'", field="system")
        return real_report(uow, data, who, **kw)

    monkeypatch.setattr(incidents, "report", report_once)
    from notifications.intake import AlertmanagerWebhook, alert_items

    payload = AlertmanagerWebhook.model_validate(
        webhook(alert("dddd000000000001"), alert("dddd000000000002"))
    )
    result = intake_service.take_in(
        intake_settings,
        alert_items(payload, intake_settings),
        actor,
        runs=PrefectRuns(),
        delivery=SlackDelivery(intake_settings),
    )

    first, second = result.items
    assert first.created and first.run is not None and second.error is not None
    assert "system: no AI system" in second.error and result.pending
    assert count(intake_settings, Incident) == 1
