"""What a CAPA looks like at the boundary: what callers give, what they get back, and its keys.

The input models check a step's data before anything is written; the output models are what
every channel (the flow's forms, the CLI, the status pages) reads. `subject`/`closure_key` name a
CAPA's records and its closure request the same way everywhere.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Final, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

from aims_core.ask_forms.capa import FISHBONE as FISHBONE
from aims_core.ask_forms.capa import method_problem
from aims_core.models import CapaStatus, as_utc
from aims_core.schemas import Email, SystemName

EVIDENCE_KIND: Final = "capa-record"
RCA_KIND: Final = "root-cause-analysis"
OPEN: Final = tuple(s for s in CapaStatus if s is not CapaStatus.closed)

#: The audit action of a planned action (`ask_id` in its details when a plan ask gave it).
ACTION_ADDED: Final = "capa.action-added"
#: The audit action of an answered ask the CAPA could not take (`ask_id` in its details).
NOT_APPLIED: Final = "capa.answer-not-applied"

#: The part of a wait key that says the run sleeps until verification is due (see `wait_step`).
UNTIL_DUE: Final = "until-due"

DETAILS_MAX: Final = 2800  # approval details also go into a Slack section (3,000 characters)
TEXT_MAX: Final = 20_000

LongText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TEXT_MAX)
]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


# --- boundary models ---------------------------------------------------------------------------

Source = Literal["incident", "audit-finding", "manual"]


class CapaIn(BaseModel):
    """A nonconformity to correct. `idempotency_key` makes opening repeatable (the incident flow
    uses `incident-<id>`); `containment` may be given when the reaction already happened (e.g.
    by an incident playbook); `verify_after_days` overrides the policy's period."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    description: Annotated[str, StringConstraints(max_length=TEXT_MAX)] = ""
    source: Source = "manual"
    system: Annotated[SystemName | None, BeforeValidator(_blank_to_none)] = None
    incident_id: int | None = Field(default=None, ge=1, validate_default=True)
    control_id: Annotated[
        Annotated[str, StringConstraints(max_length=16)] | None, BeforeValidator(_blank_to_none)
    ] = None
    owner: Email
    idempotency_key: Annotated[
        Annotated[str, StringConstraints(max_length=200)] | None, BeforeValidator(_blank_to_none)
    ] = None
    containment: Annotated[str, StringConstraints(max_length=TEXT_MAX)] = ""
    verify_after_days: int | None = Field(default=None, ge=0, le=3650)

    @field_validator("incident_id")
    @classmethod
    def _incident_for_incident_source(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None and info.data.get("source") == "incident":
            raise ValueError("required when the source is an incident")
        return value


FishboneCategory = Literal["data", "model", "process", "people", "tooling", "environment"]


class RootCauseIn(BaseModel):
    """A root cause analysis: the chain of whys, or causes per fishbone category, and the root
    cause it arrives at (the statement the actions must remove)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    method: Literal["5-whys", "fishbone", "other"] = "5-whys"
    whys: list[Line] = Field(default_factory=list, max_length=10)
    fishbone: dict[FishboneCategory, list[Line]] = Field(default_factory=dict)
    root_cause: LongText

    @model_validator(mode="after")
    def _method_has_its_fields(self) -> Self:
        causes = [c for cs in self.fishbone.values() for c in cs]
        problem = method_problem(self.method, self.whys, causes)
        if problem:
            raise ValueError(problem)
        return self


class ActionIn(BaseModel):
    """One corrective action: what, who, by when (a calendar date, due at its end, UTC)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    owner: Email
    due: date

    @property
    def due_at(self) -> datetime:
        return datetime.combine(self.due, time(23, 59, 59), UTC)


class CapaActionOut(BaseModel):
    id: int
    capa_id: int
    title: str
    owner: str
    due_at: datetime
    attempt: int
    done_at: datetime | None
    evidence_id: int | None
    reminders_sent: int
    escalated_at: datetime | None

    @property
    def due(self) -> date:
        return self.due_at.date()


class RootCauseOut(BaseModel):
    attempt: int
    method: str
    whys: list[str]
    fishbone: dict[str, list[str]]
    root_cause: str
    similar: list[int]
    recorded_by: str
    recorded_at: datetime
    evidence_id: int | None


class VerificationOut(BaseModel):
    number: int
    attempt: int
    effective: bool
    evidence: str
    verifier: str | None
    recorded_by: str
    channel: str
    at: datetime
    evidence_id: int | None
    closure: str | None = None  # "rejected" when the closure approval sent it back
    closure_reasons: list[str] = Field(default_factory=list)


class CapaOut(BaseModel):
    id: int
    idempotency_key: str
    title: str
    description: str
    source: str
    system: str | None
    incident_id: int | None
    control_id: str | None
    owner: str
    status: CapaStatus
    containment: str
    attempt: int
    root_cause: RootCauseOut | None  # the current attempt's
    root_causes: list[RootCauseOut]  # every analysis, oldest first
    actions: list[CapaActionOut]  # every attempt's; `current_actions` for this one
    verify_after_days: int
    verification_due_at: datetime | None
    verifications: list[VerificationOut]
    closure_request_id: int | None
    flow_run_id: str | None
    created_by: str
    created_at: datetime
    closed_at: datetime | None

    @property
    def subject(self) -> str:
        return subject(self.id)

    @property
    def current_actions(self) -> list[CapaActionOut]:
        return [a for a in self.actions if a.attempt == self.attempt]

    @property
    def open_actions(self) -> list[CapaActionOut]:
        return [a for a in self.current_actions if a.done_at is None]

    def verification_due(self, now: datetime | None = None) -> bool:
        return (
            self.status is CapaStatus.verification
            and self.verification_due_at is not None
            and self.verification_due_at <= at_or_now(now)
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def next_step(self) -> str:
        """What the CAPA waits for, and the command that gives it."""
        i = self.id
        match self.status:
            case CapaStatus.containment:
                return f"containment/correction: `aims capa containment {i} --text ... --as EMAIL`"
            case CapaStatus.root_cause:
                return (
                    f"root cause (attempt {self.attempt}): "
                    f"`aims capa rca {i} --why ... --root-cause ... --as EMAIL`"
                )
            case CapaStatus.action_plan:
                return (
                    f"action plan: `aims capa action {i} --title ... --owner EMAIL "
                    "--due YYYY-MM-DD [--more] --as EMAIL`"
                )
            case CapaStatus.tracking:
                ids = ", ".join(str(a.id) for a in self.open_actions)
                return (
                    f"actions to complete ({ids}): "
                    "`aims capa done ACTION_ID --evidence ... --as EMAIL`"
                )
            case CapaStatus.verification:
                due = self.verification_due_at
                when = f"due {due:%Y-%m-%d %H:%M} UTC" if due else "due"
                return (
                    f"effectiveness verification, {when}: `aims capa verify {i} "
                    "--effective|--ineffective --evidence ... --as EMAIL`"
                )
            case CapaStatus.awaiting_closure:
                req = self.closure_request_id
                return (
                    f"closure approval: `aims approve {req} --as EMAIL`"
                    if req
                    else "closure approval (requested by the CAPA's run)"
                )
            case _:
                closed = f" {self.closed_at:%Y-%m-%d}" if self.closed_at else ""
                return f"nothing: closed{closed}"


class CapaResult(BaseModel):
    """What a `capa` run returns. Defined here, not in the flow module, so the persisted result
    unpickles anywhere (served flows load their module by file path)."""

    capa_id: int
    status: str
    attempts: int
    closure_request_id: int | None
    approvals: list[str] = Field(default_factory=list)
    note: str = ""


class WaitStep(BaseModel):
    """What a CAPA's run waits for now, and the stable prefix of that wait's suspend key
    (lowercase, digits, dashes; distinct per attempt, step and verification)."""

    kind: Literal[
        "containment", "root-cause", "action-plan", "tracking", "until-due", "verification"
    ]
    prefix: str


# --- keys, subjects, clocks --------------------------------------------------------------------


def subject(capa_id: int) -> str:
    return f"capa:{capa_id}"


def closure_key(capa_id: int, verification: int) -> str:
    """The approval request closing a CAPA on the strength of its `verification`-th check: a
    rejected closure and a new verification make a new request."""
    return f"capa-{capa_id}-closure-{verification}"


def at_or_now(value: datetime | None) -> datetime:
    """`value` in UTC, or the present moment when none is given (the passes inject `now`)."""
    return as_utc(value) if value is not None else datetime.now(UTC)
