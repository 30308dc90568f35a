"""A decision travels end to end: flow → suspended run → Slack message → signed click → resume.

Real Prefect API, real served runner (runs suspend: no process is kept), real slack-sdk against
the local fake Slack, real signed payloads through the bridge app.
"""

from __future__ import annotations

import time
import uuid

from fakes.slack_signing import block_actions_payload, signed_interaction
from fastapi.testclient import TestClient
from prefect_fixtures import SIGNING_SECRET, engine_cli, resume_with, wait_for_state
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
    with get_engine(engine.settings.effective_database_url).connect() as conn:
        sent = conn.execute(
            select(Notification.slack_channel, Notification.slack_ts).where(
                Notification.request_id == req.id, Notification.slack_ts.is_not(None)
            )
        ).all()
    assert sent, "the approval message reached Slack"
    buttons = [
        el
        for msg in engine.slack.messages
        for block in msg.blocks
        if block.get("type") == "actions"
        for el in block["elements"]
        if el.get("value") == str(req.id)
    ]
    assert {b["action_id"] for b in buttons} == {"aims_approve", "aims_reject"}

    body, headers = signed_interaction(
        SIGNING_SECRET, block_actions_payload(CREDIT_OWNER_SLACK, req.id, "approve")
    )
    with TestClient(create_app(engine.settings)) as client:
        answer = client.post("/slack/interactions", content=body, headers=headers)
    assert answer.status_code == 200
    # The clicker is told privately what happened (Slack ignores an interaction's response body).
    assert any(e["user"] == CREDIT_OWNER_SLACK for e in engine.slack.ephemerals)

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
    opened = [t for t in task_runs if t.name.startswith("open ask")]
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
    for channel, ts in sent:
        assert not any(b.get("type") == "actions" for b in engine.slack.message(channel, ts).blocks)


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


# --- the other channels ------------------------------------------------------------------------

GOVERNANCE = "governance@northwind.example"  # Accountable of the org-wide stage-gate RACI
COMPLIANCE = "compliance@northwind.example"  # Consulted, compliance officer
ETHICS = "ethics@northwind.example"  # Consulted, ethics committee
SLACK_IDS = {GOVERNANCE: "U0DEMO002", COMPLIANCE: "U0DEMO003", ETHICS: "U0DEMO007"}


def fraud_gate(quorum: int, roles: list[str] | None = None) -> ApprovalRequestIn:
    """fraud-detection has no RACI of its own: the org-wide stage-gate RACI scopes approvers."""
    return ApprovalRequestIn(
        idempotency_key=f"e2e-{uuid.uuid4().hex[:8]}",
        subject="system:fraud-detection",
        activity="stage-gate",
        system="fraud-detection",
        title=f"Deploy fraud-detection ({quorum} approvals)",
        approver_roles=roles or ["governance-lead", "compliance-officer", "ethics-committee"],
        quorum=quorum,
        requester="ds.lead@northwind.example",
    )


def suspended_request(engine, spec):  # type: ignore[no-untyped-def]
    run = start_approval(spec)
    wait_for_state(run.id, {"Suspended"})
    return run, request_row(engine, spec.idempotency_key)


def click(engine, email: str, request_id: int, action: str = "approve", times: int = 1) -> None:  # type: ignore[no-untyped-def]
    body, headers = signed_interaction(
        SIGNING_SECRET, block_actions_payload(SLACK_IDS[email], request_id, action)
    )
    with TestClient(create_app(engine.settings)) as client:
        for _ in range(times):
            assert (
                client.post("/slack/interactions", content=body, headers=headers).status_code == 200
            )


