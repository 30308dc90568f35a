"""The stage gate end to end: `aims gate request` → served `stage-gate` run → checklist → suspended
approval → `aims approve` → resumed run → stage moved, decision evidence, artifact.

Real Prefect API and served runner (tests/prefect_fixtures.py), one shared demo database: these
tests use cv-screening, fraud-detection, marketing-recommender and emotion-pilot, which no other
end-to-end test touches, and set stages directly where the way to a gate would take many runs.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect_fixtures import engine_cli, wait_for_state
from sqlalchemy import select, update

from aims_core.db import get_engine, session_factory
from aims_core.models import AISystem, ApprovalRequest, GateReview, LifecycleStage
from aims_core.services import evidence
from aims_core.uow import Actor

S = LifecycleStage
D = "@northwind.example"
GOV, COMPLIANCE, ETHICS, OPS = (
    f"{n}{D}" for n in ("governance", "compliance", "ethics", "ops.owner")
)
OPS_SLACK = "U0DEMO005"  # Jonas Berg, owner of fraud-detection and marketing-recommender


def request_gate(engine, system: str, to: str, requester: str) -> str:  # type: ignore[no-untyped-def]
    out = engine_cli(engine, "gate", "request", system, "--to", to, "--requester", requester)
    assert out.exit_code == 0, out.output
    run_id = out.output.split("(", 1)[1].split(")", 1)[0]
    assert f"/runs/flow-run/{run_id}" in out.output
    return run_id


def db(engine, stmt) -> Any:  # type: ignore[no-untyped-def]
    with get_engine(engine.settings.effective_database_url).begin() as conn:
        return conn.execute(stmt)


def set_stage(engine, system: str, stage: LifecycleStage) -> None:  # type: ignore[no-untyped-def]
    db(engine, update(AISystem).where(AISystem.name == system).values(lifecycle_stage=stage))


def stage_of(engine, system: str) -> LifecycleStage:  # type: ignore[no-untyped-def]
    return db(engine, select(AISystem.lifecycle_stage).where(AISystem.name == system)).scalar_one()


def add_evidence(engine, system: str, kind: str) -> int:  # type: ignore[no-untyped-def]
    return evidence.append(
        engine.settings,
        {
            "subject": f"system:{system}",
            "kind": kind,
            "title": f"{kind} for {system}",
            "text": f"{kind} {uuid.uuid4()}",
        },
        Actor(who="e2e", channel="test"),
    ).id


def first(engine, stmt) -> Any:  # type: ignore[no-untyped-def]
    """The first ORM object the query finds (detached, attributes loaded), or None."""
    with session_factory(engine.settings.effective_database_url)() as session:
        row = session.scalars(stmt).first()
        if row is not None:
            session.expunge(row)
        return row


def review_of(engine, run_id: str) -> GateReview:  # type: ignore[no-untyped-def]
    review = first(engine, select(GateReview).where(GateReview.flow_run_id == run_id))
    assert review is not None, f"no gate review for run {run_id}"
    return review


def request_for(engine, review_id: int) -> ApprovalRequest | None:  # type: ignore[no-untyped-def]
    return first(
        engine, select(ApprovalRequest).where(ApprovalRequest.subject == f"gate:{review_id}")
    )


def run_and_artifacts(run_id: str):  # type: ignore[no-untyped-def]
    """The run and its markdown artifacts, read back through the Prefect API (newest last)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
                type=ArtifactFilterType(any_=["markdown"]),
            ),
            sort=ArtifactSort.CREATED_DESC,
        )
    return run, list(reversed(artifacts))


