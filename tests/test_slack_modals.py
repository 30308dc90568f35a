"""Slack modals for asks: Reject asks for a typed reason, an ask of another kind is answered in a
form built from its model, and the modal's submission is decided by the same service.

The builder (aims_core/ask_modals.py) is checked as pure functions. The bridge is driven as Slack
drives it: a correctly signed `block_actions` click (tests/fakes/slack_signing) makes the app call
`views.open` on the fake Slack Web API (notifications/fake_slack.py, which holds the opened view
and refuses one past Slack's limits); the test then submits that very view, filled in, as a signed
`view_submission` (tests/fakes/slack_views) and once over Socket Mode (a local websocket server).
SQLite and PostgreSQL; the resume is injected and recorded (Prefect is not involved).

The demo organisation: ds.lead (U0DEMO006) asks the gate; compliance (U0DEMO003), ethics
(U0DEMO007) and credit.owner (U0DEMO004) may decide it. A CAPA verification is answered by
compliance or the internal auditor (U0DEMO009), never by the CAPA's owner (credit.owner).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
import pytest
from fakes.slack_api import FakeSlack, fake_slack, slack_settings
from fakes.slack_signing import block_actions_payload, signed_interaction
from fakes.slack_views import view_state, view_submission_payload
from fakes.socket_mode_server import FakeSocketModeServer
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field, SecretStr, create_model
from records import count
from sqlalchemy import select
from test_bridge import ResumeRecorder, _wait_for

from aims_core.ask_forms import CAPA_VERIFICATION, NOT_SERIOUS, SERIOUS_CONFIRMATION
from aims_core.ask_modals import (
    ModalTooLarge,
    answer_modal,
    errors_for,
    options_for,
    reject_modal,
    values_from_state,
)
from aims_core.db import session_factory
from aims_core.errors import InvalidInput
from aims_core.messages import (
    ANSWER_ACTION_ID,
    APPROVE_ACTION_ID,
    REJECT_ACTION_ID,
    ApprovalView,
    approval_request_message,
)
from aims_core.models import ApprovalRequest, ApprovalStatus, AuditEvent, Decision, Outcome
from aims_core.services import approvals, leavers
from aims_core.services.people import DeactivationIn
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork
from notifications.app import create_app
from notifications.fake_slack import TEAM_ID
from notifications.socket_mode import SocketModeBridge

__all__ = ["fake_slack"]  # the fixture, imported for this module's tests

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
COMPLIANCE, ETHICS, OWNER, AUDITOR = "U0DEMO003", "U0DEMO007", "U0DEMO004", "U0DEMO009"
D = "@northwind.example"


# --- the builder -------------------------------------------------------------------------------


class Severity(enum.Enum):
    low = "low"
    high = "high"


class Everything(BaseModel):
    summary: str = Field(max_length=200, title="Summary", description="One line")
    notes: str = Field(default="", max_length=20_000, json_schema_extra={"multiline": True})
    verdict: Literal["pass", "fail"]
    severity: Severity = Severity.low
    recurred: bool
    due_on: date
    attempts: Annotated[int, Field(ge=0, le=9)]
    score: float | None = None
    actions: list[str] = Field(default_factory=list)
    labels: list[Literal["a", "b", "c"]]


class Ask:
    """What a modal reads of an ask (an ApprovalRequestOut has the same attributes)."""

    def __init__(self, title: str = "Verify CAPA 7", details: str = "", round: int = 2) -> None:
        self.id, self.round, self.title, self.details = 41, round, title, details


def inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


def test_each_field_type_becomes_its_slack_element() -> None:
    view = answer_modal(Ask(), Everything, form="CAPA effectiveness verification")

    assert view["type"] == "modal" and view["callback_id"] == "aims_answer"
    assert json.loads(view["private_metadata"]) == {"request_id": 41, "round": 2}
    blocks = inputs(view)
    assert list(blocks) == list(Everything.model_fields)  # block_id = field name, in order
    el = {name: b["element"] for name, b in blocks.items()}
    assert {b["element"]["action_id"] for b in blocks.values()} == {"value"}
    assert el["summary"] == {
        "type": "plain_text_input",
        "multiline": False,
        "max_length": 200,
        "action_id": "value",
    }
    assert el["notes"]["multiline"] is True and el["notes"]["max_length"] == 3000  # Slack's cap
    assert el["verdict"]["type"] == "static_select"
    assert [o["value"] for o in el["verdict"]["options"]] == ["pass", "fail"]
    assert el["severity"]["initial_option"]["value"] == "low"  # an enum, its default chosen
    assert el["recurred"]["type"] == "radio_buttons"
    assert [o["value"] for o in el["recurred"]["options"]] == ["yes", "no"]
    assert el["due_on"]["type"] == "datepicker"
    assert el["attempts"] == {
        "type": "number_input",
        "is_decimal_allowed": False,
        "min_value": "0",
        "max_value": "9",
        "action_id": "value",
    }
    assert el["score"]["type"] == "number_input" and el["score"]["is_decimal_allowed"] is True
    assert el["actions"]["type"] == "plain_text_input" and el["actions"]["multiline"] is True
    assert el["labels"]["type"] == "multi_static_select"
    # Labels: the title, else the name humanised; hints: the description; defaults optional.
    assert blocks["summary"]["label"]["text"] == "Summary"
    assert blocks["summary"]["hint"]["text"] == "One line"
    assert blocks["due_on"]["label"]["text"] == "Due on"
    optional = {name for name, b in blocks.items() if b["optional"]}
    assert optional == {"notes", "severity", "score", "actions"}
    assert "CAPA effectiveness verification" in view["blocks"][1]["elements"][0]["text"]


def test_slacks_limits_are_kept_and_what_cannot_fit_is_refused_by_name() -> None:
    long = Ask(title="T" * 400, details="d" * 5000)
    view = answer_modal(long, Everything, title="A title far longer than twenty-four")
    head = view["blocks"][0]["text"]["text"]
    assert len(head) == 3000 and head.endswith("…")
    assert len(view["title"]["text"]) == 24 and view["title"]["text"].endswith("…")

    titled = create_model("Titled", q=(str, Field(title="Q" * 2500, description="h" * 2500)))
    block = inputs(answer_modal(Ask(), titled))["q"]
    assert len(block["label"]["text"]) == 2000 and len(block["hint"]["text"]) == 2000

    many = Literal[tuple(f"choice-{i:03d}" for i in range(150))]  # type: ignore[valid-type]
    wide = create_model("Wide", pick=(many, ...))
    assert inputs(answer_modal(Ask(), wide))["pick"]["element"] == {
        "type": "external_select",
        "min_query_length": 1,
        "action_id": "value",
    }
    served = options_for(wide, "pick", "CHOICE-14")  # what block_suggestion answers
    assert [o["value"] for o in served] == [f"choice-{i:03d}" for i in range(140, 150)]
    assert len(options_for(wide, "pick", "")) == 100

    fits = create_model("Fits", **{f"q{i}": (str, ...) for i in range(98)})  # type: ignore[call-overload]
    assert len(answer_modal(Ask(), fits)["blocks"]) == 100
    too_long = create_model("TooLong", **{f"q{i}": (str, ...) for i in range(99)})  # type: ignore[call-overload]
    with pytest.raises(ModalTooLarge) as refused:
        answer_modal(Ask(), too_long)
    assert refused.value.field == "model" and "one section per modal" in str(refused.value)

    nested = create_model("Nested", inner=(Everything, ...))
    with pytest.raises(InvalidInput) as bad:
        answer_modal(Ask(), nested)
    assert bad.value.field == "inner"


def test_a_submitted_state_reads_back_as_the_models_fields() -> None:
    view = answer_modal(Ask(), Everything)
    entered = {
        "summary": "Rate of false positives back to baseline",
        "notes": None,  # left empty: the default applies
        "verdict": "pass",
        "recurred": "no",
        "due_on": date(2027, 1, 15),
        "attempts": 3,
        "actions": "retrain on Q3 data\n\n  add a drift alert  \n",
        "labels": ["a", "c"],
    }

    values = values_from_state(Everything, view_state(view, entered))

    assert values == {
        "summary": "Rate of false positives back to baseline",
        "verdict": "pass",
        "recurred": False,
        "due_on": "2027-01-15",
        "attempts": "3",
        "actions": ["retrain on Q3 data", "add a drift alert"],
        "labels": ["a", "c"],
    }
    answer = Everything.model_validate(values)
    assert (answer.severity, answer.due_on, answer.attempts) == (Severity.low, date(2027, 1, 15), 3)
    assert errors_for("verdict", "x" * 3000)["errors"]["verdict"].endswith("…")

    reason = inputs(reject_modal(Ask()))["comment"]
    assert reason["optional"] is False and reason["element"]["multiline"] is True


def test_an_approval_has_approve_and_reject_and_another_kind_one_answer_button() -> None:
    def buttons(kind: str) -> list[str]:
        view = ApprovalView(
            request_id=7, kind=kind, title="t", subject="capa:7", activity="a", quorum=1,
            approver_count=1,
        )  # fmt: skip
        message = approval_request_message(view, with_code=False)
        return [
            e["action_id"] for b in message.blocks if b["type"] == "actions" for e in b["elements"]
        ]

    assert buttons("approval") == [APPROVE_ACTION_ID, REJECT_ACTION_ID]
    assert buttons(CAPA_VERIFICATION) == [ANSWER_ACTION_ID]


# --- the bridge: fixtures and helpers ----------------------------------------------------------


@pytest.fixture
def bridge(org: UnitOfWork, fake_slack: FakeSlack) -> Settings:
    """The demo organisation, the bridge's signing secret and team, and the fake Slack."""
    return slack_settings(
        org.settings, fake_slack, slack_signing_secret=SecretStr(SECRET), slack_team_id=TEAM_ID
    )