def resumes(flow_run_id) -> int:  # type: ignore[no-untyped-def]
    """How often the run was resumed: Prefect records a "Resuming" state each time."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(flow_run_id)
    return sum(1 for s in states if s.name == "Resuming")


def code_for(engine, request_id: int, email: str) -> str:  # type: ignore[no-untyped-def]
    from aims_core.models import Person
    from aims_core.services import approvals
    from aims_core.uow import UnitOfWork

    person_id = scalar(engine, select(Person.id).where(Person.email == email))
    code = approvals.current_code(UnitOfWork(engine.settings), request_id, person_id)
    assert code
    return code


def decisions(engine, request_id: int) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    from aims_core.models import Person

    with get_engine(engine.settings.effective_database_url).connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(Person.email, Decision.channel)
                .join(Person, Person.id == Decision.person_id)
                .where(Decision.request_id == request_id)
                .order_by(Decision.id)
            )
        ]


def refusals(engine, request_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    with get_engine(engine.settings.effective_database_url).connect() as conn:
        return [
            d.get("reason")
            for d in conn.scalars(
                select(AuditEvent.details).where(
                    AuditEvent.subject == f"approval:{request_id}",
                    AuditEvent.action == "approval.refused",
                )
            )
        ]


def test_ui_resume_counts_only_with_the_approvers_own_code(engine) -> None:
    run, req = suspended_request(engine, fraud_gate(1))
    # A wrong code, then another approver's code: refused and audited; the run waits again.
    resume_with(run.id, approver=GOVERNANCE, decision="approve", code="AAAAA-AAAAA")
    wait_for_state(run.id, {"Suspended"}, timeout=60)
    assert wait_until(lambda: request_row(engine, req.idempotency_key).round == 2, 30)
    resume_with(
        run.id, approver=GOVERNANCE, decision="approve", code=code_for(engine, req.id, COMPLIANCE)
    )
    assert wait_until(lambda: request_row(engine, req.idempotency_key).round == 3, 60)
    wait_for_state(run.id, {"Suspended"}, timeout=60)
    assert decisions(engine, req.id) == []
    assert refusals(engine, req.id) == ["bad-code", "bad-code"]
    # The right code: decided through the UI channel, and the run completes.
    resume_with(
        run.id,
        approver=GOVERNANCE,
        decision="approve",
        code=code_for(engine, req.id, GOVERNANCE).lower(),
    )
    done = wait_for_state(run.id, {"Completed"})
    assert done.state.result().approved is True
    assert decisions(engine, req.id) == [(GOVERNANCE, "ui")]


def test_cli_approval_and_a_triple_click_reach_a_2_of_3_quorum_with_one_resume(engine) -> None:
    started = engine_cli(
        engine,
        "approvals", "request", "--subject", "system:fraud-detection", "--title",
        "Deploy fraud-detection v3", "--activity", "stage-gate", "--system", "fraud-detection",
        "--role", "governance-lead", "--role", "compliance-officer", "--role", "ethics-committee",
        "--quorum", "2", "--requester", "ds.lead@northwind.example",
    )  # fmt: skip
    assert started.exit_code == 0, started.output
    assert (
        "started run approval system:fraud-detection: Deploy fraud-detection v3" in started.output
    )
    run_id = started.output.split("(", 1)[1].split(")", 1)[0]
    assert f"/runs/flow-run/{run_id}" in started.output
    run = wait_for_state(run_id, {"Suspended"})
    with get_engine(engine.settings.effective_database_url).connect() as conn:
        req = conn.execute(
            select(ApprovalRequest).where(ApprovalRequest.flow_run_id == run_id)
        ).one()
    first = engine_cli(engine, "approve", str(req.id), "--as", COMPLIANCE)
    assert first.exit_code == 0, first.output
    assert "waiting: 1 of 2 approvals" in first.output
    time.sleep(2)  # the first approval must leave the run waiting
    assert wait_for_state(run.id, {"Suspended"}).state.name == "Suspended"
    assert resumes(run.id) == 0

    click(engine, GOVERNANCE, req.id, times=3)  # Slack re-delivers: one decision, one resume
    done = wait_for_state(run.id, {"Completed"})
    assert set(done.state.result().approvals) == {COMPLIANCE, GOVERNANCE}
    assert decisions(engine, req.id) == [(COMPLIANCE, "cli"), (GOVERNANCE, "slack")]
    assert resumes(run.id) == 1


def test_a_rejection_over_socket_mode_resumes_the_run_rejected(engine) -> None:
    """A Slack rejection is the reason modal's submission (Reject opens it)."""
    from fakes.slack_views import reject_submission_payload
    from fakes.socket_mode_server import FakeSocketModeServer
    from pydantic import SecretStr

    from notifications.socket_mode import SocketModeBridge

    run, req = suspended_request(engine, fraud_gate(2))
    with FakeSocketModeServer() as server:
        settings = engine.settings.model_copy(
            update={"slack_app_token": SecretStr("xapp-1-A0AIMSAPP-1-e2e")}
        )
        bridge = SocketModeBridge(settings, api_base_url=server.api_base_url)
        bridge.connect()
        try:
            server.wait_connected()
            payload = reject_submission_payload(SLACK_IDS[ETHICS], req.id, "bias not tested")
            eid = server.send_interactive(payload)
            ack = server.wait_for_ack(eid)
            assert ack["payload"]["view"]["title"]["text"] == "Recorded", ack
            done = wait_for_state(run.id, {"Completed"})
        finally:
            bridge.client.auto_reconnect_enabled = False
            server.drop_connections()
            wait_until(lambda: not bridge.client.is_connected(), 5)
            bridge.close()
    outcome = done.state.result()
    assert outcome.approved is False
    assert outcome.status == "rejected"
    assert decisions(engine, req.id) == [(ETHICS, "slack")]
    reason = select(Decision.comment).where(Decision.request_id == req.id)
    assert scalar(engine, reason) == "bias not tested"  # the typed reason, recorded


def test_decision_while_prefect_is_down_is_kept_and_the_reconciler_resumes_later(engine) -> None:
    from aims_core.services.reconcile import reconcile
    from deployments.prefect_runs import PrefectRuns

    run, req = suspended_request(engine, fraud_gate(1))
    engine.server.stop()
    try:
        click(engine, GOVERNANCE, req.id)  # acknowledged with 200 although Prefect is down
        assert decisions(engine, req.id) == [(GOVERNANCE, "slack")]
        assert request_row(engine, req.idempotency_key).resume_pending is True
    finally:
        engine.server.start()
    report = reconcile(engine.settings, runs=PrefectRuns())
    assert report.resumed_ids == [req.id], report.summary()
    done = wait_for_state(run.id, {"Completed"})
    assert done.state.result().approved is True
    assert request_row(engine, req.idempotency_key).resume_pending is False
    assert (
        reconcile(engine.settings, runs=PrefectRuns()).resumed_ids == []
    )  # nothing left to resume


def test_aims_approve_alone_resumes_the_run_and_the_form_says_what_is_decided(engine) -> None:
    from prefect.client.orchestration import get_client
    from prefect.input.run_input import keyset_from_paused_state

    run, req = suspended_request(engine, fraud_gate(1))
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
        keyset = keyset_from_paused_state(state)
        description = client.read_flow_run_input(run.id, keyset["description"])
    assert "fraud-detection — risk tier **high**" in description
    assert "personal code" in description

    result = engine_cli(engine, "approve", str(req.id), "--as", ETHICS)
    assert result.exit_code == 0, result.output
    assert f"flow run {run.id}: resumed" in result.output
    done = wait_for_state(run.id, {"Completed"})
    assert done.state.result().approvals == [ETHICS]
    assert decisions(engine, req.id) == [(ETHICS, "cli")]
