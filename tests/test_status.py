"""`aims status`: what is waiting on whom, checked against counts taken with plain SQL.

The state is the demo organisation plus rows made through the services (as their own tests make
them), judged at one instant `NOW` passed to the service and to the CLI (`--at`), so the SQL
below and the report compare at exactly the same time. Demo facts used: ds.lead's responsible
AI development training expires about 20 days after the load; the AI policy's annual review is
overdue; the cv-screening exception runs out in about 10 days; Acme LLM's reassessment is due.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from records import count
from sqlalchemy import bindparam, text

from aims_core.db import get_engine
from aims_core.models import Base, UTCDateTime
from aims_core.schemas import PersonIn
from aims_core.services import approvals, incidents, people, status
from aims_core.services import capa as capas
from aims_core.services import training as tr
from aims_core.services.approvals import ApprovalRequestIn, DecisionIn
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
CEO, GOV, COMPLIANCE, CREDIT_OWNER, OPS, DS, ETHICS, AUDITOR, NEWBIE = (
    f"{n}{D}"
    for n in (
        "ceo",
        "governance",
        "compliance",
        "credit.owner",
        "ops.owner",
        "ds.lead",
        "ethics",
        "auditor",
        "newbie",
    )
)
GATE_ROLES = ["compliance-officer", "ethics-committee", "governance-lead"]
DAY = timedelta(days=1)
NOW = datetime.now(UTC).replace(microsecond=0)


# --- the state ---------------------------------------------------------------------------------


def gate(key: str, system: str, **changes: Any) -> ApprovalRequestIn:
    base: dict[str, Any] = {
        "idempotency_key": key,
        "subject": f"gate:{system}:validation-deployment",
        "activity": "stage-gate",
        "system": system,
        "title": f"Deploy {system} v2 to production",
        "approver_roles": GATE_ROLES,
        "quorum": 1,
        "requester": DS,
    }
    return ApprovalRequestIn(**(base | changes))


def build(org: UnitOfWork, actor: Actor) -> dict[str, int]:
    """Two open approvals (one overdue, half decided), one decided; an overdue clock and a
    running one; an overdue CAPA action and a CAPA whose verification is due; an expired
    training beside the demo's expiring one."""
    ids: dict[str, int] = {}
    # Approvals. credit-scoring's RACI: compliance and ethics consulted, credit.owner
    # Accountable; the org-wide one (fraud-detection) has governance Accountable.
    late = approvals.create_request(
        org, gate("st-late", "credit-scoring", quorum=2, deadline=NOW - 2 * DAY), actor
    )
    approvals.decide(
        org, DecisionIn(request_id=late.id, person=COMPLIANCE, outcome="approve"), actor
    )
    ids["late"] = late.id
    ids["fresh"] = approvals.create_request(
        org, gate("st-fresh", "fraud-detection", deadline=NOW + 3 * DAY), actor
    ).id
    done = approvals.create_request(org, gate("st-done", "support-chatbot"), actor)
    approvals.decide(org, DecisionIn(request_id=done.id, person=GOV, outcome="approve"), actor)

    # Clocks: SEV4 model failures (no report-time clock), confirmed serious afterwards.
    for name, system, aware_ago, kind in (
        ("overdue", "credit-scoring", 3 * DAY, "critical-infrastructure"),  # 2 days: overdue
        ("running", "fraud-detection", DAY, "death"),  # 10 days: 9 left
    ):
        out = incidents.report(
            org,
            {
                "system": system,
                "title": f"Status test incident ({name})",
                "severity": "SEV4",
                "category": "model-failure",
                "aware_at": NOW - aware_ago,
            },
            actor,
            notify=False,
        ).incident
        incidents.confirm_serious(org, out.id, kind, actor)
        ids[f"incident-{name}"] = out.id

    # CAPA: one action planned 20 days ago, due 10 days ago, not done.
    c = capas.open_capa(
        org,
        {"title": "Card-testing bursts not flagged", "owner": OPS, "system": "fraud-detection"},
        actor,
    )
    capas.record_containment(org, c.id, "Rule-based fallback switched on", actor)
    capas.record_root_cause(org, c.id, {"whys": ["rare"], "root_cause": "No bursts"}, actor)
    c = capas.add_action(
        org,
        c.id,
        {"title": "Add burst features", "owner": DS, "due": (NOW - 10 * DAY).date()},
        actor,
        now=NOW - 20 * DAY,
    )
    ids["capa-late"], ids["action-late"] = c.id, c.actions[-1].id
    # CAPA: its one action done 40 days ago, so the 30-day verification is due.
    v = capas.open_capa(org, {"title": "Stale features in scoring", "owner": CREDIT_OWNER}, actor)
    capas.record_containment(org, v.id, "Manual review of borderline scores", actor)
    capas.record_root_cause(org, v.id, {"whys": ["cache"], "root_cause": "Stale cache"}, actor)
    v = capas.add_action(
        org,
        v.id,
        {"title": "Expire the cache", "owner": OPS, "due": (NOW - 41 * DAY).date()},
        actor,
        now=NOW - 45 * DAY,
    )
    capas.complete_action(org, v.actions[-1].id, "PR 7 merged", actor, now=NOW - 40 * DAY)
    ids["capa-verify"] = v.id

    # Training: a new data scientist whose only course expired 5 days ago.
    people.add_person(
        org,
        PersonIn(email=NEWBIE, name="New Bie", roles=["data-scientist"], manager=DS),
        actor,
    )
    tr.record(
        org,
        {
            "email": NEWBIE,
            "training": "responsible-ai-development",
            "completed": (NOW - 370 * DAY).date(),
        },
        actor,
    )
    return ids


