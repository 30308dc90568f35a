"""Training renewals (7.2, 7.3, A.4.6): catalog, requirements, records, the competence check of
approvals, the daily pass and the matrix export, on SQLite and PostgreSQL.

Time moves by `now=`, never by sleeping. The competence check judges at the real now (it runs
inside `approvals.decide`), so records for it are dated relative to today. A small organisation
of its own (no demo) keeps the daily pass's output to the records each test makes; the demo's
`training` section has a test of its own.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from records import count
from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.errors import Conflict
from aims_core.models import (
    ApprovalStatus,
    AuditEvent,
    Decision,
    Evidence,
    Notification,
    TrainingRecord,
    TrainingRequirement,
)
from aims_core.schemas import PersonIn
from aims_core.services import approvals, people
from aims_core.services import training as tr
from aims_core.services.approvals import ApprovalRequestIn, DecisionIn, Refused
from aims_core.services.demo import load_demo
from aims_core.services.training import Status, TrainingCatalogInvalid
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@example.org"
BOSS, MEI, LEAD, OWNER, NOMGR = (f"{n}{D}" for n in ("boss", "mei", "lead", "owner", "solo"))
GOV = "ai-governance-essentials"
RAD = "responsible-ai-development"


def today() -> date:
    """Read at each use: a module-level date goes stale when a run crosses midnight."""
    return date.today()


@pytest.fixture
def org(settings: Settings, actor: Actor) -> UnitOfWork:
    """boss (top-management) manages mei (data-scientist, on Slack) and owner (system-owner);
    lead holds governance-lead; solo (data-scientist) has no manager. Data scientists must have
    AI governance essentials and responsible AI development."""
    uow = UnitOfWork(settings)
    for email, roles, manager, slack in (
        (BOSS, ["top-management"], None, "U0BOSS1"),
        (LEAD, ["governance-lead"], None, None),
        (MEI, ["data-scientist"], BOSS, "U0MEI01"),
        (OWNER, ["system-owner"], BOSS, None),
        (NOMGR, ["data-scientist"], None, None),
    ):
        people.add_person(
            uow,
            PersonIn(
                email=email,
                name=email.split("@")[0].title(),
                roles=roles,
                manager=manager,
                slack_user_id=slack,
            ),
            actor,
        )
    tr.require(uow, {"role": "data-scientist", "training": GOV}, actor)
    tr.require(uow, {"role": "data-scientist", "training": RAD}, actor)
    return uow


def footprint(settings: Settings) -> tuple[int, ...]:
    return tuple(
        count(settings, m)
        for m in (TrainingRecord, TrainingRequirement, Evidence, AuditEvent, Notification)
    )


def notes(settings: Settings, email: str) -> list[tuple[str, str, str]]:
    """(key, kind, recipient) of the notifications about `email`'s trainings, in order."""
    from aims_core.models import Person

    with get_engine(settings.effective_database_url).connect() as conn:
        return [
            (key, kind, to)
            for key, kind, to in conn.execute(
                select(Notification.idempotency_key, Notification.kind, Person.email)
                .join(Person, Person.id == Notification.recipient_id)
                .where(Notification.subject == f"person:{email}")
                .order_by(Notification.id)
            )
        ]


def at(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, time(hour), UTC)


def ask(org: UnitOfWork, actor: Actor, key: str = "model-card-1") -> int:
    """A decision the data scientists may take (no RACI for this activity: the role decides)."""
    req = approvals.create_request(
        org,
        ApprovalRequestIn(
            idempotency_key=key,
            subject="system:model-card",
            activity="model-card-signoff",
            title="Sign off the model card",
            approver_roles=["data-scientist"],
            requester=OWNER,
        ),
        actor,
    )
    return req.id


# --- the catalog -------------------------------------------------------------------------------


