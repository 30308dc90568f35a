"""Gap assessment policy as data: the pre-fill rules, the maturity rule and the plan.

Three files in `aims_core/data/` (an organisation may put its own beside its database, see
`aims_core.rules.loading`): `gap_prefill.yaml` (which records suggest which status for which
requirement, and what an auditor asks for), `gap_maturity.yaml` (level 1-5 per area and overall)
and `gap_plan.yaml` (approval, phases, priorities, owners, closing evidence, tracking). Each is
checked on load with every problem named, so an edited file fails before an assessment uses it.
"""

from __future__ import annotations

import enum
import functools
import math
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StringConstraints

from aims_core import catalog
from aims_core.models import ControlKind
from aims_core.rules.loading import DataFileInvalid, Strict, load_data_file, unknown_roles
from aims_core.settings import Settings

PREFILL_FILE: Final = "gap_prefill.yaml"
MATURITY_FILE: Final = "gap_maturity.yaml"
PLAN_FILE: Final = "gap_plan.yaml"

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
Pattern = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class Conformity(enum.StrEnum):
    """What an assessor records for a requirement."""

    conforming = "conforming"
    partially_conforming = "partially-conforming"
    not_conforming = "not-conforming"
    not_applicable = "not-applicable"


GAPS: Final = (Conformity.partially_conforming, Conformity.not_conforming)
Assessed = Literal["conforming", "partially-conforming", "not-conforming"]
Suggestable = Literal["conforming", "partially-conforming", "not-conforming", "not-applicable"]

#: The checks a rule may run (implemented in aims_core.services.gap); each finds records
#: `found`, `stale` (out of date, incomplete) or `missing`.
Probe = Literal[
    "approved-policy",
    "raci",
    "context",
    "inventory",
    "soa",
    "soa-exclusions",
    "risk-register",
    "impact-assessments",
    "trainings",
    "audit-programme",
    "audit-done",
    "management-review",
    "no-major-nonconformity",
    "vendor-assessments",
]
#: Probes that find a justification per requirement: the only ones that may suggest
#: not-applicable (an exclusion needs one, 6.1.3 d).
JUSTIFYING: Final = frozenset({"soa-exclusions"})


class ProbeParams(Strict):
    policy: str | None = None
    activities: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    months: int = Field(default=12, ge=1, le=120)


@functools.cache
def assessable() -> tuple[catalog.Requirement, ...]:
    """What an assessment covers: the leaf clauses (4.1 ... 10.2) and the Annex A controls."""
    reqs = catalog.requirements()
    parents = {r.parent for r in reqs if r.parent}
    return tuple(
        r
        for r in reqs
        if r.kind is ControlKind.annex_control
        or (r.kind is ControlKind.clause and r.id not in parents)
    )


def area_of(requirement_id: str) -> str:
    """The clause (`5`) or Annex A objective (`A.6.2`) a requirement belongs to."""
    by_id = {r.id: r for r in catalog.requirements()}
    req = by_id[requirement_id]
    if req.kind is ControlKind.annex_control and req.parent:
        return req.parent
    while req.parent is not None:
        req = by_id[req.parent]
    return req.id


@functools.cache
def areas() -> tuple[tuple[str, str], ...]:
    """Every area in catalog order: (id, title) of clauses 4-10 then the Annex A objectives."""
    by_id = {r.id: r for r in catalog.requirements()}
    seen = dict.fromkeys(area_of(r.id) for r in assessable())
    return tuple((a, by_id[a].title) for a in seen)


