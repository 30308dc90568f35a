"""Policies (5.2, A.2): versions through approval, computed review dates, exceptions that expire,
the daily pass, and documents rendered from the data the incident flow runs on.

SQLite and PostgreSQL (the `settings` fixture); time moves by `now=`, never by sleeping. Demo
organisation: governance owns the policies, the CEO (top-management) approves versions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dateutil.relativedelta import relativedelta
from records import count
from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.errors import Conflict, InvalidInput
from aims_core.models import (
    AuditEvent,
    Evidence,
    ExceptionStatus,
    Notification,
    Person,
    PolicyVersion,
    PolicyVersionStatus,
)
from aims_core.rules.incident import incident_policy
from aims_core.services import approvals, policies
from aims_core.services.approvals import DecisionIn
from aims_core.services.demo import load_demo
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
GOV, CEO, OWNER, COMPLIANCE = (
    f"{n}{D}" for n in ("governance", "ceo", "credit.owner", "compliance")
)
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def notes_to(settings: Settings, kind: str) -> list[tuple[str, str | None]]:
    with get_engine(settings.effective_database_url).connect() as conn:
        return [
            (key, email)
            for key, email in conn.execute(
                select(Notification.idempotency_key, Person.email)
                .outerjoin(Person, Person.id == Notification.recipient_id)
                .where(Notification.kind == kind)
                .order_by(Notification.id)
            )
        ]


def policy_reviewed(org: UnitOfWork, actor: Actor, key: str, months_ago: int) -> None:
    """A policy with v1 approved two years ago and last reviewed `months_ago` before NOW."""
    policies.add_policy(
        org,
        {"key": key, "title": f"Policy {key}", "owner": GOV, "review_interval_months": 12},
        actor,
        now=NOW - relativedelta(years=2),
    )
    policies.import_approved_version(
        org, key, f"# {key}\n\nv1\n", CEO, NOW - relativedelta(years=2), actor
    )
    policies.record_review(
        org, key, {"notes": "Still fits."}, actor, now=NOW - relativedelta(months=months_ago)
    )


# --- must show: review due is computed -------------------------------------------------------


def test_a_policy_reviewed_13_months_ago_is_due_and_one_reviewed_11_months_ago_is_not(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    policy_reviewed(org, actor, "late-policy", 13)
    policy_reviewed(org, actor, "fresh-policy", 11)
    listed = {p.key: p for p in policies.list_policies(org, now=NOW)}
    late, fresh = listed["late-policy"], listed["fresh-policy"]
    assert late.overdue and not fresh.overdue
    assert late.next_review_due == NOW - relativedelta(months=13) + relativedelta(months=12)
    assert fresh.next_review_due == NOW + relativedelta(months=1)

    report = policies.tick(settings, NOW)
    assert "late-policy" in report.reviews_due and "fresh-policy" not in report.reviews_due
    due = [n for n in notes_to(settings, "policy-review-due") if "late-policy" in n[0]]
    assert [r for _, r in due] == [GOV]  # the owner, once
    assert "fresh-policy" not in str(notes_to(settings, "policy-review-due"))
    # Once per due date: the next days' passes tell nobody again.
    again = policies.tick(settings, NOW + DAY)
    assert "late-policy" not in again.reviews_due
    assert len([n for n in notes_to(settings, "policy-review-due") if "late-policy" in n[0]]) == 1

    # A review that keeps it: evidence, and the next review counts from it.
    out = policies.record_review(
        org, "late-policy", {"notes": "Reviewed at the governance board."}, actor, now=NOW
    )
    assert not out.overdue and out.next_review_due == NOW + relativedelta(months=12)
    assert count(settings, Evidence, Evidence.subject == "policy:late-policy",
                 Evidence.kind == "policy-review") == 2  # fmt: skip


def test_review_due_counts_from_the_first_approval_without_a_review(
    org: UnitOfWork, actor: Actor
) -> None:
    policies.add_policy(
        org, {"key": "p-new", "title": "P", "owner": GOV, "review_interval_months": 6}, actor,
        now=NOW - relativedelta(months=9),
    )  # fmt: skip
    assert policies.get_policy(org, "p-new", now=NOW).next_review_due == NOW - relativedelta(
        months=3
    )  # from the creation: nothing approved yet
    policies.import_approved_version(
        org, "p-new", "text", CEO, NOW - relativedelta(months=2), actor
    )
    p = policies.get_policy(org, "p-new", now=NOW)
    assert p.next_review_due == NOW + relativedelta(months=4) and not p.overdue
    with pytest.raises(InvalidInput, match="propose the new text"):
        policies.record_review(org, "p-new", {"outcome": "new-version", "notes": "x"}, actor)


# --- must show: an expired exception is closed and its owner told, once ------------------------


def test_an_exception_that_expired_yesterday_is_closed_by_the_daily_pass_and_its_owner_told_once(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    policy_reviewed(org, actor, "exc-policy", 1)
    yesterday = (NOW - DAY).date()
    e = policies.add_exception(
        org,
        "exc-policy",
        {"title": "Old model kept", "reason": "Vendor delay", "owner": OWNER, "expires": yesterday},
        actor,
        now=NOW - 20 * DAY,
    )
    assert e.status is ExceptionStatus.open

    report = policies.tick(settings, NOW)
    assert report.exceptions_closed == [e.id]
    closed = [n for n in notes_to(settings, "policy-exception") if n[0].endswith("-closed")]
    assert closed == [(f"policy-exception-{e.id}-closed", OWNER)]
    (row,) = [x for x in policies.list_exceptions(org) if x.id == e.id]
    assert row.status is ExceptionStatus.closed and row.closed_at == NOW
    assert (
        count(
            settings,
            Evidence,
            Evidence.idempotency_key == f"policy-exception-{e.id}-closed",
            Evidence.kind == "policy-exception",
        )
        == 1
    )

    # Once: later passes neither close nor tell again.
    again = policies.tick(settings, NOW + DAY)
    assert again.exceptions_closed == []
    assert len([n for n in notes_to(settings, "policy-exception") if "closed" in n[0]]) == 1


def test_exception_reminders_at_the_configured_days_once_each(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    assert settings.exception_reminder_days == [14, 3]
    policy_reviewed(org, actor, "rem-policy", 1)
    e = policies.add_exception(
        org,
        "rem-policy",
        {"title": "T", "reason": "R", "owner": OWNER, "expires": (NOW + 20 * DAY).date()},
        actor,
        now=NOW,
    )

    def mine() -> list[str]:
        keys = [k for k, _ in notes_to(settings, "policy-exception-reminder")]
        return [k for k in keys if f"-{e.id}-" in k]

    assert e.id not in policies.tick(settings, NOW).exceptions_reminded  # 20 days left
    assert e.id in policies.tick(settings, NOW + 7 * DAY).exceptions_reminded  # 13 left
    policies.tick(settings, NOW + 8 * DAY)
    assert mine() == [f"policy-exception-{e.id}-reminder-14"]
    assert e.id in policies.tick(settings, NOW + 18 * DAY).exceptions_reminded  # 2 left
    policies.tick(settings, NOW + 19 * DAY)
    assert mine() == [
        f"policy-exception-{e.id}-reminder-14",
        f"policy-exception-{e.id}-reminder-3",
    ]
    with pytest.raises(InvalidInput, match="in the past"):
        policies.add_exception(
            org,
            "rem-policy",
            {"title": "T", "reason": "R", "owner": OWNER, "expires": (NOW - DAY).date()},
            actor,
            now=NOW,
        )


# --- versions through the approval service -------------------------------------------------------


def decide(org: UnitOfWork, request_id: int, person: str, outcome: str, comment: str = "") -> None:
    approvals.decide(
        org,
        DecisionIn(request_id=request_id, person=person, outcome=outcome, comment=comment),
        Actor(who=person, channel="test"),
    )


def test_a_new_version_approved_supersedes_counts_as_review_and_is_evidence(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    policy_reviewed(org, actor, "ver-policy", 13)
    body = "# Version policy\n\nv2: adds GPAI obligations.\n"
    v2 = policies.propose_version(org, "ver-policy", {"body": body, "change_note": "GPAI"}, actor)
    assert (v2.version, v2.status) == (2, PolicyVersionStatus.draft)
    with pytest.raises(Conflict, match="policy submit"):
        policies.propose_version(org, "ver-policy", {"body": "other"}, actor)

    spec = policies.begin_approval(org, v2.id, None, actor)
    assert (spec.activity, spec.approver_roles, spec.requester) == (
        "policy",
        ["top-management"],
        GOV,
    )
    assert "+v2: adds GPAI obligations." in spec.details  # the diff from v1
    request = approvals.create_request(org, spec, actor)
    assert request.approvers == [CEO]
    with pytest.raises(Conflict, match="not decided"):
        policies.settle_approval(org, v2.id, request.id, actor)
    decide(org, request.id, CEO, "approve")

    out = policies.settle_approval(org, v2.id, request.id, actor, now=NOW)
    assert out.status is PolicyVersionStatus.approved and out.approved_at == NOW
    assert policies.settle_approval(org, v2.id, request.id, actor, now=NOW + DAY) == out
    p = policies.get_policy(org, "ver-policy", now=NOW)
    assert [v.status for v in p.versions] == [PolicyVersionStatus.superseded, out.status]
    assert p.version == 2 and p.last_reviewed_at == NOW and not p.overdue
    assert p.reviews[-1].outcome == "new-version" and p.reviews[-1].reviewer == CEO
    with get_engine(settings.effective_database_url).connect() as conn:
        ev = conn.execute(
            select(Evidence.kind, Evidence.content_sha256, Evidence.subject).where(
                Evidence.id == out.evidence_id
            )
        ).one()
    assert tuple(ev) == ("policy", policies.sha256(body), "policy:ver-policy")
    assert policies.version_body(org, "ver-policy") == (2, body)
    with pytest.raises(InvalidInput, match="same text as v2"):
        policies.propose_version(org, "ver-policy", {"body": body}, actor)


def test_a_rejected_version_keeps_the_reasons_and_the_version_in_force(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    policy_reviewed(org, actor, "rej-policy", 2)
    v2 = policies.propose_version(org, "rej-policy", {"body": "weaker text"}, actor)
    request = approvals.create_request(org, policies.begin_approval(org, v2.id, None, actor), actor)
    decide(org, request.id, CEO, "reject", "Drops the human-oversight clause")
    out = policies.settle_approval(org, v2.id, request.id, actor)
    assert out.status is PolicyVersionStatus.rejected
    assert out.reasons == [f"{CEO}: Drops the human-oversight clause"]
    assert policies.get_policy(org, "rej-policy").version == 1
    rejected = notes_to(settings, "policy-rejected")
    assert [r for k, r in rejected if k.startswith("policy-rej-policy-v2-rejected-to-")] == [GOV]
    # A new proposal may follow.
    assert policies.propose_version(org, "rej-policy", {"body": "better"}, actor).version == 3


def test_nobody_eligible_puts_the_version_back_to_draft(org: UnitOfWork, actor: Actor) -> None:
    policy_reviewed(org, actor, "ceo-policy", 2)
    v2 = policies.propose_version(org, "ceo-policy", {"body": "x", "requester": CEO}, actor)
    spec = policies.begin_approval(org, v2.id, None, actor)
    with pytest.raises(InvalidInput, match="quorum"):  # the CEO may not approve their own text
        approvals.create_request(org, spec, actor)
    assert policies.approval_failed(org, v2.id, "no approver", actor).status == "draft"
    assert policies.draft_version(org, "ceo-policy").version == 2


# --- documents -----------------------------------------------------------------------------------


def test_the_incident_policy_names_every_severity_category_clock_and_playbook(
    org: UnitOfWork, settings: Settings
) -> None:
    text = policies.render_document(org, "ai-incident-management", organisation="Northwind")
    data = incident_policy(settings)
    for s in data.classification.severities:
        assert f"**{s.id}** {s.title}" in text and s.response_line() in text
    for c in data.classification.categories:
        assert f"| {c.title} | `{c.id}` |" in text
        for sub in c.subcategories:
            assert f"`{sub.id}`" in text
    for k in data.classification.serious_incident.kinds:
        assert f"(`{k.id}`)" in text
    for rule in data.clocks.rules:
        assert f"(`{rule.id}`)" in text and rule.label in text
    for span in ("| 15 days |", "| 2 days |", "| 10 days |", "| 72 h |"):
        assert span in text  # Art. 73(2), 73(3), 73(4); GDPR Art. 33
    for section in (
        "Classification",
        "Detection and reporting",
        "Containment and rollback",
        "Investigation and root cause analysis",
        "Stakeholder notification and regulatory clocks",
        "Corrective action (CAPA)",
        "Lessons learned",
    ):
        assert section in text
    assert "POST /incidents" in text and "POST /alertmanager" in text
    assert "rollback-model" in text and "isolate-system" in text
    assert "Lena Fischer" in text  # accountable for incident response (RACI)


def test_render_by_key_and_the_cli(
    org: UnitOfWork, run_cli, tmp_path: Path, settings: Settings
) -> None:
    # The demo's AI policy is rendered from its template with the organisation's people.
    text = policies.render_document(org, "ai-policy", organisation="Northwind Lending")
    assert text.startswith("# AI Policy — Northwind Lending") and "Grace Okafor" in text
    out = tmp_path / "incident.md"
    result = run_cli("policy", "render", "ai-incident-management", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "SEV1" in out.read_text()
    result = run_cli("policy", "render", "no-such")
    assert result.exit_code == 2
    assert result.output.startswith("error: template: 'no-such' is neither a policy template")


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_policies_exceptions_and_mistakes(org: UnitOfWork, run_cli, settings: Settings) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    ok = run_cli(
        "policy", "add", "cli-policy", "--title", "CLI policy", "--owner", GOV,
        "--review-months", "12", "--template", "ai-policy",
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    before = count(settings, AuditEvent)
    bad = run_cli("policy", "add", "x-policy", "--title", "T", "--owner", "nobody@x.example")
    assert bad.exit_code == 2 and bad.output.startswith("error: owner: ")
    bad = run_cli("policy", "add", "Bad Key", "--title", "T", "--owner", GOV)
    assert bad.exit_code == 2 and bad.output.startswith("error: key: ")
    assert count(settings, AuditEvent) == before  # nothing written

    # Without the engine: recorded as a draft, and the CLI says how to go on.
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        proposed = run_cli("policy", "propose", "cli-policy", "--from-template", "--note", "v1")
    assert proposed.exit_code == 0, proposed.output
    assert "the engine is not running" in proposed.output
    assert "`aims policy submit cli-policy`" in proposed.output
    assert count(settings, PolicyVersion, PolicyVersion.status == PolicyVersionStatus.draft) == 1

    listed = run_cli("policy", "list")
    assert "cli-policy" in listed.output and "draft (v1)" in listed.output
    assert "OVERDUE" in listed.output  # the demo's AI policy, last reviewed ~13 months ago

    when = (datetime.now(UTC) + 30 * DAY).date().isoformat()
    added = run_cli(
        "policy", "exception", "add", "ai-policy", "--title", "Pilot without DPIA",
        "--reason", "DPIA scheduled", "--owner", OWNER, "--expires", when,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    exc_id = added.output.split()[1]
    bad = run_cli(
        "policy", "exception", "add", "ai-policy", "--title", "T", "--reason", "R",
        "--owner", OWNER, "--expires", "31/12/2026",
    )  # fmt: skip
    assert bad.exit_code == 2 and bad.output.startswith("error: expires: ")
    assert "Pilot without DPIA" in run_cli("policy", "exception", "list", "--open").output
    closed = run_cli("policy", "exception", "close", exc_id)
    assert closed.exit_code == 0 and closed.output.strip().endswith("closed")
    assert run_cli("policy", "exception", "close", "999").exit_code == 2

    reviewed = run_cli("policy", "review", "ai-policy", "--notes", "Board review", "--as", GOV)
    assert reviewed.exit_code == 0, reviewed.output
    assert "OVERDUE" not in run_cli("policy", "list").output


def test_the_demo_policies_and_a_bad_governance_file(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    listed = {p.key: p for p in policies.list_policies(org)}
    assert listed["ai-policy"].overdue and listed["ai-policy"].open_exceptions == 1
    assert not listed["ai-incident-management"].overdue
    assert listed["ai-incident-management"].template == "ai-incident-management"
    (e,) = policies.list_exceptions(org, open_only=True)
    assert 9 <= (e.expires_at - datetime.now(UTC)).days <= 10
    assert load_demo(org, actor)["policies"] == 0  # idempotent

    (settings.data_dir / policies.GOVERNANCE_FILE).write_text(
        "approval: {activity: policy, approver_roles: [chief-wizard], quorum: 0}\n"
    )
    with pytest.raises(policies.DataFileInvalid) as exc:
        policies.governance(settings)
    assert "approval.quorum: Input should be greater than or equal to 1" in exc.value.problems
