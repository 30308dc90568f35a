"""The gap report and the plan workbook: Jinja2 (HTML + Markdown) with a conformity heat-map and
a maturity chart, and an Excel workbook (assessment, plan, RACI) in the shape compliance teams
keep in spreadsheets — generated from the records, so it is current whenever it is written.

The report reads the assessment modules; they never read it (the Markdown the approval keeps as
evidence comes from `gap.markdown`). Jinja2, matplotlib, pandas and openpyxl are imported only
inside the functions that draw or write.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Final

from aims_core.errors import InvalidInput
from aims_core.report_assets import embed, figure, frame, kv, png
from aims_core.rules.gap import areas, describe
from aims_core.services import plan, raci
from aims_core.services.gap.certification import trends
from aims_core.services.gap.markdown import STATUSES, _context, _counts, render_markdown
from aims_core.services.gap.queries import get
from aims_core.services.gap.schemas import GapAssessmentOut, TrendPoint
from aims_core.services.plan import TaskOut
from aims_core.uow import UnitOfWork

__all__ = [
    "PLAN_COLUMNS",
    "STATUSES",
    "heatmap",
    "maturity_chart",
    "render_markdown",
    "trend_chart",
    "write_report",
    "write_workbook",
]


PLAN_COLUMNS: Final = [
    "id",
    "rank",
    "phase",
    "milestone",
    "requirement",
    "title",
    "priority",
    "owner",
    "due_at",
    "status",
    "depends_on",
    "evidence_kind",
    "evidence_id",
]


# --- charts ------------------------------------------------------------------------------------


def heatmap(a: GapAssessmentOut) -> bytes:
    """Conformity by clause and control objective: one row per area, one cell per requirement."""
    from matplotlib.colors import ListedColormap

    rows = [(area, [r for r in a.requirements if r.area == area]) for area, _ in areas()]
    width = max(len(reqs) for _, reqs in rows)
    order = {s: i for i, (s, _) in enumerate(STATUSES)}
    grid = [
        [order[r.status or "not-assessed"] for r in reqs] + [float("nan")] * (width - len(reqs))
        for _, reqs in rows
    ]
    fig, ax = figure((7.5, 5.2))
    ax.imshow(grid, cmap=ListedColormap([c for _, c in STATUSES]), vmin=0, vmax=len(STATUSES) - 1)
    for y, (_, reqs) in enumerate(rows):
        for x, r in enumerate(reqs):
            ax.text(
                x,
                y,
                r.requirement.split(".", 1)[-1] if "." in r.requirement else r.requirement,
                ha="center",
                va="center",
                fontsize=5.5,
            )
    ax.set_yticks(
        range(len(rows)), [f"{area} {dict(areas())[area][:28]}" for area, _ in rows], fontsize=7
    )
    ax.set_xticks([])
    ax.set_title(f"Gap assessment #{a.id}: conformity by clause and control objective")
    from matplotlib.patches import Patch

    ax.legend(
        handles=[Patch(color=c, label=describe(s)) for s, c in STATUSES],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncol=3,
        fontsize=7,
        frameon=False,
    )
    return png(fig)


def maturity_chart(a: GapAssessmentOut) -> bytes:
    """Maturity level 1-5 per clause and per Annex A objective, with the overall level."""
    assert a.maturity is not None
    fig, ax = figure((7.0, 4.2))
    labels = [m.area for m in a.maturity.areas]
    colors = ["#0969da" if m.kind == "clause" else "#8250df" for m in a.maturity.areas]
    drawn = ax.barh(labels, [m.level for m in a.maturity.areas], color=colors)
    ax.bar_label(drawn, labels=[m.name for m in a.maturity.areas], fontsize=7, padding=2)
    ax.axvline(a.maturity.overall, color="#cf222e", linestyle="--", label="overall")
    ax.invert_yaxis()
    ax.set_xlim(0, 6)
    ax.set_xticks([1, 2, 3, 4, 5])
    ax.set_xlabel("maturity level")
    ax.set_title(f"Maturity: overall {a.maturity.overall} ({a.maturity.overall_name})")
    ax.legend(fontsize=7)
    return png(fig)


def trend_chart(trend: list[TrendPoint]) -> bytes:
    fig, ax = figure()
    x = [f"#{t.assessment_id}\n{t.approved_at:%Y-%m-%d}" for t in trend]
    ax.plot(x, [t.overall for t in trend], marker="o", color="#0969da", label="overall level")
    ax.set_ylim(0, 5.5)
    ax.set_ylabel("maturity level")
    ax2 = ax.twinx()
    ax2.plot(
        x, [t.conforming_pct for t in trend], marker="s", color="#1a7f37", label="% conforming"
    )
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("% conforming")
    ax.set_title("Trend across approved gap assessments")
    return png(fig)


# --- files -------------------------------------------------------------------------------------


def _atomic(path: Path, write: Any) -> None:
    """Write beside the target and move into place: a failure never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_workbook(uow: UnitOfWork, assessment_id: int, path: Path) -> list[TaskOut]:
    """Assessment, Plan (one row per open gap: phase, milestone, owner, due, status,
    requirement) and RACI sheets; returns the plan's tasks."""
    import pandas as pd

    plan.export_path_check(path)
    a = get(uow, assessment_id)
    tasks = plan.list_tasks(uow, assessment_id=assessment_id)
    assessment = pd.DataFrame(
        [
            {
                "requirement": r.requirement,
                "area": r.area,
                "title": r.title,
                "suggested": r.suggested_status or "",
                "records": "; ".join(r.suggested_records),
                "status": r.shown_status,
                "note": r.note,
                "evidence": ", ".join(r.evidence),
                "answered_by": r.answered_by or "",
            }
            for r in a.requirements
        ]
    )
    plan_rows = frame(tasks, PLAN_COLUMNS)
    plan_rows["depends_on"] = plan_rows["depends_on"].map(", ".join)
    plan_rows["status"] = plan_rows["status"].map(str)
    raci_rows = pd.DataFrame(
        [
            {
                "activity": r.activity,
                "system": r.system or "(organisation)",
                "responsible": ", ".join(r.responsible),
                "accountable": r.accountable,
                "consulted": ", ".join(r.consulted),
                "informed": ", ".join(r.informed),
            }
            for r in raci.show_raci(uow)
        ],
        columns=["activity", "system", "responsible", "accountable", "consulted", "informed"],
    )
    maturity = pd.DataFrame(
        [(m.area, m.title, m.kind, m.score, m.level, m.name) for m in a.maturity.areas]
        if a.maturity
        else [],
        columns=["area", "title", "kind", "score", "level", "name"],
    )
    summary = kv(
        [
            ("assessment", a.id),
            ("status", a.status.value),
            ("assessor", a.assessor),
            ("overall maturity", a.maturity.overall if a.maturity else None),
            *((f"requirements {describe(k)}", v) for k, v in _counts(a).items()),
            ("plan tasks", len(tasks)),
            ("plan tasks open", sum(t.status == "open" for t in tasks)),
            ("times", "UTC"),
        ]
    )

    def write(tmp: Path) -> None:
        with pd.ExcelWriter(tmp, engine="openpyxl") as xl:
            for name, df in (
                ("Summary", summary),
                ("Assessment", assessment),
                ("Maturity", maturity),
                ("Plan", plan_rows),
                ("RACI", raci_rows),
            ):
                df.to_excel(xl, sheet_name=name, index=False)
                xl.sheets[name].freeze_panes = "A2"

    _atomic(path, write)
    return tasks