def matches(pattern: str, requirement_id: str) -> bool:
    """`*` everything, `6.1.*` 6.1 and below it, otherwise the exact id."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        stem = pattern[:-2]
        return requirement_id == stem or requirement_id.startswith(stem + ".")
    return requirement_id == pattern


def _pattern_problems(field: str, patterns: list[str]) -> list[str]:
    ids = [r.id for r in assessable()]
    return [
        f"{field}: '{p}' matches no assessable requirement (leaf clauses, Annex A controls)"
        for p in patterns
        if not any(matches(p, i) for i in ids)
    ]


def _unknown_requirements(field: str, ids: list[str]) -> list[str]:
    known = {r.id for r in assessable()}
    return [
        f"{field}: '{i}' is not an assessable requirement (leaf clauses, Annex A controls)"
        for i in ids
        if i not in known
    ]


# --- gap_prefill.yaml --------------------------------------------------------------------------


class GapPrefillInvalid(DataFileInvalid):
    field_name = "gap_prefill"


class PrefillRule(Strict):
    probe: Probe
    params: ProbeParams = ProbeParams()
    #: Requirement ids or patterns (`A.*`): a probe finding per requirement names which.
    requirements: list[Pattern] = Field(min_length=1)
    found: Suggestable
    stale: Suggestable | None = None
    missing: Suggestable | None = None

    def covers(self) -> list[str]:
        """The assessable requirements the rule names, in catalog order."""
        return [r.id for r in assessable() if any(matches(p, r.id) for p in self.requirements)]

    def status_for(self, state: str) -> str | None:
        """The suggestion for what the probe found (None: nothing to suggest)."""
        if state == "found":
            return self.found
        if state == "stale":
            return self.stale or self.found
        return self.missing


class ReadinessItem(Strict):
    requirement: str
    asks: str = Field(min_length=1)
    probe: Probe
    params: ProbeParams = ProbeParams()


class GapPrefill(Strict):
    rules: list[PrefillRule]
    readiness: list[ReadinessItem] = Field(default_factory=list)

    def problems(self) -> list[str]:
        out: list[str] = []
        for n, rule in enumerate(self.rules):
            out += _pattern_problems(f"rules[{n}].requirements", rule.requirements)
            if rule.probe == "approved-policy" and not rule.params.policy:
                out.append(f"rules[{n}].params.policy: approved-policy needs a policy key")
            if rule.probe not in JUSTIFYING and "not-applicable" in (
                rule.found,
                rule.stale,
                rule.missing,
            ):
                out.append(
                    f"rules[{n}]: {rule.probe} cannot suggest not-applicable (no justification "
                    f"to record; only {', '.join(sorted(JUSTIFYING))})"
                )
        for n, item in enumerate(self.readiness):
            out += _unknown_requirements(f"readiness[{n}].requirement", [item.requirement])
        return out


def prefill_rules(settings: Settings) -> GapPrefill:
    return load_data_file(settings, GapPrefill, PREFILL_FILE, GapPrefillInvalid)


# --- gap_maturity.yaml -------------------------------------------------------------------------


class GapMaturityInvalid(DataFileInvalid):
    field_name = "gap_maturity"


class Level(Strict):
    level: int = Field(ge=1, le=5)
    name: str = Field(min_length=1)
    min_score: float = Field(ge=0, le=1)


class MaturityRule(Strict):
    scores: dict[Assessed, float]
    not_assessed: float = Field(ge=0, le=1)
    levels: list[Level] = Field(min_length=5, max_length=5)
    overall: Literal["min", "mean"]

    def problems(self) -> list[str]:
        out: list[str] = []
        if [x.level for x in self.levels] != [1, 2, 3, 4, 5]:
            out.append("levels: list levels 1 to 5, in order")
        mins = [x.min_score for x in self.levels]
        if mins != sorted(mins) or len(set(mins)) != len(mins):
            out.append("levels: min_score must rise from level to level")
        elif mins[0] != 0:
            out.append("levels[0].min_score: level 1 must start at 0 (every area has a level)")
        missing = set(Assessed.__args__) - set(self.scores)  # type: ignore[attr-defined]
        out += [f"scores.{m}: missing" for m in sorted(missing)]
        out += [
            f"scores.{k}: must be from 0 to 1" for k, v in self.scores.items() if not 0 <= v <= 1
        ]
        return out

    def score(self, statuses: list[str | None]) -> float | None:
        """The mean score of an area's requirements (None: all not applicable)."""
        counted = [
            self.not_assessed if s is None else self.scores[s]  # type: ignore[index]
            for s in statuses
            if s != Conformity.not_applicable
        ]
        return sum(counted) / len(counted) if counted else None

    def level(self, score: float) -> int:
        return max(x.level for x in self.levels if score + 1e-9 >= x.min_score)

    def name(self, level: int) -> str:
        return self.levels[level - 1].name

    def overall_level(self, levels: list[int]) -> int:
        if not levels:
            return 1
        if self.overall == "min":
            return min(levels)
        return math.floor(sum(levels) / len(levels))


def maturity_rule(settings: Settings) -> MaturityRule:
    return load_data_file(settings, MaturityRule, MATURITY_FILE, GapMaturityInvalid)


# --- gap_plan.yaml -----------------------------------------------------------------------------


class GapPlanInvalid(DataFileInvalid):
    field_name = "gap_plan"


Priority = Literal["high", "medium", "low"]


class ApprovalRule(Strict):
    activity: Slug
    approver_roles: list[str] = Field(min_length=1)
    quorum: int = Field(ge=1, le=10)


class Phase(Strict):
    id: Slug
    title: str = Field(min_length=1)
    milestone: str = Field(min_length=1)
    requirements: list[Pattern] = Field(min_length=1)
    due_days: dict[Priority, int]