def test_shipped_catalog_and_a_broken_override(settings: Settings) -> None:
    cat = tr.training_catalog(settings)
    ids = [t.id for t in cat.trainings]
    assert {GOV, RAD, "incident-response-drill", "internal-auditor-42001", "eu-ai-act"} <= set(ids)
    assert cat.get(GOV).validity_days == 365 and "A.4.6" in cat.get(GOV).controls
    assert cat.requirements["incident-responder"] == [GOV, "incident-response-drill"]
    assert set(cat.roles_requiring(RAD)) == {"data-scientist", "system-owner"}
    (settings.data_dir / "training_catalog.yaml").write_text(
        "trainings:\n"
        "  - {id: x, title: X, validity_days: 0, controls: [Z.9]}\n"
        "  - {id: x, title: X again, validity_days: 30}\n"
        "requirements:\n  wizard: [x]\n  legal: [y]\n"
    )
    with pytest.raises(TrainingCatalogInvalid) as exc:
        tr.training_catalog(settings)
    assert exc.value.problems == [
        "trainings.0.validity_days: Input should be greater than or equal to 1"
    ]
    (settings.data_dir / "training_catalog.yaml").write_text(
        "trainings:\n"
        "  - {id: x, title: X, validity_days: 10, controls: [Z.9]}\n"
        "  - {id: x, title: X again, validity_days: 30}\n"
        "requirements:\n  wizard: [x]\n  legal: [y]\n"
    )
    with pytest.raises(TrainingCatalogInvalid) as exc:
        tr.training_catalog(settings)
    problems = "\n".join(exc.value.problems)
    for bit in (
        "duplicate id(s) x",
        "unknown clause or control Z.9",
        "requirements.wizard: unknown role",
        "requirements.legal: unknown training(s) y",
    ):
        assert bit in problems


def test_run_name_is_the_day_in_the_organisations_zone() -> None:
    late = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)
    assert tr.run_name(Settings(timezone="UTC"), late) == "training renewals 2026-11-23"
    assert (
        tr.run_name(Settings(timezone="Pacific/Auckland"), late) == "training renewals 2026-11-24"
    )


# --- requirements and records --------------------------------------------------------------------


def test_require_is_idempotent_and_a_new_validity_applies_to_later_records(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    again = tr.require(org, {"role": "data-scientist", "training": GOV}, actor)
    assert not again.changed and again.validity_days == 365
    changed = tr.require(
        org, {"role": "data-scientist", "training": GOV, "validity_days": 90}, actor
    )
    assert changed.changed and changed.validity_days == 90
    done = today() - timedelta(days=10)
    out = tr.record(org, {"email": MEI, "training": GOV, "completed": done}, actor)
    assert out.expires_on == done + timedelta(days=90)
    # An explicit expiry wins; a training no role requires takes the catalog's validity.
    eu = tr.record(org, {"email": MEI, "training": "eu-ai-act", "completed": done}, actor)
    assert eu.expires_on == done + timedelta(days=365)
    actions = [
        e.details.get("validity_days") for e in _audits(settings, "training.requirement-changed")
    ]
    assert actions == [90]


def _audits(settings: Settings, action: str) -> list[AuditEvent]:
    from aims_core.db import session_factory

    with session_factory(settings.effective_database_url)() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_record_files_evidence_and_a_repeat_replays(
    org: UnitOfWork, settings: Settings, actor: Actor, tmp_path: Path
) -> None:
    cert = tmp_path / "certificate.pdf"
    cert.write_bytes(b"%PDF-1.4 certificate of completion")
    done = today() - timedelta(days=3)
    out = tr.record(
        org, {"email": MEI, "training": RAD, "completed": done, "evidence": cert}, actor
    )
    assert not out.replayed and out.expires_on == done + timedelta(days=365)
    with get_engine(settings.effective_database_url).connect() as conn:
        ev = conn.execute(select(Evidence).where(Evidence.id == out.evidence_id)).one()
    assert (ev.subject, ev.kind, ev.file_name) == (
        f"person:{MEI}",
        "training-record",
        "certificate.pdf",
    )
    assert "Responsible AI development" in ev.title
    before = footprint(settings)
    again = tr.record(
        org, {"email": MEI, "training": RAD, "completed": done, "evidence": cert}, actor
    )
    assert again.replayed and again.id == out.id and footprint(settings) == before
    with pytest.raises(Conflict, match="already has responsible-ai-development"):
        tr.record(
            org,
            {
                "email": MEI,
                "training": RAD,
                "completed": done,
                "expires": today() + timedelta(days=5),
            },
            actor,
        )
    # Without a file the record itself is the evidence (text).
    note = tr.record(
        org, {"email": MEI, "training": GOV, "completed": done, "note": "Workshop"}, actor
    )
    with get_engine(settings.effective_database_url).connect() as conn:
        text = conn.scalar(select(Evidence.content).where(Evidence.id == note.evidence_id))
    assert "AI governance essentials" in text and "Workshop" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["require", "wizard", GOV], "role: unknown role 'wizard'"),
        (["require", "legal", "basket-weaving"], "training: unknown training 'basket-weaving'"),
        (["require", "legal", GOV, "--validity-days", "0"], "validity_days"),
        (["record", "nobody@example.org", GOV, "--completed", "2026-01-01"], "email: no person"),
        (["record", MEI, "basket-weaving", "--completed", "2026-01-01"], "unknown training"),
        (["record", MEI, GOV, "--completed", "2026-13-01"], "completed:"),
        (["record", MEI, GOV, "--completed", str(today() + timedelta(days=2))], "in the future"),
        (
            ["record", MEI, GOV, "--completed", "2026-01-10", "--expires", "2026-01-01"],
            "is not after",
        ),
        (
            ["record", MEI, GOV, "--completed", "2026-01-01", "--evidence", "/no/such.pdf"],
            "no such file",
        ),
        (["record", "not-an-email", GOV, "--completed", "2026-01-01"], "not an email"),
        (["status", "--role", "wizard"], "unknown role"),
        (["status", "--xlsx", "/no/such/dir/m.xlsx"], "does not exist"),
        (["status", "--xlsx", "matrix.csv"], "must end in .xlsx"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    org: UnitOfWork, settings: Settings, run_cli: Any, args: list[str], message: str
) -> None:
    before = footprint(settings)
    result = run_cli("training", *args)
    assert result.exit_code == 2, result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.strip()]
    assert line.startswith("error: ") and message in line, line
    assert footprint(settings) == before


