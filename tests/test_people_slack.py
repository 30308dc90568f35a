"""Slack identities and leavers in Slack: `aims people link-slack` against the fake Slack Web API,
an unknown clicker linked by their Slack profile email after the acknowledgement, and a
deactivated approver's signed click refused naming the deactivation.

Clicks are real, correctly signed `block_actions` requests posted to the bridge's FastAPI app in
process (tests/fakes/slack_signing); Slack is notifications/fake_slack.py; SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fakes.slack_api import FakeSlack, fake_slack, slack_settings
from fakes.slack_signing import block_actions_payload, signed_interaction
from fastapi.testclient import TestClient
from pydantic import SecretStr
from records import count
from slack_sdk import WebClient
from sqlalchemy import select
from test_people import gate

from aims_core.db import session_factory
from aims_core.models import AuditEvent, Decision, Person
from aims_core.schemas import PersonIn
from aims_core.services import approvals, leavers, people
from aims_core.services.people import DeactivationIn, PersonUpdate
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork
from notifications import interactions
from notifications.app import create_app
from notifications.fake_slack import TEAM_ID

__all__ = ["fake_slack"]  # the fixture, imported for this module's tests

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
D = "@northwind.example"
COMPLIANCE, ETHICS, PROCUREMENT, HANA, GOV, CEO, DS = (
    f"{n}{D}"
    for n in (
        "compliance",
        "ethics",
        "procurement",
        "contract.auditor",
        "governance",
        "ceo",
        "ds.lead",
    )
)


def slack_id(settings: Settings, email: str) -> str | None:
    with session_factory(settings.effective_database_url)() as s:
        return s.scalar(select(Person.slack_user_id).where(Person.email == email))


def events(settings: Settings, action: str) -> list[AuditEvent]:
    with session_factory(settings.effective_database_url)() as s:
        q = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(s.scalars(q))


@pytest.fixture
def bridge(org: UnitOfWork, fake_slack: FakeSlack) -> Settings:
    """The demo organisation, the bridge's signing secret and team, and the fake Slack."""
    return slack_settings(
        org.settings,
        fake_slack,
        slack_signing_secret=SecretStr(SECRET),
        slack_team_id=TEAM_ID,
    )


@pytest.fixture
def client(bridge: Settings, fake_slack: FakeSlack) -> Iterator[TestClient]:
    web = WebClient(token=fake_slack.token, base_url=fake_slack.base_url)
    app = create_app(bridge, resume=lambda settings, request_id: "recorded", slack_client=web)
    with TestClient(app) as c:
        yield c


def click(client: TestClient, user: str, request_id: int) -> str:
    body, headers = signed_interaction(SECRET, block_actions_payload(user, request_id))
    response = client.post("/slack/interactions", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["text"])


# --- link-slack ---------------------------------------------------------------------------------


