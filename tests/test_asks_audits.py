"""Internal audit fieldwork as asks, at the service level, on SQLite and PostgreSQL: who answers
(the audit's auditor only), who may not and why (people whose own work is audited, 9.2.2, as
the audit policy says), the form's refusals naming the field, each answer applied in the
auditor's name, and the CLI answering the run's open entry instead of recording directly.

The generic checks of personal codes (none, wrong, another's; dead once read; lockout) are in
tests/test_asks.py. Demo: the audit of A.6 (operation) is Olu's (auditor@); its sampled systems
are owned by credit.owner@ (credit-scoring, cv-screening) and ops.owner@ (fraud-detection);
ds.lead@ is Responsible and governance@ Accountable for stage-gate, which covers A.6.
"""

from __future__ import annotations

from typing import Any

import pytest
from records import count
from sqlalchemy import select

from aims_core.ask_forms import answer_model
from aims_core.ask_forms.audits import AUDIT_FIELDWORK
from aims_core.ask_modals import answer_modal
from aims_core.db import get_engine
from aims_core.errors import InvalidInput
from aims_core.models import AuditFinding, AuditStatus, Decision, Evidence, Outcome
from aims_core.services import approvals, audits
from aims_core.services import capa as capas
from aims_core.services.approvals import DecisionIn, Refused
from aims_core.services.audits import AuditOut, AuditPolicyInvalid, parse_audit_policy
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
OLU, HANA, CREDIT_OWNER, OPS_OWNER, DS, GOV = (
    f"{n}{D}"
    for n in ("auditor", "contract.auditor", "credit.owner", "ops.owner", "ds.lead", "governance")
)
SLACK = Actor(who="slack:U0DEMO", channel="slack")
CLI = Actor(who="tester as someone", channel="cli")
OWN_WORK = "an auditor does not audit their own work (9.2.2)"


def operation_audit(org: UnitOfWork, actor: Actor) -> AuditOut:
    """The A.6 audit of a programme of its own, started (Olu audits it)."""
    p = audits.plan_programme(
        org, {"cycle_years": 3, "start": "2031Q1", "name": "Asks under test"}, actor
    ).programme
    a = next(a for a in p.audits if "A.6.2.4" in a.scope)
    assert a.auditor == OLU and "credit-scoring" in a.systems
    return audits.start_audit(org, a.id, None, actor)


def answer(rid: int, person: str, **fields: Any) -> DecisionIn:
    return DecisionIn(request_id=rid, person=person, outcome=Outcome.answer, answer=fields)


def decisions(settings: Settings) -> int:
    return count(settings, Decision)


