"""The risk policy, register, treatment, acceptance and reassessment triggers, on SQLite and
PostgreSQL, through the services and the CLI (no Prefect: the flow has its own e2e test).

Uses the demo organisation: risk-manager is governance@; the RACI of `risk-assessment` has
governance Responsible and Accountable, ds.lead and ethics Consulted, the CEO only Informed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from records import count
from sqlalchemy import select, update

from aims_core.db import session_factory
from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.models import (
    AISystem,
    AuditEvent,
    LifecycleStage,
    Outcome,
    Risk,
    RiskStatus,
    RiskTier,
    SystemEvent,
    SystemEventKind,
    TreatmentOption,
)
from aims_core.rules.risk import RiskPolicyInvalid, parse_risk_policy, risk_policy
from aims_core.services import approvals, risks, system_events
from aims_core.services.approvals import DecisionIn
from aims_core.services.risks import RiskIn, TreatmentIn
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
GOV, DS, CEO, ETHICS = (f"{n}{D}" for n in ("governance", "ds.lead", "ceo", "ethics"))
DEFAULT_POLICY = (
    Path(__file__).resolve().parent.parent / "aims_core" / "data" / "risk_policy.yaml"
).read_text()


# --- helpers -----------------------------------------------------------------------------------


def actions(settings: Settings, subject: str) -> list[str]:
    with session_factory(settings.effective_database_url)() as s:
        return list(
            s.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.subject == subject)
                .order_by(AuditEvent.id)
            )
        )


def set_stage(settings: Settings, system: str, stage: LifecycleStage) -> None:
    with session_factory(settings.effective_database_url)() as s:
        s.execute(update(AISystem).where(AISystem.name == system).values(lifecycle_stage=stage))
        s.commit()


def reapproval(settings: Settings, system: str) -> LifecycleStage | None:
    with session_factory(settings.effective_database_url)() as s:
        return s.scalar(select(AISystem.reapproval_stage).where(AISystem.name == system))


def add(uow: UnitOfWork, actor: Actor, **changes: Any) -> risks.RiskOut:
    base: dict[str, Any] = {
        "system": "credit-scoring",
        "title": "Proxy discrimination through postcode",
        "owner": DS,
        "likelihood": 4,
        "impact": 4,
    }
    return risks.add_risk(uow, RiskIn(**{**base, **changes}), actor)


def treat(uow: UnitOfWork, actor: Actor, risk_id: int, **changes: Any) -> risks.RiskOut:
    base: dict[str, Any] = {
        "risk_id": risk_id,
        "option": "accept",
        "justification": "No alternative scoring input; monitored monthly",
    }
    return risks.treat_risk(uow, TreatmentIn(**{**base, **changes}), actor)


def write_policy(settings: Settings, text: str) -> None:
    (settings.data_dir / "risk_policy.yaml").write_text(text)


# --- the policy (pure) ---------------------------------------------------------------------------


def test_default_policy_scales_scoring_appetite_and_triggers(tmp_path: Path) -> None:
    policy = risk_policy(Settings(data_dir=tmp_path))
    assert [p.value for p in policy.likelihood] == [1, 2, 3, 4, 5]
    assert policy.label("impact", 5) == "severe"
    assert policy.score(4, 3) == 12 and policy.max_score == 25
    assert (policy.level(4), policy.level(9), policy.level(16), policy.level(25)) == (
        "low",
        "medium",
        "high",
        "critical",
    )
    assert policy.appetite == 9 and policy.above_appetite(10) and not policy.above_appetite(9)
    assert policy.acceptance.approver_roles == ["risk-manager", "top-management"]
    drift = SystemEventKind.data_drift
    op = LifecycleStage.operation
    assert policy.reopened_gate(drift, RiskTier.high, op) is op
    assert policy.reopened_gate(drift, RiskTier.limited, op) is None
    assert policy.reopened_gate(drift, RiskTier.high, LifecycleStage.development) is None


def test_matrix_scoring_when_the_data_says_so() -> None:
    matrix = "\n".join(
        f"  - {[min(25, l_ * i + (1 if l_ == 5 else 0)) for i in range(1, 6)]}"
        for l_ in range(1, 6)
    )
    text = DEFAULT_POLICY.replace("scoring: product", f"scoring: matrix\nmatrix:\n{matrix}")
    policy = parse_risk_policy(text)
    assert policy.score(5, 2) == 11 and policy.score(2, 5) == 10


def test_policy_with_bad_fields_names_each_problem() -> None:
    text = (
        DEFAULT_POLICY.replace("quorum: 1", "quorum: 0")
        .replace("kinds: [model-update,", "kinds: [model-upgrade,")
        .replace("tiers: [high]", "tiers: [severe]")
        .replace("appetite: 9", "appetite: 9\ncolour: red")
    )
    with pytest.raises(RiskPolicyInvalid) as err:
        parse_risk_policy(text, "org-policy.yaml")
    problems = err.value.problems
    assert any(p.startswith("acceptance.quorum:") for p in problems), problems
    assert any(p.startswith("reassessment.0.kinds.0:") for p in problems), problems
    assert any(p.startswith("reassessment.0.tiers.0:") for p in problems), problems
    assert any(p.startswith("colour:") for p in problems), problems
    assert "org-policy.yaml: 4 problem(s)" in str(err.value)


def test_policy_with_inconsistent_content_names_each_problem() -> None:
    text = (
        DEFAULT_POLICY.replace("{value: 3, label: possible", "{value: 7, label: possible")
        .replace("label: major", "label: minor")
        .replace("approver_roles: [risk-manager, top-management]", "approver_roles: [risk-czar]")
        .replace("appetite: 9", "appetite: 25")
        .replace("stages: [operation]", "stages: [validation, operation]")
    )
    with pytest.raises(RiskPolicyInvalid) as err:
        parse_risk_policy(text)
    joined = "\n".join(err.value.problems)
    assert "likelihood: values must be 1, 2, ... in order" in joined
    assert "impact: duplicate label(s) minor" in joined
    assert "unknown role 'risk-czar'" in joined
    assert "appetite: 25 is not below the highest score 25" in joined
    assert "reassessment.0.stages: validation come(s) before the reopened gate" in joined
    with pytest.raises(RiskPolicyInvalid, match="matrix: needs 5 rows"):
        parse_risk_policy(DEFAULT_POLICY.replace("scoring: product", "scoring: matrix\nmatrix: []"))
    with pytest.raises(RiskPolicyInvalid, match="not valid YAML"):
        parse_risk_policy("likelihood: [")


def test_an_organisation_policy_file_overrides_the_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    write_policy(settings, DEFAULT_POLICY.replace("appetite: 9", "appetite: 4"))
    assert risk_policy(settings).appetite == 4
    write_policy(settings, DEFAULT_POLICY.replace("quorum: 1", "quorum: -1"))
    with pytest.raises(RiskPolicyInvalid, match=r"risk_policy\.yaml: 1 problem"):
        risk_policy(settings)


# --- the register --------------------------------------------------------------------------------


def test_add_scores_from_the_policy_and_audits(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    out = add(org, actor, likelihood=3, impact=2, description="Applicants in some areas")
    assert (out.score, out.level, out.status, out.above_appetite) == (
        6,
        "medium",
        RiskStatus.open,
        False,
    )
    assert (out.likelihood_label, out.impact_label) == ("possible", "minor")
    assert actions(settings, f"risk:{out.id}") == ["risk.added"]
    with pytest.raises(Conflict, match="already has risk"):
        add(org, actor, likelihood=3, impact=2)


@pytest.mark.parametrize(
    ("changes", "error", "field", "text"),
    [
        ({"likelihood": 6}, InvalidInput, "likelihood", "not on the likelihood scale 1-5"),
        ({"impact": 0}, InvalidInput, "impact", "not on the impact scale 1-5 (1 negligible"),
        ({"owner": f"nobody{D}"}, NotFound, "owner", "no person"),
        ({"system": "no-such-system"}, NotFound, "system", "no AI system"),
    ],
)
def test_bad_risk_is_refused_and_nothing_written(
    org: UnitOfWork,
    settings: Settings,
    actor: Actor,
    changes: dict[str, Any],
    error: type[Exception],
    field: str,
    text: str,
) -> None:
    audits_before = count(settings, AuditEvent)
    with pytest.raises(error, match=re.escape(text)) as err:
        add(org, actor, **changes)
    assert err.value.field == field  # type: ignore[attr-defined]
    assert count(settings, Risk) == 0
    assert count(settings, AuditEvent) == audits_before


def test_treatments_residuals_and_their_validation(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    risk = add(org, actor)
    out = treat(org, actor, risk.id, option="mitigate", residual_likelihood=2, residual_impact=3)
    assert (out.status, out.treatment, out.residual_score, out.current_score) == (
        RiskStatus.treated,
        TreatmentOption.mitigate,
        6,
        6,
    )
    assert not out.above_appetite
    with pytest.raises(InvalidInput, match="above the inherent likelihood 4") as err:
        treat(org, actor, risk.id, option="mitigate", residual_likelihood=5, residual_impact=1)
    assert err.value.field == "residual_likelihood"
    with pytest.raises(InvalidInput, match="not on the impact scale") as err:
        treat(org, actor, risk.id, option="mitigate", residual_likelihood=1, residual_impact=9)
    with pytest.raises(ValidationError, match="required: say why"):
        treat(org, actor, risk.id, option="transfer", justification="   ")
    with pytest.raises(ValidationError, match="give both"):
        treat(org, actor, risk.id, option="mitigate", residual_likelihood=1)
    with pytest.raises(ValidationError, match="option"):
        treat(org, actor, risk.id, option="ignore")
    with pytest.raises(NotFound, match="no risk 999"):
        treat(org, actor, 999)
    assert risks.get_risk(org, risk.id).residual_score == 6  # the refusals changed nothing
    assert actions(settings, f"risk:{risk.id}") == ["risk.added", "risk.treated"]


def test_accepting_within_appetite_is_treated_above_it_awaits_acceptance(
    org: UnitOfWork, actor: Actor
) -> None:
    small = add(org, actor, title="Stale features", likelihood=3, impact=3)
    assert treat(org, actor, small.id).status is RiskStatus.treated
    big = add(org, actor)
    assert treat(org, actor, big.id).status is RiskStatus.awaiting_acceptance
    # Mitigating below appetite first, then accepting the residual, needs no approval.
    out = treat(org, actor, big.id, option="accept", residual_likelihood=2, residual_impact=4)
    assert (out.status, out.residual_score) == (RiskStatus.treated, 8)

    listed = risks.list_risks(org, system="credit-scoring")
    assert [r.id for r in listed] == [small.id, big.id]
    add(org, actor, system="fraud-detection", title="Concept drift", likelihood=5, impact=4)
    above = risks.list_risks(org, above_appetite=True)
    assert [(r.system, r.title) for r in above] == [("fraud-detection", "Concept drift")]


def _accept_above_appetite(org: UnitOfWork, actor: Actor) -> tuple[int, int]:
    """A risk accepted above appetite, asked for as the flow asks: (risk id, request id)."""
    risk = add(org, actor)
    treat(org, actor, risk.id)
    assessment = risks.assess_system(org, "credit-scoring", "manual", None, actor)
    assert assessment.to_ask == [risk.id] and assessment.pending == {}
    spec = risks.acceptance_request(assessment, risk.id, "run-1")
    assert (spec.subject, spec.activity, spec.requester) == (
        f"risk:{risk.id}",
        "risk-assessment",
        DS,
    )
    request = approvals.create_request(org, spec, actor)
    risks.link_acceptance_request(org, risk.id, request.id, actor)
    return risk.id, request.id


def test_acceptance_above_appetite_needs_an_eligible_approver(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    risk_id, request_id = _accept_above_appetite(org, actor)
    request = approvals.get_request(org, request_id)
    # risk-manager or top-management, within the risk-assessment RACI, never the owner.
    assert request.approvers == [GOV] and request.quorum == 1
    assert risks.get_risk(org, risk_id).acceptance_request_id == request_id

    # Asked for already: a second assessment waits on the same request instead of asking again.
    again = risks.assess_system(org, "credit-scoring", "data-drift", None, actor)
    assert again.to_ask == [] and again.pending == {risk_id: request_id}
    # And the risk cannot be re-treated under the approvers' feet.
    with pytest.raises(Conflict, match=f"request {request_id}"):
        treat(org, actor, risk_id, option="mitigate")

    with pytest.raises(approvals.Refused):
        approvals.decide(
            org, DecisionIn(request_id=request_id, person=CEO, outcome="approve"), actor
        )
    assert risks.settle_acceptance(org, risk_id, request_id, actor).status is (
        RiskStatus.awaiting_acceptance
    )
    approvals.decide(org, DecisionIn(request_id=request_id, person=GOV, outcome="approve"), actor)
    out = risks.settle_acceptance(org, risk_id, request_id, actor)
    assert (out.status, out.treatment) == (RiskStatus.treated, TreatmentOption.accept)
    assert risks.settle_acceptance(org, risk_id, request_id, actor).status is RiskStatus.treated
    assert actions(settings, f"risk:{risk_id}") == [
        "risk.added",
        "risk.treated",
        "risk.acceptance-requested",
        "risk.accepted",
    ]
    # Approved stays accepted in later assessments.
    assert risks.assess_system(org, "credit-scoring", "manual", None, actor).to_ask == []


def test_rejected_acceptance_reopens_the_risk_with_the_reasons(
    org: UnitOfWork, actor: Actor
) -> None:
    risk_id, request_id = _accept_above_appetite(org, actor)
    approvals.decide(
        org,
        DecisionIn(
            request_id=request_id, person=GOV, outcome=Outcome.reject, comment="Mitigate first"
        ),
        actor,
    )
    out = risks.settle_acceptance(org, risk_id, request_id, actor)
    assert (out.status, out.treatment, out.residual_score) == (RiskStatus.open, None, None)
    assert f"rejected (request {request_id})" in out.justification
    assert "Mitigate first" in out.justification


def test_assessment_settles_a_decision_its_run_did_not_apply(org: UnitOfWork, actor: Actor) -> None:
    """The run that asked died after the decision: the next assessment applies it."""
    risk_id, request_id = _accept_above_appetite(org, actor)
    approvals.decide(org, DecisionIn(request_id=request_id, person=GOV, outcome="approve"), actor)
    out = risks.assess_system(org, "credit-scoring", "manual", None, actor)
    assert out.to_ask == [] and "acceptance approved" in out.changes[0]
    assert risks.get_risk(org, risk_id).status is RiskStatus.treated


def test_assessment_follows_a_changed_policy(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    risk = add(org, actor, likelihood=2, impact=4)  # 8: within the default appetite of 9
    assert treat(org, actor, risk.id).status is RiskStatus.treated
    write_policy(settings, DEFAULT_POLICY.replace("appetite: 9", "appetite: 6"))
    out = risks.assess_system(org, "credit-scoring", "regulation-change", None, actor)
    assert out.to_ask == [risk.id]
    assert risks.get_risk(org, risk.id).status is RiskStatus.awaiting_acceptance
    assert "risk.acceptance-required" in actions(settings, f"risk:{risk.id}")
    assert "| risk | owner | score |" in out.markdown()
    assert out.rows()[0]["above appetite"] == "yes"


def test_acceptance_request_fails_clearly_when_only_the_owner_could_approve(
    org: UnitOfWork, actor: Actor
) -> None:
    risk = add(org, actor, owner=GOV)
    treat(org, actor, risk.id)
    assessment = risks.assess_system(org, "credit-scoring", "manual", None, actor)
    with pytest.raises(InvalidInput, match="not the requester governance"):
        approvals.create_request(org, risks.acceptance_request(assessment, risk.id, "r"), actor)


# --- reassessment triggers -----------------------------------------------------------------------


def test_event_on_high_risk_system_in_operation_marks_the_operation_gate(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    set_stage(settings, "credit-scoring", LifecycleStage.operation)
    out = system_events.record_event(org, "credit-scoring", "data-drift", "PSI 0.31", actor)
    assert out.reapproval_marked and out.reapproval_stage is LifecycleStage.operation
    assert (out.kind, out.details, out.flow_run_id) == (
        SystemEventKind.data_drift,
        "PSI 0.31",
        None,
    )
    assert reapproval(settings, "credit-scoring") is LifecycleStage.operation
    assert actions(settings, "system:credit-scoring")[-2:] == [
        "system.event-recorded",
        "system.reapproval-required",
    ]
    # A second event keeps the mark and does not mark again.
    again = system_events.record_event(org, "credit-scoring", "model-update", "", actor)
    assert not again.reapproval_marked and again.reapproval_stage is LifecycleStage.operation

    attached = system_events.attach_run(org, out.id, "run-a", actor)
    assert attached.flow_run_id == "run-a"
    assert system_events.attach_run(org, out.id, "run-b", actor).flow_run_id == "run-a"
    assert [e.id for e in system_events.list_events(org, "credit-scoring")] == [again.id, out.id]


@pytest.mark.parametrize(
    ("system", "stage"),
    [
        ("support-chatbot", LifecycleStage.operation),  # limited risk
        ("credit-scoring", LifecycleStage.development),  # not yet in operation
    ],
)
def test_event_elsewhere_is_recorded_without_a_mark(
    org: UnitOfWork, settings: Settings, actor: Actor, system: str, stage: LifecycleStage
) -> None:
    set_stage(settings, system, stage)
    out = system_events.record_event(org, system, SystemEventKind.model_update, "", actor)
    assert not out.reapproval_marked and out.reapproval_stage is None
    assert count(settings, SystemEvent) == 1


def test_bad_event_is_refused_and_nothing_written(org: UnitOfWork, settings: Settings) -> None:
    actor = Actor(who="monitor", channel="api")
    with pytest.raises(InvalidInput, match="kind"):
        system_events.record_event(org, "credit-scoring", "data-shift", "", actor)
    with pytest.raises(NotFound, match="no AI system"):
        system_events.record_event(org, "nope", "data-drift", "", actor)
    assert count(settings, SystemEvent) == 0


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_add_list_treat(org: UnitOfWork, settings: Settings, run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(
        "risks", "add", "credit-scoring", "--title", "Postcode proxy", "--likelihood", "4",
        "--impact", "4", "--owner", DS,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "score 16 high" in result.stdout and "above appetite" in result.stdout
    risk_id = risks.list_risks(org)[0].id

    result = run_cli(
        "risks", "treat", str(risk_id), "--option", "accept", "--justification", "Needed"
    )
    assert result.exit_code == 0, result.output
    assert "awaiting-acceptance" in result.stdout
    assert "risk-manager, top-management (quorum 1)" in result.stdout
    assert "aims risks assess credit-scoring" in result.stdout

    result = run_cli("risks", "list", "--system", "credit-scoring")
    assert result.exit_code == 0, result.output
    assert "Postcode proxy" in result.stdout and "awaiting-acceptance" in result.stdout
    assert "appetite 9" in result.stdout
    listed = json.loads(run_cli("risks", "list", "--above-appetite", "--json").stdout)
    assert [(r["id"], r["score"], r["residual_score"], r["status"]) for r in listed] == [
        (risk_id, 16, 16, "awaiting-acceptance")
    ]
    assert (
        json.loads(run_cli("risks", "list", "--system", "fraud-detection", "--json").stdout) == []
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--likelihood", "6", "--impact", "2"], "likelihood: 6 is not on the likelihood scale"),
        (["--likelihood", "2", "--impact", "-1"], "impact: -1 is not on the impact scale"),
        (["--likelihood", "two", "--impact", "2"], "integer"),
    ],
)
def test_cli_bad_risk_exits_2_and_writes_nothing(
    org: UnitOfWork, settings: Settings, run_cli, args: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("risks", "add", "credit-scoring", "--title", "T", "--owner", DS, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert count(settings, Risk) == 0


def test_cli_bad_treatment_exits_2_and_changes_nothing(
    org: UnitOfWork, settings: Settings, actor: Actor, run_cli
) -> None:  # type: ignore[no-untyped-def]
    risk = add(org, actor)
    for args, message in [
        (["--option", "accept", "--justification", " "], "justification: required"),
        (["--option", "hope", "--justification", "x"], "Invalid value for '--option'"),
        (["--option", "accept"], "Missing option '--justification'"),
        (["--option", "mitigate", "--justification", "x", "--residual-impact", "2"], "give both"),
        (["--option", "accept", "--justification", "x", "--residual-likelihood", "9",
          "--residual-impact", "1"], "residual_likelihood: 9 is not on the likelihood scale"),
    ]:  # fmt: skip
        result = run_cli("risks", "treat", str(risk.id), *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert (
        run_cli("risks", "treat", "77", "--option", "avoid", "--justification", "x").exit_code == 2
    )
    assert risks.get_risk(org, risk.id).status is RiskStatus.open
    assert actions(settings, f"risk:{risk.id}") == ["risk.added"]


@pytest.fixture
def engine_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the CLI at a Prefect API nobody serves (whatever the session's server does)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_harness import free_port

    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        yield


def test_cli_event_with_the_engine_down_keeps_the_record_and_exits_3(
    org: UnitOfWork, settings: Settings, run_cli, engine_down: None
) -> None:  # type: ignore[no-untyped-def]
    set_stage(settings, "credit-scoring", LifecycleStage.operation)
    result = run_cli(
        "systems", "event", "credit-scoring", "--kind", "data-drift", "--details", "PSI 0.31"
    )
    assert result.exit_code == 3, result.output
    assert "recorded data-drift event" in result.stdout
    assert "the operation gate needs re-approval" in result.stdout
    assert "the risk assessment could not start" in result.stderr
    assert "the engine is not running" in result.stderr
    event_id = system_events.list_events(org)[0].id
    assert f"aims risks assess credit-scoring --event {event_id}" in result.stderr
    assert reapproval(settings, "credit-scoring") is LifecycleStage.operation
    assert system_events.get_event(org, event_id).flow_run_id is None

    result = run_cli("systems", "event", "credit-scoring", "--kind", "model-update", "--json")
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert (doc["kind"], doc["reapproval_stage"], doc["reapproval_marked"]) == (
        "model-update",
        "operation",
        False,
    )

    # `aims risks assess` needs the engine too, and says so (1: the input was fine).
    result = run_cli("risks", "assess", "credit-scoring", "--event", str(event_id))
    assert result.exit_code == 1 and "the engine is not running" in result.stderr
    assert "start it with `aims up`" in result.stderr


def test_cli_bad_event_exits_2_and_writes_nothing(
    org: UnitOfWork, settings: Settings, run_cli
) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("systems", "event", "credit-scoring", "--kind", "drift")
    assert result.exit_code == 2 and "Invalid value for '--kind'" in result.output
    result = run_cli("systems", "event", "no-such", "--kind", "data-drift")
    assert result.exit_code == 2 and "system: no AI system named 'no-such'" in result.stderr
    assert count(settings, SystemEvent) == 0
    result = run_cli("risks", "assess", "fraud-detection", "--event", "1")
    assert result.exit_code == 2 and "no system event 1" in result.stderr


def test_help_does_not_import_prefect() -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from aims_core.cli import app; "
        "r = CliRunner().invoke(app, ['risks', '--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['systems', 'event', '--help']); assert r.exit_code == 0; "
        "assert '--kind' in r.output; print('prefect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
