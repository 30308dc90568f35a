"""What goes in and comes out of the policy service, and the names its records go by.

A policy's records live on the subject `policy:<key>`; its approval run and request are named
after the key and version, so a re-run finds the same request rather than asking twice.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from aims_core import processes
from aims_core.models import ExceptionStatus, PolicyVersionStatus
from aims_core.rules.policy import Label
from aims_core.schemas import Email, SystemName

#: The approval run of a proposed version.
DEPLOYMENT: Final = processes.POLICY_APPROVAL.id
PENDING: Final = (PolicyVersionStatus.draft, PolicyVersionStatus.in_approval)
DETAILS_MAX: Final = 2800  # approval details also go into a Slack section (3,000 characters)
BODY_MAX: Final = 500_000

Key = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$"
    ),
]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


# --- keys and subjects -------------------------------------------------------------------------


def subject(key: str) -> str:
    return f"policy:{key}"


def run_name(key: str, version: int) -> str:
    """The approval run's name in the Prefect UI: `policy ai-policy v3 approval`."""
    return f"policy {key} v{version} approval"


def approval_key(key: str, version: int) -> str:
    return f"policy-{key}-v{version}-approval"


def sha256(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


# --- boundary models ---------------------------------------------------------------------------


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    key: Key
    title: Title
    owner: Email
    review_interval_months: int = Field(default=12, ge=1, le=60)
    template: Annotated[Label | None, BeforeValidator(_blank_to_none)] = None


class ProposalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Annotated[str, StringConstraints(min_length=1, max_length=BODY_MAX)]
    change_note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""
    requester: Annotated[Email | None, BeforeValidator(_blank_to_none)] = None


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    outcome: Literal["unchanged", "new-version"] = "unchanged"
    notes: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    reviewer: Annotated[Email | None, BeforeValidator(_blank_to_none)] = None


class ExceptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Title
    reason: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    owner: Email
    expires: date
    system: Annotated[SystemName | None, BeforeValidator(_blank_to_none)] = None


class VersionOut(BaseModel):
    id: int
    policy: str
    version: int
    status: PolicyVersionStatus
    content_sha256: str
    change_note: str
    request_id: int | None
    evidence_id: int | None
    flow_run_id: str | None
    created_by: str
    created_at: datetime
    approved_at: datetime | None
    reasons: list[str] = Field(default_factory=list)  # why it was rejected

    @property
    def run_name(self) -> str:
        return run_name(self.policy, self.version)


class ReviewOut(BaseModel):
    reviewed_at: datetime
    reviewer: str
    outcome: str
    notes: str
    evidence_id: int | None


class ExceptionOut(BaseModel):
    id: int
    policy: str
    title: str
    reason: str
    system: str | None
    owner: str
    granted_by: str
    expires_at: datetime
    status: ExceptionStatus
    reminders_sent: list[int]
    closed_at: datetime | None


class PolicyOut(BaseModel):
    id: int
    key: str
    title: str
    owner: str
    owner_name: str
    review_interval_months: int
    template: str | None
    version: int | None  # the approved version in force
    status: str  # of the newest version: draft, in-approval, approved, rejected; or "no version"
    pending_version: int | None
    last_reviewed_at: datetime | None
    next_review_due: datetime
    overdue: bool
    open_exceptions: int


class PolicyDetail(PolicyOut):
    versions: list[VersionOut]
    reviews: list[ReviewOut]
    exceptions: list[ExceptionOut]
