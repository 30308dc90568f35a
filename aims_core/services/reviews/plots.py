"""The pack's charts, each drawn from the gathered figures (matplotlib, through
`aims_core.report_assets`, which imports it only when a chart is drawn)."""

from __future__ import annotations

from aims_core.report_assets import bars, figure, png
from aims_core.services.reviews.schemas import ReviewInputs, pct


def _capa_chart(inputs: ReviewInputs) -> bytes:
    fig, ax = figure()
    trend = inputs.performance.capa_trend
    x = range(len(trend))
    ax.bar([i - 0.2 for i in x], [m.opened for m in trend], 0.4, label="opened", color="#cf222e")
    ax.bar([i + 0.2 for i in x], [m.closed for m in trend], 0.4, label="closed", color="#1a7f37")
    ax.set_xticks(list(x), [m.month[2:] for m in trend], rotation=45, fontsize=8)
    ax.set_title("Corrective actions opened and closed per month")
    ax.set_ylabel("CAPAs")
    ax.legend()
    return png(fig)


def _risk_chart(inputs: ReviewInputs) -> bytes:
    fig, ax = figure()
    perf = inputs.performance
    tiers = sorted({r.tier for r in perf.risk_posture}) or ["(none)"]
    bands = list(dict.fromkeys(r.band for r in perf.risk_posture))
    colors = {"low": "#1a7f37", "medium": "#bf8700", "high": "#d1242f", "critical": "#6e011a"}
    bottom = [0] * len(tiers)
    for band in bands:
        values = [
            sum(r.risks for r in perf.risk_posture if r.tier == t and r.band == band) for t in tiers
        ]
        ax.bar(tiers, values, bottom=bottom, label=band, color=colors.get(band))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title("Open risks by system risk tier and score band")
    ax.set_ylabel("risks")
    ax.set_ylim(0, max([*bottom, 1]) * 1.2)
    if bands:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no open risks", transform=ax.transAxes, ha="center")
    return png(fig)


def _compliance_chart(inputs: ReviewInputs) -> bytes:
    fig, ax = figure()
    perf = inputs.performance
    labels = ["training compliance", "SoA decided", "SoA applicable"]
    values = [
        perf.training_compliance_pct or 0.0,
        perf.soa_coverage_pct or 0.0,
        pct(perf.soa_applicable, perf.soa_controls) or 0.0,
    ]
    bars = ax.barh(labels, values, color=["#0969da", "#8250df", "#bf3989"])
    ax.bar_label(bars, fmt="%.1f %%")
    ax.set_xlim(0, 110)
    ax.set_xlabel("%")
    ax.set_title(
        f"Training ({perf.training_current}/{perf.training_required} current) and "
        f"SoA ({perf.soa_decided}/{perf.soa_controls} decided)"
    )
    return png(fig)


def charts(inputs: ReviewInputs) -> dict[str, tuple[str, bytes]]:
    """Chart name -> (caption, PNG), each drawn from the gathered figures."""
    perf = inputs.performance
    return {
        "incidents-by-severity": (
            "Incidents by severity",
            bars("Incidents by severity", perf.incidents_by_severity, "incidents", "#d1242f"),
        ),
        "capa-trend": ("CAPAs opened and closed, last four quarters", _capa_chart(inputs)),
        "risk-posture": ("Risk posture by tier", _risk_chart(inputs)),
        "compliance": ("Training compliance and SoA coverage", _compliance_chart(inputs)),
        "findings-by-kind": (
            "Audit findings by kind",
            bars("Audit findings by kind", perf.findings_by_kind, "findings", "#8250df"),
        ),
        "gates-by-outcome": (
            "Gate reviews by outcome",
            bars("Gate reviews by outcome", perf.gates_by_outcome, "gate reviews", "#0969da"),
        ),
    }
