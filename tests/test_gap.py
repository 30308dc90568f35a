"""Gap assessment, maturity and the implementation plan: services and CLI, SQLite and PostgreSQL.

The demo organisation (Northwind Lending) is assessed; the flow is exercised in test_gap_e2e.py.
"""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from records import count

from aims_core.errors import Conflict, InvalidInput
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import AuditEvent, GapAnswer, GapAssessment, Notification
from aims_core.rules.gap import GapPlanInvalid, GapPrefillInvalid, assessable, plan_policy
from aims_core.rules.gap import prefill_rules as load_prefill
from aims_core.schemas import PersonIn
from aims_core.services import approvals, evidence, gap, people, plan, policies, soa, vendors
from aims_core.services.approvals import DecisionIn
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
GOV = f"governance{D}"  # the assessor: never an approver of the assessment
CEO = f"ceo{D}"

#: What the demo organisation's records support, and the status they suggest.
DEMO_SUGGESTIONS = {
    "4.1": "conforming",  # external and internal issues recorded this year
    "4.2": "conforming",  # an interested party recorded
    "4.3": "partially-conforming",  # the AI system inventory bounds the scope
    "5.2": "partially-conforming",  # the AI policy is approved, its review overdue
    "5.3": "conforming",  # RACI for every core activity
    "6.1.3": "not-conforming",  # no Statement of Applicability yet
    "7.2": "conforming",  # every required training current
    "9.2.1": "partially-conforming",  # audit programme, no audit closed yet
    "9.2.2": "conforming",  # the audit programme
    "9.3.1": "not-conforming",  # no management review held
    "9.3.2": "not-conforming",
    "9.3.3": "not-conforming",
    "10.2": "conforming",  # no open major nonconformity
    "A.2.2": "partially-conforming",
    "A.2.4": "not-conforming",  # the review of the AI policy is overdue
    "A.3.2": "conforming",
    "A.4.6": "conforming",
    "A.8.4": "conforming",  # the incident management policy approved 20 days ago
    "A.10.3": "partially-conforming",  # Acme's vendor reassessment is due, TalentSort's not
}

#: The fixed answers: everything conforming except these.
ANSWERS: dict[str, Any] = {
    "4.3": "partially-conforming",
    "4.4": "not-conforming",
    "5.1": "partially-conforming",
    "5.2": "not-conforming",
    "7.1": "not-conforming",
    "7.2": "not-conforming",
    "7.3": "not-conforming",
    "7.4": "not-conforming",
    "7.5.1": {"status": "not-applicable", "note": "covered by the group's document control"},
    "8.1": "not-conforming",
    "8.2": "not-conforming",
    "8.3": "not-conforming",
    "8.4": "not-conforming",
    "9.1": {"status": "partially-conforming", "note": "KPIs defined, not yet measured"},
    "10.2": {"status": "partially-conforming", "evidence": ["capa:1"]},
}
#: Scores (conforming 1, partially 0.5, not 0; n/a left out) → the rule's levels.
CLAUSE_LEVELS = {"4": 3, "5": 3, "6": 5, "7": 2, "8": 1, "9": 4, "10": 4}
GAPS = sum(
    1 for v in ANSWERS.values() if (v if isinstance(v, str) else v["status"]) != "not-applicable"
)


