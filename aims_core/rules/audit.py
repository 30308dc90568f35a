"""The internal audit policy (data: `aims_core/data/audit_policy.yaml`): the areas requirements
are audited in, what makes an area yearly, who approves the report, who owns a finding's CAPA."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints

from aims_core import catalog
from aims_core.models import ControlKind, RiskTier
from aims_core.rules.loading import DataFileInvalid, Strict, load_data_file, parse_data_file
from aims_core.settings import Settings

POLICY_FILE: Final = "audit_policy.yaml"
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=120)]


class AuditPolicyInvalid(DataFileInvalid):
    field_name = "audit_policy"


class AuditArea(Strict):
    """A group of requirements audited together, and the activities whose people did that work."""

    id: Slug
    title: str = Field(min_length=1, max_length=120)
    requirements: list[str] = Field(min_length=1)
    activities: list[Slug] = Field(default_factory=list)
    system_facing: bool = False

    def matches(self, requirement: str) -> int:
        """How specifically this area claims `requirement` (0: not at all)."""
        best = 0
        for prefix in self.requirements:
            if requirement == prefix or requirement.startswith(prefix + "."):
                best = max(best, len(prefix))
        return best


class Weighting(Strict):
    high_risk_tiers: list[RiskTier] = Field(default_factory=lambda: [RiskTier.high])
    nonconformity_months: int = Field(default=12, ge=1, le=60)
    incident_requirements: list[str] = Field(default_factory=list)


class ReportApproval(Strict):
    activity: Slug
    approver_roles: list[str] = Field(min_length=1)
    quorum: int = Field(default=1, ge=1)
    deadline_days: int | None = Field(default=None, ge=1, le=365)


#: How someone's own work can be in an audit (9.2.2): owning a sampled AI system, or being
#: Responsible / Accountable (RACI) for an activity of an area in scope.
OwnWork = Literal["system-owner", "responsible", "accountable"]


class Fieldwork(Strict):
    """The fieldwork asks: the audit's auditor answers (a finding, or fieldwork complete); people
    whose own work the audit looks at (`impartiality`) are excluded, with why. The same list
    decides whether an auditor may be assigned."""

    activity: Slug = "internal-audit"
    impartiality: list[OwnWork] = Field(
        default_factory=lambda: ["system-owner", "responsible", "accountable"]
    )


class AuditPolicy(Strict):
    periods_per_year: int = Field(default=4)
    auditor_role: str = "internal-auditor"
    systems_per_audit: int = Field(default=3, ge=0, le=50)
    weighting: Weighting = Field(default_factory=Weighting)
    report_approval: ReportApproval
    capa_owner_role: str = "governance-lead"
    fieldwork: Fieldwork = Field(default_factory=Fieldwork)
    areas: list[AuditArea] = Field(min_length=1)

    def area_of(self, requirement: str) -> AuditArea | None:
        scored = [(a.matches(requirement), a) for a in self.areas]
        best = max(scored, key=lambda x: x[0])
        return best[1] if best[0] else None

    def area(self, area_id: str) -> AuditArea:
        return next(a for a in self.areas if a.id == area_id)

    def problems(self) -> list[str]:
        """What a schema cannot check: the catalog, the roles, the cover of every requirement."""
        out: list[str] = []
        if self.periods_per_year not in (1, 2, 4, 12):
            out.append("periods_per_year: must be 1, 2, 4 or 12 (years, halves, quarters, months)")
        known_roles = {r.id for r in catalog.roles()}
        named = [
            ("auditor_role", self.auditor_role),
            ("capa_owner_role", self.capa_owner_role),
            *(("report_approval.approver_roles", r) for r in self.report_approval.approver_roles),
        ]
        out += [
            f"{field}: unknown role '{role}' (roles: {', '.join(sorted(known_roles))})"
            for field, role in named
            if role not in known_roles
        ]
        ids = {r.id for r in catalog.requirements()}
        seen: set[str] = set()
        for i, area in enumerate(self.areas):
            if area.id in seen:
                out.append(f"areas[{i}].id: '{area.id}' is used twice")
            seen.add(area.id)
            out += [
                f"areas[{i}].requirements: '{r}' is no clause or control of the catalog, nor "
                "the start of one's id"
                for r in area.requirements
                if not any(x == r or x.startswith(r + ".") for x in ids)
            ]
        out += [
            f"weighting.incident_requirements: no clause or control '{r}' in the catalog"
            for r in self.weighting.incident_requirements
            if r not in ids
        ]
        uncovered = [r.id for r in auditable() if self.area_of(r.id) is None]
        if uncovered:
            out.append(f"areas: no area covers {', '.join(uncovered)}")
        return out


def parse_audit_policy(text: str, source: str = POLICY_FILE) -> AuditPolicy:
    """Parse and check a document; AuditPolicyInvalid lists every problem found."""
    return parse_data_file(AuditPolicy, text, source, AuditPolicyInvalid)


def audit_policy(settings: Settings) -> AuditPolicy:
    """The policy in force: the organisation's file in the data dir if present, else the
    shipped default."""
    return load_data_file(settings, AuditPolicy, POLICY_FILE, AuditPolicyInvalid)


def auditable() -> list[catalog.Requirement]:
    """What the programme must cover: every clause row (sub-clauses included) and every Annex A
    control (objectives are headings of their controls)."""
    return [r for r in catalog.requirements() if r.kind is not ControlKind.annex_objective]
