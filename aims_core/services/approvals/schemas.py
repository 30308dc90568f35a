"""What the approvals service takes in and hands out, and how it says no (`Refused`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from aims_core.ask_forms import known_kind
from aims_core.errors import AimsError
from aims_core.evidence_schemas import check_subject
from aims_core.models import APPROVAL_KIND, ApprovalStatus, Outcome
from aims_core.schemas import Email, SystemName

__all__ = [
    "ApprovalRequestIn",
    "ApprovalRequestOut",
    "DecisionIn",
    "DecisionOut",
    "DecisionResult",
    "RefusalReason",
    "Refused",
]

RefusalReason = Literal[
    "not-eligible",
    "deactivated",
    "requester",
    "training",
    "closed",
    "bad-code",
    "ui-locked",
    "separation",
    "already-decided",
    "unknown-request",
    "unknown-person",
]


class Refused(AimsError):
    """A decision that is not allowed. `reason` is a short stable code callers branch on."""

    def __init__(self, reason: RefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("one line only (put the rest in details)")
    return value


def _known_kind(value: str) -> str:
    if not known_kind(value):
        raise ValueError(f"no answer form '{value}'")
    return value


Slug = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=120, pattern=r"^[a-z0-9][a-z0-9._-]*$"
    ),
]


class ApprovalRequestIn(BaseModel):
    """What a flow (or person) asks to have decided."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    #: `approval`, or the answer form of another kind of ask (`aims_core/ask_forms.py`).
    kind: Annotated[str, AfterValidator(_known_kind)] = APPROVAL_KIND
    subject: Annotated[str, AfterValidator(check_subject)]
    activity: Slug
    system: Annotated[SystemName | None, BeforeValidator(_blank_to_none)] = None
    title: Annotated[
        str, StringConstraints(min_length=1, max_length=300), AfterValidator(_one_line)
    ]
    details: Annotated[str, StringConstraints(max_length=20_000)] = ""
    approver_roles: list[Annotated[str, BeforeValidator(_lower)]] = Field(default_factory=list)
    #: Named people who may answer besides the role holders (e.g. a CAPA's owner for its own
    #: steps): not scoped by RACI; the requester and the excluded still may not.
    approver_people: list[Annotated[str, BeforeValidator(_lower)]] = Field(default_factory=list)
    quorum: int = Field(default=1, ge=1)
    requester: Annotated[Email | None, BeforeValidator(_blank_to_none)] = None
    #: Segregation of duties beyond the requester: email → why they may not answer (e.g. the
    #: CAPA's owner does not verify it).
    excluded: dict[Annotated[str, BeforeValidator(_lower)], str] = Field(default_factory=dict)
    deadline: AwareDatetime | None = None
    evidence_ids: list[int] = Field(default_factory=list)
    flow_run_id: Annotated[
        Annotated[str, StringConstraints(max_length=64)] | None, BeforeValidator(_blank_to_none)
    ] = None

    @model_validator(mode="after")
    def _someone_answers(self) -> ApprovalRequestIn:
        if not self.approver_roles and not self.approver_people:
            raise ValueError("name the approver roles or people who may answer")
        return self


class DecisionOut(BaseModel):
    person: str
    name: str
    outcome: Outcome
    comment: str
    answer: dict[str, Any] | None = None
    channel: str
    actor: str
    round: int
    decided_at: datetime


class ApprovalRequestOut(BaseModel):
    id: int
    kind: str
    subject: str
    activity: str
    system: str | None
    title: str
    details: str
    status: ApprovalStatus
    quorum: int
    round: int
    deadline: datetime | None
    requester: str | None
    requested_by: str
    approvers: list[str]
    excluded: dict[str, str]
    approvals: list[str]
    rejections: list[str]
    answered_by: list[str]
    decisions: list[DecisionOut]
    evidence_ids: list[int]
    flow_run_id: str | None
    resume_pending: bool
    created_at: datetime
    decided_at: datetime | None
    reminders_sent: int
    last_reminded_at: datetime | None
    escalated_at: datetime | None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    request_id: int
    person: Annotated[str, BeforeValidator(_lower), StringConstraints(max_length=320)]
    outcome: Outcome
    comment: Annotated[str, StringConstraints(max_length=5_000)] = ""
    #: The typed answer of an ask that is not an approval; validated by its form.
    answer: dict[str, Any] | None = None
    code: Annotated[str, StringConstraints(max_length=200)] | None = None


class DecisionResult(BaseModel):
    request_id: int
    recorded: bool
    status: ApprovalStatus
    approvals: int
    rejections: int
    quorum: int
    resume_needed: bool
    flow_run_id: str | None
    round: int

    def summary(self) -> str:
        """`approved (2 of 2)`, `rejected (1 rejection)`, `waiting: 1 of 2 approvals`."""
        if self.status is ApprovalStatus.approved:
            return f"approved ({self.approvals} of {self.quorum})"
        if self.status is ApprovalStatus.rejected:
            return f"rejected ({self.rejections} rejection{'s' * (self.rejections != 1)})"
        if self.status is ApprovalStatus.answered:
            return f"answered ({self.approvals} of {self.quorum})"
        if self.status is ApprovalStatus.open:
            return f"waiting: {self.approvals} of {self.quorum} approvals"
        return self.status.value