def cached_on_resume(run_id: str) -> set[str]:
    """Names of the run's tasks that came back Cached (the re-run from the top after resume)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(run_id)]))
        )
    return {t.name.rsplit("-", 1)[0] for t in task_runs if t.state and t.state.name == "Cached"}


def test_high_risk_development_gate_needs_the_impact_assessment_and_two_approvers(engine) -> None:  # type: ignore[no-untyped-def]
    set_stage(engine, "cv-screening", S.design)
    add_evidence(engine, "cv-screening", "design-doc")

    # Without the impact assessment: the run ends "Missing evidence", nobody is asked.
    run_id = request_gate(engine, "cv-screening", "development", GOV)
    done = wait_for_state(run_id, {"Missing evidence"})
    outcome = done.state.result()
    assert outcome.status == "missing-evidence"
    assert outcome.missing == ["impact-assessment"]
    assert "missing evidence: impact-assessment" in done.state.message
    review = review_of(engine, run_id)
    assert review.status == "missing-evidence" and review.missing == ["impact-assessment"]
    assert request_for(engine, review.id) is None
    assert stage_of(engine, "cv-screening") is S.design

    run, artifacts = run_and_artifacts(run_id)
    assert run.name == "gate cv-screening: design→development"
    assert {"gate", "cv-screening", "tier:high"} <= set(run.tags)
    assert [a.key for a in artifacts] == [f"gate-{review.id}"]
    md = artifacts[0].data
    assert "**missing evidence: impact-assessment**" in md
    assert "❌ | impact-assessment" in md and "✅ | design-doc" in md
    assert "**controls covered**: A.6.2.3" in md

    # With it: the run asks, waits suspended, and passes after two approvals, neither of them
    # the requester (governance, who is otherwise the RACI's Accountable).
    ia = add_evidence(engine, "cv-screening", "impact-assessment")
    run_id = request_gate(engine, "cv-screening", "development", GOV)
    wait_for_state(run_id, {"Suspended"})
    review = review_of(engine, run_id)
    assert review.status == "waiting"
    request = request_for(engine, review.id)
    assert request is not None and request.quorum == 2
    assert ia in request.evidence_ids

    refused = engine_cli(engine, "approve", str(request.id), "--as", GOV)
    assert refused.exit_code != 0
    assert "cannot decide it" in refused.output
    first = engine_cli(engine, "approve", str(request.id), "--as", COMPLIANCE)
    assert first.exit_code == 0 and "waiting: 1 of 2 approvals" in first.output
    second = engine_cli(engine, "approve", str(request.id), "--as", ETHICS)
    assert second.exit_code == 0 and "resumed" in second.output, second.output

    done = wait_for_state(run_id, {"Approved"})
    assert cached_on_resume(run_id) >= {"check evidence", "open gate review", "publish checklist"}
    outcome = done.state.result()
    assert outcome.status == "approved"
    assert sorted(outcome.approvals) == [COMPLIANCE, ETHICS]
    assert GOV not in outcome.approvals
    assert stage_of(engine, "cv-screening") is S.development
    assert review_of(engine, run_id).status == "approved"
    decisions = evidence.list_evidence(engine.settings, subject=f"gate:{review.id}")
    assert [d.kind for d in decisions] == ["decision"]

    run, artifacts = run_and_artifacts(run_id)
    assert run.name == "gate cv-screening: design→development"
    assert {"gate", "cv-screening", "tier:high"} <= set(run.tags)
    final = artifacts[-1].data
    assert "### Decision: approved" in final
    assert "**cv-screening** is now at **development**" in final
    assert "✅ | impact-assessment" in final


def test_minimal_risk_passes_with_one_approver(engine) -> None:  # type: ignore[no-untyped-def]
    add_evidence(engine, "marketing-recommender", "requirements-spec")
    run_id = request_gate(engine, "marketing-recommender", "design", OPS)
    wait_for_state(run_id, {"Suspended"})
    request = request_for(engine, review_of(engine, run_id).id)
    assert request is not None and request.quorum == 1
    approved = engine_cli(engine, "approve", str(request.id), "--as", GOV)
    assert approved.exit_code == 0, approved.output
    done = wait_for_state(run_id, {"Approved"})
    assert done.state.result().approvals == [GOV]
    assert stage_of(engine, "marketing-recommender") is S.design
    run, _ = run_and_artifacts(run_id)
    assert run.name == "gate marketing-recommender: concept→design"
    assert "tier:minimal" in run.tags


def test_a_prohibited_system_is_refused_with_a_clear_message(engine) -> None:  # type: ignore[no-untyped-def]
    run_id = request_gate(engine, "emotion-pilot", "design", GOV)
    done = wait_for_state(run_id, {"Refused"})
    assert "emotion-pilot is prohibited" in done.state.message
    assert "EU AI Act Art. 5" in done.state.message
    review = review_of(engine, run_id)
    assert review.status == "refused"
    assert request_for(engine, review.id) is None
    assert stage_of(engine, "emotion-pilot") is S.concept
    run, artifacts = run_and_artifacts(run_id)
    assert "tier:prohibited" in run.tags
    assert "EU AI Act Art. 5" in artifacts[-1].data


def test_a_rejection_keeps_the_stage_and_tells_the_owner_in_slack(engine) -> None:  # type: ignore[no-untyped-def]
    set_stage(engine, "fraud-detection", S.validation)
    for kind in ("vv-report", "fairness-report", "deployment-plan"):
        add_evidence(engine, "fraud-detection", kind)
    run_id = request_gate(engine, "fraud-detection", "deployment", f"ds.lead{D}")
    wait_for_state(run_id, {"Suspended"})
    request = request_for(engine, review_of(engine, run_id).id)
    assert request is not None
    rejected = engine_cli(
        engine, "reject", str(request.id), "--as", ETHICS, "--comment", "fairness gap in group B"
    )
    assert rejected.exit_code == 0, rejected.output
    done = wait_for_state(run_id, {"Rejected"})
    assert "fairness gap in group B" in done.state.message
    assert stage_of(engine, "fraud-detection") is S.validation
    dm = engine.slack.dm_channel(OPS_SLACK)
    told = [
        c
        for c in engine.slack.calls("chat.postMessage")
        if "Gate fraud-detection: validation→deployment was rejected" in str(c.params)
    ]
    assert told and dm is not None and told[0].params.get("channel") == dm


def test_a_gate_nobody_can_approve_ends_refused_and_blocks_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    # fraud-detection's operation gate: 2 of system-owner, governance-lead, compliance-officer
    # within the org-wide RACI, i.e. governance and compliance; governance asks, so only one
    # person is left for a quorum of two.
    set_stage(engine, "fraud-detection", S.deployment)
    add_evidence(engine, "fraud-detection", "monitoring-plan")
    run_id = request_gate(engine, "fraud-detection", "operation", GOV)
    done = wait_for_state(run_id, {"Refused"})
    assert "nobody can be asked: quorum 2 needs more approvers" in done.state.message
    assert review_of(engine, run_id).status == "refused"
    assert stage_of(engine, "fraud-detection") is S.deployment
    # Asked by someone else, the same gate can be put to both.
    run_id = request_gate(engine, "fraud-detection", "operation", f"ds.lead{D}")
    wait_for_state(run_id, {"Suspended"})
    request = request_for(engine, review_of(engine, run_id).id)
    assert request is not None
    for who in (GOV, COMPLIANCE):
        assert engine_cli(engine, "approve", str(request.id), "--as", who).exit_code == 0
    wait_for_state(run_id, {"Approved"})
    assert stage_of(engine, "fraud-detection") is S.operation
