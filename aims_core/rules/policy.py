"""The policy governance rules (data): who approves a new version of a policy, how many of them,
and how long they have (ISO/IEC 42001 5.2, A.2.2).

Shipped as `aims_core/data/policy_governance.yaml`, overridable by `policy_governance.yaml` in
the data dir; read and checked by the common loader (`aims_core.rules.loading`).
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field, StringConstraints

from aims_core.rules.loading import Strict, load_data_file, unknown_roles
from aims_core.settings import Settings

__all__ = ["GOVERNANCE_FILE", "ApprovalPolicy", "PolicyGovernance", "governance"]

GOVERNANCE_FILE: Final = "policy_governance.yaml"

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]


class ApprovalPolicy(Strict):
    activity: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=120)]
    approver_roles: list[Label] = Field(min_length=1)
    quorum: int = Field(default=1, ge=1)
    deadline_days: int | None = Field(default=None, ge=1, le=365)


class PolicyGovernance(Strict):
    approval: ApprovalPolicy

    def problems(self) -> list[str]:
        return unknown_roles("approval.approver_roles", self.approval.approver_roles)


def governance(settings: Settings) -> PolicyGovernance:
    return load_data_file(settings, PolicyGovernance, GOVERNANCE_FILE)
