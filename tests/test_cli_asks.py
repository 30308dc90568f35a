"""`aims asks list/show/code` and `aims answer`, in process, on SQLite and PostgreSQL.

Asks are made on the demo organisation: a CAPA effectiveness verification about CAPA 7 put to the
compliance officer, the internal auditors and the system owners, minus credit.owner (who owns the
CAPA: segregation of duties). No engine: an ask without a flow run needs no resume.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from records import count
from sqlalchemy import select

from aims_core.ask_forms import AnswerForm
from aims_core.cli.asks_cmd import answer_from_sets, form_fields
from aims_core.db import session_factory
from aims_core.errors import InvalidInput
from aims_core.models import AuditEvent, Decision
from aims_core.services import approvals, leavers
from aims_core.services.people import DeactivationIn
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
COMPLIANCE, AUDITOR, CONTRACT_AUDITOR, OPS, CREDIT_OWNER, GOV = (
    f"{n}{D}"
    for n in (
        "compliance",
        "auditor",
        "contract.auditor",
        "ops.owner",
        "credit.owner",
        "governance",
    )
)
FLOW = Actor(who="flow", channel="flow")
Cli = Callable[..., Any]


def verification(org: UnitOfWork, key: str = "capa-7-verification", quorum: int = 1) -> int:
    return approvals.create_request(
        org,
        approvals.ApprovalRequestIn(
            idempotency_key=key,
            kind="capa-verification",
            subject="capa:7",
            activity="capa-verification",
            title="Verify CAPA 7: drift alert on credit-scoring",
            approver_roles=["compliance-officer", "internal-auditor", "system-owner"],
            quorum=quorum,
            excluded={CREDIT_OWNER: "owns CAPA 7"},
        ),
        FLOW,
    ).id


def approval(org: UnitOfWork) -> int:
    return approvals.create_request(
        org,
        approvals.ApprovalRequestIn(
            idempotency_key="policy-ai-2",
            subject="policy:ai-2",
            activity="approval",
            title="Approve AI policy v2",
            approver_roles=["governance-lead"],
        ),
        FLOW,
    ).id


def audits(settings: Settings, action: str) -> list[AuditEvent]:
    with session_factory(settings.effective_database_url)() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def answers(settings: Settings, ask: int) -> list[dict[str, Any] | None]:
    with session_factory(settings.effective_database_url)() as s:
        return list(s.scalars(select(Decision.answer).where(Decision.request_id == ask)))


def test_list_mine_and_json(org: UnitOfWork, run_cli: Cli) -> None:
    capa, policy = verification(org), approval(org)

    listed = run_cli("asks", "list")
    assert listed.exit_code == 0, listed.output
    for text in ("CAPA effectiveness verification", "Approval", "capa:7", "0/1", OPS, GOV):
        assert text in listed.stdout
    assert CREDIT_OWNER not in listed.stdout  # excluded, so not among who may answer

    def mine(email: str, *more: str) -> list[int]:
        out = run_cli("asks", "list", "--mine", email, "--json", *more)
        assert out.exit_code == 0, out.output
        return [a["id"] for a in json.loads(out.stdout)]

    assert mine(COMPLIANCE) == [capa]
    assert mine(GOV) == [policy]
    assert mine(CREDIT_OWNER) == []

    assert run_cli("answer", str(capa), "--as", COMPLIANCE, "--set", "result=effective",
                   "--set", "evidence=no drift alert since").exit_code == 0  # fmt: skip
    assert mine(COMPLIANCE) == [] and mine(COMPLIANCE, "--all") == []  # answered: nothing to do
    assert [a["id"] for a in json.loads(run_cli("asks", "list", "--json").stdout)] == [policy]
    every = {a["id"]: a for a in json.loads(run_cli("asks", "list", "--all", "--json").stdout)}
    assert every[capa]["status"] == "answered" and every[capa]["answers"] == 1
    assert every[capa]["kind_title"] == "CAPA effectiveness verification"
    assert every[policy]["kind_title"] == "Approval"

    unknown = run_cli("asks", "list", "--mine", "nobody" + D)
    assert unknown.exit_code == 2 and "nobody@northwind.example" in unknown.stderr


def test_show_names_the_form_fields_and_the_exclusions(org: UnitOfWork, run_cli: Cli) -> None:
    capa = verification(org)
    shown = run_cli("asks", "show", str(capa))
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert "CAPA effectiveness verification (capa-verification)" in out
    assert f"may not answer: {CREDIT_OWNER}: owns CAPA 7" in out
    assert COMPLIANCE in out and "no answers yet" in out
    assert re.search(r"result\s+.*one of: effective, ineffective\s+.*yes", out), out
    assert re.search(r"evidence\s+.*text \(multiline, ≤ 3000 characters\)", out), out

    as_json = json.loads(run_cli("asks", "show", str(capa), "--json").stdout)
    assert as_json["excluded"] == {CREDIT_OWNER: "owns CAPA 7"}
    assert [(f["name"], f["required"]) for f in as_json["form"]] == [
        ("result", True),
        ("evidence", True),
    ]
    assert as_json["form"][0]["type"] == "one of: effective, ineffective"

    run_cli("answer", str(capa), "--as", AUDITOR, "--set", "result=ineffective",
            "--set", "evidence=alert fired again on 3 March")  # fmt: skip
    after = run_cli("asks", "show", str(capa)).stdout
    assert f"{AUDITOR} (Olu Adeyemi): answer," in after and "via cli (os:" in after
    assert "    result: ineffective\n    evidence: alert fired again on 3 March\n" in after

    policy = run_cli("asks", "show", str(approval(org)))
    assert policy.exit_code == 0 and "aims approve" in policy.stdout
    missing = run_cli("asks", "show", "424242")
    assert missing.exit_code == 2 and "no approval request 424242" in missing.stderr


def test_answer_with_set_records_the_typed_answer_once(
    org: UnitOfWork, settings: Settings, run_cli: Cli
) -> None:
    capa = verification(org)
    args = ("answer", str(capa), "--as", COMPLIANCE.upper(), "--set", "result=effective",
            "--set", "evidence=  no recurrence in 90 days ")  # fmt: skip
    first = run_cli(*args)
    assert first.exit_code == 0, first.output
    assert f"recorded answer by {COMPLIANCE} on ask {capa}: answered (1 of 1)" in first.stdout
    expected = {"result": "effective", "evidence": "no recurrence in 90 days"}
    assert answers(settings, capa) == [expected]
    (event,) = audits(settings, "approval.decided")
    assert event.details["answer"] == expected and event.details["person"] == COMPLIANCE
    assert event.actor.endswith(f" as {COMPLIANCE}") and event.channel == "cli"

    again = run_cli(*args)
    assert again.exit_code == 0, again.output
    assert "answer already recorded" in again.stdout
    assert answers(settings, capa) == [expected]
    late = run_cli("answer", str(capa), "--as", AUDITOR, "--set", "result=ineffective",
                   "--set", "evidence=x")  # fmt: skip
    assert late.exit_code == 2 and f"request {capa} is already answered" in late.stderr
    assert len(audits(settings, "approval.decided")) == 1

    # An approval is approved or rejected, not answered; approve/reject keep working.
    policy = approval(org)
    told = run_cli("answer", str(policy), "--as", GOV, "--set", "result=effective")
    assert told.exit_code == 2 and "aims approve" in told.stderr and "aims reject" in told.stderr
    no_comment = run_cli("reject", str(policy), "--as", GOV)
    assert no_comment.exit_code == 2 and "--comment" in no_comment.output
    approved = run_cli("approve", str(policy), "--as", GOV)
    assert approved.exit_code == 0 and "approved (1 of 1)" in approved.stdout


def test_bad_answers_and_refused_people_write_nothing(
    org: UnitOfWork, settings: Settings, run_cli: Cli
) -> None:
    capa = verification(org)
    leavers.deactivate_person(org, CONTRACT_AUDITOR, DeactivationIn(reason="left"), Actor.cli())
    ok = ("--set", "result=effective", "--set", "evidence=fine")
    cases: list[tuple[tuple[str, ...], str]] = [
        (("--as", COMPLIANCE, "--set", "result=maybe", "--set", "evidence=x"),
         "result: Input should be 'effective' or 'ineffective'"),
        (("--as", COMPLIANCE, "--set", "result=effective", "--set", "evidence="), "evidence:"),
        (("--as", COMPLIANCE, "--set", "result=effective"), "evidence: Field required"),
        (("--as", COMPLIANCE, *ok, "--set", "severity=high"),
         "set: unknown field 'severity' (this form's fields: result, evidence)"),
        (("--as", COMPLIANCE, *ok, "--set", "result=ineffective"), "'result' is set twice"),
        (("--as", COMPLIANCE, "--set", "result"), "'result' is not FIELD=VALUE"),
        (("--as", COMPLIANCE), "--set FIELD=VALUE ... or with --file"),
        (("--as", CREDIT_OWNER, *ok), f"{CREDIT_OWNER} may not answer request {capa}: owns CAPA 7"),
        (("--as", CONTRACT_AUDITOR, *ok), "was deactivated on"),
        (("--as", GOV, *ok), "not an eligible approver"),
        (("--as", "nobody" + D, *ok), "no person with email 'nobody@northwind.example'"),
    ]  # fmt: skip
    for args, why in cases:
        out = run_cli("answer", str(capa), *args)
        assert out.exit_code == 2, (args, out.output)
        assert why in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.output
    missing = run_cli("answer", "424242", "--as", COMPLIANCE, *ok)
    assert missing.exit_code == 2 and "no approval request 424242" in missing.stderr

    assert count(settings, Decision) == 0
    assert audits(settings, "approval.decided") == []
    # Refusals (not bad input) are audited, as on every channel.
    refused = {e.details["reason"] for e in audits(settings, "approval.refused")}
    assert refused == {"separation", "deactivated", "not-eligible", "unknown-person"}
    assert approvals.get_request(org, capa).status.value == "open"


def test_answer_from_a_file(
    org: UnitOfWork, settings: Settings, run_cli: Cli, tmp_path: Path
) -> None:
    capa = verification(org, quorum=2)

    def answer_with(text: str, who: str = AUDITOR) -> Any:
        path = tmp_path / "answers.yaml"
        path.write_text(text, "utf-8")
        return run_cli("answer", str(capa), "--as", who, "--file", str(path))

    bad = answer_with("result: effective\nevidence: ''\n")
    assert bad.exit_code == 2 and "evidence:" in bad.stderr and "line 2" in bad.stderr
    twice = answer_with("result: effective\nresult: ineffective\nevidence: x\n")
    assert twice.exit_code == 2 and "duplicate key 'result'" in twice.stderr
    unknown = answer_with("result: effective\nevidence: x\nseverity: high\n")
    assert unknown.exit_code == 2 and "line 3: unknown field 'severity'" in unknown.stderr
    not_a_map = answer_with("- effective\n")
    assert not_a_map.exit_code == 2 and "must map the form's fields" in not_a_map.stderr
    assert run_cli("answer", str(capa), "--as", AUDITOR, "--file", str(tmp_path / "no.yaml"),
                   ).exit_code == 2  # fmt: skip
    assert count(settings, Decision) == 0

    done = answer_with("result: ineffective\nevidence: |\n  Drift alert fired again.\n  Twice.\n")
    assert done.exit_code == 0, done.output
    assert "waiting: 1 of 2" in done.stdout
    evidence = "Drift alert fired again.\nTwice."
    assert answers(settings, capa) == [{"result": "ineffective", "evidence": evidence}]
    both = run_cli("answer", str(capa), "--as", OPS, "--file", str(tmp_path / "answers.yaml"),
                   "--set", "result=effective")  # fmt: skip
    assert both.exit_code == 2 and "or with --file" in both.stderr


def test_code_hands_over_the_current_code_audited(
    org: UnitOfWork, settings: Settings, run_cli: Cli
) -> None:
    capa = verification(org)
    shown = run_cli("asks", "code", str(capa), "--for", AUDITOR)
    assert shown.exit_code == 0, shown.output
    code = shown.stdout.splitlines()[0]
    assert len(code) == 19 and re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", code), code
    (event,) = audits(settings, "ask.code-handed-over")
    assert event.subject == f"approval:{capa}" and event.details["person"] == AUDITOR
    assert event.channel == "cli" and event.actor.startswith("os:")
    assert "works once" in run_cli("asks", "code", "--help").stdout

    for who, why in (
        (CREDIT_OWNER, "not an eligible answerer"),
        ("nobody" + D, "no person with email"),
    ):
        refused = run_cli("asks", "code", str(capa), "--for", who)
        assert refused.exit_code == 2 and why in refused.stderr, refused.output
        assert len(refused.stderr.strip().splitlines()) == 1
    assert len(audits(settings, "ask.code-handed-over")) == 1


def test_set_values_are_parsed_by_the_form_and_described_from_it() -> None:
    """A form of every field type the channels know: `--set` hands text to the model, which
    parses it (a bool takes yes/no/true/false); a list field collects repeated `--set`s."""

    class Form(AnswerForm):
        contained: bool = Field(title="Contained", description="Is it contained?")
        due: date | None = None
        steps: list[str] = Field(default_factory=list)
        score: int = Field(default=0, ge=0, le=5)

    for text, value in (("yes", True), ("no", False), ("true", True), ("FALSE", False)):
        sets = [f"contained={text}", "steps=a", "steps=b", "due=2027-01-31"]
        parsed = Form.model_validate(answer_from_sets(Form, sets))
        assert (parsed.contained, parsed.steps) == (value, ["a", "b"])
        assert parsed.due == date(2027, 1, 31)
    with pytest.raises(InvalidInput) as twice:
        answer_from_sets(Form, ["score=1", "score=2"])
    assert twice.value.field == "set"
    assert twice.value.message == "'score' is set twice (it takes one value)"

    described = {f.name: f for f in form_fields(Form)}
    assert described["contained"].type == "yes/no" and described["contained"].required
    assert described["due"].type == "date (YYYY-MM-DD) (may be empty)"
    assert not described["due"].required
    assert described["steps"].type == "list of text (repeat --set)"
    assert described["score"].type == "integer (≥ 0, ≤ 5)" and described["score"].default == 0