def all_answers(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {r.id: "conforming" for r in assessable()}
    out.update(ANSWERS)
    out.update(overrides)
    return out


def approve(uow: UnitOfWork, assessment_id: int, actor: Actor, **kw: Any) -> gap.GapAssessmentOut:
    """Complete, ask through the approval service, the CEO approves, the decision applied."""
    gap.complete(uow, assessment_id, actor)
    request = approvals.create_request(uow, gap.approval_spec(uow, assessment_id), actor)
    assert GOV not in request.approvers and CEO in request.approvers
    approvals.decide(
        uow,
        DecisionIn(request_id=request.id, person=CEO, outcome="approve"),
        Actor(who=CEO, channel="test"),
    )
    return gap.record_decision(uow, assessment_id, actor, **kw)


def assessed(org: UnitOfWork, actor: Actor, **kw: Any) -> gap.GapAssessmentOut:
    a = gap.start(org, actor, assessor=GOV)
    gap.record(org, a.id, all_answers(), actor)
    return approve(org, a.id, actor, **kw)


# --- must show: pre-fill on the demo and maturity per clause -----------------------------------


def test_demo_prefills_what_its_records_support_and_answers_yield_the_maturity(
    org: UnitOfWork, actor: Actor
) -> None:
    a = gap.start(org, actor, assessor=GOV)
    assert a.total == 70 == len(assessable())  # 32 leaf clauses + 38 Annex A controls
    suggested = {r.requirement: r.suggested_status for r in a.requirements if r.suggested_status}
    assert suggested == DEMO_SUGGESTIONS
    by_id = a.by_id()
    assert "review overdue since" in " ".join(by_id["5.2"].suggested_records)
    assert by_id["9.2.2"].suggested_records[0].startswith("audit programme")
    # Suggestions are for the assessor to confirm: nothing is assessed yet.
    assert a.answered == 0 and a.missing == [r.id for r in assessable()]
    assert {r.shown_status for r in a.requirements} == {"not assessed"}
    with pytest.raises(InvalidInput, match="70 requirement"):
        gap.complete(org, a.id, actor)

    gap.record(org, a.id, all_answers(), actor)
    out = approve(org, a.id, actor)
    assert out.status == "approved" and out.maturity is not None
    assert out.maturity.levels("clause") == CLAUSE_LEVELS
    assert set(out.maturity.levels("annex-objective").values()) == {5}
    assert (out.maturity.overall, out.maturity.overall_name) == (4, "managed")  # ⌊72/17⌋
    # Frozen at approval, kept as evidence, every step audited.
    assert out.evidence_id is not None
    [record] = evidence.list_evidence(org.settings, subject=gap.subject(a.id))
    assert record.kind == "gap-assessment"
    actions = [
        e.action for e in _events(org.settings, gap.subject(a.id)) if e.action.startswith("gap.")
    ]
    assert actions == ["gap.started", "gap.recorded", "gap.completed", "gap.approved"]
    assert gap.record_decision(org, a.id, actor) == out  # idempotent


def _events(settings: Settings, subject: str) -> list[AuditEvent]:
    from sqlalchemy import select

    from aims_core.db import get_engine

    with get_engine(settings.effective_database_url).connect() as conn:
        return list(
            conn.execute(
                select(AuditEvent).where(AuditEvent.subject == subject).order_by(AuditEvent.id)
            )
        )


# --- must show: the plan workbook --------------------------------------------------------------


def test_plan_workbook_has_one_row_per_open_gap_with_owner_and_due(
    org: UnitOfWork, actor: Actor, run_cli, tmp_path: Path
) -> None:
    out = assessed(org, actor)
    tasks = plan.list_tasks(org)
    assert len(tasks) == GAPS == 14
    assert {t.requirement for t in tasks} == {k for k, v in ANSWERS.items() if k != "7.5.1"}
    # Phases in order, regulatory and high-risk gaps first within a phase.
    phases = [p.id for p in plan_policy(org.settings).phases]
    assert [phases.index(t.phase) for t in tasks] == sorted(phases.index(t.phase) for t in tasks)
    first = tasks[0]
    assert (first.requirement, first.phase, first.priority) == ("5.2", "foundation", "high")
    t82 = next(t for t in tasks if t.requirement == "8.2")
    assert t82.owner == GOV  # Responsible of risk-assessment in the demo RACI
    assert t82.depends_on == []  # 6.1.2 is no gap here
    t83 = next(t for t in tasks if t.requirement == "8.3")
    assert t83.evidence_kind == "risk-treatment-plan"

    xlsx = tmp_path / "plan.xlsx"
    result = run_cli("plan", "export", "--xlsx", str(xlsx))
    assert result.exit_code == 0, result.output
    sheets = pd.read_excel(xlsx, sheet_name=None)
    assert {"Assessment", "Plan", "RACI", "Maturity", "Summary"} <= set(sheets)
    rows = sheets["Plan"]
    assert len(rows) == GAPS
    assert rows["owner"].str.endswith(D).all() and rows["due_at"].notna().all()
    assert set(rows["requirement"].astype(str)) == {t.requirement for t in tasks}
    assert {"phase", "milestone", "owner", "due_at", "status", "requirement"} <= set(rows)
    assert len(sheets["Assessment"]) == 70
    assert len(sheets["RACI"]) == 7  # the demo's RACI activities
    assert out.id == int(sheets["Summary"].set_index("figure").loc["assessment", "value"])


# --- must show: closing needs the evidence; overdue escalates ----------------------------------


def test_closing_a_task_needs_its_evidence_and_an_overdue_task_escalates(
    org: UnitOfWork, actor: Actor
) -> None:
    assessed(org, actor)
    task = next(t for t in plan.list_tasks(org) if t.requirement == "9.1")
    assert task.evidence_kind == "other"
    with pytest.raises(Conflict, match=f"closes with other evidence.*plan:{task.id}"):
        plan.close_task(org, task.id, actor)
    wrong = evidence.append(
        org.settings,
        EvidenceIn(subject=f"plan:{task.id}", kind="vv-report", title="V&V", text="x"),
        actor,
    )
    with pytest.raises(InvalidInput, match="needs other"):
        plan.close_task(org, task.id, actor, evidence_id=wrong.id)
    assert plan.get_task(org, task.id).status == "open"

    # Past its due date: a reminder to the owner, once a day; then one escalation.
    settings = org.settings
    day1 = task.due_at + timedelta(hours=1)  # the first day overdue, 01:00
    r1 = plan.tick(settings, day1)
    assert task.id in r1.reminded_ids and task.id not in r1.escalated_ids and not r1.failures
    assert not r1.closed_ids  # nothing recorded closes a task yet
    assert task.id not in plan.tick(settings, day1 + timedelta(hours=2)).reminded_ids  # same day
    notes = count(settings, Notification, Notification.subject == f"plan:{task.id}")
    assert notes == 1
    later = task.due_at + timedelta(days=plan_policy(settings).tracking.escalate_days_after)
    r2 = plan.tick(settings, later)
    assert task.id in r2.reminded_ids and task.id in r2.escalated_ids
    assert task.id not in plan.tick(settings, later).escalated_ids
    kinds = count(
        settings,
        Notification,
        Notification.subject == f"plan:{task.id}",
        Notification.kind == "plan-escalation",
    )
    assert kinds >= 1  # the owner's manager and/or the governance leads
    from aims_core.services import status

    overdue = status.snapshot(org, now=later).plan_tasks_overdue
    assert task.id in [x.task_id for x in overdue]

    # The named evidence recorded: the next pass closes the task (or `aims plan done`).
    ok = evidence.append(
        settings,
        EvidenceIn(subject=f"plan:{task.id}", kind="other", title="KPI report", text="ok"),
        actor,
    )
    r3 = plan.tick(settings, later + timedelta(days=1))
    assert task.id in r3.closed_ids
    closed = plan.get_task(org, task.id)
    assert (closed.status, closed.evidence_id) == ("done", ok.id)
    assert plan.close_task(org, task.id, actor) == closed  # idempotent


# --- pre-fill from the SoA and the vendor assessments ------------------------------------------


def test_soa_exclusions_suggest_not_applicable_and_current_vendors_a_10_3(
    org: UnitOfWork, actor: Actor
) -> None:
    """An Annex A control the SoA excludes is suggested not applicable, its justification the
    note that confirming records; A.10.3 conforms once no vendor's reassessment is due."""
    why = "We offer no AI system to customers: every system is used in-house"
    soa.set_applicability(org, soa.SoaDecision(control_id="A.10.4", applicable=False,
                                               justification=why), actor)  # fmt: skip
    soa.set_applicability(org, soa.SoaDecision(control_id="A.8.2", applicable=True), actor)
    due = gap.suggestions(org)["A.10.3"]
    assert due.status == "partially-conforming"
    assert "no current assessment of vendor Acme LLM Ltd" in due.records
    vendors.assess(org, "Acme LLM Ltd", {"result": "acceptable", "notes": "renewed",
                                         "assessor": f"procurement{D}"}, actor)  # fmt: skip

    a = gap.start(org, actor, assessor=GOV)
    by_id = a.by_id()
    excluded = by_id["A.10.4"]
    assert (excluded.suggested_status, excluded.suggested_note) == ("not-applicable", why)
    assert excluded.suggested_records == [f"Statement of Applicability excludes A.10.4: {why}"]
    assert by_id["A.8.2"].suggested_status is None  # applicable: the SoA suggests nothing
    assert sorted(r.requirement for r in a.requirements if r.suggested_note) == ["A.10.4"]
    assert by_id["A.10.3"].suggested_status == "conforming"
    assert by_id["A.10.3"].suggested_records == [
        "current assessment of vendor Acme LLM Ltd",
        "current assessment of vendor TalentSort GmbH",
    ]
    out = gap.accept_suggestions(org, a.id, actor, only=["A.10.4", "A.10.3"]).by_id()
    assert (out["A.10.4"].status, out["A.10.4"].note) == ("not-applicable", why)
    assert out["A.10.3"].status == "conforming"
    assert out["A.10.3"].note.startswith("confirmed from the records: current assessment")


# --- must show: an approved AI policy moves 5.2 ------------------------------------------------


def test_an_approved_ai_policy_moves_5_2_to_a_suggested_conforming(
    settings: Settings, actor: Actor
) -> None:
    uow = UnitOfWork(settings)
    for email, name, roles in (
        (CEO, "Grace Okafor", ["top-management"]),
        (GOV, "Lena Fischer", ["governance-lead"]),
    ):
        people.add_person(uow, PersonIn(email=email, name=name, roles=roles), actor)
    first = gap.start(uow, actor, assessor=GOV)
    assert first.by_id()["5.2"].suggested_status == "not-conforming"
    gap.accept_suggestions(uow, first.id, actor)
    gap.record(uow, first.id, {r: "conforming" for r in gap.get(uow, first.id).missing}, actor)
    approve(uow, first.id, actor)
    assert gap.get(uow, first.id).by_id()["5.2"].status == "not-conforming"
    [task] = [t for t in plan.list_tasks(uow) if t.requirement == "5.2"]
    assert task.evidence_kind == "policy"

    policies.add_policy(uow, {"key": "ai-policy", "title": "AI Policy", "owner": GOV}, actor)
    v1 = policies.propose_version(uow, "ai-policy", {"body": "# AI Policy\n"}, actor)
    request = approvals.create_request(uow, policies.begin_approval(uow, v1.id, None, actor), actor)
    approvals.decide(
        uow, DecisionIn(request_id=request.id, person=CEO, outcome="approve"), Actor(who=CEO)
    )
    policies.settle_approval(uow, v1.id, request.id, actor)

    # The plan task closes on the policy evidence; the next assessment suggests conforming.
    assert task.id in plan.tick(settings).closed_ids
    second = gap.start(uow, actor, assessor=GOV)
    hint = second.by_id()["5.2"]
    assert hint.suggested_status == "conforming"
    assert hint.suggested_records[0].startswith("policy ai-policy v1 approved")
    assert hint.status is None  # still the assessor's to confirm


# --- trends, readiness, report -----------------------------------------------------------------


def test_trends_readiness_and_the_report(
    org: UnitOfWork, actor: Actor, run_cli, tmp_path: Path
) -> None:
    first = assessed(org, actor)
    second = gap.start(org, actor, assessor=GOV)
    closed = {k: "conforming" for k in ANSWERS if k != "7.5.1"}
    gap.record(org, second.id, all_answers(**closed), actor)
    second = approve(org, second.id, actor)
    points = gap.trends(org)
    assert [(p.assessment_id, p.overall) for p in points] == [(first.id, 4), (second.id, 5)]
    assert points[1].conforming_pct == 100.0 and points[1].levels["8"] == 5
    # The first plan's open tasks were superseded by the second (which has none).
    assert plan.list_tasks(org) == []
    assert {t.status for t in plan.list_tasks(org, assessment_id=first.id)} == {"superseded"}

    r = gap.readiness(org)
    rows = {x.requirement: x for x in r.rows}
    assert not rows["6.1.3"].ready and "Statement of Applicability" in rows["6.1.3"].asks
    assert not rows["9.3.1"].ready  # the assessor said conforming; no review is recorded
    assert rows["9.2.2"].ready and rows["10.2"].ready and rows["4.4"].ready
    assert r.percent == round(100 * r.ready / 70, 1) and 0 < r.percent < 100
    shown = run_cli("gap", "readiness")
    assert shown.exit_code == 0 and f"{r.percent} %" in shown.output

    result = run_cli("gap", "report", str(second.id), "--output", str(tmp_path / "rep"))
    assert result.exit_code == 0, result.output
    html = (tmp_path / "rep" / f"gap-assessment-{second.id}.html").read_text()
    md = (tmp_path / "rep" / f"gap-assessment-{second.id}.md").read_text()
    for name in ("heatmap", "maturity", "trend"):
        assert f'id="chart-{name}"' in html
        assert (tmp_path / "rep" / f"gap-assessment-{second.id}-{name}.png").stat().st_size > 1000
        assert f"gap-assessment-{second.id}-{name}.png" in md
    assert "Overall maturity | 5 (optimizing)" in md
    assert "covered by the group&#39;s document control" in html


# --- CLI: record, show, errors -------------------------------------------------------------------


def test_cli_records_and_refuses_bad_input_naming_the_field(
    org: UnitOfWork, actor: Actor, run_cli, tmp_path: Path
) -> None:
    settings = org.settings
    none_yet = run_cli("gap", "show")
    assert none_yet.exit_code == 2 and "assessment: no gap assessment yet" in none_yet.output
    unknown = run_cli("gap", "start", "--assessor", "nobody@example.org")
    assert unknown.exit_code == 2 and "assessor:" in unknown.output
    assert count(settings, GapAssessment) == 0

    a = gap.start(org, actor, assessor=GOV)

    def answered() -> int:
        return count(settings, GapAnswer, GapAnswer.status.is_not(None))

    for args, message in (
        (("5.2", "--status", "maybe"), "5.2.status: 'maybe' is not one of: conforming"),
        (("9.9", "--status", "conforming"), "9.9: not an assessable requirement"),
        (("A.7.2", "--status", "not-applicable"), "A.7.2.note: not applicable needs"),
        (("5.2",), "status: give --status"),
        (("--status", "conforming"), "requirement: --status needs the requirement"),
        ((), "answers: give REQ --status STATUS"),
        (("--file", str(tmp_path / "none.yaml")), "file: no such file"),
        (("5.2", "--status", "conforming", "--assessment", "x"), "assessment: 'x' is not"),
    ):
        result = run_cli("gap", "record", *args)
        assert result.exit_code == 2, (args, result.output)
        assert f"error: {message}" in result.output, (args, result.output)
        assert "Traceback" not in result.output
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(yaml.safe_dump({"5.2": "conforming", "4.1": "nope", "X": "conforming"}))
    result = run_cli("gap", "record", "--file", str(bad_file))
    assert result.exit_code == 2 and "2 answers refused, none recorded" in result.output
    assert answered() == 0  # nothing written

    ok = run_cli("gap", "record", "5.2", "A.2.2", "--status", "partially-conforming",
                 "--note", "review overdue", "--evidence", "policy:ai-policy")  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "2 of 70 requirements assessed" in ok.output
    assert gap.get(org, a.id).by_id()["A.2.2"].evidence == ["policy:ai-policy"]
    accepted = run_cli("gap", "record", "--accept-suggestions")
    assert accepted.exit_code == 0 and f"{2 + len(DEMO_SUGGESTIONS) - 2} of 70" in accepted.output
    assert gap.get(org, a.id).by_id()["5.2"].note == "review overdue"  # answers not overwritten
    shown = run_cli("gap", "show")
    assert shown.exit_code == 0 and "partially conforming" in shown.output

    for args, message in (
        (("plan", "export", "--xlsx", str(tmp_path / "plan.csv")), "xlsx: "),
        (("plan", "export", "--xlsx", str(tmp_path / "no" / "p.xlsx")), "xlsx: directory"),
        (("plan", "export", "--xlsx", str(tmp_path / "p.xlsx")), "plan: no approved gap"),
        (("plan", "done", "999"), "task: no plan task 999"),
    ):
        result = run_cli(*args)
        assert result.exit_code == 2 and f"error: {message}" in result.output, result.output
    assert not list(tmp_path.glob("*.xlsx"))
    empty = run_cli("plan", "show")
    assert empty.exit_code == 0 and "no plan yet" in empty.output


# --- policy as data ------------------------------------------------------------------------------


def test_gap_policy_files_are_checked_naming_every_problem(settings: Settings) -> None:
    (settings.data_dir / "gap_plan.yaml").write_text(
        resources.files("aims_core.data").joinpath("gap_plan.yaml")
        .read_text()
        .replace("escalation_role: governance-lead", "escalation_role: wizard")
        .replace('requirements: ["9.*"]', 'requirements: ["99.*"]')
        .replace("default_evidence: other", "default_evidence: scroll")
    )  # fmt: skip
    with pytest.raises(GapPlanInvalid) as exc:
        plan_policy(settings)
    text = str(exc.value)
    assert "gap_plan: " in text
    assert "tracking.escalation_role: unknown role 'wizard'" in text
    assert "phases[2].requirements: '99.*' matches no assessable requirement" in text
    assert "default_evidence: unknown evidence kind 'scroll'" in text
    (settings.data_dir / "gap_prefill.yaml").write_text(
        "rules:\n  - {probe: soa, requirements: ['6.1'], found: conforming}\n"
        "  - {probe: crystal-ball, requirements: ['5.2'], found: great}\n"
    )
    with pytest.raises(GapPrefillInvalid) as exc2:
        load_prefill(settings)
    assert "rules.1.probe" in str(exc2.value) and "rules.1.found" in str(exc2.value)
