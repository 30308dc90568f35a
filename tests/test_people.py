"""People come and go: update, show, deactivate (reassigning what they own), reactivate, import.

Services and the CLI (in process) on the demo organisation, SQLite and PostgreSQL. The demo's
credit.owner (Priya Nair) owns three systems, a vendor, a policy exception and the RACI of
credit-scoring's stage gate; governance (Lena Fischer) is Accountable for most of the
organisation's RACI and owns its policies.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from records import count
from sqlalchemy import select

from aims_core.db import session_factory
from aims_core.errors import AimsError, Conflict, ImportRejected, InvalidInput
from aims_core.importing import read_rows
from aims_core.models import (
    AISystem,
    ApprovalApprover,
    AuditEvent,
    CapaAction,
    Decision,
    Notification,
    Person,
    PlanTask,
    RaciActivity,
)
from aims_core.rules.gap import assessable
from aims_core.schemas import SystemIn
from aims_core.services import approvals, gap, leavers, people, systems
from aims_core.services import capa as capas
from aims_core.services.approvals import DecisionIn, Refused
from aims_core.services.outbox import KIND_ESCALATION
from aims_core.services.people import DeactivationIn, PersonUpdate
from aims_core.services.reconcile import escalate_overdue
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
CEO, GOV, COMPLIANCE, OWNER, OPS, DS, ETHICS, PROCUREMENT = (
    f"{n}{D}"
    for n in (
        "ceo",
        "governance",
        "compliance",
        "credit.owner",
        "ops.owner",
        "ds.lead",
        "ethics",
        "procurement",
    )
)
LEFT = "left the company"


def audits(settings: Settings, action: str, subject: str | None = None) -> list[AuditEvent]:
    with session_factory(settings.effective_database_url)() as s:
        q = select(AuditEvent).where(AuditEvent.action == action)
        if subject is not None:
            q = q.where(AuditEvent.subject == subject)
        return list(s.scalars(q.order_by(AuditEvent.id)))


def owner_of(settings: Settings, model: type, *where: object) -> set[str]:
    """The emails of the people `model` rows (matching `where`) name as owner/accountable."""
    column = RaciActivity.accountable_id if model is RaciActivity else model.owner_id  # type: ignore[attr-defined]
    with session_factory(settings.effective_database_url)() as s:
        return set(s.scalars(select(Person.email).join(model, column == Person.id).where(*where)))


def footprint(settings: Settings) -> tuple[int, ...]:
    """What a refused command must leave as it was."""
    return (
        count(settings, AuditEvent),
        count(settings, Person, Person.active.is_(True)),
        count(settings, ApprovalApprover),
        count(settings, Notification),
        count(settings, AISystem, AISystem.owner_id == _id(settings, OWNER)),
    )


def _id(settings: Settings, email: str) -> int:
    with session_factory(settings.effective_database_url)() as s:
        pid = s.scalar(select(Person.id).where(Person.email == email))
        assert pid is not None
        return pid


def gate(settings: Settings, quorum: int, key: str = "gate-1") -> int:
    """A gate on credit-scoring asked by ds.lead: compliance, ethics and credit.owner decide."""
    out = approvals.create_request(
        UnitOfWork(settings),
        approvals.ApprovalRequestIn(
            idempotency_key=key,
            subject="gate:credit-scoring:validation-deployment",
            activity="stage-gate",
            system="credit-scoring",
            title="Deploy credit-scoring v2",
            approver_roles=["compliance-officer", "ethics-committee", "governance-lead"],
            quorum=quorum,
            requester=DS,
            deadline=datetime.now(UTC) + timedelta(days=3),
        ),
        Actor(who="flow", channel="flow"),
    )
    assert sorted(out.approvers) == sorted([COMPLIANCE, ETHICS, OWNER])
    return out.id


# --- must show: an owner is not deactivated without a successor ---------------------------------


def test_deactivating_an_owner_without_reassign_names_each_item_and_writes_nothing(
    org: UnitOfWork, settings: Settings, run_cli
) -> None:
    before = footprint(settings)

    result = run_cli("people", "deactivate", OWNER, "--reason", LEFT)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for item in (
        "system credit-scoring",
        "system cv-screening",
        "system emotion-pilot",
        "RACI stage-gate (credit-scoring) accountable",
        "vendor TalentSort GmbH",
        "policy exception",
    ):
        assert item in result.output
    assert "--reassign-to" in result.output
    assert footprint(settings) == before
    # The same at the service, and a successor who cannot take over is refused by name.
    with pytest.raises(Conflict) as exc:
        leavers.deactivate_person(org, OWNER, DeactivationIn(reason=LEFT), Actor.cli())
    assert exc.value.field == "reassign_to"
    assert "Priya Nair <credit.owner@northwind.example> still owns" in exc.value.message
    for bad, why in ((OWNER, "being deactivated"), ("nobody" + D, "no person")):
        with pytest.raises(AimsError) as err:
            leavers.deactivate_person(
                org, OWNER, DeactivationIn(reason=LEFT, reassign_to=bad), Actor.cli()
            )
        assert why in str(err.value)
    assert footprint(settings) == before


def _gap_plan(org: UnitOfWork, actor: Actor) -> None:
    """An approved gap assessment (its plan tasks owned through the RACI: many by governance)."""
    a = gap.start(org, actor, assessor=OPS)
    answers: dict[str, object] = {r.id: "conforming" for r in assessable()}
    answers.update({"6.1.2": "not-conforming", "9.3.1": "not-conforming", "5.2": "not-conforming"})
    gap.record(org, a.id, answers, actor)
    gap.complete(org, a.id, actor)
    request = approvals.create_request(org, gap.approval_spec(org, a.id), actor)
    approvals.decide(
        org, DecisionIn(request_id=request.id, person=CEO, outcome="approve"), Actor(who=CEO)
    )
    gap.record_decision(org, a.id, actor)


def test_reassign_moves_systems_actions_tasks_and_raci_each_audited(
    org: UnitOfWork, settings: Settings, actor: Actor, run_cli
) -> None:
    settings = org.settings
    systems.add_system(
        org,
        SystemIn(
            name="policy-assistant",
            owner=GOV,
            purpose="Drafts policy texts",
            risk_tier="minimal",
            criticality="low",
        ),
        actor,
    )
    c = capas.open_capa(
        org, {"title": "Drift unnoticed", "owner": OPS, "system": "fraud-detection"}, actor
    )
    capas.record_containment(org, c.id, "Fallback rules on", actor)
    capas.record_root_cause(org, c.id, {"whys": ["No monitor"], "root_cause": "No monitor"}, actor)
    c = capas.add_action(
        org,
        c.id,
        {"title": "Add a drift monitor", "owner": GOV, "due": date.today() + timedelta(days=9)},
        actor,
    )
    _gap_plan(org, actor)
    held = {h.kind for h in people.show_person(org, GOV).holdings if h.must_reassign}
    assert {"system", "capa-action", "plan-task", "raci", "policy"} <= held
    gov = _id(settings, GOV)
    moving = [h for h in people.show_person(org, GOV).holdings if h.must_reassign]

    result = run_cli("people", "deactivate", GOV, "--reason", LEFT, "--reassign-to", COMPLIANCE)

    assert result.exit_code == 0, result.output
    for h in moving:
        assert f"{h.label}: → {COMPLIANCE}" in result.output
    assert owner_of(settings, AISystem, AISystem.name == "policy-assistant") == {COMPLIANCE}
    assert owner_of(settings, CapaAction, CapaAction.capa_id == c.id) == {COMPLIANCE}
    assert count(settings, PlanTask, PlanTask.owner_id == gov) == 0
    assert count(settings, RaciActivity, RaciActivity.accountable_id == gov) == 0
    assert count(settings, PlanTask, PlanTask.owner_id == _id(settings, COMPLIANCE)) >= 1
    # One audit event per item moved, on the item's own subject; then the deactivation itself.
    moved = [e for kind in {h.kind for h in moving} for e in audits(settings, f"{kind}.reassigned")]
    assert sorted(e.details["item"] for e in moved) == sorted(h.label for h in moving)
    assert {e.details["to"] for e in moved} == {COMPLIANCE}
    assert "system:policy-assistant" in {e.subject for e in moved}
    (event,) = audits(settings, "person.deactivated", f"person:{GOV}")
    assert event.details["reason"] == LEFT and event.details["reassigned_to"] == COMPLIANCE
    shown = run_cli("people", "show", GOV)
    assert shown.exit_code == 0, shown.output
    assert f"deactivated on {datetime.now(UTC):%Y-%m-%d}" in shown.output and LEFT in shown.output
    assert "owns (0): nothing open" in shown.output
    assert "system policy-assistant" in run_cli("people", "show", COMPLIANCE).output
    # New work is not given to a leaver; reactivating brings them back (audited).
    with pytest.raises(InvalidInput, match="not active"):
        capas.add_action(
            org, c.id, {"title": "x", "owner": GOV, "due": date.today() + timedelta(days=1)}, actor
        )
    again = run_cli("people", "reactivate", GOV, "--reason", "came back")
    assert again.exit_code == 0, again.output
    assert people.show_person(org, GOV).active
    assert (
        audits(settings, "person.reactivated", f"person:{GOV}")[0].details["reason"] == "came back"
    )


# --- must show: a leaver cannot decide; a request short of its quorum is escalated once --------


def test_a_deactivated_approver_is_refused_by_name_and_a_lost_quorum_escalates_once(
    org: UnitOfWork, settings: Settings, actor: Actor, run_cli
) -> None:
    settings = org.settings
    rid = gate(settings, quorum=3)
    approvals.decide(
        org, DecisionIn(request_id=rid, person=COMPLIANCE, outcome="approve"), Actor(who=COMPLIANCE)
    )

    # Compliance leaves: their approval stands; 1 approval + 2 undecided can still make 3.
    leavers.deactivate_person(org, COMPLIANCE, DeactivationIn(reason=LEFT), actor)
    req = approvals.get_request(org, rid)
    assert req.approvals == [COMPLIANCE] and COMPLIANCE not in req.approvers
    assert count(settings, Decision) == 1
    assert audits(settings, "approval.escalated") == []

    # Ethics leaves: 1 + 1 < 3, escalated at once to the Accountable's manager and the lead.
    lines = leavers.deactivate_person(org, ETHICS, DeactivationIn(reason="moved abroad"), actor)
    (escalated,) = audits(settings, "approval.escalated", f"approval:{rid}")
    assert escalated.details["why"] == "quorum unreachable"
    assert escalated.details["contacts"] == [CEO, GOV]
    assert any("quorum 3 unreachable: escalated to" in line for line in lines)
    told = count(settings, Notification, Notification.kind == KIND_ESCALATION)
    assert told == 2

    # Again, and the reconciler past the deadline: still the one escalation.
    with pytest.raises(Conflict, match="already deactivated"):
        leavers.deactivate_person(org, ETHICS, DeactivationIn(reason="moved abroad"), actor)
    report = escalate_overdue(settings, now=datetime.now(UTC) + timedelta(days=4))
    assert report.escalated_ids == []
    assert len(audits(settings, "approval.escalated")) == 1
    assert count(settings, Notification, Notification.kind == KIND_ESCALATION) == told

    # A CLI decision by the leaver is refused naming the deactivation, and audited.
    result = run_cli("approve", str(rid), "--as", ETHICS)
    assert result.exit_code == 2
    assert f"Amara Diallo was deactivated on {datetime.now(UTC):%Y-%m-%d} (moved abroad)" in (
        result.output
    )
    assert "not eligible" in result.output and "Traceback" not in result.output
    with pytest.raises(Refused) as exc:
        approvals.decide(
            org, DecisionIn(request_id=rid, person=COMPLIANCE, outcome="approve"), actor
        )
    assert exc.value.reason == "deactivated" and "Tomás Ruiz was deactivated on" in str(exc.value)
    assert [e.details["reason"] for e in audits(settings, "approval.refused")] == [
        "deactivated",
        "deactivated",
    ]
    assert count(settings, Decision) == 1


# --- must show: a people import names each bad line and writes nothing -------------------------


def test_a_people_import_names_every_bad_line_and_writes_nothing(
    org: UnitOfWork, settings: Settings, run_cli, tmp_path: Path
) -> None:
    bad = tmp_path / "people.csv"
    bad.write_text(
        "email,name,roles,manager,slack_id\n"
        "ana@northwind.example,Ana Lima,compliance-officer,boss@northwind.example,\n"  # 2
        "not-an-email,Bo Berg,,,\n"  # 3
        "cy@northwind.example,Cy Dahl,astronaut,,\n"  # 4
        "ana@northwind.example,Ana Again,,,\n"  # 5
        f"{GOV},Lena Twice,,,\n"  # 6
        "dee@northwind.example,Dee Ek,,,abc\n"  # 7
        "boss@northwind.example,The Boss,top-management,,U0DEMO001\n",  # 8
        encoding="utf-8",
    )
    before = (count(settings, Person), count(settings, AuditEvent))

    result = run_cli("people", "import", str(bad))

    assert result.exit_code == 2, result.output
    expected = [
        "line 3: email: 'not-an-email' is not an email address",
        "line 4: roles: unknown role 'astronaut'",
        "line 5: email: duplicate email 'ana@northwind.example' (first on line 2)",
        f"line 6: email: a person with email '{GOV}' already exists",
        "line 7: slack_id: 'abc' is not a Slack user id",
        f"line 8: slack_id: U0DEMO001 already belongs to {CEO}",
    ]
    for problem in expected:
        assert problem in result.output
    assert "line 2:" not in result.output  # the boss is defined further down
    assert "6 bad row(s), 6 problem(s); nothing imported" in result.output
    assert (count(settings, Person), count(settings, AuditEvent)) == before

    good = tmp_path / "good.csv"
    good.write_text(
        "email,name,roles,manager\n"
        "ana@northwind.example,Ana Lima,compliance-officer; legal,boss@northwind.example\n"
        f"boss@northwind.example,The Boss,top-management,{CEO}\n",
        encoding="utf-8",
    )
    out = people.import_people(
        org,
        read_rows(good, people.REQUIRED_COLUMNS, people.IMPORT_COLUMNS[2:]),
        Actor.cli(),
        "good.csv",
    )
    assert [(p.email, p.roles, p.manager) for p in out] == [
        ("ana@northwind.example", ["compliance-officer", "legal"], "boss@northwind.example"),
        ("boss@northwind.example", ["top-management"], CEO),
    ]
    assert len(audits(settings, "person.imported")) == 2
    with pytest.raises(ImportRejected) as again:
        people.import_people(
            org, read_rows(good, people.REQUIRED_COLUMNS, ()), Actor.cli(), "good.csv"
        )
    assert again.value.problems[0].endswith("already exists")


# --- update and show -----------------------------------------------------------------------------


def test_update_changes_what_is_given_and_refuses_bad_input_by_field(
    org: UnitOfWork, settings: Settings, run_cli
) -> None:
    result = run_cli(
        "people", "update", PROCUREMENT, "--role", "+legal", "--role=-procurement",
        "--slack-id", "U0RITA01", "--manager", GOV,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    p = people.show_person(org, PROCUREMENT)
    assert "procurement" not in p.roles and p.slack_user_id == "U0RITA01" and p.manager == GOV
    (event,) = audits(settings, "person.updated", f"person:{PROCUREMENT}")
    assert set(event.details["changes"]) == {"roles", "slack_id", "manager"}
    assert event.details["changes"]["manager"] == [OPS, GOV]

    refusals = {
        ("--role", "+astronaut"): "role: unknown role 'astronaut'",
        ("--role=-ethics-committee",): "does not hold the role 'ethics-committee'",
        ("--slack-id", "U0DEMO002"): f"slack_id: Slack id U0DEMO002 already belongs to {GOV}",
        ("--slack-id", "bad"): "'bad' is not a Slack user id",
        ("--manager", PROCUREMENT): "cannot be their own manager",
        ("--manager", "nobody" + D): "no person with email",
    }
    before = count(settings, AuditEvent)
    for args, message in refusals.items():
        r = run_cli("people", "update", PROCUREMENT, *args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output, (args, r.output)
    # A loop: governance's manager cannot be someone who reports to governance.
    with pytest.raises(InvalidInput, match="a manager chain cannot loop"):
        people.update_person(org, GOV, PersonUpdate(manager=COMPLIANCE), Actor.cli())
    assert count(settings, AuditEvent) == before
    # Nothing different: nothing written.
    people.update_person(org, PROCUREMENT, PersonUpdate(manager=GOV), Actor.cli())
    assert count(settings, AuditEvent) == before

    shown = run_cli("people", "show", OWNER)
    assert shown.exit_code == 0, shown.output
    for line in ("status:   active", "system credit-scoring", "RACI stage-gate (credit-scoring)"):
        assert line in shown.output