class PriorityRule(Strict):
    points: dict[Literal["not-conforming", "partially-conforming"], int]
    regulatory_points: int = Field(ge=0)
    regulatory: list[Pattern] = Field(default_factory=list)
    high_risk_points: int = Field(ge=0)
    high_risk: list[Pattern] = Field(default_factory=list)
    bands: dict[Priority, int]

    def points_for(self, requirement_id: str, status: str, high_risk_systems: bool) -> int:
        points = self.points.get(status, 0)  # type: ignore[call-overload]
        if any(matches(p, requirement_id) for p in self.regulatory):
            points += self.regulatory_points
        if high_risk_systems and any(matches(p, requirement_id) for p in self.high_risk):
            points += self.high_risk_points
        return int(points)

    def band(self, points: int) -> Priority:
        reached = [(m, b) for b, m in self.bands.items() if points >= m]
        return max(reached)[1] if reached else "low"


class OwnerRule(Strict):
    activity: Slug
    requirements: list[Pattern] = Field(min_length=1)


class EvidenceRule(Strict):
    kind: Slug
    requirements: list[Pattern] = Field(min_length=1)


class Tracking(Strict):
    remind_days_before: list[int] = Field(default_factory=list)
    escalate_days_after: int = Field(ge=0, le=365)
    escalation_role: str


class GapPlan(Strict):
    approval: ApprovalRule
    phases: list[Phase] = Field(min_length=1)
    priority: PriorityRule
    depends_on: dict[str, list[str]] = Field(default_factory=dict)
    owners: list[OwnerRule] = Field(default_factory=list)
    default_activity: Slug
    fallback_role: str
    closing_evidence: list[EvidenceRule] = Field(default_factory=list)
    default_evidence: Slug
    tracking: Tracking

    def problems(self) -> list[str]:
        out = unknown_roles("approval.approver_roles", self.approval.approver_roles)
        out += unknown_roles("fallback_role", [self.fallback_role])
        out += unknown_roles("tracking.escalation_role", [self.tracking.escalation_role])
        ids = [p.id for p in self.phases]
        if len(set(ids)) != len(ids):
            out.append("phases: duplicate phase id")
        for n, phase in enumerate(self.phases):
            out += _pattern_problems(f"phases[{n}].requirements", phase.requirements)
            missing = {"high", "medium", "low"} - set(phase.due_days)
            out += [f"phases[{n}].due_days.{m}: missing" for m in sorted(missing)]
            out += [
                f"phases[{n}].due_days.{k}: must be at least 1 day"
                for k, v in phase.due_days.items()
                if v < 1
            ]
        leftover = [
            r.id for r in assessable() if not any(self.phase_of(r.id) == p for p in self.phases)
        ]
        if leftover:
            out.append(f"phases: no phase takes {', '.join(leftover[:5])} (end with '*')")
        if set(self.priority.bands) != {"high", "medium", "low"}:
            out.append("priority.bands: give high, medium and low")
        out += _pattern_problems("priority.regulatory", self.priority.regulatory)
        out += _pattern_problems("priority.high_risk", self.priority.high_risk)
        for req, deps in self.depends_on.items():
            out += _unknown_requirements(f"depends_on.{req}", [req, *deps])
        for n, rule in enumerate(self.owners):
            out += _pattern_problems(f"owners[{n}].requirements", rule.requirements)
        kinds = catalog.evidence_kinds()
        for n, ev in enumerate(self.closing_evidence):
            out += _pattern_problems(f"closing_evidence[{n}].requirements", ev.requirements)
            if ev.kind not in kinds:
                out.append(f"closing_evidence[{n}].kind: unknown evidence kind '{ev.kind}'")
        if self.default_evidence not in kinds:
            out.append(f"default_evidence: unknown evidence kind '{self.default_evidence}'")
        if any(d < 0 for d in self.tracking.remind_days_before):
            out.append("tracking.remind_days_before: days must not be negative")
        return out

    def phase_of(self, requirement_id: str) -> Phase | None:
        return next(
            (p for p in self.phases if any(matches(x, requirement_id) for x in p.requirements)),
            None,
        )

    def activity_for(self, requirement_id: str) -> str:
        rule = next(
            (o for o in self.owners if any(matches(x, requirement_id) for x in o.requirements)),
            None,
        )
        return rule.activity if rule else self.default_activity

    def evidence_kind_for(self, requirement_id: str) -> str:
        """The kind of record that closes the gap (see the file's `closing_evidence`)."""
        rule = next(
            (
                e
                for e in self.closing_evidence
                if any(matches(x, requirement_id) for x in e.requirements)
            ),
            None,
        )
        if rule:
            return rule.kind
        by_id = {r.id: r for r in catalog.requirements()}
        at: str | None = requirement_id
        while at is not None:
            kind = next((k.id for k in catalog.evidence_kinds().values() if at in k.controls), None)
            if kind:
                return kind
            at = by_id[at].parent
        return self.default_evidence


def plan_policy(settings: Settings) -> GapPlan:
    return load_data_file(settings, GapPlan, PLAN_FILE, GapPlanInvalid)


def describe(value: Any) -> str:
    """`partially-conforming` → `partially conforming` (for people)."""
    return str(value).replace("-", " ")
