"""A decision travels end to end: flow → suspended run → Slack message → signed click → resume.

Real Prefect API, real served runner (runs suspend: no process is kept), real slack-sdk against
the local fake Slack, real signed payloads through the bridge app.
"""

from __future__ import annotations

import time
import uuid

from fakes.slack_signing import block_actions_payload, signed_interaction
from fastapi.testclient import TestClient
from prefect_fixtures import SIGNING_SECRET, wait_for_state
from prefect_harness import processes_for_flow_run
from sqlalchemy import func, select

from aims_core.db import get_engine
from aims_core.models import ApprovalRequest, AuditEvent, Decision, Evidence, Notification
from aims_core.services.approvals import ApprovalRequestIn
from notifications.app import create_app

CREDIT_OWNER_SLACK = "U0DEMO004"  # Priya Nair, Accountable for credit-scoring's stage gate


def start_approval(spec: ApprovalRequestIn):  # type: ignore[no-untyped-def]
    from prefect.deployments import run_deployment

    return run_deployment(
        "approval/approval", parameters={"spec": spec.model_dump(mode="json")}, timeout=0
    )


def request_row(engine, key: str) -> ApprovalRequest:  # type: ignore[no-untyped-def]
    with get_engine(engine.settings.effective_database_url).connect() as conn:
        return conn.execute(
            select(ApprovalRequest).where(ApprovalRequest.idempotency_key == key)
        ).one()


def scalar(engine, stmt):  # type: ignore[no-untyped-def]
    with get_engine(engine.settings.effective_database_url).connect() as conn:
        return conn.scalar(stmt)


def test_slack_click_resumes_the_suspended_run(engine) -> None:
    key = f"e2e-{uuid.uuid4().hex[:8]}"
    spec = ApprovalRequestIn(
        idempotency_key=key,
        subject="system:credit-scoring",
        activity="stage-gate",
        system="credit-scoring",
        title="Deploy credit-scoring v2",
        approver_roles=["system-owner"],
        quorum=1,
        requester="ds.lead@northwind.example",
    )
    run = start_approval(spec)
    suspended = wait_for_state(run.id, {"Suspended"})
    assert suspended.state.type.value == "PAUSED"
    # Suspended, not paused: the run's process exits (it needs a moment after the state change).
    assert wait_until(lambda: processes_for_flow_run(str(run.id)) == [], 30)

    req = request_row(engine, key)
    assert req.flow_run_id == str(run.id)
    posts = [c for c in engine.slack.calls("chat.postMessage") if str(req.id) in str(c.params)]
    assert posts, "the approval message reached Slack"
    buttons = [
        el
        for msg in engine.slack.messages
        for block in msg.blocks
        if block.get("type") == "actions"
        for el in block["elements"]
    ]
    assert {b["value"] for b in buttons} >= {str(req.id)}

    body, headers = signed_interaction(
        SIGNING_SECRET, block_actions_payload(CREDIT_OWNER_SLACK, req.id, "approve")
    )
    with TestClient(create_app(engine.settings)) as client:
        answer = client.post("/slack/interactions", content=body, headers=headers)
    assert answer.status_code == 200

    done = wait_for_state(run.id, {"Completed"})
    assert done.state.is_completed()
    outcome = done.state.result()
    assert outcome.approved is True
    assert outcome.approvals == ["credit.owner@northwind.example"]

    # Steps before the wait came back cached on the re-run: written and sent once.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    opened = [t for t in task_runs if t.name.startswith("open approval request")]
    assert any(t.state.name == "Cached" for t in opened), [t.state.name for t in opened]
    assert (
        scalar(
            engine,
            select(func.count())
            .select_from(ApprovalRequest)
            .where(ApprovalRequest.idempotency_key == key),
        )
        == 1
    )
    assert (
        scalar(
            engine,
            select(func.count())
            .select_from(Evidence)
            .where(Evidence.idempotency_key == f"decision-approval-{req.id}"),
        )
        == 1
    )
    keys = [
        r
        for r in scalar_all(
            engine, select(Notification.idempotency_key).where(Notification.request_id == req.id)
        )
    ]
    assert len(keys) == len(set(keys))
    decisions = scalar_all(engine, select(Decision.channel).where(Decision.request_id == req.id))
    assert decisions == ["slack"]
    actions = scalar_all(
        engine, select(AuditEvent.action).where(AuditEvent.subject == f"approval:{req.id}")
    )
    assert "approval.requested" in actions
    assert "approval.decided" in actions

    # The message in Slack no longer offers buttons: it says who approved.
    updates = engine.slack.calls("chat.update")
    assert updates, "the original message was updated"
    assert not any(
        block.get("type") == "actions"
        for msg in engine.slack.messages
        if str(req.id) in str(msg.as_slack())
        for block in msg.blocks
    )


def wait_until(check, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return bool(check())


def scalar_all(engine, stmt) -> list:  # type: ignore[no-untyped-def]
    with get_engine(engine.settings.effective_database_url).connect() as conn:
        return list(conn.scalars(stmt))
