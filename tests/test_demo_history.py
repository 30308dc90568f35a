"""The demo organisation's year of history (`aims demo load`): the last quarter's review pack has
real figures — each equal to this test's own count over the tables — loading twice adds nothing,
the gap report and status have content, and the history is settled (little open work).

The history is loaded on top of the demo template (the organisation itself), once per database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from demo_org import figures_counted, figures_of
from sqlalchemy import func, select
from sqlalchemy.sql import Select

from aims_core.models import (
    ApprovalRequest,
    ApprovalStatus,
    Audit,
    AuditFinding,
    AuditStatus,
    Capa,
    CapaAction,
    CapaStatus,
    ClockStatus,
    Evidence,
    GateReview,
    Incident,
    IncidentStatus,
    Notification,
    NotificationStatus,
    RegulatoryClock,
    Risk,
    SoaEntry,
    as_utc,
)
from aims_core.services import reviews
from aims_core.services.demo import load_demo
from aims_core.uow import Actor, UnitOfWork

HISTORY = (
    "SoA decisions",
    "earlier training records",
    "risks",
    "gate reviews",
    "incidents",
    "past audit programme",
    "audits",
    "management reviews",
    "gap assessments",
)


def _count(uow: UnitOfWork, stmt: Select[Any]) -> int:
    with uow.read():
        return int(uow.session.scalar(stmt) or 0)


def _tables(uow: UnitOfWork) -> dict[str, int]:
    models = (Incident, Capa, CapaAction, AuditFinding, Audit, GateReview, Risk, SoaEntry)
    out = {m.__tablename__: _count(uow, select(func.count()).select_from(m)) for m in models}
    out["approval_request"] = _count(uow, select(func.count()).select_from(ApprovalRequest))
    out["evidence"] = _count(uow, select(func.count()).select_from(Evidence))
    return out


def test_history_gives_the_last_quarter_review_real_figures(
    org: UnitOfWork, actor: Actor, run_cli: Any, tmp_path: Any
) -> None:
    added = load_demo(org, actor, history=True)
    assert all(added[label] > 0 for label in HISTORY), added

    # The pack of the default period, as `aims review prepare` builds it.
    review = reviews.prepare(org, None, tmp_path / "pack", actor)
    assert review.period == reviews.default_period(None, org.settings.timezone)
    perf = review.inputs["performance"]
    counts = figures_counted(org, review.period)
    assert min(counts["incidents"], counts["capas_opened"], counts["findings"]) > 0
    assert figures_of(perf) == counts
    assert (perf["soa_decided"], perf["soa_controls"]) == (38, 38)
    assert len(perf["audits_closed"]) == 1  # the quarter's internal audit, closed
    assert review.inputs["actions"], "the earlier review's decisions are reported under a)"
    assert (tmp_path / "pack" / f"management-review-{review.period}.html").is_file()

    # Loading again adds nothing.
    before = _tables(org)
    again = load_demo(org, actor, history=True)
    assert {label: again[label] for label in HISTORY} == dict.fromkeys(HISTORY, 0)
    assert _tables(org) == before

    # Settled: nothing waits on anyone but one CAPA action due next month (and the plan).
    now = datetime.now(UTC)
    assert _count(org, select(func.count()).select_from(Incident).where(
        Incident.status != IncidentStatus.closed)) == 0  # fmt: skip
    assert _count(org, select(func.count()).select_from(RegulatoryClock).where(
        RegulatoryClock.status != ClockStatus.met)) == 0  # fmt: skip
    assert _count(org, select(func.count()).select_from(ApprovalRequest).where(
        ApprovalRequest.status == ApprovalStatus.open)) == 0  # fmt: skip
    assert _count(org, select(func.count()).select_from(Notification).where(
        Notification.status == NotificationStatus.queued)) == 0  # fmt: skip
    with org.read():
        open_actions = org.session.scalars(
            select(CapaAction.due_at)
            .join(Capa, Capa.id == CapaAction.capa_id)
            .where(CapaAction.done_at.is_(None), Capa.status != CapaStatus.closed)
        ).all()
        past_audits = org.session.scalars(
            select(Audit.status).where(Audit.completed_at.is_not(None))
        ).all()
    assert len(open_actions) == 1 and as_utc(open_actions[0]) > now
    assert past_audits and set(past_audits) == {AuditStatus.closed}

    # The gap report and status show content.
    gap_report = run_cli("gap", "report", "--output", str(tmp_path / "gap"))
    assert gap_report.exit_code == 0, gap_report.output
    markdown = next((tmp_path / "gap").glob("*.md")).read_text("utf-8")
    assert "1 not conforming" in markdown
    assert "| A.2.4 Review of the AI policy | not conforming |" in markdown
    status = run_cli("status")
    assert status.exit_code == 0, status.output
    assert "nothing waiting" not in status.output
