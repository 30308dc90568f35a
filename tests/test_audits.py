"""The internal audit programme (9.2): policy as data, programme, independence, findings and
their CAPAs, report and its approval, the monthly planning pass, the CLI; SQLite and PostgreSQL.

The demo organisation plans a programme from the current period at load; tests that need a
known layout plan their own under another name (and start). Demo: Olu (auditor@) is Responsible
for internal-audit (9.2), the CEO its Accountable; Hana (contract.auditor@) is a second
internal auditor; three high-risk systems (credit-scoring, fraud-detection, cv-screening).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from records import count
from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.errors import Conflict, InvalidInput
from aims_core.models import (
    Audit,
    AuditEvent,
    AuditFinding,
    AuditStatus,
    Capa,
    Control,
    ControlKind,
    Evidence,
    Notification,
)
from aims_core.services import approvals, audits
from aims_core.services import capa as capas
from aims_core.services.audits import AuditOut, AuditPolicyInvalid, ProgrammeOut
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
OLU, HANA, CEO, GOV, CREDIT_OWNER = (
    f"{n}{D}" for n in ("auditor", "contract.auditor", "ceo", "governance", "credit.owner")
)


def footprint(settings: Settings) -> tuple[int, ...]:
    return tuple(count(settings, m) for m in (Audit, AuditFinding, Capa, Evidence, AuditEvent))


def plan(org: UnitOfWork, actor: Actor, name: str, start: str = "2031Q1") -> ProgrammeOut:
    result = audits.plan_programme(org, {"cycle_years": 3, "start": start, "name": name}, actor)
    assert result.created
    return result.programme


def audit_with(p: ProgrammeOut, control: str) -> AuditOut:
    return next(a for a in p.audits if control in a.scope)


def started(org: UnitOfWork, actor: Actor, p: ProgrammeOut, control: str) -> AuditOut:
    a = audit_with(p, control)
    return audits.start_audit(org, a.id, None, actor)


# --- the programme -------------------------------------------------------------------------------


def test_three_year_programme_covers_every_clause_and_annex_a_control(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    p = plan(org, actor, "Coverage under test")

    # The requirements counted from the catalog table itself, not from the service.
    with get_engine(settings.effective_database_url).connect() as conn:
        clauses = set(conn.scalars(select(Control.id).where(Control.kind == ControlKind.clause)))
        annex = set(
            conn.scalars(select(Control.id).where(Control.kind == ControlKind.annex_control))
        )
    assert len(annex) == 38 and {"4", "4.1", "6.1.2", "7.5.3", "9.2.2", "10.2"} <= clauses
    covered = {c for a in p.audits for c in a.scope}
    assert clauses <= covered, clauses - covered
    assert annex <= covered, annex - covered
    assert (p.coverage.clauses_covered, p.coverage.annex_covered) == (len(clauses), 38)
    assert p.coverage.missing == []

    # One audit per quarter, each allocation with its reason, a balanced load.
    assert [a.period for a in p.audits][:5] == ["2031Q1", "2031Q2", "2031Q3", "2031Q4", "2032Q1"]
    assert len(p.audits) == 12 and p.periods[-1] == "2033Q4"
    for a in p.audits:
        assert set(a.scope_reasons) == set(a.scope) and all(a.scope_reasons.values())
        assert [i["control"] for i in a.checklist] == a.scope
        assert a.status is AuditStatus.planned and a.auditor in (OLU, HANA)
    loads = [len(a.scope) for a in p.audits]
    assert max(loads) - min(loads) <= 5, loads

    # The checklist: a question, what to look for (evidence kinds mapped to the control), records.
    item = next(i for a in p.audits for i in a.checklist if i["control"] == "A.6.2.4")
    assert "A.6.2.4" in item["question"]
    assert "Verification and validation report (vv-report)" in item["look_for"]
    assert any(r.startswith("SoA: ") for r in item["records"])

    # Kept as evidence; planning the same name again changes nothing.
    assert count(settings, Evidence, Evidence.kind == "audit-programme") == 2  # demo's + this
    before = footprint(settings)
    again = audits.plan_programme(org, {"name": "Coverage under test"}, actor)
    assert not again.created and again.programme.id == p.id
    assert footprint(settings) == before


def test_high_risk_and_recently_nonconforming_areas_are_audited_every_year(
    org: UnitOfWork, actor: Actor
) -> None:
    p = plan(org, actor, "Weighting under test")
    times = p.times_audited
    # Areas touching high-risk systems: every year of the three.
    for control in ("A.6.2.4", "A.5.4", "A.7.4", "A.9.2", "8.1"):
        assert times[control] == 3, control
        assert "touches high-risk systems" in audit_with(p, control).scope_reasons[control]
    # Others once per cycle; A.10.3 only once while it has no nonconformity.
    assert times["4.1"] == times["A.10.3"] == 1
    assert "once per 3-year cycle" in audit_with(p, "A.10.3").scope_reasons["A.10.3"]

    # A nonconformity on A.10.3 (a CAPA) makes its area yearly in the next programme.
    capas.open_capa(
        org,
        {"title": "Supplier not reassessed", "owner": GOV, "control_id": "A.10.3"},
        actor,
    )
    q = plan(org, actor, "Weighting after a nonconformity", start="2034Q1")
    assert q.times_audited["A.10.3"] == 3
    reason = audit_with(q, "A.10.3").scope_reasons["A.10.3"]
    assert "nonconformities in the last 12 months" in reason and "CAPA" in reason


def test_monthly_pass_schedules_new_nonconformities_assigns_and_tells_auditors(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    now = datetime.now(UTC)
    p = plan(org, actor, "Current cycle under test", start=audits.period_of(now, 4, UTC))
    # Third-party relationships fall in the last year: not within the next twelve months.
    [later] = [a for a in p.audits if "A.10.3" in a.scope]
    assert later.planned_start > now + timedelta(days=366)

    capas.open_capa(
        org,
        {"title": "Supplier contract lacks AI clauses", "owner": GOV, "control_id": "A.10.2"},
        actor,
    )
    report = audits.planning_pass(settings, now)
    assert report.programme == p.name and not report.programme_created
    [added] = report.scope_added
    target = audits.get_audit(org, int(added.split()[1]))
    assert target.planned_start > now and target.status is AuditStatus.planned
    assert {"A.10.2", "A.10.3", "A.10.4"} <= set(target.scope)
    assert "monthly planning pass" in target.scope_reasons["A.10.2"]
    assert "A.10.2" in [i["control"] for i in target.checklist]
    # The audit of this period starts within the month: its auditor is told, once.
    current = p.audits[0]
    assert report.told and report.told[0].startswith(f"audit {current.id} ")
    again = audits.planning_pass(settings, now)
    assert (again.scope_added, again.told, again.assigned) == ([], [], [])
    keys = f"audit-{current.id}-assigned-to-"
    assert count(settings, Notification, Notification.idempotency_key.startswith(keys)) == 1
    # A year on, audits still open in ended periods are reported overdue.
    late = audits.planning_pass(settings, now + timedelta(days=400))
    assert any(line.startswith(f"audit {current.id} ") for line in late.overdue)


def test_policy_problems_are_each_named() -> None:
    text = """