def write_report(uow: UnitOfWork, assessment_id: int, out_dir: Path) -> dict[str, Path]:
    """The gap report (HTML with charts embedded, Markdown with PNGs beside it) and the
    workbook, in `out_dir`; returns the files by format."""
    from aims_core.reports import render  # Jinja2: only when rendering

    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInput(f"{out_dir} is not a directory", "output")
    a = get(uow, assessment_id)
    tasks = plan.list_tasks(uow, assessment_id=assessment_id)
    trend = trends(uow)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = f"gap-assessment-{a.id}"
    drawn = {
        "heatmap": ("Conformity by clause and control objective", heatmap(a)),
        "maturity": ("Maturity per clause and Annex A objective", maturity_chart(a)),
    }
    if len(trend) > 1:
        drawn["trend"] = ("Trend across approved assessments", trend_chart(trend))
    context = _context(a, tasks, trend, embed(drawn, out_dir, base))
    files = {"html": out_dir / f"{base}.html", "md": out_dir / f"{base}.md"}
    files["html"].write_text(render("gap_report.html.j2", **context), "utf-8")
    files["md"].write_text(render("gap_report.md.j2", **context), "utf-8")
    files["xlsx"] = out_dir / f"{base}.xlsx"
    write_workbook(uow, a.id, files["xlsx"])
    return files
