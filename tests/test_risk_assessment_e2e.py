"""Risk reassessment end to end: a system event starts a `risk-assessment` deployment run, and a
risk accepted above appetite makes that run wait (suspended) for an eligible approver.

Real Prefect API and served runner (the session's `engine`); runs, tags and artifacts are read
back through the Prefect API. Uses credit-scoring (high risk) in the shared database.
"""

from __future__ import annotations

import json
import time
from typing import Any

from prefect_fixtures import engine_cli, read_run, task_states, wait_for_state
from sqlalchemy import select, update

from aims_core.db import get_engine, session_factory
from aims_core.models import (
    AISystem,
    ApprovalRequest,
    Evidence,
    LifecycleStage,
    Risk,
    RiskStatus,
    SystemEvent,
)
from aims_core.services import risks
from aims_core.services.risks import RiskIn, TreatmentIn
from aims_core.uow import Actor, UnitOfWork

SYSTEM = "credit-scoring"
GOVERNANCE = "governance@northwind.example"  # risk-manager, Accountable for risk-assessment
CEO = "ceo@northwind.example"  # top-management, only Informed in the risk-assessment RACI
DS = "ds.lead@northwind.example"
ACTOR = Actor(who="e2e", channel="test")


def run_id_of(output: str) -> str:
    return output.split("started run ", 1)[1].split("(")[-1].split(")", 1)[0]


def one(engine, stmt) -> Any:  # type: ignore[no-untyped-def]
    with get_engine(engine.settings.effective_database_url).connect() as conn:
        return conn.execute(stmt).one()


def put_in_operation(engine) -> None:  # type: ignore[no-untyped-def]
    with session_factory(engine.settings.effective_database_url)() as s:
        s.execute(
            update(AISystem)
            .where(AISystem.name == SYSTEM)
            .values(lifecycle_stage=LifecycleStage.operation, reapproval_stage=None)
        )
        s.commit()


