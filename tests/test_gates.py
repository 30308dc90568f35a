"""The gate service and its CLI, on SQLite and PostgreSQL (no Prefect).

Demo organisation: cv-screening and fraud-detection are high-risk with the org-wide stage-gate
RACI (governance Accountable; ds.lead Responsible; compliance and ethics Consulted);
marketing-recommender is minimal, support-chatbot limited, doc-summariser gpai, emotion-pilot
prohibited. Stages are set directly where the path to a gate would take many approvals.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from aims_core.db import session_factory
from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.models import (
    AISystem,
    AuditEvent,
    Evidence,
    GateReview,
    GateStatus,
    LifecycleStage,
    Notification,
)
from aims_core.rules.gate import GATES
from aims_core.services import approvals, evidence, gates
from aims_core.services.approvals import ApprovalRequestIn, DecisionIn
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

S = LifecycleStage
D = "@northwind.example"
GOV, COMPLIANCE, ETHICS, DS, OPS = (
    f"{n}{D}" for n in ("governance", "compliance", "ethics", "ds.lead", "ops.owner")
)
FLOW = Actor(who="flow:stage-gate", channel="flow")


def set_stage(
    settings: Settings, system: str, stage: LifecycleStage, reapproval: LifecycleStage | None = None
) -> None:
    with session_factory(settings.effective_database_url)() as s:
        s.execute(
            update(AISystem)
            .where(AISystem.name == system)
            .values(lifecycle_stage=stage, reapproval_stage=reapproval)
        )
        s.commit()


def add_evidence(settings: Settings, system: str, *kinds: str) -> list[int]:
    return [
        evidence.append(
            settings,
            {
                "subject": f"system:{system}",
                "kind": k,
                "title": f"{k} for {system}",
                "text": f"{k} {uuid.uuid4()}",  # new content: a new record, never a replay
            },
            Actor(who="tester", channel="test"),
        ).id
        for k in kinds
    ]


def system_row(settings: Settings, name: str) -> AISystem:
    with session_factory(settings.effective_database_url)() as s:
        row = s.scalar(select(AISystem).where(AISystem.name == name))
        assert row is not None
        s.expunge(row)
        return row


def actions(settings: Settings, subject: str) -> list[str]:
    with session_factory(settings.effective_database_url)() as s:
        return list(
            s.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.subject == subject)
                .order_by(AuditEvent.id)
            )
        )


def ask(org: UnitOfWork, review: gates.GateReviewOut, requester: str | None = DS) -> int:
    """What the flow's request_approval does first: the request on `gate:<id>`."""
    c = review.checklist
    out = approvals.create_request(
        org,
        ApprovalRequestIn(
            idempotency_key=f"gate-{review.id}",
            subject=review.subject,
            activity=gates.ACTIVITY,
            system=c.system,
            title=f"Gate {c.gate}",
            approver_roles=c.approver_roles,
            quorum=c.quorum,
            requester=requester,
            evidence_ids=c.evidence_ids,
        ),
        FLOW,
    )
    return out.id


def decide(org: UnitOfWork, request_id: int, who: str, outcome: str = "approve", **kw: Any) -> None:
    approvals.decide(
        org,
        DecisionIn(request_id=request_id, person=who, outcome=outcome, **kw),
        Actor(who=f"test as {who}", channel="cli"),
    )


# --- checklists --------------------------------------------------------------------------------


def test_high_risk_development_gate_lists_exactly_what_is_missing(
    org: UnitOfWork, settings: Settings
) -> None:
    set_stage(settings, "cv-screening", S.design)
    c = gates.check_gate(org, "cv-screening", S.development)
    assert (c.tier.value, c.from_stage, c.to_stage) == ("high", S.design, S.development)
    assert c.status == "missing-evidence"
    assert c.missing == ["impact-assessment", "design-doc"]
    assert [(i.kind, i.control) for i in c.items] == [
        ("impact-assessment", "A.5.2"),
        ("design-doc", "A.6.2.3"),
    ]
    assert c.quorum == 2
    assert "ethics-committee" in c.approver_roles

    [doc] = add_evidence(settings, "cv-screening", "design-doc")
    add_evidence(settings, "fraud-detection", "impact-assessment")  # another system's: no use
    c = gates.check_gate(org, "cv-screening", "development")
    assert c.missing == ["impact-assessment"]
    assert c.evidence_ids == [doc]
    assert "missing evidence: impact-assessment" in c.summary()
    md = c.markdown()
    assert "❌ | impact-assessment" in md and f"#{doc}" in md
    assert "**controls covered**: A.6.2.3" in md
    details = c.approval_details()
    assert "|" not in details  # Slack renders no tables
    assert "- ❌ impact-assessment — AI system impact assessment" in details
    assert f"· A.6.2.3: #{doc}" in details

    [ia] = add_evidence(settings, "cv-screening", "impact-assessment")
    c = gates.check_gate(org, "cv-screening", S.development)
    assert c.status == "ready" and c.missing == []
    assert c.evidence_ids == [ia, doc]


