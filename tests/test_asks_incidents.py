"""The incident response's root cause, lessons learned and closure amendment as asks, at the
service level, on SQLite and PostgreSQL: who answers (the incident policy's `response_asks`: the
incident responders within the RACI of incident-response, its Accountable, the system's owner),
who may not and why (whoever refused the closure never writes its amendment), the forms'
refusals naming the field, each answer applied in the name of whoever gave it, and the CLI
answering the run's open ask instead of recording directly.

The generic checks of personal codes (none, wrong, another's; dead once read; lockout) are in
tests/test_asks.py. Demo: credit-scoring is owned by credit.owner@; incident-response's RACI has
security@ and ops.owner@ (both incident-responders) Responsible, governance@ Accountable,
compliance@ Consulted (no incident-responder) and the CEO Informed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from records import count

from aims_core.ask_forms import FORM_TITLES, answer_model
from aims_core.ask_forms.incidents import (
    CLOSURE_AMENDMENT,
    FISHBONE_FIELDS,
    INCIDENT_LESSONS,
    INCIDENT_ROOT_CAUSE,
)
from aims_core.errors import InvalidInput
from aims_core.models import ApprovalStatus, Decision, Outcome
from aims_core.rules.incident import IncidentPolicyInvalid, parse_classification
from aims_core.services import approvals, incidents
from aims_core.services.approvals import ApprovalRequestIn, DecisionIn, Refused
from aims_core.services.incidents import FISHBONE, IncidentIn
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
SECURITY, OPS, GOV, COMPLIANCE, OWNER, CEO = (
    f"{n}{D}" for n in ("security", "ops.owner", "governance", "compliance", "credit.owner", "ceo")
)
SLACK = Actor(who="slack:U0DEMO", channel="slack")
CLI = Actor(who="tester as someone", channel="cli")


def bias_incident(org: UnitOfWork, actor: Actor) -> int:
    data = IncidentIn(
        system="credit-scoring",
        title="Approval rate gap between age groups",
        summary="Applicants over 60 approved 18 points less often since Monday's release.",
        severity="SEV2",
        category="bias",
        source="api",
    )
    return incidents.report(org, data, actor, notify=False).incident.id


def answer(rid: int, person: str, **fields: Any) -> DecisionIn:
    return DecisionIn(request_id=rid, person=person, outcome=Outcome.answer, answer=fields)


def refusal(org: UnitOfWork, rid: int, **fields: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as err:
        approvals.decide(org, answer(rid, SECURITY, **fields), SLACK)
    return err.value


def test_the_responders_and_the_owner_give_the_root_cause_applied_in_their_name(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    i = bias_incident(org, actor)
    spec = incidents.root_cause_ask(org, i)
    assert (spec.idempotency_key, spec.kind) == (f"incident-{i}-root-cause", INCIDENT_ROOT_CAUSE)
    ask = approvals.create_request(org, spec, actor)
    # Responders within the RACI, its Accountable, the system's owner; not the Consulted
    # compliance officer (no responder role) nor the CEO (only Informed).
    assert sorted(ask.approvers) == sorted([SECURITY, OPS, GOV, OWNER])
    with pytest.raises(Refused) as exc:
        approvals.decide(org, answer(ask.id, CEO, why_1="x"), CLI)
    assert exc.value.reason == "not-eligible"

    # The form says what is wrong, naming the field, and writes nothing.
    cases = {
        "why_1": ({}, "why_1"),
        "out of order": ({"why_1": "a", "why_3": "c"}, "why_3"),
        "long cause": ({"why_1": "a", "data": ["x" * 2_001]}, "data"),
        "unknown field": ({"why_1": "a", "mood": "bad"}, "mood"),
    }
    for fields, field in cases.values():
        assert refusal(org, ask.id, **fields).field == field
    assert "why_2 is empty: give the whys in order" in str(
        refusal(org, ask.id, why_1="a", why_3="c")
    )
    assert count(settings, Decision) == 0

    # One cause per line (as a Slack modal or a pasted text sends them): blank lines dropped.
    given = {
        "why_1": "Approval rates for applicants over 60 fell after release 4.2",
        "why_2": "Release 4.2 was retrained on data without thin-file older applicants",
        "data": "Sampling excluded thin-file applicants\n\nNo age coverage check",
        "process": ["Fairness review skipped for a retrain"],
    }
    result = approvals.decide(org, answer(ask.id, OWNER, **given), SLACK)
    assert result.recorded and result.status is ApprovalStatus.answered
    [d] = approvals.get_request(org, ask.id).decisions
    assert d.answer is not None and d.answer["data"] == [
        "Sampling excluded thin-file applicants",
        "No age coverage check",
    ]
    # What the flow's task does with it: the record in the owner's name, the last why the root
    # cause (none was given).
    rca = incidents.root_cause_of(d.answer)
    out = incidents.record_root_cause(org, i, rca, Actor(who=d.person, channel=d.channel))
    assert out.root_cause["whys"] == [given["why_1"], given["why_2"]]
    assert out.root_cause["fishbone"] == {
        "process": ["Fairness review skipped for a retrain"],
        "data": ["Sampling excluded thin-file applicants", "No age coverage check"],
    }
    assert out.root_cause["root_cause"] == given["why_2"]
    assert out.timeline[-1].actor == OWNER and out.timeline[-1].kind == "root-cause"


def test_lessons_are_asked_with_the_root_cause_and_need_text(org: UnitOfWork, actor: Actor) -> None:
    i = bias_incident(org, actor)
    incidents.record_root_cause(org, i, {"whys": ["No age coverage check"]}, actor)
    spec = incidents.lessons_ask(org, i)
    assert (spec.idempotency_key, spec.kind) == (f"incident-{i}-lessons", INCIDENT_LESSONS)
    assert "Root cause: No age coverage check" in spec.details
    ask = approvals.create_request(org, spec, actor)
    assert refusal(org, ask.id, lessons="   ").field == "lessons"
    assert refusal(org, ask.id, lessons="x" * 3_001).field == "lessons"
    approvals.decide(org, answer(ask.id, OPS, lessons="Check age coverage first"), SLACK)
    assert approvals.get_request(org, ask.id).answered_by == [OPS]


def test_whoever_refused_the_closure_does_not_write_its_amendment(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    i = bias_incident(org, actor)
    closure = approvals.create_request(
        org,
        ApprovalRequestIn(
            idempotency_key=f"incident-{i}-closure-1",
            subject=f"incident:{i}",
            activity="incident-response",
            system="credit-scoring",
            title=f"Close incident {i}",
            approver_roles=["governance-lead", "compliance-officer"],
        ),
        actor,
    )
    refused = DecisionIn(
        request_id=closure.id, person=GOV, outcome=Outcome.reject, comment="Attach the metrics"
    )
    approvals.decide(org, refused, CLI)

    spec = incidents.amendment_ask(org, i, 1, closure.id)
    assert (spec.idempotency_key, spec.kind) == (
        f"incident-{i}-closure-1-amendment",
        CLOSURE_AMENDMENT,
    )
    assert f"- {GOV}: Attach the metrics" in spec.details
    why = f"refused closure request {closure.id}: checks the amendment at the next request"
    assert spec.excluded == {GOV: why}
    ask = approvals.create_request(org, spec, actor)
    assert sorted(ask.approvers) == sorted([SECURITY, OPS, OWNER])  # the Accountable refused
    with pytest.raises(Refused) as exc:
        approvals.decide(org, answer(ask.id, GOV, changes="Attached"), SLACK)
    assert exc.value.reason == "separation" and why in exc.value.message
    assert refusal(org, ask.id, changes="").field == "changes"
    before = count(settings, Decision)
    approvals.decide(org, answer(ask.id, SECURITY, changes="Metrics attached (#41)"), CLI)
    assert count(settings, Decision) == before + 1


def test_who_answers_is_the_incident_policys_data(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    packaged = (
        resources.files("aims_core.data").joinpath("incident_classification.yaml").read_text()
    )
    mine = packaged.replace(
        "root_cause: {roles: [incident-responder], system_owner: true",
        "root_cause: {roles: [compliance-officer], system_owner: false",
    )
    assert mine != packaged
    Path(settings.data_dir, "incident_classification.yaml").write_text(mine)
    i = bias_incident(org, actor)
    ask = approvals.create_request(org, incidents.root_cause_ask(org, i), actor)
    # The compliance officer (Consulted) and the Accountable; no responder, not the owner.
    assert sorted(ask.approvers) == sorted([COMPLIANCE, GOV])


def test_a_policy_naming_an_unknown_role_or_nobody_is_refused_with_every_problem() -> None:
    packaged = (
        resources.files("aims_core.data").joinpath("incident_classification.yaml").read_text()
    )
    bad = packaged.replace(
        "lessons: {roles: [incident-responder], system_owner: true",
        "lessons: {roles: [nobody], system_owner: true",
    ).replace(
        "amendment: {roles: [incident-responder], system_owner: true",
        "amendment: {roles: [], system_owner: false",
    )
    with pytest.raises(IncidentPolicyInvalid) as exc:
        parse_classification(bad)
    assert "response_asks.lessons.roles: unknown role 'nobody'" in str(exc.value)
    assert "response_asks.amendment: asks nobody" in str(exc.value)
    # Without the section, the defaults: the responders and the owner.
    cut = packaged.index("response_asks:")
    default = parse_classification(packaged[:cut] + packaged[packaged.index("serious_incident:") :])
    assert default.response_asks.root_cause.roles == ["incident-responder"]
    assert default.response_asks.amendment.system_owner


def test_the_forms_are_registered_and_match_the_record(tmp_path: Path) -> None:
    whys = [f"why_{n}" for n in range(1, 6)]
    forms = {
        INCIDENT_ROOT_CAUSE: [*whys, *FISHBONE, "root_cause"],  # the record's fishbone
        INCIDENT_LESSONS: ["lessons"],
        CLOSURE_AMENDMENT: ["changes"],
    }
    for kind, fields in forms.items():
        assert kind in FORM_TITLES
        model = answer_model(Settings(data_dir=tmp_path), kind, "incident:1")
        assert list(model.model_fields) == fields
    assert FISHBONE_FIELDS == FISHBONE


def test_cli_answers_the_runs_open_ask_and_records_directly_only_when_none(
    run_cli: Any, org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    i = bias_incident(org, actor)
    ask = approvals.create_request(org, incidents.root_cause_ask(org, i), actor)
    rca = ("incident", "rca", str(i), "--why", "No age coverage check", "--fishbone-data", "Gap")

    out = run_cli(*rca)  # the run asks: who answers must be said
    assert out.exit_code == 2 and "give --as EMAIL" in out.output, out.output
    assert f"for the root cause (ask {ask.id})" in out.output
    out = run_cli(*rca, "--as", CEO)
    assert out.exit_code == 2 and f"{CEO} is not an eligible approver" in out.output
    assert count(settings, Decision) == 0

    out = run_cli(*rca, "--as", SECURITY)
    assert out.exit_code == 0 and f"recorded answer by {SECURITY} on ask {ask.id}" in out.output
    [d] = approvals.get_request(org, ask.id).decisions
    assert d.answer is not None and (d.answer["why_1"], d.answer["data"]) == (
        "No age coverage check",
        ["Gap"],
    )
    assert incidents.get_incident(org, i).root_cause == {}  # the run applies it, once

    # No ask open for the lessons: recorded directly, as before.
    out = run_cli("incident", "lessons", str(i), "--text", "Check coverage")
    assert out.exit_code == 0, out.output
    assert incidents.get_incident(org, i).lessons == "Check coverage"
