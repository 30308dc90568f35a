"""Management review (9.3) and context entries (4.1, 4.2): service and CLI, SQLite and PostgreSQL.

The pack's figures are checked against counts the test computes itself with SQL over rows it
inserts into the demo organisation's database. Periods are fixed quarters in the past (2026Q2,
2026Q3), so the figures do not move with the clock; services take `now=` where it matters.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import func, select

from aims_core.db import get_engine, session_factory
from aims_core.errors import Conflict, InvalidInput
from aims_core.models import (
    AISystem,
    ApprovalRequest,
    Audit,
    AuditEvent,
    AuditFinding,
    AuditProgramme,
    AuditStatus,
    Capa,
    CapaStatus,
    ContextEntry,
    Evidence,
    GateReview,
    GateStatus,
    Incident,
    IncidentEvent,
    IncidentStatus,
    LifecycleStage,
    ManagementReview,
    Notification,
    Person,
    PersonRole,
    ReviewStatus,
    Risk,
    RiskStatus,
    SoaEntry,
    TrainingRecord,
    TrainingRequirement,
)
from aims_core.services import approvals, context, reviews
from aims_core.services.demo import load_demo
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
CEO, GOV, OWNER, DS = (f"{n}{D}" for n in ("ceo", "governance", "ops.owner", "ds.lead"))
Q2_START, Q3_START, Q3_END = (datetime(2026, m, 1, tzinfo=UTC) for m in (4, 7, 10))
IN_Q3 = datetime(2026, 8, 10, 9, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n"


def q(settings: Settings, stmt: Any) -> list[Any]:
    with get_engine(settings.effective_database_url).connect() as conn:
        return list(conn.execute(stmt).all())


def in_q3(col: Any) -> Any:
    return (col >= Q3_START) & (col < Q3_END)


# --- the organisation's quarter: rows the test inserts ------------------------------------------


def seed_quarter(settings: Settings, actor: Actor) -> None:
    """Incidents, CAPAs, gates, approvals, risks, SoA, an audit, context entries in and around
    2026Q3, and a previous review (2026Q2) with two decisions."""
    with session_factory(settings.effective_database_url)() as s:
        sysid = {n: i for n, i in s.execute(select(AISystem.name, AISystem.id))}
        pid = {e: i for e, i in s.execute(select(Person.email, Person.id))}
        credit, fraud = sysid["credit-scoring"], sysid["fraud-detection"]

        def incident(sev: str, cat: str, aware: datetime, **kw: Any) -> Incident:
            row = Incident(
                system_id=fraud,
                title=f"{sev} {cat}",
                severity=sev,
                category=cat,
                source="cli",
                aware_at=aware,
                reported_by=OWNER,
                **kw,
            )
            s.add(row)
            s.flush()
            return row

        i1 = incident(
            "SEV1",
            "bias",
            datetime(2026, 7, 3, 8, tzinfo=UTC),
            lessons="Add a bias canary to the release checklist",
            status=IncidentStatus.closed,
            closed_at=datetime(2026, 8, 1, tzinfo=UTC),
        )
        i2 = incident("SEV2", "model-failure", datetime(2026, 8, 20, 12, tzinfo=UTC))
        incident("SEV2", "model-failure", datetime(2026, 9, 30, 23, tzinfo=UTC))
        incident("SEV1", "safety", datetime(2026, 8, 2, tzinfo=UTC), is_drill=True)
        incident("SEV3", "bias", datetime(2026, 6, 30, 23, tzinfo=UTC))  # Q2
        for inc, hours in ((i1, 4), (i2, 10)):
            s.add(
                IncidentEvent(
                    incident_id=inc.id,
                    kind="status",
                    text="contained",
                    at=inc.aware_at + timedelta(hours=hours),
                    actor=OWNER,
                    data={"from": "open", "to": "contained"},
                )
            )

        def capa(n: int, created: datetime, closed: datetime | None = None, **kw: Any) -> None:
            s.add(
                Capa(
                    idempotency_key=f"mr-capa-{n}",
                    title=f"CAPA {n}",
                    source="manual",
                    owner_id=pid[OWNER],
                    created_by=actor.who,
                    created_at=created,
                    closed_at=closed,
                    status=CapaStatus.closed if closed else CapaStatus.tracking,
                    **kw,
                )
            )

        capa(1, datetime(2025, 11, 5, tzinfo=UTC), datetime(2026, 7, 20, tzinfo=UTC))
        capa(2, datetime(2026, 7, 2, tzinfo=UTC))
        capa(3, datetime(2026, 8, 15, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC))
        capa(4, datetime(2026, 9, 9, tzinfo=UTC), datetime(2026, 10, 2, tzinfo=UTC))
        capa(
            5,
            datetime(2026, 3, 3, tzinfo=UTC),
            verification={
                "results": [
                    {
                        "number": 1,
                        "attempt": 1,
                        "effective": False,
                        "evidence": "drift came back within a week",
                        "at": "2026-08-05T10:00:00+00:00",
                    }
                ]
            },
        )
        for status, n in ((GateStatus.approved, 2), (GateStatus.rejected, 1)):
            for _ in range(n):
                s.add(
                    GateReview(
                        system_id=credit,
                        from_stage=LifecycleStage.design,
                        to_stage=LifecycleStage.development,
                        status=status,
                        requested_by=DS,
                        created_at=IN_Q3,
                    )
                )
        for n, deadline, decided in (
            (1, datetime(2026, 8, 1, tzinfo=UTC), None),  # overdue, still open
            (2, datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 8, 3, tzinfo=UTC)),  # late
            (3, datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 7, 30, tzinfo=UTC)),  # in time
        ):
            s.add(
                ApprovalRequest(
                    idempotency_key=f"mr-approval-{n}",
                    subject="system:fraud-detection",
                    activity="stage-gate",
                    title=f"approval {n}",
                    requested_by=DS,
                    quorum=1,
                    deadline=deadline,
                    decided_at=decided,
                )
            )
        for system, li, im, res, status in (
            (credit, 4, 5, 8, RiskStatus.treated),
            (credit, 2, 2, None, RiskStatus.open),
            (fraud, 3, 3, 6, RiskStatus.treated),
            (fraud, 5, 5, None, RiskStatus.closed),
        ):
            s.add(
                Risk(
                    system_id=system,
                    title=f"risk {li}x{im}",
                    owner_id=pid[DS],
                    likelihood=li,
                    impact=im,
                    score=li * im,
                    residual_score=res,
                    status=status,
                    created_at=IN_Q3,
                )
            )
        s.add_all(
            [
                SoaEntry(control_id="A.6.2.4", applicable=True, updated_by=GOV),
                SoaEntry(control_id="A.6.2.6", applicable=True, updated_by=GOV),
                SoaEntry(
                    control_id="A.10.4",
                    applicable=False,
                    justification="No customers' AI",
                    updated_by=GOV,
                ),
            ]
        )
        prog = AuditProgramme(
            name="mr-programme",
            cycle_years=3,
            starts_on=Q2_START,
            ends_on=datetime(2029, 4, 1, tzinfo=UTC),
            created_by=GOV,
        )
        s.add(prog)
        s.flush()
        audit = Audit(
            programme_id=prog.id,
            period="2026Q3",
            title="Clauses 8 and A.6",
            status=AuditStatus.closed,
            planned_start=datetime(2026, 7, 10, tzinfo=UTC),
            completed_at=datetime(2026, 9, 20, tzinfo=UTC),
        )
        s.add(audit)
        s.flush()
        for kind, text in (
            ("major-nc", "No V&V report for fraud-detection v3"),
            ("minor-nc", "Monitoring plan not reviewed"),
            ("minor-nc", "Gate checklist incomplete"),
            ("opportunity", "Share the monitoring dashboards with the ethics committee"),
        ):
            s.add(
                AuditFinding(
                    audit_id=audit.id,
                    control_id="A.6.2.4",
                    kind=kind,
                    statement=text,
                    recorded_by="auditor" + D,
                    created_at=datetime(2026, 9, 18, tzinfo=UTC),
                )
            )
        s.commit()
    for kind, title, at in (
        ("external-issue", "Regulator guidance on credit-scoring explanations", IN_Q3),
        ("internal-issue", "Model-risk team reorganised", IN_Q3 + timedelta(days=3)),
        ("interested-party", "Customers ask for human review of denials", IN_Q3),
        ("improvement", "Automate the fairness report", IN_Q3),
        ("external-issue", "An issue of the quarter before", datetime(2026, 6, 1, tzinfo=UTC)),
    ):
        context.add_entry(UnitOfWork(settings), {"kind": kind, "title": title}, actor, now=at)
    # The previous review and its decisions: one done, one overdue by now.
    reviews.prepare(UnitOfWork(settings), "2026Q2", None, actor, now=Q3_START + timedelta(hours=8))
    done = reviews.decide(
        UnitOfWork(settings),
        "2026Q2",
        {
            "decision": "Hire a second ML validator",
            "kind": "resources",
            "owner": GOV,
            "due": date(2026, 9, 1),
        },
        actor,
        now=Q3_START,
    )
    reviews.decide(
        UnitOfWork(settings),
        "2026Q2",
        {
            "decision": "Extend the gate policy to GPAI models",
            "kind": "change",
            "owner": OWNER,
            "due": date(2026, 8, 15),
        },
        actor,
        now=Q3_START,
    )
    reviews.action_done(
        UnitOfWork(settings),
        done.id,
        "Validator started 1 Sept",
        actor,
        now=datetime(2026, 8, 30, tzinfo=UTC),
    )


def expected_q3(settings: Settings) -> dict[str, Any]:
    """The figures of 2026Q3, counted by the test with its own SQL."""
    sev = dict(
        q(
            settings,
            select(Incident.severity, func.count())
            .where(in_q3(Incident.aware_at), Incident.is_drill.is_(False))
            .group_by(Incident.severity),
        )
    )
    cat = dict(
        q(
            settings,
            select(Incident.category, func.count())
            .where(in_q3(Incident.aware_at), Incident.is_drill.is_(False))
            .group_by(Incident.category),
        )
    )
    findings = dict(
        q(
            settings,
            select(AuditFinding.kind, func.count())
            .where(in_q3(AuditFinding.created_at))
            .group_by(AuditFinding.kind),
        )
    )
    gates = dict(
        q(
            settings,
            select(GateReview.status, func.count())
            .where(in_q3(GateReview.created_at))
            .group_by(GateReview.status),
        )
    )
    capas_opened = q(settings, select(func.count()).where(in_q3(Capa.created_at)))[0][0]
    capas_closed = q(settings, select(func.count()).where(in_q3(Capa.closed_at)))[0][0]
    open_at_end = q(
        settings,
        select(func.count()).where(
            Capa.created_at < Q3_END, (Capa.closed_at.is_(None)) | (Capa.closed_at >= Q3_END)
        ),
    )[0][0]
    overdue = q(
        settings,
        select(func.count()).where(
            in_q3(ApprovalRequest.deadline),
            ApprovalRequest.decided_at.is_(None)
            | (ApprovalRequest.decided_at > ApprovalRequest.deadline),
        ),
    )[0][0]
    contained = q(
        settings,
        select(Incident.aware_at, func.min(IncidentEvent.at))
        .join(IncidentEvent, IncidentEvent.incident_id == Incident.id)
        .where(
            in_q3(Incident.aware_at), Incident.is_drill.is_(False), IncidentEvent.kind == "status"
        )
        .group_by(Incident.id, Incident.aware_at),
    )
    hours = [(at - aware).total_seconds() / 3600 for aware, at in contained]
    # Training: required (person, training) pairs whose newest record by the end is unexpired.
    pairs = set(
        q(
            settings,
            select(PersonRole.person_id, TrainingRequirement.training).join(
                TrainingRequirement, TrainingRequirement.role_id == PersonRole.role_id
            ),
        )
    )
    newest: dict[tuple[int, str], tuple[datetime, datetime]] = {}
    for person, training, completed, expires in q(
        settings,
        select(
            TrainingRecord.person_id,
            TrainingRecord.training,
            TrainingRecord.completed_at,
            TrainingRecord.expires_at,
        ).where(TrainingRecord.completed_at <= Q3_END),
    ):
        key = (person, training)
        if key not in newest or completed > newest[key][0]:
            newest[key] = (completed, expires)
    current = sum(1 for p in pairs if p in newest and newest[p][1] > Q3_END)
    return {
        "sev": {k: sev.get(k, 0) for k in ("SEV1", "SEV2", "SEV3", "SEV4")},
        "cat": cat,
        "findings": {str(getattr(k, "value", k)): v for k, v in findings.items()},
        "gates": {str(getattr(k, "value", k)): v for k, v in gates.items()},
        "capas_opened": capas_opened,
        "capas_closed": capas_closed,
        "capas_open_at_end": open_at_end,
        "approvals_overdue": overdue,
        "mttc": round(sum(hours) / len(hours), 1),
        "training_required": len(pairs),
        "training_current": current,
        "soa_decided": q(settings, select(func.count()).select_from(SoaEntry))[0][0],
        "issues": [
            t
            for (t,) in q(
                settings,
                select(ContextEntry.title).where(
                    in_q3(ContextEntry.recorded_at),
                    ContextEntry.kind.in_(["external-issue", "internal-issue"]),
                ),
            )
        ],
        "parties": [
            t
            for (t,) in q(
                settings,
                select(ContextEntry.title).where(
                    in_q3(ContextEntry.recorded_at), ContextEntry.kind == "interested-party"
                ),
            )
        ],
    }


def charts_of(html: str) -> list[bytes]:
    return [
        base64.b64decode(m)
        for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    ]


def assert_real_chart(png: bytes) -> None:
    assert png.startswith(PNG)
    assert len(png) > 5_000
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.size[0] >= 300 and image.size[1] >= 200
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 10  # axes, bars, text: not one flat colour


# --- MUST SHOW: the pack on the demo organisation -------------------------------------------------


def test_review_prepare_writes_the_pack_with_every_input_and_the_sql_figures(
    org: UnitOfWork, settings: Settings, actor: Actor, run_cli, tmp_path: Path
) -> None:
    seed_quarter(settings, actor)
    exp = expected_q3(settings)
    out_dir = tmp_path / "pack"
    result = run_cli("review", "prepare", "--period", "2026Q3", "--output", str(out_dir))
    assert result.exit_code == 0, result.output
    assert "prepared management review 2026Q3 (prepared)" in result.stdout
    html = (out_dir / "management-review-2026Q3.html").read_text("utf-8")
    md = (out_dir / "management-review-2026Q3.md").read_text("utf-8")
    sheets = pd.read_excel(out_dir / "management-review-2026Q3.xlsx", sheet_name=None)

    # Every 9.3.2 input a) to e), in each of the three files.
    for key, title in reviews.INPUT_TITLES.items():
        assert f'id="input-{key}"' in html and f"<h2>{key}) {title}</h2>" in html
        assert f"## {key}) {title}" in md
        assert reviews.SHEETS[key] in sheets

    # a) the previous review's decisions: one done, one overdue.
    assert '<tr><th>done</th><td class="n">1</td></tr>' in html
    assert '<tr><th>overdue</th><td class="n">1</td></tr>' in html
    assert "| overdue | 1 |" in md and "| done | 1 |" in md
    a = sheets[reviews.SHEETS["a"]]
    assert dict(zip(a["decision"], a["status"], strict=True)) == {
        "Hire a second ML validator": "done",
        "Extend the gate policy to GPAI models": "overdue",
    }
    # b) and c): the context entries of the quarter, not of the one before.
    assert sorted(sheets[reviews.SHEETS["b"]]["title"]) == sorted(exp["issues"])
    assert list(sheets[reviews.SHEETS["c"]]["title"]) == exp["parties"]
    for title in exp["issues"] + exp["parties"]:
        assert title in html and title in md
    assert "An issue of the quarter before" not in html
    # d) performance: every figure equals the test's own count.
    d = dict(
        zip(
            sheets[reviews.SHEETS["d"]]["figure"], sheets[reviews.SHEETS["d"]]["value"], strict=True
        )
    )
    figures = {
        "CAPAs opened in the period": exp["capas_opened"],
        "CAPAs closed in the period": exp["capas_closed"],
        "CAPAs open at period end": exp["capas_open_at_end"],
        "Incidents (aware in the period, drills excluded)": sum(exp["sev"].values()),
        "Mean time to contain (hours)": exp["mttc"],
        "Approvals overdue": exp["approvals_overdue"],
        "Training pairs required": exp["training_required"],
        "Training pairs current": exp["training_current"],
        "SoA controls decided": exp["soa_decided"],
        "Annex A controls": 38,
        "Audits closed": 1,
        **{f"Incidents {k}": v for k, v in exp["sev"].items()},
        **{
            f"Findings {k}": exp["findings"].get(k, 0)
            for k in ("major-nc", "minor-nc", "observation", "opportunity")
        },
        **{f"Gate reviews {k}": v for k, v in exp["gates"].items()},
    }
    assert (exp["sev"], exp["capas_opened"], exp["capas_closed"]) == (
        {"SEV1": 1, "SEV2": 2, "SEV3": 0, "SEV4": 0},
        3,
        2,
    )  # the seed is what the test thinks it is
    for name, value in figures.items():
        assert float(d[name]) == float(value), name
        cell = "-" if value is None else value
        assert f'<tr><th>{name}</th><td class="n">{cell}</td></tr>' in html, name
        assert f"| {name} | {cell} |" in md, name
    for category, n in exp["cat"].items():
        assert f'<tr><th>{category}</th><td class="n">{n}</td></tr>' in html
    incidents = sheets["KPI incidents"]
    assert (
        dict(
            zip(
                incidents[incidents["by"] == "category"]["value"],
                incidents[incidents["by"] == "category"]["incidents"],
                strict=True,
            )
        )
        == exp["cat"]
    )
    trend = sheets["KPI CAPA trend"].set_index("month")
    assert (int(trend.loc["2026-07", "opened"]), int(trend.loc["2026-07", "closed"])) == (1, 1)
    assert len(trend) == 12 and trend.index[-1] == "2026-09"
    posture = sheets["KPI risk posture"]
    assert int(posture["risks"].sum()) == 3  # the closed risk is not part of the posture
    # e) opportunities: the audit's, the context's, the incident's lessons, the failed CAPA.
    e = sheets[reviews.SHEETS["e"]]
    assert sorted(e["source"]) == sorted(
        ["audit opportunity", "context", "incident lessons", "ineffective CAPA"]
    )
    for text in (
        "Share the monitoring dashboards",
        "Automate the fairness report",
        "Add a bias canary",
        "drift came back within a week",
    ):
        assert text in html and text in md

    # Charts: at least four real images, drawn from these figures.
    pngs = charts_of(html)
    assert len(pngs) >= 4
    for png in pngs:
        assert_real_chart(png)
    for name in ("incidents-by-severity", "capa-trend", "risk-posture", "compliance"):
        assert "![" in md and f"management-review-2026Q3-{name}.png" in md
        assert (out_dir / f"management-review-2026Q3-{name}.png").read_bytes() in pngs
    q2 = Path(reviews.get_review(org, "2026Q2").pack_dir or "")
    assert (q2 / "management-review-2026Q2-incidents-by-severity.png").read_bytes() != (
        out_dir / "management-review-2026Q3-incidents-by-severity.png"
    ).read_bytes()  # another quarter's figures, another picture

    # The review row and the evidence of its three files.
    review = reviews.get_review(org, "2026Q3")
    assert review.status is ReviewStatus.prepared
    assert review.inputs["performance"]["incidents_by_severity"] == exp["sev"]
    rows = q(
        settings,
        select(Evidence.kind, Evidence.subject, Evidence.file_name, Evidence.content_sha256).where(
            Evidence.id.in_(review.pack_evidence_ids)
        ),
    )
    assert sorted((k, s, f) for k, s, f, _ in rows) == [
        ("management-review", "review:2026Q3", f"management-review-2026Q3.{ext}")
        for ext in ("html", "md", "xlsx")
    ]
    for _, _, name, sha in rows:
        assert hashlib.sha256((out_dir / name).read_bytes()).hexdigest() == sha


def test_a_decision_of_one_review_is_an_action_under_input_a_of_the_next(
    org: UnitOfWork, settings: Settings, actor: Actor, run_cli, tmp_path: Path
) -> None:
    prepared = run_cli("review", "prepare", "--period", "2026Q3", "--output", str(tmp_path / "q3"))
    assert prepared.exit_code == 0, prepared.output
    decided = run_cli(
        "review",
        "decide",
        "2026Q3",
        "--decision",
        "Budget for a bias audit tool",
        "--kind",
        "resources",
        "--owner",
        GOV,
        "--due",
        "2099-12-31",
    )
    assert decided.exit_code == 0, decided.output
    assert "recorded action" in decided.stdout
    # The owner is told, once, through the outbox.
    notes = q(
        settings,
        select(Notification.kind, Notification.target).where(
            Notification.subject == "review:2026Q3"
        ),
    )
    assert notes == [("review-action", "dm")]

    nxt = reviews.prepare(
        org, "2026Q4", tmp_path / "q4", actor, now=datetime(2027, 1, 1, 6, tzinfo=UTC)
    )
    [action] = [a for a in reviews.ReviewInputs.model_validate(nxt.inputs).actions]
    assert (action.review, action.decision, action.owner, action.status, action.due) == (
        "2026Q3",
        "Budget for a bias audit tool",
        GOV,
        "open",
        date(2099, 12, 31),
    )
    html = (tmp_path / "q4" / "management-review-2026Q4.html").read_text("utf-8")
    assert "Budget for a bias audit tool" in html
    sheet = pd.read_excel(
        tmp_path / "q4" / "management-review-2026Q4.xlsx", sheet_name=reviews.SHEETS["a"]
    )
    assert list(sheet["decision"]) == ["Budget for a bias audit tool"]

    done = run_cli("review", "action-done", str(action.id), "--outcome", "Tool bought")
    assert done.exit_code == 0, done.output
    shown = run_cli("review", "show", "2026Q3")
    assert "Budget for a bias audit tool" in shown.stdout and "Tool bought" in shown.stdout
    listed = run_cli("review", "list")
    assert "2026Q4" in listed.stdout and "2026Q3" in listed.stdout


# --- periods, refusals, the minutes -------------------------------------------------------------


def test_periods_are_quarters_in_the_configured_time_zone() -> None:
    assert reviews.period_bounds("2026Q4", "UTC") == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert reviews.period_bounds("2026Q4", "Europe/Berlin") == (
        datetime(2026, 9, 30, 22, tzinfo=UTC),
        datetime(2026, 12, 31, 23, tzinfo=UTC),
    )
    new_year_berlin = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)  # 00:30 on 1 Jan in Berlin
    assert reviews.default_period(new_year_berlin, "Europe/Berlin") == "2026Q4"
    assert reviews.default_period(new_year_berlin, "UTC") == "2026Q3"
    assert reviews.default_period(datetime(2027, 1, 1, 6, tzinfo=UTC), "UTC") == "2026Q4"
    for bad in ("2026Q5", "2026-Q4", "Q4 2026", "1999Q1", ""):
        with pytest.raises(InvalidInput) as err:
            reviews.period_bounds(bad, "UTC")
        assert err.value.field == "period"


def test_bad_input_is_one_line_and_writes_nothing(
    org: UnitOfWork, settings: Settings, run_cli
) -> None:
    before = q(settings, select(func.count()).select_from(ManagementReview))[0][0]
    for args, message in (
        (("review", "prepare", "--period", "2026Q5"), "error: period: '2026Q5' is not a quarter"),
        (("review", "prepare", "--period", "2099Q1"), "error: period: 2099Q1 has not started"),
        (
            (
                "review",
                "decide",
                "2026Q3",
                "--decision",
                "x",
                "--kind",
                "resources",
                "--owner",
                GOV,
                "--due",
                "2099-01-01",
            ),
            "error: period: no management review for 2026Q3",
        ),
        (("context", "add", "--kind", "rumour", "--title", "x"), "error: kind:"),
        (("context", "add", "--kind", "external-issue", "--title", " "), "error: title:"),
    ):
        result = run_cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    assert q(settings, select(func.count()).select_from(ManagementReview))[0][0] == before
    assert q(settings, select(func.count()).select_from(ContextEntry)).pop()[0] == 4  # the demo's


def test_context_entries_are_evidence_and_listed(
    org: UnitOfWork, settings: Settings, run_cli
) -> None:
    added = run_cli(
        "context",
        "add",
        "--kind",
        "interested-party",
        "--title",
        "Works council wants a say in HR analytics",
        "--change",
        "new",
    )
    assert added.exit_code == 0, added.output
    entry_id = int(added.stdout.split("entry ", 1)[1].split(":", 1)[0])
    [(kind, subject, content)] = q(
        settings,
        select(Evidence.kind, Evidence.subject, Evidence.content).where(
            Evidence.idempotency_key == f"context-{entry_id}"
        ),
    )
    assert (kind, subject) == ("context", "org:context")
    assert "Works council" in content
    listed = run_cli("context", "list", "--kind", "interested-party", "--json")
    assert "Works council wants a say in HR analytics" in listed.stdout
    today = datetime.now(UTC).date().isoformat()
    since = run_cli("context", "list", "--since", today)
    assert "Works council" in since.stdout and "Data science team grew" not in since.stdout
    # The demo's context is loaded once.
    assert (
        load_demo(UnitOfWork(settings), Actor(who="again", channel="test"))["context entries"] == 0
    )


def test_minutes_approved_by_the_ceo_freeze_the_review(
    org: UnitOfWork, settings: Settings, actor: Actor, tmp_path: Path
) -> None:
    now = datetime(2026, 10, 2, 9, tzinfo=UTC)
    review = reviews.prepare(org, "2026Q3", tmp_path / "a", actor, now=now)
    first_pack = review.pack_evidence_ids
    again = reviews.prepare(org, "2026Q3", tmp_path / "b", actor, now=now + timedelta(hours=1))
    assert again.pack_dir == str((tmp_path / "b").resolve())  # re-preparing replaces the pack
    assert again.pack_evidence_ids != first_pack
    reviews.decide(
        org,
        "2026Q3",
        {
            "decision": "Adopt ISO/IEC 42005 impact method",
            "kind": "improvement",
            "owner": DS,
            "due": "2026-12-01",
        },
        actor,
        now=now,
    )
    spec = reviews.minutes_spec(reviews.get_review(org, "2026Q3"))
    request = approvals.create_request(UnitOfWork(settings), spec, actor)
    assert request.activity == "management-review" and request.approvers == [CEO]
    assert request.kind == "review-minutes" and "aims review minutes 2026Q3" in request.details
    reviews.attach_request(org, "2026Q3", request.id, None, actor)
    with pytest.raises(Conflict, match="await approval"):  # the pack being decided stays
        reviews.prepare(org, "2026Q3", tmp_path / "c", actor, now=now)
    assert not (tmp_path / "c").exists()
    conclusions = {"outcome": "approve", "attendees": "CEO, DS lead", "notes": "Hire an auditor"}
    approvals.decide(
        UnitOfWork(settings),
        approvals.DecisionIn(
            request_id=request.id, person=CEO, outcome="answer", answer=conclusions
        ),
        actor,
    )
    ceo = Actor(who=CEO, channel="slack")  # the flow files it in the name of who answered
    done = reviews.record_outcome(org, "2026Q3", ceo)
    assert done.status is ReviewStatus.approved and done.approved_at is not None
    assert "Adopt ISO/IEC 42005 impact method" in done.minutes
    assert "Attendees: CEO, DS lead" in done.minutes and "Hire an auditor" in done.minutes
    assert reviews.record_outcome(org, "2026Q3", actor).minutes == done.minutes  # idempotent
    [filed_by] = q(settings, select(AuditEvent.actor).where(AuditEvent.action == "review.approved"))
    assert filed_by == (CEO,)
    [(kind, content)] = q(
        settings,
        select(Evidence.kind, Evidence.content).where(
            Evidence.idempotency_key == f"review-2026Q3-minutes-{request.id}"
        ),
    )
    assert kind == "management-review" and "Approved" in content and CEO in content
    with pytest.raises(Conflict):
        reviews.prepare(org, "2026Q3", None, actor, now=now)
    with pytest.raises(Conflict):
        reviews.decide(
            org,
            "2026Q3",
            {"decision": "late", "kind": "change", "owner": DS, "due": "2026-12-01"},
            actor,
            now=now,
        )


def test_tick_reminds_action_owners_once_before_and_once_after_the_due_date(
    org: UnitOfWork, settings: Settings, actor: Actor, tmp_path: Path
) -> None:
    now = datetime(2026, 10, 2, 9, tzinfo=UTC)
    reviews.prepare(org, "2026Q3", tmp_path, actor, now=now)
    action = reviews.decide(
        org,
        "2026Q3",
        {
            "decision": "Review vendor contracts",
            "kind": "change",
            "owner": OWNER,
            "due": "2026-10-20",
        },
        actor,
        now=now,
    )
    assert reviews.tick(settings, now).reminded == []  # 18 days ahead: nothing yet
    soon = datetime(2026, 10, 15, tzinfo=UTC)
    assert reviews.tick(settings, soon).reminded == [action.id]
    assert reviews.tick(settings, soon + timedelta(days=1)).reminded == []
    late = datetime(2026, 10, 22, tzinfo=UTC)
    assert reviews.tick(settings, late).overdue == [action.id]
    assert reviews.tick(settings, late + timedelta(days=1)).overdue == []
    kinds = [
        k
        for (k,) in q(
            settings,
            select(Notification.kind)
            .where(Notification.subject == "review:2026Q3")
            .order_by(Notification.id),
        )
    ]
    assert kinds == ["review-action", "review-action-due", "review-action-overdue"]


def test_rejected_minutes_keep_the_reasons_and_the_pack_may_be_prepared_again(
    org: UnitOfWork, settings: Settings, actor: Actor, tmp_path: Path
) -> None:
    now = datetime(2026, 10, 2, 9, tzinfo=UTC)
    review = reviews.prepare(org, "2026Q3", tmp_path / "a", actor, now=now)
    request = approvals.create_request(UnitOfWork(settings), reviews.minutes_spec(review), actor)
    reviews.attach_request(org, "2026Q3", request.id, None, actor)
    with pytest.raises(InvalidInput) as why:  # a rejection says why
        approvals.decide(
            UnitOfWork(settings),
            approvals.DecisionIn(
                request_id=request.id, person=CEO, outcome="answer", answer={"outcome": "reject"}
            ),
            actor,
        )
    assert why.value.field == "notes"
    approvals.decide(
        UnitOfWork(settings),
        approvals.DecisionIn(
            request_id=request.id,
            person=CEO,
            outcome="answer",
            answer={"outcome": "reject", "notes": "Add the vendor KPIs"},
        ),
        actor,
    )
    rejected = reviews.record_outcome(org, "2026Q3", actor)
    assert rejected.status is ReviewStatus.rejected and rejected.approved_at is None
    assert "Add the vendor KPIs" in rejected.minutes and CEO in rejected.minutes
    again = reviews.prepare(org, "2026Q3", tmp_path / "b", actor, now=now + timedelta(hours=2))
    assert (again.status, again.request_id, again.minutes) == (ReviewStatus.prepared, None, "")
    # The next minutes request is a new one: another pack, another key.
    assert (
        reviews.minutes_spec(again).idempotency_key != reviews.minutes_spec(review).idempotency_key
    )
