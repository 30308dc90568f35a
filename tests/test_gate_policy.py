"""The gate policy as data: the packaged policy loads and is complete; a broken file is refused at
load with every problem named, with its line and path; an organisation's file overrides."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aims_core.cli import app
from aims_core.models import LifecycleStage, RiskTier
from aims_core.rules.gate import (
    GATES,
    PACKAGED,
    GatePolicyError,
    load_policy,
    packaged_policy,
    parse_policy,
    policy_for,
)
from aims_core.settings import Settings

S = LifecycleStage

# One rule reused for every gate and tier (YAML anchors), so a test file only spells out what
# it is about.
RULE = """
    {tier}: &ok
      evidence: [{{kind: requirements-spec, control: A.6.2.2}}]
      approvers: [system-owner]
      quorum: 1
"""


def complete_policy(extra: str = "", skip: tuple[str, ...] = ()) -> str:
    """A valid policy with every gate and tier, plus `extra` under `gates:`."""
    lines = ["ceilings:", "  prohibited: {stage: concept, reason: Art. 5}", "gates:"]
    first = True
    for stage in GATES:
        if stage.value in skip:
            continue
        lines.append(f"  {stage.value}:")
        for tier in ("high", "limited", "minimal", "gpai"):
            if first:
                lines.append(RULE.format(tier=tier).rstrip("\n").removeprefix("\n"))
                first = False
            else:
                lines.append(f"    {tier}: *ok")
    return "\n".join(lines) + "\n" + extra


def problems_of(text: str) -> list[str]:
    with pytest.raises(GatePolicyError) as info:
        parse_policy(text, "test.yaml")
    return info.value.problems


def test_the_packaged_policy_loads_complete_with_the_defaults_the_issue_asks_for() -> None:
    policy = packaged_policy()
    assert policy.source == PACKAGED
    for stage in GATES:
        for tier in (RiskTier.high, RiskTier.limited, RiskTier.minimal, RiskTier.gpai):
            assert policy.rule(stage, tier).quorum >= 1
        assert "Art. 5" in (policy.refusal(stage, RiskTier.prohibited) or "")
    assert policy.refusal(S.design, RiskTier.high) is None

    def kinds(stage: LifecycleStage, tier: RiskTier) -> set[str]:
        return {e.kind for e in policy.rule(stage, tier).evidence}

    high = RiskTier.high
    assert "impact-assessment" in kinds(S.development, high)
    assert {"vv-report", "fairness-report"} <= kinds(S.deployment, high)
    assert "monitoring-plan" in kinds(S.operation, high)
    assert "decommission-plan" in kinds(S.decommission, high)
    assert all(policy.rule(g, high).quorum == 2 for g in GATES)
    # Streamlined: one approver, never more evidence than a high-risk system needs.
    for stage in GATES:
        assert policy.rule(stage, RiskTier.minimal).quorum == 1
        assert kinds(stage, RiskTier.minimal) <= kinds(stage, high) | {"requirements-spec"}
    assert len(kinds(S.development, RiskTier.minimal)) < len(kinds(S.development, high))
    # Every item names an Annex A control and why the gate needs it.
    item = policy.rule(S.development, high).evidence[0]
    assert (item.kind, item.control) == ("impact-assessment", "A.5.2")
    # Life cycle: the stage before, and decommission also from deployment.
    assert policy.entered_from(S.development) == (S.design,)
    assert set(policy.entered_from(S.decommission)) == {S.operation, S.deployment}


def test_an_invalid_file_is_refused_with_each_problem_named_and_placed() -> None:
    text = complete_policy(
        extra="""\
  build:
    high: *ok
  validation:
    gpai:
      evidence:
        - {kind: vv-report, control: A.99.9}
      approvers: [system-owner, chief-wizard]
      quorum: -1
"""
    ).replace("  validation:\n", "  validation-old:\n", 1)
    problems = problems_of(text)
    joined = "\n".join(problems)
    assert any("gates.build: unknown stage 'build'" in p for p in problems), joined
    assert any(
        "gates.validation.gpai.evidence[0].control: unknown control id 'A.99.9'" in p
        for p in problems
    ), joined
    assert any(
        "gates.validation.gpai.approvers[1]: unknown role 'chief-wizard'" in p for p in problems
    ), joined
    assert any(
        "gates.validation.gpai.quorum: quorum -1: must be at least 1" in p for p in problems
    ), joined
    assert any("gates.validation-old: unknown stage" in p for p in problems), joined
    # The validation gate now has only a gpai rule: the other tiers are named as holes.
    assert any("gates.validation: no rule for tier high, limited, minimal" in p for p in problems)
    # Each problem says where it is in the file.
    lines = text.splitlines()
    quorum = next(p for p in problems if "quorum -1" in p)
    line_no = int(quorum.split(":", 1)[0].removeprefix("line "))
    assert lines[line_no - 1].strip() == "quorum: -1"
    # The message names every problem, so the CLI's one error shows them all.
    with pytest.raises(GatePolicyError) as info:
        parse_policy(text, "org.yaml")
    message = str(info.value)
    assert message.startswith(f"invalid gate policy org.yaml: {len(problems)} problems")
    for p in problems:
        assert p in message


def test_more_mistakes_a_policy_author_makes() -> None:
    text = complete_policy(
        extra="""\
  concept:
    high: *ok
