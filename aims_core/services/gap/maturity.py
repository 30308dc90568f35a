"""Maturity (`gap_maturity.yaml`): a level 1-5 per clause and Annex A objective, and overall.

Computed live for an assessment still open; frozen on the assessment when it is approved."""

from __future__ import annotations

from collections.abc import Mapping

from aims_core import catalog
from aims_core.rules.gap import MaturityRule, area_of, areas, assessable
from aims_core.services.gap.schemas import AreaMaturity, Maturity


def compute_maturity(rule: MaturityRule, statuses: Mapping[str, str | None]) -> Maturity:
    """Level per area and overall, by the rule (a draft computes too: nothing assessed = 1)."""
    kinds = {r.id: r.kind.value for r in catalog.requirements()}
    out: list[AreaMaturity] = []
    for area, title in areas():
        mine = [statuses.get(r.id) for r in assessable() if area_of(r.id) == area]
        counts: dict[str, int] = {}
        for st in mine:
            counts[st or "not-assessed"] = counts.get(st or "not-assessed", 0) + 1
        score = rule.score(mine)
        level = rule.level(score) if score is not None else rule.levels[-1].level
        out.append(
            AreaMaturity(
                area=area,
                title=title,
                kind="clause" if kinds[area] == "clause" else "annex-objective",
                score=None if score is None else round(score, 4),
                level=level,
                name=rule.name(level),
                counts=counts,
            )
        )
    overall = rule.overall_level([a.level for a in out])
    return Maturity(areas=out, overall=overall, overall_name=rule.name(overall))