def test_cli_require_record_catalog_and_status(org: UnitOfWork, run_cli: Any) -> None:
    result = run_cli(
        "training",
        "require",
        "incident-responder",
        "incident-response-drill",
        "--validity-days",
        "120",
    )
    assert result.exit_code == 0 and "now requires AI incident response drill" in result.output
    assert (
        "already requires"
        in run_cli(
            "training",
            "require",
            "incident-responder",
            "incident-response-drill",
            "--validity-days",
            "120",
        ).output
    )
    catalog = json.loads(run_cli("training", "catalog", "--json").output)
    assert GOV in [t["id"] for t in catalog["trainings"]]
    result = run_cli(
        "training", "record", MEI, GOV, "--completed", str(today() - timedelta(days=1))
    )
    assert result.exit_code == 0 and f"expires on {today() + timedelta(days=364)}" in result.output
    rows = json.loads(run_cli("training", "status", "--person", MEI, "--json").output)
    assert [(r["training"], r["status"]) for r in rows] == [(GOV, "current"), (RAD, "missing")]
    table = run_cli("training", "status", "--role", "data-scientist")
    assert table.exit_code == 0 and "MISSING" in table.output
    assert "1 current, 0 expiring, 0 expired, 3 missing" in table.output


# --- the competence check of approvals (MUST SHOW) -----------------------------------------------


def _expired_yesterday(org: UnitOfWork, actor: Actor, email: str = MEI) -> None:
    """AI governance essentials completed 366 days ago: expired yesterday (valid 365 days)."""
    tr.record(
        org, {"email": email, "training": GOV, "completed": today() - timedelta(days=366)}, actor
    )
    tr.record(
        org, {"email": email, "training": RAD, "completed": today() - timedelta(days=30)}, actor
    )


