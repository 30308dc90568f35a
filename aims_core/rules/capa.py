"""The CAPA policy (data): when effectiveness is verified and by whom, when action owners are
reminded and overdue actions escalated, and who approves a closure (ISO/IEC 42001 10.2).

Shipped as `aims_core/data/capa_policy.yaml`, overridable by `capa_policy.yaml` in the data dir;
read and checked by the common loader (`aims_core.rules.loading`).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Final

from pydantic import Field, StringConstraints

from aims_core.models import as_utc
from aims_core.rules.loading import (
    DataFileInvalid,
    Strict,
    load_data_file,
    parse_data_file,
    unknown_roles,
)
from aims_core.settings import Settings

__all__ = [
    "POLICY_FILE",
    "CapaPolicy",
    "CapaPolicyInvalid",
    "ClosurePolicy",
    "StepsPolicy",
    "TrackingPolicy",
    "VerificationPolicy",
    "capa_policy",
    "parse_capa_policy",
]

POLICY_FILE: Final = "capa_policy.yaml"

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]


class CapaPolicyInvalid(DataFileInvalid):
    field_name = "capa_policy"


class VerificationPolicy(Strict):
    after_days: int = Field(ge=0, le=3650)
    verifier_roles: list[Label] = Field(default_factory=list)
    owner_may_verify: bool = False


class TrackingPolicy(Strict):
    remind_days_before: list[int] = Field(default_factory=list)
    escalate_days_after: int = Field(default=0, ge=0, le=365)
    escalation_role: Label | None = None

    def reminder_times(self, due_at: datetime) -> list[datetime]:
        """When each reminder of an action falls due: 00:00 UTC on the day N days before the
        due date, earliest first."""
        day = datetime.combine(as_utc(due_at).date(), time.min, UTC)
        return [day - timedelta(days=d) for d in sorted(set(self.remind_days_before), reverse=True)]

    def escalation_time(self, due_at: datetime) -> datetime:
        return as_utc(due_at) + timedelta(days=self.escalate_days_after)


class ClosurePolicy(Strict):
    activity: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=120)]
    approver_roles: list[Label] = Field(min_length=1)
    quorum: int = Field(default=1, ge=1)
    deadline_days: int | None = Field(default=None, ge=1, le=365)


class StepsPolicy(Strict):
    """Who may answer a CAPA's own steps besides the people the CAPA names (its owner for
    containment, root cause and the action plan; an action's owner and the CAPA's owner for that
    action's completion): holders of these roles, e.g. to stand in for an owner who is away."""

    stand_in_roles: list[Label] = Field(default_factory=list)


class CapaPolicy(Strict):
    verification: VerificationPolicy
    tracking: TrackingPolicy
    closure: ClosurePolicy
    steps: StepsPolicy = StepsPolicy()

    def problems(self) -> list[str]:
        """What a schema cannot check: role ids must be in the role catalog, days non-negative."""
        out = [
            *unknown_roles("verification.verifier_roles", self.verification.verifier_roles),
            *unknown_roles("closure.approver_roles", self.closure.approver_roles),
            *unknown_roles("steps.stand_in_roles", self.steps.stand_in_roles),
        ]
        if self.tracking.escalation_role:
            out += unknown_roles("tracking.escalation_role", [self.tracking.escalation_role])
        if any(d < 0 for d in self.tracking.remind_days_before):
            out.append("tracking.remind_days_before: days must not be negative")
        return out


def parse_capa_policy(text: str, source: str = POLICY_FILE) -> CapaPolicy:
    """Parse and check a policy document; CapaPolicyInvalid lists every problem found."""
    return parse_data_file(CapaPolicy, text, source, CapaPolicyInvalid)


def capa_policy(settings: Settings) -> CapaPolicy:
    """The policy in force: the organisation's file in the data dir if present, else the
    shipped default."""
    return load_data_file(settings, CapaPolicy, POLICY_FILE, CapaPolicyInvalid)