@pytest.fixture
def resume() -> ResumeRecorder:
    return ResumeRecorder()


@pytest.fixture
def client(bridge: Settings, resume: ResumeRecorder) -> Iterator[TestClient]:
    with TestClient(create_app(bridge, resume=resume)) as c:
        yield c


def gate(settings: Settings) -> int:
    return approvals.create_request(
        UnitOfWork(settings),
        approvals.ApprovalRequestIn(
            idempotency_key="gate-modal",
            subject="gate:credit-scoring:validation-deployment",
            activity="stage-gate",
            system="credit-scoring",
            title="Deploy credit-scoring v2",
            approver_roles=["compliance-officer", "ethics-committee", "governance-lead"],
            quorum=2,
            requester=f"ds.lead{D}",
            deadline=datetime.now(UTC) + timedelta(days=3),
            flow_run_id="7d0a3bd6-0f8e-4d55-9a43-3c3e0f7c1a11",
        ),
        Actor(who="flow", channel="flow"),
    ).id


def ask(settings: Settings, kind: str, key: str = "ask-modal") -> int:
    """An ask of `kind` about CAPA 7, owned by credit.owner (who may not answer it)."""
    return approvals.create_request(
        UnitOfWork(settings),
        approvals.ApprovalRequestIn(
            idempotency_key=key,
            kind=kind,
            subject="capa:7",
            activity="capa-verification",
            title="Verify CAPA 7: drift alert on credit-scoring",
            approver_roles=["compliance-officer", "internal-auditor", "system-owner"],
            excluded={f"credit.owner{D}": "owns CAPA 7"},
            flow_run_id="0b6f3c1e-7f0e-4a55-9a43-3c3e0f7c1a22",
        ),
        Actor(who="flow", channel="flow"),
    ).id


