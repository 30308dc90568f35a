"""Vendor reassessment (A.10.3): intervals by criticality as data, the monthly pass, assessments
with evidence, the CLI. SQLite and PostgreSQL; time moves by `now=`.

Demo organisation: Acme LLM Ltd (critical, owner ops.owner) was assessed ~8 months ago and is
due; TalentSort GmbH (high, owner credit.owner) ~3 months ago and is not. procurement is the
Responsible of the `vendor-assessment` RACI.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dateutil.relativedelta import relativedelta
from records import count
from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.errors import Conflict
from aims_core.models import Evidence, Notification, Person, VendorAssessment
from aims_core.services import vendors
from aims_core.services.demo import load_demo
from aims_core.services.policies import DataFileInvalid
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
OPS, PROCUREMENT, SECURITY = (f"{n}{D}" for n in ("ops.owner", "procurement", "security"))
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def told(settings: Settings, vendor_slug: str) -> list[str]:
    with get_engine(settings.effective_database_url).connect() as conn:
        return list(
            conn.scalars(
                select(Person.email)
                .join(Notification, Notification.recipient_id == Person.id)
                .where(
                    Notification.kind == "vendor-reassessment",
                    Notification.subject == f"vendor:{vendor_slug}",
                )
                .order_by(Notification.id)
            )
        )


def vendor_assessed(org: UnitOfWork, actor: Actor, name: str, crit: str, months_ago: int) -> None:
    vendors.add_vendor(
        org, {"name": name, "criticality": crit, "owner": OPS, "services": "LLM API"}, actor
    )
    vendors.assess(
        org,
        name,
        {"result": "acceptable", "notes": "Questionnaire", "assessor": PROCUREMENT},
        actor,
        now=NOW - relativedelta(months=months_ago),
    )


def test_a_critical_vendor_past_its_interval_gets_one_reassessment_and_one_within_none(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    assert vendors.vendor_policy(settings).interval(vendors.Criticality.critical) == 6
    vendor_assessed(org, actor, "Late Vision AG", "critical", 7)
    vendor_assessed(org, actor, "Recent Speech BV", "critical", 5)

    report = vendors.tick(settings, NOW)
    assert "Late Vision AG" in report.opened and "Recent Speech BV" not in report.opened
    late = vendors.get_vendor(org, "Late Vision AG", now=NOW)
    assert late.overdue and late.open_assessment is not None
    assert late.open_assessment.reason == "scheduled"
    assert late.open_assessment.due_at == NOW - relativedelta(months=7) + relativedelta(months=6)
    assert vendors.get_vendor(org, "Recent Speech BV", now=NOW).open_assessment is None
    # The vendor's owner and the RACI's Responsible are told, once each.
    assert told(settings, "late-vision-ag") == [OPS, PROCUREMENT]

    # A second pass (same day, next month) opens no second one and tells nobody again.
    assert "Late Vision AG" not in vendors.tick(settings, NOW).opened
    assert "Late Vision AG" not in vendors.tick(settings, NOW + timedelta(days=31)).opened
    assert count(settings, VendorAssessment, VendorAssessment.status == "open") == len(
        [v for v in vendors.list_vendors(org) if v.open_assessment]
    )
    assert len(told(settings, "late-vision-ag")) == 2

    # Completing it: last assessed now, the next one six months on, nothing due.
    done = vendors.assess(
        org,
        "Late Vision AG",
        {"result": "conditional", "notes": "SOC 2 report pending", "assessor": SECURITY},
        actor,
        now=NOW,
    )
    assert done.id == late.open_assessment.id and done.result == "conditional"
    after = vendors.get_vendor(org, "Late Vision AG", now=NOW)
    assert after.next_due == NOW + relativedelta(months=6) and after.open_assessment is None
    assert "Late Vision AG" not in vendors.tick(settings, NOW + timedelta(days=1)).opened


def test_a_vendor_never_assessed_is_due_at_once(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    out = vendors.add_vendor(
        org, {"name": "New Data Co", "criticality": "low", "owner": OPS}, actor, now=NOW
    )
    assert out.last_assessed_at is None and out.overdue
    vendors.tick(settings, NOW)
    assert vendors.get_vendor(org, "New Data Co").open_assessment.reason == "initial"  # type: ignore[union-attr]
    with pytest.raises(Conflict, match="already registered"):
        vendors.add_vendor(org, {"name": "New Data Co", "criticality": "low", "owner": OPS}, actor)


def test_the_demo_vendors_and_the_cli(
    org: UnitOfWork, settings: Settings, run_cli, tmp_path: Path
) -> None:
    listed = {v.name: v for v in vendors.list_vendors(org)}
    acme, talent = listed["Acme LLM Ltd"], listed["TalentSort GmbH"]
    assert acme.overdue and not talent.overdue
    assert acme.systems == ["doc-summariser", "support-chatbot"]

    result = run_cli("vendor", "tick")
    assert result.exit_code == 0 and "opened: Acme LLM Ltd" in result.output
    assert "TalentSort" not in result.output
    table = run_cli("vendor", "list").output
    assert "Acme LLM Ltd" in table and "(due)" in table

    report = tmp_path / "acme-soc2.pdf"
    report.write_bytes(b"%PDF-1.4 SOC 2 type II")
    result = run_cli(
        "vendor", "assess", "Acme LLM Ltd", "--result", "acceptable",
        "--notes", "SOC 2 type II clean", "--evidence", str(report), "--as", PROCUREMENT,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with get_engine(settings.effective_database_url).connect() as conn:
        kinds = list(
            conn.execute(
                select(Evidence.kind, Evidence.file_name)
                .where(Evidence.subject == "vendor:acme-llm-ltd")
                .order_by(Evidence.id)
            )
        )
    assert [tuple(k) for k in kinds[-2:]] == [
        ("vendor-assessment", "acme-soc2.pdf"),
        ("vendor-assessment", None),
    ]
    assert not vendors.get_vendor(org, "Acme LLM Ltd").overdue

    for args, field in (
        (("vendor", "add", "X", "--criticality", "huge", "--owner", OPS), "criticality"),
        (("vendor", "assess", "Nobody Ltd", "--result", "acceptable", "--notes", "n",
          "--as", OPS), "vendor"),
        (("vendor", "assess", "Acme LLM Ltd", "--result", "great", "--notes", "n",
          "--as", OPS), "result"),
    ):  # fmt: skip
        bad = run_cli(*args)
        assert bad.exit_code == 2 and bad.output.startswith(f"error: {field}: "), bad.output
    assert load_demo(org, Actor(who="t", channel="test"))["vendors"] == 0  # idempotent


def test_an_organisation_vendor_policy_is_checked(settings: Settings) -> None:
    (settings.data_dir / vendors.POLICY_FILE).write_text(
        "reassess_every_months: {critical: 3, high: 0}\nnotify: {notify_roles: [wizard]}\n"
    )
    with pytest.raises(DataFileInvalid) as exc:
        vendors.vendor_policy(settings)
    problems = exc.value.problems
    assert "reassess_every_months.high: Input should be greater than or equal to 1" in problems
    assert len(problems) == 1  # the schema's problems first; the rest once the schema passes
    (settings.data_dir / vendors.POLICY_FILE).write_text(
        "reassess_every_months: {critical: 3, high: 6}\nnotify: {notify_roles: [wizard]}\n"
    )
    with pytest.raises(DataFileInvalid) as exc:
        vendors.vendor_policy(settings)
    assert "reassess_every_months.medium: missing" in exc.value.problems
    assert any(
        p.startswith("notify.notify_roles: unknown role 'wizard'") for p in exc.value.problems
    )
