"""Progress toward certification: the trend across approved assessments, and per requirement
whether the records an auditor asks for exist (read only)."""

from __future__ import annotations

from datetime import datetime

from aims_core import catalog
from aims_core.models import GapStatus
from aims_core.rules.gap import Conformity, assessable, prefill_rules
from aims_core.services.gap.prefill import probe
from aims_core.services.gap.queries import latest_approved, list_assessments
from aims_core.services.gap.schemas import (
    Readiness,
    ReadinessRow,
    TrendPoint,
    _now,
)
from aims_core.uow import UnitOfWork


def trends(uow: UnitOfWork) -> list[TrendPoint]:
    """Approved assessments, oldest first: overall level, share conforming, level per area."""
    points = []
    for a in reversed(list_assessments(uow)):
        if a.status is not GapStatus.approved or a.maturity is None or a.approved_at is None:
            continue
        applicable = [r for r in a.requirements if r.status != Conformity.not_applicable]
        conforming = sum(1 for r in applicable if r.status == Conformity.conforming)
        points.append(
            TrendPoint(
                assessment_id=a.id,
                approved_at=a.approved_at,
                overall=a.maturity.overall,
                conforming_pct=round(100 * conforming / len(applicable), 1) if applicable else 0,
                levels=a.maturity.levels(),
            )
        )
    return points


def readiness(uow: UnitOfWork, now: datetime | None = None) -> Readiness:
    """Per requirement: what an auditor asks for and whether the records exist, and one
    percentage. Listed checks run their probe now; the rest count as ready when the latest
    approved assessment says they conform or do not apply (with their evidence links)."""
    at = _now(now)
    rules = prefill_rules(uow.settings)
    checks = {item.requirement: item for item in rules.readiness}
    latest = latest_approved(uow)
    answers = latest.by_id() if latest else {}
    kinds = catalog.evidence_kinds().values()
    by_id = {r.id: r for r in catalog.requirements()}
    rows = []
    for req in assessable():
        item = checks.get(req.id)
        if item is not None:
            found = probe(uow, item.probe, item.params, at)
            rows.append(
                ReadinessRow(
                    requirement=req.id,
                    title=req.title,
                    asks=item.asks,
                    ready=found.state == "found",
                    records=found.records or ["none found"],
                )
            )
            continue
        asked = [k.title for k in kinds if req.id in k.controls or req.parent in k.controls]
        ans = answers.get(req.id)
        ok = ans is not None and ans.status in (Conformity.conforming, Conformity.not_applicable)
        records = [f"assessment #{latest.id}: {ans.shown_status}"] if latest and ans else []
        records += ans.evidence if ans else []
        rows.append(
            ReadinessRow(
                requirement=req.id,
                title=by_id[req.id].title,
                asks=", ".join(asked) or "Documented information showing the requirement is met",
                ready=ok,
                records=records or ["no approved gap assessment says so"],
            )
        )
    percent = round(100 * sum(r.ready for r in rows) / len(rows), 1) if rows else 0.0
    return Readiness(assessment_id=latest.id if latest else None, rows=rows, percent=percent)