def post(client: TestClient, payload: dict[str, Any]) -> httpx.Response:
    body, headers = signed_interaction(SECRET, payload)
    return client.post("/slack/interactions", content=body, headers=headers)


def open_modal(
    client: TestClient, fake: FakeSlack, user: str, rid: int, action_id: str
) -> dict[str, Any]:
    """Click `action_id` on request `rid`'s message; the view the bridge opened for it."""
    opened = len(fake.views)
    payload = block_actions_payload(user, rid, action_id=action_id)
    response = post(client, payload)
    assert response.status_code == 200, response.text
    assert len(fake.views) == opened + 1, "views.open was not called"
    (call,) = fake.calls("views.open")[opened:]
    assert call.params["trigger_id"] == payload["trigger_id"]  # the click's own trigger
    return fake.views[-1].view


def submit(
    client: TestClient, user: str, view: dict[str, Any], answers: dict[str, Any]
) -> dict[str, Any]:
    response = post(client, view_submission_payload(user, view, answers))
    assert response.status_code == 200, response.text  # Slack shows anything else as an error
    return dict(response.json())


def decisions(settings: Settings) -> list[Decision]:
    with session_factory(settings.effective_database_url)() as s:
        return list(s.scalars(select(Decision).order_by(Decision.id)))


def events(settings: Settings, action: str) -> list[AuditEvent]:
    with session_factory(settings.effective_database_url)() as s:
        q = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(s.scalars(q))