@pytest.mark.parametrize(
    ("system", "tier", "quorum", "kinds"),
    [
        ("marketing-recommender", "minimal", 1, ["requirements-spec"]),
        ("support-chatbot", "limited", 1, ["requirements-spec"]),
        ("doc-summariser", "gpai", 1, ["requirements-spec"]),
        ("fraud-detection", "high", 2, ["requirements-spec"]),
    ],
)
def test_design_gate_per_tier(
    org: UnitOfWork, system: str, tier: str, quorum: int, kinds: list[str]
) -> None:
    c = gates.check_gate(org, system, S.design)
    assert (c.tier.value, c.quorum, c.missing) == (tier, quorum, kinds)


def test_minimal_risk_is_streamlined(org: UnitOfWork, settings: Settings) -> None:
    set_stage(settings, "marketing-recommender", S.design)
    c = gates.check_gate(org, "marketing-recommender", S.development)
    assert (c.status, c.items, c.quorum) == ("ready", [], 1)
    assert "approval only" in c.markdown()
    assert "none required for this tier (approval only" in c.approval_details()
    set_stage(settings, "fraud-detection", S.design)
    assert len(gates.check_gate(org, "fraud-detection", S.development).items) == 2


def test_a_prohibited_system_is_refused_at_every_gate_beyond_concept(
    org: UnitOfWork, settings: Settings
) -> None:
    add_evidence(settings, "emotion-pilot", "requirements-spec", "impact-assessment")
    for stage in GATES:
        c = gates.check_gate(org, "emotion-pilot", stage)
        assert c.status == "refused", stage
        assert "EU AI Act Art. 5" in (c.refused or "")
        assert "cannot pass beyond concept" in c.summary()
        assert c.items == []
    # Even when it somehow got further (reclassified), no gate lets it on.
    set_stage(settings, "emotion-pilot", S.design)
    assert gates.check_gate(org, "emotion-pilot", S.development).status == "refused"

    review = gates.open_review(
        UnitOfWork(settings), gates.check_gate(org, "emotion-pilot", S.validation), FLOW
    )
    assert review.status is GateStatus.refused
    assert "Art. 5" in review.reasons
    assert review.decided_at is not None
    assert actions(settings, review.subject) == ["gate.refused"]


# --- transitions -------------------------------------------------------------------------------


def test_only_the_next_stage_a_reapproval_or_decommission_is_allowed(
    org: UnitOfWork, settings: Settings
) -> None:
    with pytest.raises(InvalidInput) as info:
        gates.check_gate(org, "fraud-detection", S.validation)
    assert str(info.value) == (
        "to: fraud-detection is at concept, so it cannot pass the validation gate: "
        "it may go to design"
    )
    with pytest.raises(InvalidInput, match="no gate enters 'concept'"):
        gates.check_gate(org, "fraud-detection", "concept")
    with pytest.raises(InvalidInput, match="no gate enters 'launch'"):
        gates.check_gate(org, "fraud-detection", "launch")
    with pytest.raises(NotFound, match="no AI system named 'nope'"):
        gates.check_gate(org, "nope", S.design)

    set_stage(settings, "fraud-detection", S.deployment)
    assert gates.check_gate(org, "fraud-detection", S.operation).from_stage is S.deployment
    assert gates.check_gate(org, "fraud-detection", S.decommission).to_stage is S.decommission
    with pytest.raises(InvalidInput, match="it may go to operation or decommission"):
        gates.check_gate(org, "fraud-detection", S.validation)  # never backwards

    set_stage(settings, "fraud-detection", S.validation)
    with pytest.raises(InvalidInput, match="cannot pass the decommission gate"):
        gates.check_gate(org, "fraud-detection", S.decommission)

    set_stage(settings, "fraud-detection", S.operation)
    assert gates.check_gate(org, "fraud-detection", S.decommission).from_stage is S.operation
    with pytest.raises(InvalidInput, match="cannot pass the operation gate"):
        gates.check_gate(org, "fraud-detection", S.operation)  # nothing to re-approve

    set_stage(settings, "fraud-detection", S.operation, reapproval=S.operation)
    c = gates.check_gate(org, "fraud-detection", S.operation)
    assert (c.from_stage, c.to_stage, c.reapproval) == (S.operation, S.operation, True)
    assert c.gate == "fraud-detection: operation→operation (re-approval)"
    assert c.missing == ["monitoring-plan"]
    assert (
        gates.gate_run_name(org, "fraud-detection", "operation")
        == "gate fraud-detection: operation→operation (re-approval)"
    )
    set_stage(settings, "fraud-detection", S.decommission)
    with pytest.raises(InvalidInput, match="it has no further gate"):
        gates.check_gate(org, "fraud-detection", S.operation)