""",
        skip=("operation",),
    )
    text = text.replace("ceilings:", "also_from:\n  decommission: [deploy]\nceilings:", 1)
    text = text.replace("  decommission:\n    high: *ok", "  decommission:\n    hihg: *ok", 1)
    text = text.replace(
        "[{kind: requirements-spec, control: A.6.2.2}]",
        "[{kind: requirements-spec, control: '6.1.2'}, {kind: impact-assesment, control: A.5.2}]",
    )
    problems = problems_of(text)
    joined = "\n".join(problems)
    for expected in (
        "also_from.decommission[0]: unknown stage 'deploy' (did you mean 'deployment'?)",
        "gates.concept: no gate enters concept",
        "gates: no gate 'operation'",
        "gates.decommission.hihg: unknown risk tier 'hihg' (did you mean 'high'?)",
        "'6.1.2' is a clause, not an Annex A control",
        "unknown evidence kind 'impact-assesment' (did you mean 'impact-assessment'?)",
        "gates.decommission: no rule for tier high",
    ):
        assert any(expected in p for p in problems), f"{expected!r} not in:\n{joined}"


def test_structure_errors_and_bad_yaml_are_named_too() -> None:
    problems = problems_of(complete_policy().replace("quorum: 1", "quorum: 1\n      quorom: 2", 1))
    assert any("gates.design.high.quorom: unknown field 'quorom'" in p for p in problems)
    problems = problems_of(complete_policy().replace("      quorum: 1\n", "", 1))
    assert any("gates.design.high: missing field 'quorum'" in p for p in problems)
    problems = problems_of("gates: [unclosed\n")
    assert problems[0].startswith("line ") and "not valid YAML" in problems[0]
    assert problems_of("- a list\n") == ["the file must be a mapping with a 'gates' key"]


def test_rules_beyond_a_ceiling_are_flagged_as_never_applying() -> None:
    text = complete_policy().replace("    gpai: *ok", "    gpai: *ok\n    prohibited: *ok", 1)
    problems = problems_of(text)
    assert problems == [
        next(p for p in problems if "gates.design.prohibited: never applies" in p)
    ], problems


def test_an_organisation_file_overrides_the_packaged_policy(tmp_path: Path) -> None:
    org = tmp_path / "gates.yaml"
    org.write_text(complete_policy())
    settings = Settings(data_dir=tmp_path, gate_policy_file=org)
    policy = policy_for(settings)
    assert policy.source == str(org.resolve())
    assert [e.kind for e in policy.rule(S.deployment, RiskTier.high).evidence] == [
        "requirements-spec"
    ]
    # Edited while a process runs: the next use reads the new version.
    org.write_text(complete_policy().replace("quorum: 1", "quorum: 3", 1))
    os.utime(org, ns=(1, 1))
    assert policy_for(settings).rule(S.design, RiskTier.high).quorum == 3
    assert policy_for(Settings(data_dir=tmp_path)).source == PACKAGED
    with pytest.raises(GatePolicyError, match="cannot read the file"):
        policy_for(Settings(data_dir=tmp_path, gate_policy_file=tmp_path / "nope.yaml"))


def test_aims_gate_policy_shows_and_checks(tmp_path: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["gate", "policy"])
    assert shown.exit_code == 0, shown.output
    assert "design → development" in shown.output
    assert "impact-assessment (A.5.2)" in shown.output
    assert "prohibited: never beyond concept" in shown.output

    good = tmp_path / "good.yaml"
    good.write_text(complete_policy())
    checked = runner.invoke(app, ["gate", "policy", "--file", str(good), "--check"])
    assert checked.exit_code == 0, checked.output
    assert "is valid" in checked.output

    bad = tmp_path / "bad.yaml"
    bad.write_text(complete_policy().replace("approvers: [system-owner]", "approvers: [ceo]", 1))
    refused = runner.invoke(app, ["gate", "policy", "--file", str(bad), "--check"])
    assert refused.exit_code == 2
    assert "gates.design.high.approvers[0]: unknown role 'ceo'" in refused.output
    assert "Traceback" not in refused.output

    as_json = runner.invoke(app, ["gate", "policy", "--file", str(good), "--json"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == load_policy(good).model_dump(mode="json")