def status(settings: Settings, rid: int) -> ApprovalStatus:
    with session_factory(settings.effective_database_url)() as s:
        row = s.get(ApprovalRequest, rid)
        assert row is not None
        return row.status


def notice(body: dict[str, Any]) -> str:
    assert body["response_action"] == "update", body
    (section,) = body["view"]["blocks"]
    return str(body["view"]["title"]["text"]) + ": " + str(section["text"]["text"])


# --- Reject: the reason modal --------------------------------------------------------------------


def test_reject_opens_the_reason_modal_and_records_the_typed_reason(
    bridge: Settings, client: TestClient, fake_slack: FakeSlack, resume: ResumeRecorder
) -> None:
    rid = gate(bridge)

    view = open_modal(client, fake_slack, ETHICS, rid, REJECT_ACTION_ID)

    assert view["callback_id"] == "aims_reject"
    assert list(inputs(view)) == ["comment"]
    assert decisions(bridge) == []  # a click on Reject decides nothing yet

    # A reason of blanks passes Slack's own "required" check: the service refuses it inline.
    blank = submit(client, ETHICS, view, {"comment": "   "})
    assert blank == {
        "response_action": "errors",
        "errors": {"comment": "a rejection needs a comment saying why"},
    }
    assert decisions(bridge) == [] and events(bridge, "approval.decided") == []

    reason = "The fairness report is from the previous model version."
    done = submit(client, ETHICS, view, {"comment": reason})

    assert notice(done) == f"Recorded: Recorded: request #{rid} is rejected."
    (d,) = decisions(bridge)
    assert (d.outcome, d.comment, d.channel, d.actor) == (
        Outcome.reject,
        reason,
        "slack",
        f"slack:{ETHICS}",
    )
    assert status(bridge, rid) is ApprovalStatus.rejected
    assert resume.calls == [rid]  # the follow-up of a click: the run is resumed

    # Submitted again (a double click on Submit), and by another approver: nothing written.
    again = submit(client, ETHICS, view, {"comment": "second thoughts"})
    assert notice(again).startswith("Already answered: ")
    late = submit(client, COMPLIANCE, view, {"comment": "me too"})
    assert notice(late) == f"Closed: Not recorded: request #{rid} is no longer open."
    assert len(decisions(bridge)) == 1 and resume.calls == [rid]
    # A click on Reject after that opens nothing and says why.
    post(client, block_actions_payload(COMPLIANCE, rid, action_id=REJECT_ACTION_ID))
    assert len(fake_slack.views) == 1