# --- evidence must verify ----------------------------------------------------------------------


def test_evidence_edited_in_the_database_does_not_satisfy_a_gate(
    org: UnitOfWork, settings: Settings
) -> None:
    set_stage(settings, "cv-screening", S.design)
    ia, doc = add_evidence(settings, "cv-screening", "impact-assessment", "design-doc")
    assert gates.check_gate(org, "cv-screening", S.development).status == "ready"
    with session_factory(settings.effective_database_url)() as s:
        s.execute(update(Evidence).where(Evidence.id == ia).values(content="softened"))
        s.execute(update(Evidence).where(Evidence.id == doc).values(title="Another title"))
        s.commit()
    c = gates.check_gate(org, "cv-screening", S.development)
    assert c.missing == ["impact-assessment", "design-doc"]
    items = {i.kind: i for i in c.items}
    assert items["impact-assessment"].unverified == [
        f"#{ia}: its content was edited (hash mismatch)"
    ]
    assert "chain link does not verify" in items["design-doc"].unverified[0]
    assert "does not verify" in c.markdown()

    # A fresh, intact record satisfies it again; the edited ones stay listed as not verifying.
    add_evidence(settings, "cv-screening", "impact-assessment")
    c = gates.check_gate(org, "cv-screening", S.development)
    assert c.missing == ["design-doc"]


def test_a_record_removed_before_a_gate_record_breaks_its_link(
    org: UnitOfWork, settings: Settings
) -> None:
    first, second = add_evidence(settings, "marketing-recommender", "other", "requirements-spec")
    with session_factory(settings.effective_database_url)() as s:
        row = s.get(Evidence, second)
        assert row is not None
        key = evidence.evidence_key(settings)
        with UnitOfWork(settings).read() as uow:
            assert gates.verify_record(uow, uow.session.get(Evidence, second), key) is None
        s.execute(update(Evidence).where(Evidence.id == first).values(chain="0" * 64))
        s.commit()
    with UnitOfWork(settings).read() as uow:
        problem = gates.verify_record(uow, uow.session.get(Evidence, second), key)
    assert problem is not None and "does not link to the record before it" in problem


# --- reviews and outcomes ----------------------------------------------------------------------


def ready_cv_screening(org: UnitOfWork, settings: Settings) -> gates.Checklist:
    set_stage(settings, "cv-screening", S.design)
    add_evidence(settings, "cv-screening", "impact-assessment", "design-doc")
    return gates.check_gate(org, "cv-screening", S.development)


def test_missing_evidence_is_recorded_and_closed_at_once(
    org: UnitOfWork, settings: Settings
) -> None:
    set_stage(settings, "cv-screening", S.design)
    review = gates.open_review(
        org, gates.check_gate(org, "cv-screening", S.development), FLOW, requested_by=GOV
    )
    assert review.status is GateStatus.missing_evidence
    assert review.missing == ["impact-assessment", "design-doc"]
    assert review.reasons == "missing evidence: impact-assessment, design-doc"
    assert review.requested_by == GOV and review.decided_at is not None
    assert actions(settings, review.subject) == ["gate.missing-evidence"]
    assert system_row(settings, "cv-screening").lifecycle_stage is S.design