def test_expired_training_refuses_the_decision_and_renewal_restores_it(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    _expired_yesterday(org, actor)
    req = ask(org, actor)
    decision = DecisionIn(request_id=req, person=MEI, outcome="approve")
    with pytest.raises(Refused) as exc:
        approvals.decide(org, decision, actor)
    yesterday = today() - timedelta(days=1)
    assert exc.value.reason == "training"
    assert (
        f"{MEI} may not decide request {req}: required training 'AI governance essentials' "
        f"({GOV}) expired on {yesterday} — renew: `aims training record {MEI} {GOV}"
    ) in exc.value.message
    assert count(settings, Decision) == 0
    (event,) = _audits(settings, "approval.refused")
    assert event.details["reason"] == "training" and GOV in event.details["message"]
    # Renewing restores the right at once: the same decision now goes through.
    tr.record(org, {"email": MEI, "training": GOV, "completed": today()}, actor)
    result = approvals.decide(org, decision, actor)
    assert result.recorded and result.status is ApprovalStatus.approved


def test_expired_training_refuses_aims_approve_and_renewal_restores_it(
    org: UnitOfWork, settings: Settings, actor: Actor, run_cli: Any
) -> None:
    _expired_yesterday(org, actor)
    req = ask(org, actor)
    refused = run_cli("approve", str(req), "--as", MEI)
    assert refused.exit_code == 2
    assert (
        "may not decide" in refused.output
        and f"'AI governance essentials' ({GOV}) expired on" in refused.output
    )
    assert count(settings, Decision) == 0
    renewed = run_cli("training", "record", MEI, GOV, "--completed", str(today()))
    assert renewed.exit_code == 0, renewed.output
    approved = run_cli("approve", str(req), "--as", MEI)
    assert approved.exit_code == 0, approved.output
    assert f"recorded approval by {MEI} on request {req}: approved (1 of 1)" in approved.output


def test_missing_training_refuses_only_when_configured(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    req = ask(org, actor)
    strict = UnitOfWork(settings.model_copy(update={"training_blocks_missing": True}))
    with pytest.raises(
        Refused, match=f"required training 'AI governance essentials' \\({GOV}\\) never completed"
    ):
        approvals.decide(strict, DecisionIn(request_id=req, person=MEI, outcome="approve"), actor)
    assert approvals.decide(
        org, DecisionIn(request_id=req, person=MEI, outcome="approve"), actor
    ).recorded


def test_a_person_with_no_required_training_is_not_checked(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    org = UnitOfWork(settings.model_copy(update={"training_blocks_missing": True}))
    req = approvals.create_request(
        org,
        ApprovalRequestIn(
            idempotency_key="owner-signoff",
            subject="system:model-card",
            activity="owner-signoff",
            title="Owner sign-off",
            approver_roles=["system-owner"],
            requester=MEI,
        ),
        actor,
    )
    assert approvals.decide(
        org, DecisionIn(request_id=req.id, person=OWNER, outcome="approve"), actor
    ).recorded


# --- the daily pass (MUST SHOW) ------------------------------------------------------------------


def test_reminders_at_30_and_7_days_fire_once_each(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    out = tr.record(
        org, {"email": MEI, "training": GOV, "completed": today() - timedelta(days=5)}, actor
    )
    expires = out.expires_on
    key = f"training-record-{out.id}-reminder-"
    for days_before in (40, 31):
        assert tr.tick(settings, at(expires - timedelta(days=days_before))).reminders == []
    first = tr.tick(settings, at(expires - timedelta(days=30)))
    assert [(n.record_id, n.threshold, n.days_left) for n in first.reminders] == [(out.id, 30, 30)]
    for days_before in (30, 29, 8):  # the same day again, and days in between: nothing more
        assert tr.tick(settings, at(expires - timedelta(days=days_before), 15)).reminders == []
    second = tr.tick(settings, at(expires - timedelta(days=7)))
    assert [(n.threshold, n.told) for n in second.reminders] == [(7, [MEI])]
    assert tr.tick(settings, at(expires - timedelta(days=1))).reminders == []
    assert notes(settings, MEI) == [
        (f"{key}30", "training-reminder", MEI),
        (f"{key}7", "training-reminder", MEI),
    ]
    with get_engine(settings.effective_database_url).connect() as conn:
        sent = conn.scalar(select(TrainingRecord.reminders_sent).where(TrainingRecord.id == out.id))
        target = conn.scalar(
            select(Notification.target).where(Notification.idempotency_key == f"{key}7")
        )
    assert sent == [30, 7] and target == "dm"  # mei is on Slack


def test_a_record_first_seen_inside_7_days_gets_one_reminder(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    out = tr.record(
        org,
        {
            "email": MEI,
            "training": GOV,
            "completed": today() - timedelta(days=3),
            "expires": today() + timedelta(days=5),
        },
        actor,
    )
    report = tr.tick(settings)
    assert [(n.threshold, n.days_left) for n in report.reminders] == [(7, 5)]
    assert tr.tick(settings).reminders == []
    assert [k for k, _, _ in notes(settings, MEI)] == [f"training-record-{out.id}-reminder-7"]


def test_escalation_to_the_manager_after_expiry_fires_once(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    out = tr.record(
        org, {"email": MEI, "training": GOV, "completed": today() - timedelta(days=5)}, actor
    )
    day_after = at(out.expires_on + timedelta(days=1))
    report = tr.tick(settings, day_after)
    (esc,) = report.escalations
    assert (esc.record_id, esc.told, esc.days_left) == (out.id, [MEI, BOSS], -1)
    assert [(r.email, r.training) for r in report.expired] == [(MEI, GOV)]
    assert tr.tick(settings, day_after + timedelta(days=3)).escalations == []
    assert notes(settings, MEI)[-2:] == [
        (f"training-record-{out.id}-expired", "training-expired", MEI),
        (
            f"training-record-{out.id}-escalation-to-{_pid(settings, BOSS)}",
            "training-escalation",
            BOSS,
        ),
    ]
    # A late first pass sends only the escalation, not the reminders it missed.
    assert [k for k, _, _ in notes(settings, MEI)].count(
        f"training-record-{out.id}-reminder-7"
    ) == 0
    # Renewed: the expired record no longer counts, nothing more is sent about it.
    renewal = {
        "email": MEI,
        "training": GOV,
        "completed": today(),
        "expires": today() + timedelta(days=730),
    }
    tr.record(org, renewal, actor)
    later = tr.tick(settings, day_after + timedelta(days=5))
    assert later.escalations == [] and later.expired == []


def _pid(settings: Settings, email: str) -> int:
    from aims_core.models import Person

    with get_engine(settings.effective_database_url).connect() as conn:
        return conn.scalar(select(Person.id).where(Person.email == email))  # type: ignore[return-value]


def test_without_a_manager_the_governance_leads_hear_of_it(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    out = tr.record(
        org, {"email": NOMGR, "training": RAD, "completed": today() - timedelta(days=5)}, actor
    )
    (esc,) = tr.tick(settings, at(out.expires_on)).escalations
    assert esc.told == [NOMGR, LEAD]
    md = tr.tick(settings, at(out.expires_on)).markdown()
    assert "## Expired: may not approve (1)" in md and NOMGR in md


def test_matrix_export_opens_with_pandas_and_shows_the_statuses(
    org: UnitOfWork, settings: Settings, actor: Actor, run_cli: Any, tmp_path: Path
) -> None:
    tr.record(
        org, {"email": MEI, "training": GOV, "completed": today() - timedelta(days=10)}, actor
    )  # current
    tr.record(
        org, {"email": MEI, "training": RAD, "completed": today() - timedelta(days=350)}, actor
    )  # expiring
    tr.record(
        org, {"email": NOMGR, "training": GOV, "completed": today() - timedelta(days=400)}, actor
    )  # expired
    # solo has no responsible-ai-development record: missing
    path = tmp_path / "matrix.xlsx"
    result = run_cli("training", "status", "--xlsx", str(path))
    assert result.exit_code == 0, result.output
    assert "1 current, 1 expiring, 1 expired, 1 missing" in result.output
    sheets = pd.read_excel(path, sheet_name=None)
    assert list(sheets) == ["Summary", "data-scientist"]
    ds = sheets["data-scientist"]
    got = {(r.person, r.training): r.status for r in ds.itertuples()}
    assert got == {
        (MEI, GOV): "current",
        (MEI, RAD): "expiring",
        (NOMGR, GOV): "expired",
        (NOMGR, RAD): "missing",
    }
    expiring = ds[(ds.person == MEI) & (ds.training == RAD)].iloc[0]
    assert expiring.days_left == 15
    assert str(expiring.expires)[:10] == str(today() + timedelta(days=15))
    summary = sheets["Summary"].set_index("role")
    assert summary.loc[
        "data-scientist", ["people", "current", "expiring", "expired", "missing"]
    ].tolist() == [2, 1, 1, 1, 1]


# --- the demo ------------------------------------------------------------------------------------


def test_demo_training_is_current_for_everyone_and_loads_once(
    settings: Settings, actor: Actor
) -> None:
    added = load_demo(UnitOfWork(settings), actor)
    defaults = tr.training_catalog(settings).requirements
    assert added["training requirements"] == sum(len(t) for t in defaults.values())
    rows = tr.matrix(UnitOfWork(settings))
    assert added["training records"] == len(rows) >= 20  # one per person and required training
    assert {r.status for r in rows} == {Status.current, Status.expiring}
    assert [(r.email, r.training) for r in rows if r.status is Status.expiring] == [
        ("ds.lead@northwind.example", RAD)
    ]
    assert all(r.days_left and r.days_left > 0 for r in rows)
    again = load_demo(UnitOfWork(settings), actor)
    assert (again["training requirements"], again["training records"]) == (0, 0)
    report = tr.tick(settings)
    assert [(n.person, n.threshold) for n in report.reminders] == [
        ("ds.lead@northwind.example", 30)
    ]


# The check is always on: each channel, in a fresh interpreter that imported nothing but what the
# channel itself imports, refuses the decision of a person whose required training expired.
_SLACK_CLICK = """
import sys
from fastapi.testclient import TestClient
from fakes.slack_signing import block_actions_payload, signed_interaction
from aims_core.settings import get_settings
from notifications.app import create_app
request_id, user = int(sys.argv[1]), sys.argv[2]
body, headers = signed_interaction("fresh-secret", block_actions_payload(user, request_id))
with TestClient(create_app(get_settings(), resume=lambda *a: None)) as client:
    answer = client.post("/slack/interactions", content=body, headers=headers)
print(answer.status_code, answer.text)
"""
_UI_FORM = """
import sys
from aims_core.services import approvals
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from aims_core.models import Person
request_id, email = int(sys.argv[1]), sys.argv[2]
settings = get_settings()
uow = UnitOfWork(settings)
with uow.read():
    person_id = uow.session.query(Person.id).filter(Person.email == email).scalar()
code = approvals.current_code(uow, request_id, person_id)
try:
    approvals.decide(
        uow,
        approvals.DecisionIn(request_id=request_id, person=email, outcome="approve", code=code),
        Actor(who=f"ui-claim:{email}", channel="ui"),
    )
except approvals.Refused as exc:
    print("refused", exc.reason, exc.message)
"""


def test_expired_training_refuses_slack_cli_and_ui_each_in_a_fresh_process(
    org: UnitOfWork, settings: Settings, actor: Actor, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    _expired_yesterday(org, actor)
    req = ask(org, actor)
    tests = Path(__file__).resolve().parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)]),
        "AIMS_SLACK_SIGNING_SECRET": "fresh-secret",
        "AIMS_SLACK_TEAM_ID": "T0FAKE",  # the team of the signed click (fake Slack's)
    }

    def fresh(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    slack = fresh(sys.executable, "-c", _SLACK_CLICK, str(req), "U0MEI01")
    cli = fresh(str(Path(sys.executable).with_name("aims")), "approve", str(req), "--as", MEI)
    ui = fresh(sys.executable, "-c", _UI_FORM, str(req), MEI)

    assert slack.returncode == 0, slack.stderr
    assert slack.stdout.startswith("200 ") and "training is not current" in slack.stdout, (
        slack.stdout
    )
    assert cli.returncode == 2 and "expired on" in cli.stderr, cli.stdout + cli.stderr
    assert ui.returncode == 0, ui.stderr
    assert ui.stdout.startswith("refused training") and "expired on" in ui.stdout, ui.stdout
    assert count(settings, Decision) == 0
    refusals = _audits(settings, "approval.refused")
    assert sorted(e.channel for e in refusals) == ["cli", "slack", "ui"]
    assert all(e.details["reason"] == "training" for e in refusals)