def test_when_the_modal_cannot_open_the_clicker_is_told_the_other_channels(
    bridge: Settings, client: TestClient, fake_slack: FakeSlack
) -> None:
    rid, aid = gate(bridge), ask(bridge, CAPA_VERIFICATION)
    fake_slack.error("expired_trigger_id", methods=["views.open"])
    fake_slack.fail_with(500, methods=["views.open"])
    fake_slack.add_channel("C0AIMS01")

    response = post(client, block_actions_payload(ETHICS, rid, action_id=REJECT_ACTION_ID))
    answer = post(client, block_actions_payload(AUDITOR, aid, action_id=ANSWER_ACTION_ID))

    assert (response.status_code, answer.status_code) == (200, 200)
    outcomes = [c.outcome for c in fake_slack.calls("views.open")]
    assert outcomes == ["error:expired_trigger_id", "http-500"]
    told, told_auditor = fake_slack.ephemerals  # privately, after the answer to the click
    assert told["user"] == ETHICS
    assert f'`aims reject {rid} --as ethics{D} --comment "why"`' in told["text"]
    assert "Prefect UI form" in told["text"] and "expired_trigger_id" in told["text"]
    assert told_auditor["user"] == AUDITOR
    assert f"`aims answer {aid} --as auditor{D} --set FIELD=VALUE ...`" in told_auditor["text"]
    assert decisions(bridge) == []


def test_a_deactivated_approvers_submission_is_refused_and_audited(
    bridge: Settings, client: TestClient, fake_slack: FakeSlack
) -> None:
    rid = gate(bridge)
    view = open_modal(client, fake_slack, COMPLIANCE, rid, REJECT_ACTION_ID)
    leavers.deactivate_person(
        UnitOfWork(bridge), f"compliance{D}", DeactivationIn(reason="left the company"), Actor.cli()
    )

    body = submit(client, COMPLIANCE, view, {"comment": "not ready"})

    assert notice(body).startswith("Not recorded: Not recorded: Tomás Ruiz was deactivated on ")
    assert "(left the company)" in notice(body)
    assert decisions(bridge) == []
    (refused,) = events(bridge, "approval.refused")
    assert (refused.details["reason"], refused.details["channel"]) == ("deactivated", "slack")


# --- an ask of another kind: the answer modal ----------------------------------------------------


def test_a_capa_verification_is_answered_in_a_modal_validated_inline(
    bridge: Settings, client: TestClient, fake_slack: FakeSlack, resume: ResumeRecorder
) -> None:
    rid = ask(bridge, CAPA_VERIFICATION)

    view = open_modal(client, fake_slack, AUDITOR, rid, ANSWER_ACTION_ID)

    assert view["callback_id"] == "aims_answer"
    assert {n: b["element"]["type"] for n, b in inputs(view).items()} == {
        "result": "static_select",
        "evidence": "plain_text_input",
    }
    # A choice the form does not offer (a tampered submission) and evidence of blanks: both
    # named inline at once, nothing written.
    bad = submit(client, AUDITOR, view, {"result": "maybe", "evidence": "  "})
    assert bad["response_action"] == "errors"
    assert set(bad["errors"]) == {"result", "evidence"}
    assert "'effective' or 'ineffective'" in bad["errors"]["result"]
    assert decisions(bridge) == []

    # The CAPA's owner is refused (segregation of duties), audited, nothing written.
    owner_view = open_modal(client, fake_slack, OWNER, rid, ANSWER_ACTION_ID)
    owner = submit(client, OWNER, owner_view, {"result": "effective", "evidence": "mine"})
    assert "may not answer" in notice(owner) and "owns CAPA 7" in notice(owner)
    assert [e.details["reason"] for e in events(bridge, "approval.refused")] == ["separation"]

    good = {"result": "effective", "evidence": "No drift alert for 90 days (dashboard export)."}
    # A modal opened before the ask moved to a new round answers nothing.
    approvals.next_round(UnitOfWork(bridge), rid, 1)
    stale = submit(client, AUDITOR, view, good)
    assert "moved on to a new round" in notice(stale) and decisions(bridge) == []
    view = open_modal(client, fake_slack, AUDITOR, rid, ANSWER_ACTION_ID)
    assert json.loads(view["private_metadata"]) == {"request_id": rid, "round": 2}

    done = submit(client, AUDITOR, view, good)

    assert notice(done) == f"Recorded: Recorded: your answer to ask #{rid}. The ask is complete."
    (d,) = decisions(bridge)
    assert (d.outcome, d.answer, d.channel) == (Outcome.answer, good, "slack")
    assert status(bridge, rid) is ApprovalStatus.answered
    assert resume.calls == [rid]
    assert submit(client, AUDITOR, view, good)["view"]["title"]["text"] == "Already answered"
    assert len(decisions(bridge)) == 1