def table_artifact(run_id: str) -> list[dict[str, Any]]:
    """The run's latest risk-register table, as the UI shows it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    tables = sorted(
        (a for a in arts if a.key == f"risk-register-{SYSTEM}" and a.type == "table"),
        key=lambda a: a.created,
    )
    assert tables, [(a.key, a.type) for a in arts]
    data = tables[-1].data
    return json.loads(data) if isinstance(data, str) else data


def test_data_drift_on_a_high_risk_system_in_operation_starts_its_reassessment(engine) -> None:
    started_at = time.monotonic()
    put_in_operation(engine)
    risk = risks.add_risk(
        UnitOfWork(engine.settings),
        RiskIn(system=SYSTEM, title="Score drift on thin-file applicants", owner=DS,
               likelihood=3, impact=4),
        ACTOR,
    )  # fmt: skip
    risks.treat_risk(
        UnitOfWork(engine.settings),
        TreatmentIn(risk_id=risk.id, option="mitigate", justification="Monthly PSI monitoring",
                    residual_likelihood=2, residual_impact=4),
        ACTOR,
    )  # fmt: skip

    result = engine_cli(
        engine, "systems", "event", SYSTEM, "--kind", "data-drift", "--details", "PSI 0.31"
    )
    assert result.exit_code == 0, result.output
    assert "the operation gate needs re-approval" in result.stdout
    assert "started run risk assessment credit-scoring (data-drift)" in result.stdout
    run_id = run_id_of(result.stdout)
    assert f"/runs/flow-run/{run_id}" in result.stdout

    # The mark and the event are in the database at once, before the run does anything.
    system = one(engine, select(AISystem).where(AISystem.name == SYSTEM))
    assert system.reapproval_stage == LifecycleStage.operation
    event = one(engine, select(SystemEvent).where(SystemEvent.flow_run_id == run_id))
    assert (event.kind, event.details) == ("data-drift", "PSI 0.31")

    done = wait_for_state(run_id, {"Completed"})
    run, deployment = read_run(run_id)
    assert run.name == "risk assessment credit-scoring (data-drift)"
    assert {"risk-assessment", SYSTEM, "high", "data-drift"} <= set(run.tags)
    assert deployment.name == "risk-assessment"
    assert run.parameters == {"system": SYSTEM, "trigger": "data-drift", "event_id": event.id}
    outcome = done.state.result()
    assert (outcome.trigger, outcome.accepted, outcome.rejected) == ("data-drift", [], [])

    rows = table_artifact(run_id)
    mine = next(r for r in rows if r["risk"] == f"#{risk.id} Score drift on thin-file applicants")
    assert (mine["score"], mine["treatment"], mine["residual"], mine["status"]) == (
        "12 high (3x4)",
        "mitigate",
        "8 (2x4)",
        "treated",
    )
    record = one(
        engine, select(Evidence).where(Evidence.idempotency_key == f"risk-assessment-{run_id}")
    )
    assert (record.subject, record.kind) == (f"system:{SYSTEM}", "risk-assessment")
    assert "trigger: data-drift (event" in record.content
    assert "gate needing re-approval: operation" in record.content
    print(f"data-drift → completed reassessment: {time.monotonic() - started_at:.1f} s")


def test_a_risk_accepted_above_appetite_waits_for_an_eligible_approver(engine) -> None:
    started_at = time.monotonic()
    risk = risks.add_risk(
        UnitOfWork(engine.settings),
        RiskIn(system=SYSTEM, title="Unexplainable denials", owner=DS, likelihood=4, impact=5),
        ACTOR,
    )
    risks.treat_risk(
        UnitOfWork(engine.settings),
        TreatmentIn(risk_id=risk.id, option="accept", justification="Regulator-approved model"),
        ACTOR,
    )

    result = engine_cli(engine, "risks", "assess", SYSTEM)
    assert result.exit_code == 0, result.output
    run_id = run_id_of(result.stdout)
    wait_for_state(run_id, {"Suspended"})
    run, _ = read_run(run_id)
    assert run.name == "risk assessment credit-scoring (manual)"

    row = one(engine, select(Risk).where(Risk.id == risk.id))
    assert row.status == RiskStatus.awaiting_acceptance and row.acceptance_request_id
    req = one(
        engine, select(ApprovalRequest).where(ApprovalRequest.id == row.acceptance_request_id)
    )
    assert (req.subject, req.activity, req.flow_run_id) == (
        f"risk:{risk.id}",
        "risk-assessment",
        run_id,
    )
    waiting = next(r for r in table_artifact(run_id) if r["risk"].startswith(f"#{risk.id} "))
    assert waiting["status"] == f"awaiting-acceptance (request {req.id})"

    # The CEO is not an eligible approver here (only Informed in the risk-assessment RACI).
    refused = engine_cli(engine, "approve", str(req.id), "--as", CEO)
    assert refused.exit_code == 2, refused.output
    approved = engine_cli(engine, "approve", str(req.id), "--as", GOVERNANCE)
    assert approved.exit_code == 0, approved.output
    assert "resumed" in approved.stdout

    done = wait_for_state(run_id, {"Completed"})
    assert done.state.result().accepted == [risk.id]
    row = one(engine, select(Risk).where(Risk.id == risk.id))
    assert row.status == RiskStatus.treated
    decision = one(
        engine,
        select(Evidence).where(Evidence.idempotency_key == f"decision-risk-acceptance-{req.id}"),
    )
    assert decision.subject == f"risk:{risk.id}"
    treated = next(r for r in table_artifact(run_id) if r["risk"].startswith(f"#{risk.id} "))
    assert treated["status"] == f"treated (request {req.id})"
    # The resumed run re-ran from the top: the steps before the wait came back cached.
    states = task_states(run_id)
    assert "Cached" in states["assess risks"], states
    assert "Cached" in states["record assessment evidence"], states
    print(f"accept above appetite → approved → treated: {time.monotonic() - started_at:.1f} s")
