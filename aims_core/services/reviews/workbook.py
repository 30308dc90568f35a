"""The pack's Excel workbook: one sheet per 9.3.2 input, and the KPI tables behind the charts.

pandas (and openpyxl, its Excel engine) are imported when a workbook is written, not with the
service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aims_core.report_assets import frame, kv
from aims_core.services.reviews.schemas import SHEETS, Performance, ReviewInputs


def performance_rows(perf: Performance) -> list[tuple[str, Any]]:
    """The headline figures of d), in the order the pack shows them."""
    rows: list[tuple[str, Any]] = [
        ("CAPAs opened in the period", perf.capas_opened),
        ("CAPAs closed in the period", perf.capas_closed),
        ("CAPAs open at period end", perf.capas_open_at_end),
        ("Incidents (aware in the period, drills excluded)", perf.incidents),
        ("Incidents contained", perf.incidents_contained),
        ("Mean time to contain (hours)", perf.mean_time_to_contain_hours),
        ("Approvals overdue", perf.approvals_overdue),
        ("Training pairs required", perf.training_required),
        ("Training pairs current", perf.training_current),
        ("Training compliance (%)", perf.training_compliance_pct),
        ("Annex A controls", perf.soa_controls),
        ("SoA controls decided", perf.soa_decided),
        ("SoA controls applicable", perf.soa_applicable),
        ("SoA coverage (%)", perf.soa_coverage_pct),
        ("Audits closed", len(perf.audits_closed)),
        ("Risk appetite (score)", perf.risk_appetite),
    ]
    rows += [(f"Incidents {k}", v) for k, v in perf.incidents_by_severity.items()]
    rows += [(f"Findings {k}", v) for k, v in perf.findings_by_kind.items()]
    rows += [(f"Gate reviews {k}", v) for k, v in perf.gates_by_outcome.items()]
    return rows


def write_workbook(inputs: ReviewInputs, path: Path) -> None:
    """The workbook of the pack at `path`: a cover sheet, then the inputs and the KPIs."""
    import pandas as pd

    perf = inputs.performance
    ctx_cols = ["id", "kind", "change", "title", "description", "recorded_by", "recorded_at"]
    sheets = {
        SHEETS["a"]: frame(
            inputs.actions,  # type: ignore[arg-type]
            ["id", "review", "decision", "kind", "owner", "due", "status", "done_at", "outcome"],
        ),
        SHEETS["b"]: frame(inputs.issues, ctx_cols),  # type: ignore[arg-type]
        SHEETS["c"]: frame(inputs.parties, ctx_cols),  # type: ignore[arg-type]
        SHEETS["d"]: kv(performance_rows(perf)),
        SHEETS["e"]: frame(inputs.improvements, ["source", "ref", "text", "at"]),  # type: ignore[arg-type]
        "KPI CAPA trend": frame(perf.capa_trend, ["month", "opened", "closed"]),  # type: ignore[arg-type]
        "KPI incidents": pd.DataFrame(
            [("severity", k, v) for k, v in perf.incidents_by_severity.items()]
            + [("category", k, v) for k, v in perf.incidents_by_category.items()],
            columns=["by", "value", "incidents"],
        ),
        "KPI gates": pd.DataFrame(
            list(perf.gates_by_outcome.items()), columns=["outcome", "gate reviews"]
        ),
        "KPI risk posture": frame(perf.risk_posture, ["tier", "band", "risks"]),  # type: ignore[arg-type]
        "KPI residual risk": frame(
            perf.residual_by_tier,  # type: ignore[arg-type]
            ["tier", "risks", "with_residual", "mean_residual", "above_appetite"],
        ),
        "KPI audits": frame(perf.audits_closed, ["id", "period", "title", "completed_at"]),  # type: ignore[arg-type]
        "KPI training SoA": kv(
            [
                ("training required", perf.training_required),
                ("training current", perf.training_current),
                ("training compliance %", perf.training_compliance_pct),
                ("SoA controls", perf.soa_controls),
                ("SoA decided", perf.soa_decided),
                ("SoA applicable", perf.soa_applicable),
            ]
        ),
    }
    with pd.ExcelWriter(path, engine="openpyxl") as xl:
        kv(
            [
                ("period", inputs.period),
                ("from", f"{inputs.period_start.astimezone(ZoneInfo(inputs.timezone)):%Y-%m-%d}"),
                (
                    "until (exclusive)",
                    f"{inputs.period_end.astimezone(ZoneInfo(inputs.timezone)):%Y-%m-%d}",
                ),
                ("time zone", inputs.timezone),
                ("states as of", f"{inputs.as_of:%Y-%m-%d %H:%M} UTC"),
            ]
        ).to_excel(xl, sheet_name="review", index=False)
        for name, df in sheets.items():
            df.to_excel(xl, sheet_name=name, index=False)