def test_a_serious_incident_confirmation_modal_names_the_missing_reason(
    bridge: Settings, client: TestClient, fake_slack: FakeSlack
) -> None:
    rid = ask(bridge, SERIOUS_CONFIRMATION, key="serious-modal")
    view = open_modal(client, fake_slack, COMPLIANCE, rid, ANSWER_ACTION_ID)
    kinds = [o["value"] for o in inputs(view)["kind"]["element"]["options"]]
    assert kinds[0] == NOT_SERIOUS and len(kinds) > 1

    # Options of a choice are served to an external select from the same model.
    body, headers = signed_interaction(
        SECRET,
        {
            "type": "block_suggestion",
            "user": {"id": COMPLIANCE, "team_id": TEAM_ID},
            "team": {"id": TEAM_ID},
            "action_id": "value",
            "block_id": "kind",
            "value": "NOT-SER",
            "view": view,
        },
    )
    served = client.post("/slack/interactions", content=body, headers=headers).json()
    assert served == {"options": [{"text": {"type": "plain_text", "text": NOT_SERIOUS},
                                   "value": NOT_SERIOUS}]}  # fmt: skip

    dismissed = submit(client, COMPLIANCE, view, {"kind": NOT_SERIOUS})
    assert dismissed["response_action"] == "errors"
    assert list(dismissed["errors"]) == ["kind"]  # a rule of the whole answer: the first block
    assert "say why it is not a serious incident" in dismissed["errors"]["kind"]
    assert decisions(bridge) == []

    done = submit(client, COMPLIANCE, view, {"kind": kinds[1], "reason": ""})
    assert notice(done).startswith("Recorded: ")
    (d,) = decisions(bridge)
    assert d.answer == {"kind": kinds[1], "reason": ""}


# --- Socket Mode ---------------------------------------------------------------------------------


def test_a_submission_over_socket_mode_is_answered_in_the_ack_after_the_commit(
    bridge: Settings, client: TestClient, fake_slack: FakeSlack, resume: ResumeRecorder
) -> None:
    rid = ask(bridge, CAPA_VERIFICATION)
    view = open_modal(client, fake_slack, COMPLIANCE, rid, ANSWER_ACTION_ID)
    seen_at_ack: list[int] = []
    with FakeSocketModeServer() as server:
        s = bridge.model_copy(
            update={
                "slack_app_token": SecretStr("xapp-1-A0AIMSAPP-1-test"),
                "slack_signing_secret": None,
            }
        )
        socket_bridge = SocketModeBridge(s, api_base_url=server.api_base_url, resume=resume)
        socket_bridge.connect()
        try:
            server.wait_connected()
            server.on_client_message = lambda m: (
                seen_at_ack.append(count(bridge, Decision)) if "envelope_id" in m else None
            )
            payload = view_submission_payload(
                COMPLIANCE, view, {"result": "ineffective", "evidence": "It recurred on 3 Dec."}
            )
            eid = server.send_interactive(payload)
            ack = server.wait_for_ack(eid)
            _wait_for(lambda: resume.calls == [rid])
        finally:
            socket_bridge.client.auto_reconnect_enabled = False
            server.drop_connections()
            _wait_for(lambda: not socket_bridge.client.is_connected())
            socket_bridge.close()

    assert seen_at_ack == [1]  # committed before Slack was told
    assert ack["payload"]["response_action"] == "update"
    assert ack["payload"]["view"]["title"]["text"] == "Recorded"
    (d,) = decisions(bridge)
    assert (d.answer, d.actor) == (
        {"result": "ineffective", "evidence": "It recurred on 3 Dec."},
        f"slack:{COMPLIANCE}",
    )