# --- the same questions, in plain SQL ----------------------------------------------------------


def sql(settings: Settings, query: str, **params: Any) -> list[Any]:
    """Rows of `query`; datetime parameters are bound as the tables store them."""
    stmt = text(query).bindparams(
        *(
            bindparam(k, v, type_=UTCDateTime()) if isinstance(v, datetime) else bindparam(k, v)
            for k, v in params.items()
        )
    )
    with get_engine(settings.effective_database_url).connect() as conn:
        return list(conn.execute(stmt))


def one(settings: Settings, query: str, **params: Any) -> int:
    return int(sql(settings, query, **params)[0][0])


OPEN_CAPA_ACTIONS = """
    FROM capa_action a JOIN capa c ON c.id = a.capa_id JOIN person p ON p.id = a.owner_id
    WHERE a.done_at IS NULL AND a.attempt = c.attempt AND c.status <> 'closed'
      AND a.due_at < :now"""

# The record that counts per person and training (latest completion, then latest id), for
# trainings a role of the (active) person requires.
CURRENT_TRAININGS = """
    FROM training_record r JOIN person p ON p.id = r.person_id
    WHERE p.active = :yes
      AND EXISTS (SELECT 1 FROM person_role pr
                  JOIN training_requirement q ON q.role_id = pr.role_id
                  WHERE pr.person_id = p.id AND q.training = r.training)
      AND NOT EXISTS (SELECT 1 FROM training_record n
                      WHERE n.person_id = r.person_id AND n.training = r.training
                        AND (n.completed_at > r.completed_at
                             OR (n.completed_at = r.completed_at AND n.id > r.id)))"""


def sql_counts(settings: Settings, now: datetime) -> dict[str, int]:
    horizon = now + timedelta(days=max(settings.training_reminder_days))
    exceptions_horizon = now + timedelta(days=max(settings.exception_reminder_days))
    q = lambda query, **kw: one(settings, query, **kw)  # noqa: E731
    return {
        "approvals": q("SELECT count(*) FROM approval_request WHERE status = 'open'"),
        "approvals_overdue": q(
            "SELECT count(*) FROM approval_request WHERE status = 'open' AND deadline < :now",
            now=now,
        ),
        "clocks": q("SELECT count(*) FROM regulatory_clock WHERE status IN ('running', 'overdue')"),
        "clocks_overdue": q(
            "SELECT count(*) FROM regulatory_clock WHERE status IN ('running', 'overdue') "
            "AND deadline <= :now",
            now=now,
        ),
        "capa_actions_overdue": q(f"SELECT count(*) {OPEN_CAPA_ACTIONS}", now=now),
        "capa_verifications_due": q(
            "SELECT count(*) FROM capa WHERE status = 'verification' "
            "AND verification_due_at <= :now",
            now=now,
        ),
        # The test's expiry dates lie days away from the window's edge, so the instant
        # comparison agrees with the service's calendar-day one.
        "trainings_expiring": q(
            f"SELECT count(*) {CURRENT_TRAININGS} AND r.expires_at <= :horizon",
            yes=True,
            horizon=horizon,
        ),
        "trainings_expired": q(
            f"SELECT count(*) {CURRENT_TRAININGS} AND r.expires_at <= :now", yes=True, now=now
        ),
        "review_actions_overdue": q(
            "SELECT count(*) FROM review_action WHERE status = 'open' AND due_at < :now", now=now
        ),
        "policy_exceptions_due": q(
            "SELECT count(*) FROM policy_exception WHERE status = 'open' "
            "AND expires_at <= :horizon",
            horizon=exceptions_horizon,
        ),
        "plan_tasks_overdue": q(
            "SELECT count(*) FROM plan_task WHERE status = 'open' AND due_at < :now", now=now
        ),
    }