def test_link_slack_sets_the_ids_slack_knows_and_reports_the_rest(
    org: UnitOfWork,
    settings: Settings,
    fake_slack: FakeSlack,
    run_cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIMS_SLACK_BOT_TOKEN", fake_slack.token)
    monkeypatch.setenv("AIMS_SLACK_API_URL", fake_slack.base_url)
    for email, name in (("new.hire" + D, "New Hire"), ("temp" + D, "Tem Porary")):
        people.add_person(org, PersonIn(email=email, name=name), Actor.cli())
    # Slack knows Rita; Hana is not in Slack; new.hire's Slack user is governance's id; Slack
    # fails on temp's lookup; the CEO is already linked (not looked up without --email).
    fake_slack.add_user("U0RITA001", PROCUREMENT, "Rita Costa")
    fake_slack.add_user("U0DEMO002", "new.hire" + D, "New Hire")
    fake_slack.add_user("U0DEMO001", CEO, "Grace Okafor")
    fake_slack.error("fatal_error", methods=["users.lookupByEmail"], after=3)
    before = count(settings, AuditEvent)

    result = run_cli("people", "link-slack", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["linked"] == {PROCUREMENT: "U0RITA001"}
    assert report["not_found"] == [HANA]
    assert report["taken"] == {"new.hire" + D: f"U0DEMO002 (belongs to {GOV})"}
    assert report["failed"] == {"temp" + D: "fatal_error"}
    looked_up = [r.params["email"] for r in fake_slack.calls("users.lookupByEmail")]
    assert looked_up == [HANA, "new.hire" + D, PROCUREMENT, "temp" + D]
    assert slack_id(settings, PROCUREMENT) == "U0RITA001"
    assert slack_id(settings, HANA) is None and slack_id(settings, "new.hire" + D) is None
    (linked,) = events(settings, "person.slack-linked")
    assert (linked.subject, linked.details["slack_id"]) == (f"person:{PROCUREMENT}", "U0RITA001")
    assert count(settings, AuditEvent) == before + 1

    again = run_cli("people", "link-slack", "--email", CEO)
    assert again.exit_code == 0, again.output
    assert f"unchanged  {CEO} (already U0DEMO001)" in again.output
    assert count(settings, AuditEvent) == before + 1
    monkeypatch.delenv("AIMS_SLACK_BOT_TOKEN")
    refused = run_cli("people", "link-slack")
    assert refused.exit_code == 2 and "AIMS_SLACK_BOT_TOKEN" in refused.output


# --- an unknown clicker is linked after the acknowledgement -------------------------------------


def test_an_unknown_clicker_is_linked_by_profile_email_after_the_ack_and_clicks_again(
    bridge: Settings, client: TestClient, fake_slack: FakeSlack
) -> None:
    people.update_person(UnitOfWork(bridge), ETHICS, PersonUpdate(slack_id="none"), Actor.cli())
    fake_slack.add_user("U0AMARA01", ETHICS.upper(), "Amara Diallo")
    rid = gate(bridge, 1, key="gate-slack")

    # The acknowledgement itself links nobody: it is computed (and the refusal audited) first.
    ack = interactions.handle_interaction(bridge, block_actions_payload("U0AMARA01", rid))
    assert ack.refused_reason == "unknown-person"
    assert slack_id(bridge, ETHICS) is None and events(bridge, "person.slack-linked") == []

    # Through the bridge: refused as today; the follow-up after the answer links them.
    text = click(client, "U0AMARA01", rid)
    assert "not linked to a person" in text
    assert count(bridge, Decision) == 0
    assert slack_id(bridge, ETHICS) == "U0AMARA01"
    (linked,) = events(bridge, "person.slack-linked")
    assert (linked.subject, linked.actor, linked.channel) == (
        f"person:{ETHICS}",
        "slack:U0AMARA01",
        "slack",
    )
    refused = events(bridge, "approval.refused")
    assert [e.details["reason"] for e in refused] == ["unknown-person", "unknown-person"]
    assert refused[-1].id < linked.id  # the refusal was committed before the link
    assert [c.params["user"] for c in fake_slack.calls("users.info")] == ["U0AMARA01"]

    # They click again: now it counts.
    assert f"#{rid} is approved" in click(client, "U0AMARA01", rid)
    (decision,) = approvals.get_request(UnitOfWork(bridge), rid).decisions
    assert decision.person == ETHICS

    # A Slack user whose profile email is nobody's (or a linked person's) links nobody.
    fake_slack.add_user("U0STRANGE", "stranger@elsewhere.example")
    fake_slack.add_user("U0SECOND1", COMPLIANCE)  # compliance already has U0DEMO003
    for user in ("U0STRANGE", "U0SECOND1"):
        assert "not linked" in click(client, user, rid)
    assert len(events(bridge, "person.slack-linked")) == 1
    assert slack_id(bridge, COMPLIANCE) == "U0DEMO003"


# --- a leaver's click ---------------------------------------------------------------------------


def test_a_deactivated_approvers_signed_click_is_refused_naming_the_deactivation(
    bridge: Settings, client: TestClient
) -> None:
    rid = gate(bridge, 2, key="gate-slack")
    leavers.deactivate_person(
        UnitOfWork(bridge), COMPLIANCE, DeactivationIn(reason="left the company"), Actor.cli()
    )

    text = click(client, "U0DEMO003", rid)

    assert text == (
        f"Not recorded: Tomás Ruiz was deactivated on {datetime.now(UTC):%Y-%m-%d} "
        f"(left the company): not eligible to decide request {rid}."
    )
    assert count(bridge, Decision) == 0
    (refused,) = events(bridge, "approval.refused")
    assert (refused.details["reason"], refused.details["person"]) == ("deactivated", COMPLIANCE)
    # The other approvers still decide: quorum 2 of the two left.
    assert "1 of 2 approvals so far" in click(client, "U0DEMO007", rid)
