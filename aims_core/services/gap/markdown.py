"""The assessment as Markdown: what the approval keeps as evidence, and the body of the report.

`approval.record_decision` renders it inside its transaction, so it reads nothing but what it is
given and the session's plan tasks. Jinja2 is imported only when something is rendered.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import select

from aims_core.models import PlanTask
from aims_core.rules.gap import areas, describe
from aims_core.services import plan
from aims_core.services.gap.schemas import GapAssessmentOut, TrendPoint
from aims_core.services.plan import TaskOut
from aims_core.uow import UnitOfWork

#: Heat-map colour per status (and its value on the map's scale).
STATUSES: Final = (
    ("conforming", "#1a7f37"),
    ("partially-conforming", "#bf8700"),
    ("not-conforming", "#cf222e"),
    ("not-applicable", "#8c959f"),
    ("not-assessed", "#eaeef2"),
)


def _counts(a: GapAssessmentOut) -> dict[str, int]:
    out = {s: 0 for s, _ in STATUSES}
    for r in a.requirements:
        out[r.status or "not-assessed"] += 1
    return out


def _context(
    a: GapAssessmentOut, tasks: list[TaskOut], trend: list[TrendPoint], charts: list[Any]
) -> dict[str, Any]:
    titles = dict(areas())
    return {
        "a": a,
        "counts": _counts(a),
        "areas": [
            {
                "id": area,
                "title": titles[area],
                "requirements": [r for r in a.requirements if r.area == area],
            }
            for area, _ in areas()
        ],
        "maturity": a.maturity,
        "tasks": tasks,
        "trend": trend,
        "charts": charts,
        "describe": describe,
    }


def render_markdown(
    uow: UnitOfWork, a: GapAssessmentOut, tasks: list[TaskOut] | None = None
) -> str:
    """The record as Markdown (no charts), from `a` and the session's plan tasks only."""
    from aims_core.reports import render  # Jinja2: only when rendering

    if tasks is None:
        rows = uow.session.scalars(
            select(PlanTask).where(PlanTask.assessment_id == a.id).order_by(PlanTask.rank)
        )
        tasks = [plan._task_out(t, a.approved_at or a.created_at) for t in rows]
    return render("gap_report.md.j2", **_context(a, tasks, [], []))