def sql_waiting(settings: Settings, now: datetime, email: str) -> dict[str, int]:
    """What waits on one person, by SQL: requests they may decide and have not, their overdue
    CAPA actions, their expired or expiring trainings."""
    horizon = now + timedelta(days=max(settings.training_reminder_days))
    return {
        "approvals": one(
            settings,
            """SELECT count(*) FROM approval_approver aa
               JOIN approval_request r ON r.id = aa.request_id
               JOIN person p ON p.id = aa.person_id
               WHERE r.status = 'open' AND p.email = :email
                 AND NOT EXISTS (SELECT 1 FROM decision d
                                 WHERE d.request_id = r.id AND d.person_id = aa.person_id)""",
            email=email,
        ),
        "capa_actions": one(
            settings,
            f"SELECT count(*) {OPEN_CAPA_ACTIONS} AND p.email = :email",
            now=now,
            email=email,
        ),
        "trainings": one(
            settings,
            f"SELECT count(*) {CURRENT_TRAININGS} AND r.expires_at <= :horizon "
            "AND p.email = :email",
            yes=True,
            horizon=horizon,
            email=email,
        ),
    }


def footprint(settings: Settings) -> dict[str, int]:
    """Rows of every table: a read-only command leaves each count as it was."""
    return {t.name: count(settings, t) for t in Base.metadata.sorted_tables}


# --- tests -------------------------------------------------------------------------------------