report_approval: {activity: internal-audit, approver_roles: [top-management, chief-wizard]}
periods_per_year: 5
areas:
  - {id: context, title: Context, requirements: ["4", "Z.9"]}
"""
    with pytest.raises(AuditPolicyInvalid) as err:
        audits.parse_audit_policy(text, "test.yaml")
    problems = "\n".join(err.value.problems)
    assert "periods_per_year: must be 1, 2, 4 or 12" in problems
    assert "report_approval.approver_roles: unknown role 'chief-wizard'" in problems
    assert "areas[0].requirements: 'Z.9' is no clause or control" in problems
    assert "areas: no area covers 5, 5.1" in problems


# --- independence --------------------------------------------------------------------------------


def test_auditor_responsible_or_accountable_for_an_area_in_scope_is_refused(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    p = plan(org, actor, "Independence under test")
    a = audit_with(p, "9.2")
    # Planning chose the contracted auditor: Olu is Responsible for internal audits.
    assert a.auditor == HANA
    before = footprint(settings)
    with pytest.raises(Conflict) as err:
        audits.assign_auditor(org, a.id, OLU, actor)
    assert err.value.field == "auditor"
    assert f"{OLU} is Responsible for internal-audit, which covers 9.2" in str(err.value)
    with pytest.raises(Conflict) as err:
        audits.assign_auditor(org, a.id, CEO, actor)
    assert "does not hold the role internal-auditor" in str(err.value)
    assert f"{CEO} is Accountable for internal-audit" in str(err.value)
    assert footprint(settings) == before
    # An owner of a sampled system is refused too (given the auditor role for the test).
    from aims_core.models import Person, PersonRole

    with org:
        owner = org.session.scalar(select(Person).where(Person.email == CREDIT_OWNER))
        org.session.add(PersonRole(person_id=owner.id, role_id="internal-auditor"))  # type: ignore[union-attr]
        org.commit()
    b = audit_with(p, "A.6.2.4")
    with pytest.raises(Conflict, match="owns credit-scoring, a system sampled by this audit"):
        audits.assign_auditor(org, b.id, CREDIT_OWNER, actor)
    # Someone independent is accepted.
    assert audits.assign_auditor(org, b.id, HANA, actor).auditor == HANA


# --- fieldwork, findings, CAPAs, report ----------------------------------------------------------


def test_a_nonconformity_opens_a_capa_linked_to_the_audit_and_the_control(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    p = plan(org, actor, "Findings under test")
    planned = audit_with(p, "A.6.2.4")
    with pytest.raises(Conflict, match="findings are recorded during fieldwork"):
        audits.record_finding(
            org, planned.id, {"control": "A.6.2.4", "kind": "minor-nc", "statement": "x"}, actor
        )
    a = started(org, actor, p, "A.6.2.4")
    assert a.status is AuditStatus.in_progress and a.started_at is not None

    f = audits.record_finding(
        org,
        a.id,
        {
            "control": "A.6.2.4",
            "kind": "minor-nc",
            "statement": "Validation of credit-scoring v3 skipped the fairness test set",
            "system": "credit-scoring",
        },
        actor,
    )
    assert f.capa_id is not None and f.evidence_id is not None
    c = capas.get_capa(org, f.capa_id)
    assert (c.source, c.control_id, c.system, c.owner) == (
        "audit-finding",
        "A.6.2.4",
        "credit-scoring",
        CREDIT_OWNER,  # the sampled system's owner
    )
    assert f"internal audit {a.id}" in c.description and "fairness test set" in c.description
    with get_engine(settings.effective_database_url).connect() as conn:
        kind = conn.scalar(select(Evidence.kind).where(Evidence.id == f.evidence_id))
    assert kind == "audit-finding"

    # Without a system: the Accountable of the area's activity (stage-gate: governance) owns it.
    g = audits.record_finding(
        org,
        a.id,
        {"control": "8.1", "kind": "major-nc", "statement": "No gate policy review"},
        actor,
    )
    assert capas.get_capa(org, g.capa_id).owner == GOV  # type: ignore[arg-type]
    # An observation opens no CAPA; repairing is idempotent.
    o = audits.record_finding(
        org, a.id, {"control": "A.6.2.6", "kind": "observation", "statement": "Dashboards"}, actor
    )
    assert o.capa_id is None
    assert sorted(audits.ensure_capas(org, a.id, actor)) == sorted([f.capa_id, g.capa_id])
    assert count(settings, Capa, Capa.source == "audit-finding") == 2

    # Mistakes name the field and write nothing.
    before = footprint(settings)
    with pytest.raises(InvalidInput) as err:
        audits.record_finding(
            org, a.id, {"control": "A.10.3", "kind": "minor-nc", "statement": "x"}, actor
        )
    assert err.value.field == "control" and "not in the scope" in str(err.value)
    with pytest.raises(Exception, match="kind"):
        audits.record_finding(
            org, a.id, {"control": "A.6.2.4", "kind": "serious", "statement": "x"}, actor
        )
    assert footprint(settings) == before


def test_report_approved_closes_the_audit_and_a_rejection_reopens_fieldwork(
    org: UnitOfWork, settings: Settings, actor: Actor, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    p = plan(org, actor, "Report under test")
    a = started(org, actor, p, "9.2")  # the contracted auditor's audit
    audits.record_finding(
        org,
        a.id,
        {"control": "9.2.2", "kind": "minor-nc", "statement": "Programme unsigned"},
        actor,
    )
    a = audits.complete_fieldwork(org, a.id, actor)
    assert a.status is AuditStatus.reporting and a.completed_at is not None
    a = audits.record_report(org, a.id, actor)
    html, md = audits.render_report(org, a.id, tmp_path)
    text = md.read_text()
    assert "# Internal audit report" in text and "minor-nc (1)" in text
    assert "Programme unsigned" in html.read_text() and "<script" not in html.read_text()
    assert "The AIMS conforms in the audited scope except for 1 minor" in text

    def ask() -> int:
        spec = audits.report_approval_spec(org, a.id)
        assert spec.requester == HANA and spec.activity == "internal-audit"
        request = approvals.create_request(org, spec, actor)
        audits.link_request(org, a.id, request.id, actor)
        assert request.approvers == [CEO]  # Accountable; the auditor never approves
        return request.id

    first = ask()
    approvals.decide(
        org,
        approvals.DecisionIn(
            request_id=first, person=CEO, outcome="reject", comment="Sample too small"
        ),
        actor,
    )
    b = audits.record_report_decision(org, a.id, first, actor)
    assert b.status is AuditStatus.in_progress and b.completed_at is None
    with UnitOfWork(settings).read() as uow:
        assert audits.report_round(uow.session, a.id) == 2

    audits.complete_fieldwork(org, a.id, actor)
    audits.record_report(org, a.id, actor)
    second = ask()
    assert second != first
    approvals.decide(
        org, approvals.DecisionIn(request_id=second, person=CEO, outcome="approve"), actor
    )
    closed = audits.record_report_decision(org, a.id, second, actor)
    assert closed.status is AuditStatus.closed and closed.request_id == second
    assert audits.record_report_decision(org, a.id, second, actor).status is AuditStatus.closed
    with get_engine(settings.effective_database_url).connect() as conn:
        kinds = Counter(
            conn.scalars(select(Evidence.kind).where(Evidence.subject == f"audit:{a.id}"))
        )
    assert (kinds["audit-report"], kinds["decision"]) == (4, 1)  # HTML + MD, two rounds


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_plans_shows_and_refuses_with_one_line(run_cli, org: UnitOfWork) -> None:  # type: ignore[no-untyped-def]
    out = run_cli("audit", "plan", "--start", "2031Q1", "--name", "CLI programme")
    assert out.exit_code == 0, out.output
    assert "clauses covered 43/43, Annex A controls covered 38/38" in out.output
    assert "every year: operation: touches high-risk systems" in out.output
    a = audit_with(audits.get_programme(org, "CLI programme"), "9.2")
    shown = run_cli("audit", "show", str(a.id))
    assert shown.exit_code == 0 and "9.2.2" in shown.output and HANA in shown.output

    refused = run_cli("audit", "assign", str(a.id), "--auditor", OLU)
    assert refused.exit_code == 2
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: auditor: Olu Adeyemi may not audit")
    bad = run_cli("audit", "plan", "--start", "2031W2")
    assert bad.exit_code == 2 and "error: start: '2031W2' is not a period like 2026Q4" in bad.output
    missing = run_cli("audit", "show", "999")
    assert missing.exit_code == 2 and "error: audit: no audit 999" in missing.output