def test_only_the_auditor_answers_and_owners_of_the_audited_work_are_refused_with_why(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    a = operation_audit(org, actor)
    spec = audits.fieldwork_spec(org, a.id, 1)
    assert (spec.kind, spec.subject, spec.idempotency_key) == (
        AUDIT_FIELDWORK,
        f"audit:{a.id}",
        f"audit-{a.id}-r1-fieldwork-1",
    )
    assert spec.approver_people == [OLU] and not spec.approver_roles
    excluded = spec.excluded
    assert set(excluded) == {CREDIT_OWNER, OPS_OWNER, DS, GOV}
    assert "owns credit-scoring, a system sampled by this audit" in excluded[CREDIT_OWNER]
    assert "is Accountable for stage-gate@credit-scoring" in excluded[CREDIT_OWNER]
    assert excluded[OPS_OWNER].startswith("owns fraud-detection")
    assert "is Responsible for stage-gate, which covers 8, 8.1" in excluded[DS]
    assert "is Accountable for stage-gate," in excluded[GOV]
    assert all(why.endswith(OWN_WORK) for why in excluded.values())

    ask = approvals.create_request(org, spec, actor)
    assert ask.approvers == [OLU] and ask.excluded == excluded
    finding = {"control": "A.6.2.4", "kind": "minor-nc", "statement": "No validation record"}
    before = decisions(settings)
    for channel in (SLACK, CLI):
        for person in (CREDIT_OWNER, DS):
            with pytest.raises(Refused) as err:
                approvals.decide(org, answer(ask.id, person, **finding), channel)
            assert err.value.reason == "separation" and OWN_WORK in str(err.value)
        # Another internal auditor, independent but not this audit's auditor.
        with pytest.raises(Refused) as err:
            approvals.decide(org, answer(ask.id, HANA, **finding), channel)
        assert err.value.reason == "not-eligible"
    assert decisions(settings) == before and count(settings, AuditFinding) == len(a.findings)

    # The policy decides what counts as one's own work: system owners only, here.
    own_systems_only = _policy_with("impartiality: [system-owner]")
    (settings.data_dir / audits.POLICY_FILE).write_text(own_systems_only)
    assert set(audits.fieldwork_spec(org, a.id, 1).excluded) == {CREDIT_OWNER, OPS_OWNER}
    with pytest.raises(AuditPolicyInvalid, match=r"fieldwork\.impartiality"):
        parse_audit_policy(_policy_with("impartiality: [friend-of-the-auditor]"))


def _policy_with(impartiality: str) -> str:
    from importlib.resources import files

    shipped = files("aims_core").joinpath("data", "audit_policy.yaml").read_text("utf-8")
    default = "impartiality: [system-owner, responsible, accountable]"
    assert default in shipped
    return shipped.replace(default, impartiality)


def test_the_form_refuses_naming_the_field_and_an_answer_is_applied_in_the_auditors_name(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    a = operation_audit(org, actor)
    first = approvals.create_request(org, audits.fieldwork_spec(org, a.id, 1), actor)
    good = {
        "control": "A.6.2.4",
        "kind": "minor-nc",
        "statement": "Validation of credit-scoring v3 skipped the fairness test set",
        "evidence": "Release ticket CR-311; interview with the DS lead",
        "system": "credit-scoring",
    }
    bad = {
        "control": ({**good, "control": "A.10.3"}, "control"),  # not in this audit's scope
        "system": ({**good, "system": "chatbot"}, "system"),  # not sampled
        "kind": ({**good, "kind": "serious"}, "kind"),
        "statement": ({**good, "statement": "  "}, "statement"),  # a finding needs it
        "nothing": ({"complete": False}, "control"),
        "unknown": ({**good, "severity": "high"}, "severity"),
    }
    before = decisions(settings)
    for given, field in bad.values():
        with pytest.raises(InvalidInput) as err:
            approvals.decide(org, answer(first.id, OLU, **given), SLACK)
        assert err.value.field == field, (given, err.value)
    assert decisions(settings) == before
    assert "or say fieldwork is complete" in _refusal(org, first.id, {"complete": False})
    # The Slack modal offers the audit's own scope and sampled systems, and a yes/no to finish.
    model = answer_model(settings, AUDIT_FIELDWORK, first.subject)
    blocks = {b["block_id"]: b["element"] for b in answer_modal(first, model)["blocks"][2:]}
    assert list(blocks) == ["control", "kind", "statement", "evidence", "system", "complete"]
    for field, choices in (("control", a.scope), ("system", a.systems)):
        assert [o["value"] for o in blocks[field]["options"]] == choices
    assert blocks["complete"]["type"] == "radio_buttons"

    approvals.decide(org, answer(first.id, OLU, **good), SLACK)
    outcome = approvals.get_request(org, first.id)
    assert outcome.status == "answered" and outcome.answered_by == [OLU]
    [d] = outcome.decisions
    by_olu = Actor(who=OLU, channel="slack")
    assert audits.apply_fieldwork_answer(org, a.id, first.id, d.answer or {}, by_olu) is None
    [f] = audits.get_audit(org, a.id).findings
    assert (f.control_id, f.kind.value, f.system, f.recorded_by) == (
        "A.6.2.4",
        "minor-nc",
        "credit-scoring",
        OLU,
    )
    assert f.capa_id and capas.get_capa(org, f.capa_id).owner == CREDIT_OWNER
    with get_engine(settings.effective_database_url).connect() as conn:
        kept = conn.scalar(select(Evidence.content).where(Evidence.id == f.evidence_id))
    assert "## Evidence seen" in (kept or "") and "CR-311" in (kept or "")
    # Applied again (a later run replaying the answered ask): nothing recorded twice.
    before = (count(settings, AuditFinding), count(settings, Evidence))
    audits.apply_fieldwork_answer(org, a.id, first.id, d.answer or {}, by_olu)
    assert (count(settings, AuditFinding), count(settings, Evidence)) == before

    # The next entry: the last finding and "fieldwork complete" in one answer.
    second = approvals.create_request(org, audits.fieldwork_spec(org, a.id, 2), actor)
    assert second.id != first.id
    last = {"control": "8.1", "kind": "observation", "statement": "Gate minutes", "complete": True}
    approvals.decide(org, answer(second.id, OLU, **last), CLI)
    [d2] = approvals.get_request(org, second.id).decisions
    done = audits.apply_fieldwork_answer(
        org, a.id, second.id, d2.answer or {}, Actor(who=OLU, channel="cli")
    )
    assert done is not None and done.status is AuditStatus.reporting
    assert [f.control_id for f in done.findings] == ["A.6.2.4", "8.1"]
    # Once reporting, no fieldwork is asked.
    with pytest.raises(Exception, match="fieldwork is asked for while it is in-progress"):
        audits.fieldwork_spec(org, a.id, 3)


def _refusal(org: UnitOfWork, rid: int, given: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as err:
        approvals.decide(org, answer(rid, OLU, **given), SLACK)
    return str(err.value)


def test_cli_answers_the_runs_open_entry_as_the_auditor(  # type: ignore[no-untyped-def]
    run_cli, org: UnitOfWork, settings: Settings, actor: Actor, tmp_path
) -> None:
    a = operation_audit(org, actor)
    ask = approvals.create_request(org, audits.fieldwork_spec(org, a.id, 1), actor)
    assert audits.open_fieldwork_ask(org, a.id).id == ask.id  # type: ignore[union-attr]
    finding = ("audit", "finding", str(a.id), "--control", "A.6.2.4", "--kind", "minor-nc")
    finding += ("--statement", "No validation record", "--seen", "Ticket CR-311")
    before = (decisions(settings), count(settings, AuditFinding))

    out = run_cli(*finding)  # the run asks: who answers must be said
    assert out.exit_code == 2 and f"asks {OLU} for the fieldwork" in out.output, out.output
    assert "give --as EMAIL" in out.output
    out = run_cli(*finding, "--as", CREDIT_OWNER)
    assert out.exit_code == 2 and "owns credit-scoring" in out.output, out.output
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4")
    out = run_cli(*finding, "--evidence", str(tmp_path / "notes.pdf"), "--as", OLU)
    assert out.exit_code == 2 and "error: evidence:" in out.output, out.output
    assert (decisions(settings), count(settings, AuditFinding)) == before

    out = run_cli(*finding, "--as", OLU)
    assert out.exit_code == 0 and f"recorded answer by {OLU} on ask {ask.id}" in out.output
    [d] = approvals.get_request(org, ask.id).decisions
    assert (d.channel, d.answer["evidence"]) == ("cli", "Ticket CR-311")  # type: ignore[index]
    # Recorded by the run (which applies the answer), not by the command.
    assert count(settings, AuditFinding) == before[1]

    nxt = approvals.create_request(org, audits.fieldwork_spec(org, a.id, 2), actor)
    out = run_cli("audit", "complete", str(a.id), "--as", OLU)
    assert out.exit_code == 0 and f"on ask {nxt.id}: answered" in out.output, out.output
    assert approvals.get_request(org, nxt.id).decisions[0].answer["complete"] is True  # type: ignore[index]
    assert audits.get_audit(org, a.id).status is AuditStatus.in_progress
    assert audits.open_fieldwork_ask(org, a.id) is None

    # No run asks: the direct path records at once (as before asks).
    out = run_cli("audit", "complete", str(a.id))
    assert out.exit_code == 0 and "fieldwork complete" in out.output, out.output