def test_status_json_equals_the_counts_sql_gives(
    org: UnitOfWork, settings: Settings, actor: Actor, run_cli: Any
) -> None:
    ids = build(org, actor)
    before = footprint(settings)

    result = run_cli("status", "--json", "--at", NOW.isoformat())
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert footprint(settings) == before  # it wrote nothing
    assert set(report) == {
        "generated_at",
        "approvals",
        "clocks",
        "capa_actions_overdue",
        "capa_verifications_due",
        "trainings_expiring",
        "review_actions_overdue",
        "policy_reviews_due",
        "policy_exceptions_due",
        "vendor_assessments_due",
        "plan_tasks_overdue",
        "counts",
        "waiting_on",
    }

    expected = sql_counts(settings, NOW)
    got = report["counts"]
    assert {k: got[k] for k in expected} == expected
    # The state built above, so the equality is not vacuous.
    assert (expected["approvals"], expected["approvals_overdue"]) == (2, 1)
    assert (expected["clocks"], expected["clocks_overdue"]) == (2, 1)
    assert (expected["capa_actions_overdue"], expected["capa_verifications_due"]) == (1, 1)
    assert (expected["trainings_expiring"], expected["trainings_expired"]) == (2, 1)
    assert expected["policy_exceptions_due"] == 1
    # Demo facts with no plain-SQL form (due dates computed from policy intervals).
    assert (got["policy_reviews_due"], got["vendor_assessments_due"]) == (1, 1)
    assert got["total"] == sum(
        got[k]
        for k in (
            "approvals",
            "clocks",
            "capa_actions_overdue",
            "capa_verifications_due",
            "trainings_expiring",
            "review_actions_overdue",
            "policy_reviews_due",
            "policy_exceptions_due",
            "vendor_assessments_due",
            "plan_tasks_overdue",
        )
    )

    # Every list is as long as its count.
    for key in ("approvals", "clocks", "capa_actions_overdue", "trainings_expiring"):
        assert len(report[key]) == got[key]

    # The items name the right people. Overdue first: the half-decided gate.
    late, fresh = report["approvals"]
    assert (late["request_id"], late["overdue"], late["approvals"], late["quorum"]) == (
        ids["late"],
        True,
        1,
        2,
    )
    assert late["decided"] == [COMPLIANCE]
    assert sorted(late["waiting_for"]) == sorted([CREDIT_OWNER, ETHICS])
    assert fresh["request_id"] == ids["fresh"] and not fresh["overdue"]
    assert sorted(fresh["waiting_for"]) == sorted([COMPLIANCE, ETHICS, GOV])

    overdue, running = report["clocks"]
    assert (overdue["incident_id"], overdue["overdue"]) == (ids["incident-overdue"], True)
    assert overdue["remaining_hours"] == pytest.approx(-24.0, abs=0.1)
    assert running["incident_id"] == ids["incident-running"] and not running["overdue"]
    assert running["remaining_hours"] == pytest.approx(9 * 24.0, abs=0.1)
    assert overdue["incident_title"] == "Status test incident (overdue)"
    # Reminders go to the compliance officer and legal (one person) and the system owner.
    assert sorted(overdue["people"]) == sorted([COMPLIANCE, CREDIT_OWNER])
    assert sorted(running["people"]) == sorted([COMPLIANCE, OPS])

    (action,) = report["capa_actions_overdue"]
    assert (action["capa_id"], action["action_id"], action["owner"], action["days_overdue"]) == (
        ids["capa-late"],
        ids["action-late"],
        DS,
        9 if NOW.time() < time(23, 59, 59) else 10,  # due at the end of the day 10 days ago
    )
    (verify,) = report["capa_verifications_due"]
    assert (verify["capa_id"], verify["owner"]) == (ids["capa-verify"], CREDIT_OWNER)
    assert AUDITOR in verify["verifiers"] and CREDIT_OWNER not in verify["verifiers"]

    expired, expiring = report["trainings_expiring"]
    assert (expired["person"], expired["expired"]) == (NEWBIE, True)
    assert (expiring["person"], expiring["training"], expiring["expired"]) == (
        DS,
        "responsible-ai-development",
        False,
    )

    # Per person, the same numbers as SQL gives for them; and the busiest come first.
    waiting = report["waiting_on"]
    for email in (COMPLIANCE, ETHICS, GOV, CREDIT_OWNER, OPS, DS, NEWBIE, CEO):
        mine = waiting.get(email, {"approvals": 0, "capa_actions": 0, "trainings": 0})
        assert {k: mine[k] for k in ("approvals", "capa_actions", "trainings")} == sql_waiting(
            settings, NOW, email
        ), email
    assert waiting[ETHICS]["approvals"] == 2 and waiting[COMPLIANCE]["approvals"] == 1
    assert waiting[DS] == waiting[DS] | {"capa_actions": 1, "trainings": 1, "approvals": 0}
    assert CEO not in waiting
    totals = [w["total"] for w in waiting.values()]
    assert totals == sorted(totals, reverse=True)


def test_status_table_names_who_and_what(
    org: UnitOfWork, settings: Settings, actor: Actor, run_cli: Any
) -> None:
    build(org, actor)
    before = footprint(settings)
    result = run_cli("status", "--at", NOW.isoformat())
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(
        "waiting: 2 approvals (1 overdue), 2 incident clocks (1 overdue), "
        "1 overdue CAPA action, 1 CAPA verification due, 2 trainings expiring (1 expired), "
        "1 policy review due, 1 policy exception expiring, 1 vendor assessment due"
    )
    for title in (
        "Approvals waiting (2)",
        "Incident clocks running (2)",
        "CAPA actions overdue (1)",
        "CAPA effectiveness verifications due (1)",
        "Trainings expired or expiring (2)",
        "Policy reviews due (1)",
        "Policy exceptions expiring (1)",
        "Vendor assessments due (1)",
        "Waiting on",
    ):
        assert title in out, title
    assert "Management review actions" not in out  # empty sections are left out
    for who in (ETHICS, CREDIT_OWNER, NEWBIE, "OVERDUE", "EXPIRED", "overdue by 1 d 0 h"):
        assert who in out, who
    assert footprint(settings) == before


def test_nothing_waiting(settings: Settings, run_cli: Any) -> None:
    result = run_cli("status")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("nothing waiting")
    report = status.snapshot(UnitOfWork(settings), now=NOW)
    assert report.counts.total == 0 and report.waiting_on == {}
    data = json.loads(run_cli("status", "--json").output)
    assert data["counts"]["total"] == 0 and data["approvals"] == [] and data["waiting_on"] == {}


def test_a_time_without_a_zone_is_one_line_exit_2(settings: Settings, run_cli: Any) -> None:
    result = run_cli("status", "--at", "2026-11-20T14:05")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: at: '2026-11-20T14:05' has no time zone: add one (+01:00, or Z for UTC)"
    )
