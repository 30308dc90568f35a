"""The AI risk policy as data: scales, scoring, appetite, who accepts, what reopens a gate.

Shipped as `aims_core/data/risk_policy.yaml`; an organisation overrides it with its own
`risk_policy.yaml` in the data dir. The file is checked strictly on load and every problem is
named at once (a person fixes the whole file, not one typo per attempt). No Prefect here.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints

from aims_core import catalog
from aims_core.errors import InvalidInput
from aims_core.models import LifecycleStage, RiskTier, SystemEventKind
from aims_core.rules.loading import DataFileInvalid, Strict, load_data_file, parse_data_file
from aims_core.settings import Settings

POLICY_FILE: Final = "risk_policy.yaml"
STAGE_ORDER: Final = tuple(LifecycleStage)

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]


class RiskPolicyInvalid(DataFileInvalid):
    field_name = "risk_policy"


class ScalePoint(Strict):
    value: int = Field(ge=1)
    label: Label
    description: str = ""


class Level(Strict):
    name: Label
    max: int = Field(ge=0)


class Acceptance(Strict):
    """Who approves accepting a risk whose (residual) score is above appetite."""

    approver_roles: list[Label] = Field(min_length=1)
    quorum: int = Field(default=1, ge=1)


class ReassessmentRule(Strict):
    """An event of one of `kinds` on a system of one of `tiers`, currently in one of `stages`,
    voids the approval of gate `reopen` until it is approved again."""

    kinds: list[SystemEventKind] = Field(min_length=1)
    tiers: list[RiskTier] = Field(min_length=1)
    stages: list[LifecycleStage] = Field(min_length=1)
    reopen: LifecycleStage


class RiskPolicy(Strict):
    likelihood: list[ScalePoint] = Field(min_length=2)
    impact: list[ScalePoint] = Field(min_length=2)
    scoring: Literal["product", "matrix"] = "product"
    matrix: list[list[int]] | None = None
    levels: list[Level] = Field(min_length=1)
    appetite: int = Field(ge=0)
    acceptance: Acceptance
    reassessment: list[ReassessmentRule] = Field(default_factory=list)

    # --- scoring ------------------------------------------------------------------------------

    def score(self, likelihood: int, impact: int) -> int:
        if self.matrix is not None:
            return self.matrix[likelihood - 1][impact - 1]
        return likelihood * impact

    @property
    def max_score(self) -> int:
        return self.score(len(self.likelihood), len(self.impact))

    def level(self, score: int) -> str:
        return next((lv.name for lv in self.levels if score <= lv.max), self.levels[-1].name)

    def above_appetite(self, score: int) -> bool:
        return score > self.appetite

    def check(self, scale: Literal["likelihood", "impact"], value: int, field: str) -> int:
        """`value` if it is on the scale, else an error naming the field and the scale."""
        points: list[ScalePoint] = getattr(self, scale)
        if not 1 <= value <= len(points):
            labels = ", ".join(f"{p.value} {p.label}" for p in points)
            raise InvalidInput(
                f"{value} is not on the {scale} scale 1-{len(points)} ({labels})", field=field
            )
        return value

    def label(self, scale: Literal["likelihood", "impact"], value: int | None) -> str:
        points: list[ScalePoint] = getattr(self, scale)
        return points[value - 1].label if value and 1 <= value <= len(points) else ""

    # --- triggers -----------------------------------------------------------------------------

    def reopened_gate(
        self, kind: SystemEventKind, tier: RiskTier, stage: LifecycleStage
    ) -> LifecycleStage | None:
        """The gate whose approval this event voids for this system, if any (first rule wins)."""
        for rule in self.reassessment:
            if kind in rule.kinds and tier in rule.tiers and stage in rule.stages:
                return rule.reopen
        return None

    # --- the checks a schema cannot express -----------------------------------------------------

    def problems(self) -> list[str]:
        out: list[str] = []
        for name in ("likelihood", "impact"):
            points: list[ScalePoint] = getattr(self, name)
            values = [p.value for p in points]
            if values != list(range(1, len(points) + 1)):
                out.append(f"{name}: values must be 1, 2, ... in order without gaps (got {values})")
            labels = [p.label for p in points]
            dupes = sorted({x for x in labels if labels.count(x) > 1})
            if dupes:
                out.append(f"{name}: duplicate label(s) {', '.join(dupes)}")
        shape_ok = self._check_matrix(out)
        if shape_ok:
            top = self.max_score
            maxes = [lv.max for lv in self.levels]
            if any(b <= a for a, b in itertools.pairwise(maxes)):
                out.append(f"levels: each max must be larger than the one before (got {maxes})")
            if maxes[-1] < top:
                out.append(f"levels: the last level must reach the highest score {top}")
            if self.appetite >= top:
                out.append(
                    f"appetite: {self.appetite} is not below the highest score {top}, so no risk "
                    "could ever be above it"
                )
        names = [lv.name for lv in self.levels]
        if len(set(names)) != len(names):
            out.append("levels: names must be unique")
        known = {r.id for r in catalog.roles()}
        for role in self.acceptance.approver_roles:
            if role not in known:
                out.append(
                    f"acceptance.approver_roles: unknown role '{role}' "
                    f"(roles: {', '.join(sorted(known))})"
                )
        for i, rule in enumerate(self.reassessment):
            gate = STAGE_ORDER.index(rule.reopen)
            early = [s.value for s in rule.stages if STAGE_ORDER.index(s) < gate]
            if early:
                out.append(
                    f"reassessment.{i}.stages: {', '.join(early)} come(s) before the reopened "
                    f"gate '{rule.reopen.value}': a system there has not passed that gate yet"
                )
        return out

    def _check_matrix(self, out: list[str]) -> bool:
        if self.scoring == "product":
            if self.matrix is not None:
                out.append("matrix: only with `scoring: matrix`")
            return True
        if self.matrix is None:
            out.append("matrix: required with `scoring: matrix`")
            return False
        rows, cols = len(self.likelihood), len(self.impact)
        if len(self.matrix) != rows or any(len(r) != cols for r in self.matrix):
            out.append(
                f"matrix: needs {rows} rows (likelihood) of {cols} scores (impact), "
                f"got {[len(r) for r in self.matrix]}"
            )
            return False
        if any(v < 0 for r in self.matrix for v in r):
            out.append("matrix: scores must not be negative")
        return True


def parse_risk_policy(text: str, source: str = POLICY_FILE) -> RiskPolicy:
    """Parse and check a policy document; RiskPolicyInvalid lists every problem found."""
    return parse_data_file(RiskPolicy, text, source, RiskPolicyInvalid)


def risk_policy(settings: Settings) -> RiskPolicy:
    """The policy in force: the organisation's file in the data dir if present, else the
    shipped default (an edit takes effect at the next command or run, without a restart)."""
    return load_data_file(settings, RiskPolicy, POLICY_FILE, RiskPolicyInvalid)