def test_approval_moves_the_stage_with_decision_evidence(
    org: UnitOfWork, settings: Settings
) -> None:
    checklist = ready_cv_screening(org, settings)
    review = gates.open_review(org, checklist, FLOW, requested_by=DS, flow_run_id="run-1")
    assert review.status is GateStatus.waiting
    # A re-run of the same flow run finds its review; nothing new is written.
    assert gates.open_review(org, checklist, FLOW, flow_run_id="run-1").id == review.id
    request_id = ask(org, review)
    assert gates.get_review(org, review.id).request_id == request_id
    with pytest.raises(Conflict, match="not decided yet"):
        gates.record_outcome(org, review.id, request_id, FLOW)

    decide(org, request_id, COMPLIANCE)
    decide(org, request_id, GOV)
    done = gates.record_outcome(org, review.id, request_id, FLOW)
    assert done.status is GateStatus.approved
    assert sorted(done.approvals) == [COMPLIANCE, GOV]
    assert system_row(settings, "cv-screening").lifecycle_stage is S.development
    assert "cv-screening** is now at **development" in done.markdown()

    gate_records = evidence.list_evidence(settings, subject=review.subject, kind="decision")
    system_records = evidence.list_evidence(
        settings, subject="system:cv-screening", kind="decision"
    )
    assert len(gate_records) == 1 and len(system_records) == 1
    assert gate_records[0].title == "Gate cv-screening: design→development approved"
    assert actions(settings, review.subject)[0] == "gate.requested"
    assert actions(settings, review.subject)[-1] == "gate.approved"
    assert "system.stage-changed" in actions(settings, "system:cv-screening")
    assert evidence.verify(settings).intact

    # Recording again (a retried step) changes nothing.
    again = gates.record_outcome(org, review.id, request_id, FLOW)
    assert again.status is GateStatus.approved
    assert len(evidence.list_evidence(settings, subject=review.subject)) == 1
    assert system_row(settings, "cv-screening").lifecycle_stage is S.development
    assert [r.id for r in gates.list_reviews(org, system="cv-screening")] == [review.id]


def test_rejection_keeps_the_stage_records_reasons_and_tells_the_owner(
    org: UnitOfWork, settings: Settings
) -> None:
    review = gates.open_review(org, ready_cv_screening(org, settings), FLOW, requested_by=DS)
    request_id = ask(org, review)
    decide(org, request_id, ETHICS, "reject", comment="impact on applicants not assessed")
    done = gates.record_outcome(org, review.id, request_id, FLOW)
    assert done.status is GateStatus.rejected
    assert done.reasons == f"{ETHICS}: impact on applicants not assessed"
    assert done.summary() == f"rejected: {ETHICS}: impact on applicants not assessed"
    assert system_row(settings, "cv-screening").lifecycle_stage is S.design
    with session_factory(settings.effective_database_url)() as s:
        note = s.scalar(
            select(Notification).where(Notification.idempotency_key == f"gate-{review.id}-rejected")
        )
        assert note is not None
        assert note.recipient.email == f"credit.owner{D}"  # cv-screening's owner
        assert "impact on applicants not assessed" in note.text
    assert len(evidence.list_evidence(settings, subject=review.subject, kind="decision")) == 1
    assert actions(settings, review.subject)[-1] == "gate.rejected"
    # A rejected gate can be requested again.
    assert gates.open_review(org, gates.check_gate(org, "cv-screening", S.development), FLOW)


def test_reapproval_clears_the_marker(org: UnitOfWork, settings: Settings) -> None:
    set_stage(settings, "fraud-detection", S.operation, reapproval=S.operation)
    add_evidence(settings, "fraud-detection", "monitoring-plan")
    review = gates.open_review(org, gates.check_gate(org, "fraud-detection", S.operation), FLOW)
    request_id = ask(org, review)
    decide(org, request_id, COMPLIANCE)
    decide(org, request_id, GOV)
    done = gates.record_outcome(org, review.id, request_id, FLOW)
    assert done.status is GateStatus.approved
    row = system_row(settings, "fraud-detection")
    assert (row.lifecycle_stage, row.reapproval_stage) == (S.operation, None)


def test_one_waiting_gate_per_system_and_no_stale_checklists(
    org: UnitOfWork, settings: Settings
) -> None:
    checklist = ready_cv_screening(org, settings)
    first = gates.open_review(org, checklist, FLOW)
    request_id = ask(org, first)
    with pytest.raises(Conflict, match=rf"approval request {request_id}\): decide or reject"):
        gates.open_review(org, checklist, FLOW)
    # A waiting review whose request could never be made blocks nothing once closed.
    decide(org, request_id, GOV, "reject", comment="not yet")
    gates.record_outcome(org, first.id, request_id, FLOW)
    second = gates.open_review(org, checklist, FLOW)
    closed = gates.abandon_review(org, second.id, "nobody can be asked: quorum 2", FLOW)
    assert (closed.status, closed.reasons) == (GateStatus.refused, "nobody can be asked: quorum 2")

    set_stage(settings, "cv-screening", S.validation)
    with pytest.raises(Conflict, match="moved to validation since the check at design"):
        gates.open_review(org, checklist, FLOW)
    with session_factory(settings.effective_database_url)() as s:
        assert len(s.scalars(select(GateReview.id)).all()) == 2


def test_record_outcome_refuses_a_foreign_request(org: UnitOfWork, settings: Settings) -> None:
    review = gates.open_review(org, ready_cv_screening(org, settings), FLOW)
    other = approvals.create_request(
        org,
        ApprovalRequestIn(
            idempotency_key="other",
            subject="system:cv-screening",
            activity="approval",
            title="something else",
            approver_roles=["governance-lead"],
        ),
        FLOW,
    )
    with pytest.raises(InvalidInput, match="is not the request of gate review"):
        gates.record_outcome(org, review.id, other.id, FLOW)
    with pytest.raises(NotFound, match="no gate review 999"):
        gates.record_outcome(org, 999, other.id, FLOW)


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_check_list_show(run_cli, org: UnitOfWork, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    set_stage(settings, "cv-screening", S.design)
    add_evidence(settings, "cv-screening", "design-doc")
    out = run_cli("gate", "check", "cv-screening", "--to", "development")
    assert out.exit_code == 1, out.output
    assert "gate cv-screening: design→development (high risk" in out.output
    assert "missing evidence: impact-assessment" in out.output
    as_json = run_cli("gate", "check", "cv-screening", "--to", "development", "--json")
    assert '"missing": [\n    "impact-assessment"\n  ]' in as_json.output

    add_evidence(settings, "cv-screening", "impact-assessment")
    ready = run_cli("gate", "check", "cv-screening", "--to", "development")
    assert ready.exit_code == 0, ready.output
    assert "ready for approval: 2 of" in ready.output

    refused = run_cli("gate", "check", "emotion-pilot", "--to", "design")
    assert refused.exit_code == 1 and "EU AI Act Art. 5" in refused.output
    bad = run_cli("gate", "check", "cv-screening", "--to", "deployment")
    assert bad.exit_code == 2
    assert "error: to: cv-screening is at design" in bad.output

    review = gates.open_review(org, gates.check_gate(org, "cv-screening", S.development), FLOW)
    listed = run_cli("gate", "list", "--system", "cv-screening")
    assert listed.exit_code == 0 and "cv-screening: design→development" in listed.output
    assert "waiting" in listed.output
    shown = run_cli("gate", "show", str(review.id))
    assert "## Gate cv-screening: design→development" in shown.output
    assert run_cli("gate", "list", "--json").output.count('"id"') >= 1


def test_cli_request_starts_a_named_tagged_run(  # type: ignore[no-untyped-def]
    run_cli, org: UnitOfWork, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aims_core.cli import engine

    calls: list[tuple[Any, ...]] = []

    def fake_start(deployment, parameters, *, name=None, tags=None):  # type: ignore[no-untyped-def]
        calls.append((deployment, parameters, name, tags))
        return "run-123", name, "http://ui/runs/flow-run/run-123"

    monkeypatch.setattr(engine, "start_run", fake_start)
    set_stage(settings, "fraud-detection", S.validation)
    out = run_cli("gate", "request", "fraud-detection", "--to", "deployment", "--requester", DS)
    assert out.exit_code == 0, out.output
    assert calls == [
        (
            "stage-gate/stage-gate",
            {"system": "fraud-detection", "to_stage": "deployment", "requester": DS},
            "gate fraud-detection: validation→deployment",
            ["gate", "fraud-detection", "high", "tier:high"],
        )
    ]
    assert "started run gate fraud-detection: validation→deployment (run-123)" in out.output
    assert "http://ui/runs/flow-run/run-123" in out.output
    assert "the run records it and asks nobody to approve" in out.output

    # A move the life cycle does not allow, or an unknown requester: nothing is started.
    assert run_cli("gate", "request", "fraud-detection", "--to", "operation").exit_code == 2
    nobody = run_cli(
        "gate", "request", "fraud-detection", "--to", "deployment", "--requester", "x@y.z"
    )
    assert nobody.exit_code == 2 and "no person with email" in nobody.output
    assert len(calls) == 1


def test_aims_help_does_not_import_prefect() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from aims_core.cli import app; "
        "from typer.testing import CliRunner; CliRunner().invoke(app, ['gate', '--help']); "
        "print('prefect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
