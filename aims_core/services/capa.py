"""Corrective action (ISO/IEC 42001 10.2): from a nonconformity to a verified, approved fix.

A CAPA walks the clause's steps, each recorded by one service call whatever the channel (the
`capa` flow's Prefect UI forms, `aims capa ...`, the incident flow):

    containment → root-cause → action-plan → tracking → verification → awaiting-closure → closed
                       ↑                                      │ ineffective: attempt + 1
                       └──────────────────────────────────────┘

- **containment**: react — control and correct, deal with the consequences (text).
- **root cause**: 5 whys, fishbone or a plain statement; the check for similar nonconformities
  (other open CAPAs on the same system or control) is recorded with it.
- **action plan**: actions with owners and due dates; the first one starts tracking, more may
  follow until verification is recorded.
- **tracking**: reminders before and on the due date, one escalation once overdue
  (`due_reminders`, run on a schedule with an injectable `now`).
- **verification**: due `verify_after_days` after the last action is done; a verifier (a role
  from the policy, not the owner) records evidence that the problem has not recurred. Ineffective
  sends the CAPA back to root cause with the next attempt, whose action plan starts empty.
- **closure**: approved through the shared approval service; a rejection asks for a new
  verification.

Every step writes an audit event and `capa-record` evidence (the analysis: `root-cause-analysis`)
on `capa:<id>`, so the records 10.2 asks for exist whatever the flow does. The policy (periods,
reminders, roles, quorum) is data: `aims_core/data/capa_policy.yaml`, overridable in the data dir.
No Prefect here: waking a run goes through `notifications.resume`, which imports it lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Final, Literal, Self
from uuid import uuid4

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
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from aims_core import catalog
from aims_core.data_files import DataFileInvalid, Strict, load_data_file, parse_data_file
from aims_core.errors import AimsError, Conflict, InvalidInput, NotFound
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import (
    ApprovalRequest,
    ApprovalStatus,
    AuditEvent,
    Capa,
    CapaAction,
    CapaStatus,
    Control,
    Incident,
    Outcome,
    Person,
    PersonRole,
    as_utc,
)
from aims_core.schemas import Email, SystemName
from aims_core.services import evidence, outbox
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.people import get_person
from aims_core.services.systems import get_system
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork
from notifications.resume import ResumeOutcome

__all__ = [
    "ActionIn",
    "CapaActionOut",
    "CapaIn",
    "CapaOut",
    "CapaPolicy",
    "CapaResult",
    "RootCauseIn",
    "TickReport",
    "VerificationOut",
    "WaitStep",
    "add_action",
    "attach_run",
    "capa_of_action",
    "capa_policy",
    "closure_key",
    "closure_spec",
    "complete_action",
    "due_reminders",
    "get_capa",
    "list_capas",
    "open_capa",
    "record_closure",
    "record_containment",
    "record_root_cause",
    "record_verification",
    "report_markdown",
    "run_name",
    "run_tags",
    "similar_open",
    "tick",
    "wait_step",
    "wake_due_verifications",
]

log = logging.getLogger("aims.capa")

POLICY_FILE: Final = "capa_policy.yaml"
EVIDENCE_KIND: Final = "capa-record"
RCA_KIND: Final = "root-cause-analysis"
OPEN: Final = tuple(s for s in CapaStatus if s is not CapaStatus.closed)
#: The part of a wait key that says the run sleeps until verification is due (see `wait_step`).
UNTIL_DUE: Final = "until-due"
#: Who the audit trail names for scheduled reminders, escalations and wake-ups.
TRACKER: Final = Actor(who="aims-capa-tracker", channel="schedule")
DETAILS_MAX: Final = 2800  # approval details also go into a Slack section (3,000 characters)
TEXT_MAX: Final = 20_000

LongText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TEXT_MAX)
]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


# --- the policy (data) -------------------------------------------------------------------------


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


class CapaPolicy(Strict):
    verification: VerificationPolicy
    tracking: TrackingPolicy
    closure: ClosurePolicy

    def problems(self) -> list[str]:
        """What a schema cannot check: role ids must be in the role catalog, days non-negative."""
        known = {r.id for r in catalog.roles()}
        named = [
            *(("verification.verifier_roles", r) for r in self.verification.verifier_roles),
            *(("closure.approver_roles", r) for r in self.closure.approver_roles),
        ]
        if self.tracking.escalation_role:
            named.append(("tracking.escalation_role", self.tracking.escalation_role))
        out = [
            f"{field}: unknown role '{role}' (roles: {', '.join(sorted(known))})"
            for field, role in named
            if role not in known
        ]
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
FISHBONE: Final[tuple[str, ...]] = ("data", "model", "process", "people", "tooling", "environment")


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
        if self.method == "5-whys" and not self.whys:
            raise ValueError("whys: give at least one why (--why), or --method other")
        if self.method == "fishbone" and not any(self.fishbone.values()):
            raise ValueError(
                f"fishbone: give at least one cause per category ({', '.join(FISHBONE)})"
            )
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
            and self.verification_due_at <= _utc(now)
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def next_step(self) -> str:
        """What the CAPA waits for, and the command that gives it."""
        i = self.id
        match self.status:
            case CapaStatus.containment:
                return f"containment/correction: `aims capa containment {i} --text ...`"
            case CapaStatus.root_cause:
                return (
                    f"root cause (attempt {self.attempt}): "
                    f"`aims capa rca {i} --why ... --root-cause ...`"
                )
            case CapaStatus.action_plan:
                return (
                    f"action plan: `aims capa action {i} --title ... --owner EMAIL "
                    "--due YYYY-MM-DD`"
                )
            case CapaStatus.tracking:
                ids = ", ".join(str(a.id) for a in self.open_actions)
                return f"actions to complete ({ids}): `aims capa done ACTION_ID --evidence ...`"
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


class Failure(BaseModel):
    """One record a tick could not handle; the next tick tries again."""

    step: Literal["remind", "escalate", "announce", "wake"]
    id: int
    error: str


class TickReport(BaseModel):
    """What one tracking pass did: action ids reminded/escalated, CAPA ids announced (verification
    due, its people told) and woken (their run resumed), deferred (Prefect unreachable) or
    ended (their run had ended)."""

    at: datetime
    reminded_ids: list[int] = Field(default_factory=list)
    escalated_ids: list[int] = Field(default_factory=list)
    announced_ids: list[int] = Field(default_factory=list)
    woken_ids: list[int] = Field(default_factory=list)
    deferred_ids: list[int] = Field(default_factory=list)
    ended_ids: list[int] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)

    def merged(self, other: TickReport) -> TickReport:
        data = self.model_dump()
        for name, value in other.model_dump().items():
            if isinstance(value, list):
                data[name] = [*data[name], *value]
        return TickReport.model_validate(data)

    def summary(self) -> str:
        parts = [
            f"reminded {len(self.reminded_ids)}",
            f"escalated {len(self.escalated_ids)}",
            f"verification due {len(self.announced_ids)}",
            f"woken {len(self.woken_ids)}",
        ]
        if self.deferred_ids:
            parts.append(f"deferred {len(self.deferred_ids)}")
        if self.failures:
            parts.append(f"failed {len(self.failures)}")
        return ", ".join(parts)


# --- keys, subjects, clocks --------------------------------------------------------------------


def subject(capa_id: int) -> str:
    return f"capa:{capa_id}"


def closure_key(capa_id: int, verification: int) -> str:
    """The approval request closing a CAPA on the strength of its `verification`-th check: a
    rejected closure and a new verification make a new request."""
    return f"capa-{capa_id}-closure-{verification}"


def _utc(value: datetime | None) -> datetime:
    return as_utc(value) if value is not None else datetime.now(UTC)


def run_name(c: CapaOut) -> str:
    """The run's name in the Prefect UI: `capa 7: <title>`."""
    title = " ".join(c.title.split())
    return f"capa {c.id}: {title if len(title) <= 80 else title[:79] + '…'}"


def run_tags(c: CapaOut) -> list[str]:
    """The run's tags for the UI's filters: `capa`, the system, the source."""
    return [t for t in ("capa", c.system, c.source) if t]


def wait_step(c: CapaOut, now: datetime | None = None) -> WaitStep | None:
    """The wait a CAPA's run is in, derived from the database alone (None: nothing to wait for
    from people here — closure goes through the approval service, closed is the end)."""
    base = f"capa-{c.id}-a{c.attempt}"
    match c.status:
        case CapaStatus.containment | CapaStatus.root_cause | CapaStatus.action_plan:
            return WaitStep(kind=c.status.value, prefix=f"{base}-{c.status.value}")
        case CapaStatus.tracking:
            return WaitStep(kind="tracking", prefix=f"{base}-tracking")
        case CapaStatus.verification:
            n = len(c.verifications) + 1
            if c.verification_due(now):
                return WaitStep(kind="verification", prefix=f"{base}-v{n}-verify")
            return WaitStep(kind=UNTIL_DUE, prefix=f"{base}-v{n}-{UNTIL_DUE}")
        case _:
            return None


# --- reading -----------------------------------------------------------------------------------


def _load(session: Session, capa_id: int, *, lock: bool = False) -> Capa:
    q = (
        select(Capa)
        .where(Capa.id == capa_id)
        .options(
            selectinload(Capa.owner),
            selectinload(Capa.system),
            selectinload(Capa.actions).selectinload(CapaAction.owner),
        )
    )
    if lock:
        q = q.with_for_update(of=Capa)
    row = session.scalar(q)
    if row is None:
        raise NotFound(f"no CAPA {capa_id} (see `aims capa list`)", "capa")
    return row


def _analyses(row: Capa) -> list[dict[str, Any]]:
    return list((row.root_cause or {}).get("analyses", []))


def _results(row: Capa) -> list[dict[str, Any]]:
    return list((row.verification or {}).get("results", []))


def _current_analysis(row: Capa) -> dict[str, Any] | None:
    mine = [a for a in _analyses(row) if a["attempt"] == row.attempt]
    return mine[-1] if mine else None


def _action_out(a: CapaAction) -> CapaActionOut:
    return CapaActionOut(
        id=a.id,
        capa_id=a.capa_id,
        title=a.title,
        owner=a.owner.email,
        due_at=as_utc(a.due_at),
        attempt=a.attempt,
        done_at=as_utc(a.done_at) if a.done_at else None,
        evidence_id=a.evidence_id,
        reminders_sent=a.reminders_sent,
        escalated_at=as_utc(a.escalated_at) if a.escalated_at else None,
    )


def _out(session: Session, row: Capa) -> CapaOut:
    analyses = [RootCauseOut.model_validate(a) for a in _analyses(row)]
    current = [a for a in analyses if a.attempt == row.attempt]
    results = [VerificationOut.model_validate(r) for r in _results(row)]
    request_id = None
    if results and row.status in (CapaStatus.awaiting_closure, CapaStatus.closed):
        request_id = session.scalar(
            select(ApprovalRequest.id).where(
                ApprovalRequest.idempotency_key == closure_key(row.id, len(results))
            )
        )
    return CapaOut(
        id=row.id,
        idempotency_key=row.idempotency_key,
        title=row.title,
        description=row.description,
        source=row.source,
        system=row.system.name if row.system else None,
        incident_id=row.incident_id,
        control_id=row.control_id,
        owner=row.owner.email,
        status=row.status,
        containment=row.containment,
        attempt=row.attempt,
        root_cause=current[-1] if current else None,
        root_causes=analyses,
        actions=[_action_out(a) for a in row.actions],
        verify_after_days=row.verify_after_days,
        verification_due_at=as_utc(row.verification_due_at) if row.verification_due_at else None,
        verifications=results,
        closure_request_id=request_id,
        flow_run_id=row.flow_run_id,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        closed_at=as_utc(row.closed_at) if row.closed_at else None,
    )


def get_capa(uow: UnitOfWork, capa_id: int) -> CapaOut:
    with uow.read():
        return _out(uow.session, _load(uow.session, capa_id))


def capa_of_action(uow: UnitOfWork, action_id: int) -> int:
    """The CAPA an action belongs to."""
    with uow.read():
        capa_id = uow.session.scalar(select(CapaAction.capa_id).where(CapaAction.id == action_id))
    if capa_id is None:
        raise NotFound(f"no CAPA action {action_id} (see `aims capa show ID`)", "action")
    return capa_id


def _listing() -> Any:
    return select(Capa).options(
        selectinload(Capa.owner),
        selectinload(Capa.system),
        selectinload(Capa.actions).selectinload(CapaAction.owner),
    )


def list_capas(
    uow: UnitOfWork, *, open_only: bool = False, system: str | None = None
) -> list[CapaOut]:
    """CAPAs, newest first; `open_only` leaves out closed ones, `system` keeps one system's."""
    with uow.read():
        s = uow.session
        q = _listing().order_by(Capa.id.desc())
        if open_only:
            q = q.where(Capa.status.in_(OPEN))
        if system is not None:
            q = q.where(Capa.system_id == get_system(s, system).id)
        return [_out(s, row) for row in s.scalars(q)]


def _similar_rows(session: Session, row: Capa) -> list[Capa]:
    same = []
    if row.system_id is not None:
        same.append(Capa.system_id == row.system_id)
    if row.control_id is not None:
        same.append(Capa.control_id == row.control_id)
    if not same:
        return []
    q = _listing().where(Capa.id != row.id, Capa.status.in_(OPEN), or_(*same))
    return list(session.scalars(q.order_by(Capa.id)))


def similar_open(uow: UnitOfWork, capa_id: int) -> list[CapaOut]:
    """Other open CAPAs on the same system or control (10.2 b: do similar nonconformities exist
    or could they occur?), oldest first."""
    with uow.read():
        s = uow.session
        return [_out(s, r) for r in _similar_rows(s, _load(s, capa_id))]


# --- writing: helpers --------------------------------------------------------------------------


def _allowed(row: Capa, doing: str, *statuses: CapaStatus) -> None:
    if row.status not in statuses:
        now = _out(Session.object_session(row), row)  # type: ignore[arg-type]
        allowed = " or ".join(s.value for s in statuses)
        raise Conflict(
            f"CAPA {row.id} is {row.status.value}: {doing} is recorded when it is {allowed}; "
            f"it waits for {now.next_step}",
            "capa",
        )


def _active_person(session: Session, email: str, field: str) -> Person:
    person = get_person(session, email, field)
    if not person.active:
        raise InvalidInput(f"{person.email} is not active", field)
    return person


def _evidence(
    uow: UnitOfWork, row: Capa, key: str, title: str, text: str, actor: Actor, kind: str = ""
) -> int:
    """One record on `capa:<id>` inside the caller's transaction (anchored after commit)."""
    out = evidence.append_in(
        uow,
        EvidenceIn(
            subject=subject(row.id),
            kind=kind or EVIDENCE_KIND,
            title=title[:300],
            text=text,
            media_type="text/markdown; charset=utf-8",
            idempotency_key=key,
        ),
        actor,
    )
    return out.id


def _notify(session: Session, key: str, kind: str, row: Capa, person: Person, text: str) -> None:
    """A message to one person, queued in the caller's transaction (Slack DM, else the log)."""
    outbox.queue(
        session,
        outbox.NotificationIn(
            idempotency_key=key,
            kind=kind,
            subject=subject(row.id),
            recipient=person.email,
            target=outbox.TARGET_DM if person.slack_user_id else outbox.TARGET_LOG,
            thread_key=f"capa-{row.id}-to-{person.id}",
            text=text,
        ),
    )


def _role_holders(session: Session, roles: list[str]) -> list[Person]:
    if not roles:
        return []
    return list(
        session.scalars(
            select(Person)
            .join(PersonRole, PersonRole.person_id == Person.id)
            .where(PersonRole.role_id.in_(roles), Person.active.is_(True))
            .distinct()
            .order_by(Person.id)
        )
    )


def _head(row: Capa) -> str:
    where = f" on {row.system.name}" if row.system else ""
    return f"CAPA {row.id}{where}: {row.title}"


def _commit_and_anchor(uow: UnitOfWork, row: Capa) -> CapaOut:
    out = _out(uow.session, row)
    uow.commit()
    evidence.sync_anchor(uow.settings)
    return out


# --- writing: the steps ------------------------------------------------------------------------


def open_capa(uow: UnitOfWork, data: CapaIn | Mapping[str, Any], actor: Actor) -> CapaOut:
    """Record a nonconformity as a CAPA, its owner told. Idempotent on `idempotency_key`: a
    repeat returns the CAPA opened first (a different source or incident under the same key is
    a Conflict). Without a key every call opens a new CAPA."""
    if not isinstance(data, CapaIn):
        data = CapaIn.model_validate(data)
    key = data.idempotency_key or f"capa-{uuid4().hex}"
    policy = capa_policy(uow.settings)
    try:
        with uow:
            s = uow.session
            existing = s.scalar(select(Capa).where(Capa.idempotency_key == key))
            if existing is not None:
                return _same_capa(s, existing, data)
            owner = _active_person(s, data.owner, "owner")
            system = get_system(s, data.system) if data.system else None
            if data.incident_id is not None:
                incident = s.get(Incident, data.incident_id)
                if incident is None:
                    raise NotFound(f"no incident {data.incident_id}", "incident_id")
                if system is None:
                    system = incident.system
                elif system.id != incident.system_id:
                    raise InvalidInput(
                        f"incident {incident.id} is about {incident.system.name}, "
                        f"not {system.name}",
                        "system",
                    )
            if data.control_id is not None and s.get(Control, data.control_id) is None:
                raise NotFound(
                    f"no clause or control '{data.control_id}' (see `aims catalog list`)",
                    "control_id",
                )
            row = Capa(
                idempotency_key=key,
                title=data.title,
                description=data.description,
                source=data.source,
                system=system,
                incident_id=data.incident_id,
                control_id=data.control_id,
                owner=owner,
                status=CapaStatus.containment,
                containment="",
                root_cause={},
                attempt=1,
                verify_after_days=(
                    policy.verification.after_days
                    if data.verify_after_days is None
                    else data.verify_after_days
                ),
                verification={},
                created_by=actor.who,
            )
            s.add(row)
            s.flush()
            similar = [c.id for c in _similar_rows(s, row)]
            _evidence(
                uow,
                row,
                f"capa-{row.id}-opened",
                f"Nonconformity: {_head(row)}",
                _nonconformity_md(row),
                actor,
            )
            uow.audit(
                actor,
                "capa.opened",
                subject(row.id),
                title=row.title,
                source=row.source,
                system=system.name if system else None,
                incident_id=row.incident_id,
                control_id=row.control_id,
                owner=owner.email,
                verify_after_days=row.verify_after_days,
                similar_open=similar,
                idempotency_key=key,
            )
            _notify(
                s,
                f"capa-{row.id}-opened-to-{owner.id}",
                "capa-opened",
                row,
                owner,
                f"You own {_head(row)}. First: contain and correct it — "
                f"`aims capa containment {row.id} --text ...` or the run's form in Prefect."
                + (f" Similar open CAPAs: {', '.join(map(str, similar))}." if similar else ""),
            )
            if data.containment.strip():
                _contain(uow, row, data.containment.strip(), actor)
            return _commit_and_anchor(uow, row)
    except IntegrityError:
        # A concurrent open with the same key won the race (PostgreSQL): return its CAPA.
        with uow.read():
            existing = uow.session.scalar(select(Capa).where(Capa.idempotency_key == key))
            if existing is None:
                raise
            return _same_capa(uow.session, existing, data)


def _same_capa(session: Session, row: Capa, data: CapaIn) -> CapaOut:
    if (row.source, row.incident_id) != (data.source, data.incident_id):
        raise Conflict(
            f"'{row.idempotency_key}' already names CAPA {row.id} ({row.source}"
            + (f", incident {row.incident_id}" if row.incident_id else "")
            + ")",
            "idempotency_key",
        )
    return _out(session, _load(session, row.id))


def _nonconformity_md(row: Capa) -> str:
    lines = [
        f"# {_head(row)}",
        "",
        f"- **source**: {row.source}"
        + (f" (incident {row.incident_id})" if row.incident_id else ""),
        f"- **system**: {row.system.name if row.system else '-'}",
        f"- **control**: {row.control_id or '-'}",
        f"- **owner**: {row.owner.email}",
        f"- **verify after**: {row.verify_after_days} day(s)",
    ]
    if row.description:
        lines += ["", row.description]
    return "\n".join(lines) + "\n"


def attach_run(uow: UnitOfWork, capa_id: int, flow_run_id: str, actor: Actor) -> CapaOut:
    """The run that follows this CAPA from now on (the CLI's start, or the run claiming itself;
    a new run replaces one that ended). Idempotent."""
    with uow:
        row = _load(uow.session, capa_id, lock=True)
        if row.flow_run_id != flow_run_id:
            previous, row.flow_run_id = row.flow_run_id, flow_run_id
            uow.audit(
                actor,
                "capa.run-attached",
                subject(row.id),
                flow_run_id=flow_run_id,
                previous=previous,
            )
        out = _out(uow.session, row)
        uow.commit()
    return out


def _contain(uow: UnitOfWork, row: Capa, text: str, actor: Actor) -> None:
    row.containment = text
    row.status = CapaStatus.root_cause
    ev = _evidence(
        uow,
        row,
        f"capa-{row.id}-containment",
        f"Containment and correction: {_head(row)}",
        f"# Containment and correction, {_head(row)}\n\n{text}\n",
        actor,
    )
    uow.session.flush()
    uow.audit(actor, "capa.contained", subject(row.id), containment=text, evidence_id=ev)


def record_containment(uow: UnitOfWork, capa_id: int, text: str, actor: Actor) -> CapaOut:
    """React to the nonconformity: what was done to control and correct it and deal with its
    consequences. Moves the CAPA to root cause. A repeat of the same text changes nothing."""
    text = (text or "").strip()
    if not text:
        raise InvalidInput("say what was done to contain and correct it", "containment")
    if len(text) > TEXT_MAX:
        raise InvalidInput(f"at most {TEXT_MAX} characters", "containment")
    with uow:
        row = _load(uow.session, capa_id, lock=True)
        if row.status is not CapaStatus.containment and row.containment == text:
            return _out(uow.session, row)
        _allowed(row, "containment", CapaStatus.containment)
        _contain(uow, row, text, actor)
        return _commit_and_anchor(uow, row)


def _rca_md(row: Capa, a: Mapping[str, Any]) -> str:
    lines = [f"# Root cause analysis, {_head(row)} (attempt {a['attempt']})", ""]
    lines.append(f"- **method**: {a['method']}")
    if a["whys"]:
        lines += ["", "## Why?", ""]
        lines += [f"{n}. {why}" for n, why in enumerate(a["whys"], 1)]
    if a["fishbone"]:
        lines += ["", "## Causes by category (fishbone)", ""]
        for category, causes in a["fishbone"].items():
            lines.append(f"- **{category}**: " + "; ".join(causes))
    lines += ["", "## Root cause", "", a["root_cause"], ""]
    similar = ", ".join(f"CAPA {i}" for i in a["similar"]) or "none open"
    lines.append(f"Similar nonconformities (open CAPAs, same system or control): {similar}.")
    return "\n".join(lines) + "\n"


def record_root_cause(
    uow: UnitOfWork,
    capa_id: int,
    data: RootCauseIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
) -> CapaOut:
    """Record why the nonconformity happened, with the similar open CAPAs found at that moment.

    Moves the CAPA to its action plan; until the first action it may be revised (a new record,
    the earlier one kept as evidence). The same analysis again changes nothing.
    """
    if not isinstance(data, RootCauseIn):
        data = RootCauseIn.model_validate(data)
    with uow:
        s = uow.session
        row = _load(s, capa_id, lock=True)
        current = _current_analysis(row)
        given = data.model_dump(mode="json")
        if current is not None and all(current[k] == v for k, v in given.items()):
            return _out(s, row)
        _allowed(row, "a root cause", CapaStatus.root_cause, CapaStatus.action_plan)
        analyses = _analyses(row)
        n = sum(1 for a in analyses if a["attempt"] == row.attempt) + 1
        analysis: dict[str, Any] = {
            **given,
            "attempt": row.attempt,
            "similar": [c.id for c in _similar_rows(s, row)],
            "recorded_by": actor.who,
            "recorded_at": _utc(now).isoformat(),
            "evidence_id": None,
        }
        suffix = f" (revision {n})" if n > 1 else ""
        analysis["evidence_id"] = _evidence(
            uow,
            row,
            f"capa-{row.id}-a{row.attempt}-rca-{n}",
            f"Root cause analysis{suffix}: {_head(row)}",
            _rca_md(row, analysis),
            actor,
            RCA_KIND,
        )
        row.root_cause = {"analyses": [*analyses, analysis]}  # a new dict: JSON is not tracked
        row.status = CapaStatus.action_plan
        s.flush()
        uow.audit(
            actor,
            "capa.root-cause",
            subject(row.id),
            attempt=row.attempt,
            revision=n,
            method=data.method,
            root_cause=data.root_cause,
            similar_open=analysis["similar"],
            evidence_id=analysis["evidence_id"],
        )
        return _commit_and_anchor(uow, row)


def add_action(
    uow: UnitOfWork,
    capa_id: int,
    data: ActionIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
) -> CapaOut:
    """Plan one corrective action (owner told). The first starts tracking; one added while the
    CAPA waits for its verification takes it back to tracking (verification is due only after
    the last action is done)."""
    if not isinstance(data, ActionIn):
        data = ActionIn.model_validate(data)
    today = _utc(now).date()
    if data.due < today:
        raise InvalidInput(f"{data.due} is in the past (today is {today})", "due")
    with uow:
        s = uow.session
        row = _load(s, capa_id, lock=True)
        _allowed(
            row, "an action", CapaStatus.action_plan, CapaStatus.tracking, CapaStatus.verification
        )
        owner = _active_person(s, data.owner, "owner")
        action = CapaAction(
            title=data.title,
            owner=owner,
            due_at=data.due_at,
            attempt=row.attempt,
            reminders_sent=0,
        )
        row.actions.append(action)
        row.status = CapaStatus.tracking
        row.verification_due_at = None
        s.flush()
        uow.audit(
            actor,
            "capa.action-added",
            subject(row.id),
            action_id=action.id,
            title=data.title,
            owner=owner.email,
            due=data.due.isoformat(),
            attempt=row.attempt,
        )
        _notify(
            s,
            f"capa-action-{action.id}-assigned",
            "capa-action",
            row,
            owner,
            f"Action {action.id} of {_head(row)} is yours: {data.title}, due {data.due}. "
            f"When done: `aims capa done {action.id} --evidence ...`",
        )
        out = _out(s, row)
        uow.commit()
    return out


def complete_action(
    uow: UnitOfWork,
    action_id: int,
    evidence_text: str | None,
    actor: Actor,
    *,
    now: datetime | None = None,
) -> CapaOut:
    """Mark an action done, with what shows it (kept as evidence). The last open action of the
    attempt schedules the effectiveness verification `verify_after_days` later. Idempotent."""
    text = (evidence_text or "").strip()
    if len(text) > TEXT_MAX:
        raise InvalidInput(f"at most {TEXT_MAX} characters", "evidence")
    at = _utc(now)
    with uow:
        s = uow.session
        capa_id = s.scalar(select(CapaAction.capa_id).where(CapaAction.id == action_id))
        if capa_id is None:
            raise NotFound(f"no CAPA action {action_id} (see `aims capa show ID`)", "action")
        row = _load(s, capa_id, lock=True)
        action = next(a for a in row.actions if a.id == action_id)
        if action.done_at is not None:
            return _out(s, row)
        if action.attempt != row.attempt:
            raise Conflict(
                f"action {action.id} belongs to attempt {action.attempt} of CAPA {row.id}, "
                f"which is at attempt {row.attempt}",
                "action",
            )
        _allowed(row, "a completed action", CapaStatus.tracking)
        action.evidence_id = _evidence(
            uow,
            row,
            f"capa-action-{action.id}-done",
            f"Action {action.id} done: {action.title}",
            f"# Action {action.id} of {_head(row)}: done\n\n- **action**: {action.title}\n"
            f"- **owner**: {action.owner.email}\n- **due**: {as_utc(action.due_at):%Y-%m-%d}\n"
            f"- **done**: {at:%Y-%m-%d %H:%M} UTC, recorded by {actor.who}\n\n"
            f"{text or '(no evidence text given)'}\n",
            actor,
        )
        action.done_at = at
        s.flush()
        uow.audit(
            actor,
            "capa.action-done",
            subject(row.id),
            action_id=action.id,
            evidence=text,
            evidence_id=action.evidence_id,
        )
        if all(a.done_at is not None for a in row.actions if a.attempt == row.attempt):
            row.status = CapaStatus.verification
            row.verification_due_at = at + timedelta(days=row.verify_after_days)
            s.flush()
            uow.audit(
                actor,
                "capa.verification-scheduled",
                subject(row.id),
                attempt=row.attempt,
                due_at=as_utc(row.verification_due_at).isoformat(),
            )
        return _commit_and_anchor(uow, row)


def _check_verifier(
    session: Session, policy: CapaPolicy, row: Capa, verifier: str | None
) -> Person | None:
    roles = policy.verification.verifier_roles
    if verifier is None or not verifier.strip():
        if roles:
            raise InvalidInput(
                f"who verified it? Give the verifier's email (roles: {', '.join(roles)})",
                "verifier",
            )
        return None
    person = _active_person(session, verifier, "verifier")
    if roles and not {r.id for r in person.roles} & set(roles):
        raise InvalidInput(
            f"{person.email} may not verify CAPAs (roles: {', '.join(roles)})", "verifier"
        )
    if person.id == row.owner_id and not policy.verification.owner_may_verify:
        raise InvalidInput(
            f"{person.email} owns CAPA {row.id}: someone else verifies its effectiveness",
            "verifier",
        )
    return person


def record_verification(
    uow: UnitOfWork,
    capa_id: int,
    effective: bool,
    evidence_text: str,
    actor: Actor,
    *,
    verifier: str | None = None,
    now: datetime | None = None,
) -> CapaOut:
    """The effectiveness check, once due: the verifier's evidence that the nonconformity has (or
    has not) recurred. Effective: the CAPA awaits closure approval. Ineffective: back to root
    cause with attempt + 1, whose action plan starts empty (the owner is told)."""
    text = (evidence_text or "").strip()
    if not text:
        raise InvalidInput("say what shows the problem has (not) recurred", "evidence")
    if len(text) > TEXT_MAX:
        raise InvalidInput(f"at most {TEXT_MAX} characters", "evidence")
    at = _utc(now)
    policy = capa_policy(uow.settings)
    with uow:
        s = uow.session
        row = _load(s, capa_id, lock=True)
        _allowed(row, "an effectiveness verification", CapaStatus.verification)
        due = as_utc(row.verification_due_at) if row.verification_due_at else at
        if due > at:
            raise Conflict(
                f"CAPA {row.id}'s effectiveness verification is due {due:%Y-%m-%d %H:%M} UTC, "
                "not before (the fix must have had time to show)",
                "verification",
            )
        person = _check_verifier(s, policy, row, verifier)
        results = _results(row)
        n = len(results) + 1
        verdict = "effective" if effective else "NOT effective"
        ev = _evidence(
            uow,
            row,
            f"capa-{row.id}-verification-{n}",
            f"Effectiveness verification {n} ({verdict}): {_head(row)}",
            f"# Effectiveness verification {n}, {_head(row)}\n\n- **attempt**: {row.attempt}\n"
            f"- **result**: {verdict}\n- **verifier**: {person.email if person else actor.who}\n"
            f"- **at**: {at:%Y-%m-%d %H:%M} UTC\n\n{text}\n",
            actor,
        )
        result = VerificationOut(
            number=n,
            attempt=row.attempt,
            effective=effective,
            evidence=text,
            verifier=person.email if person else None,
            recorded_by=actor.who,
            channel=actor.channel,
            at=at,
            evidence_id=ev,
        )
        row.verification = {
            **(row.verification or {}),
            "results": [*results, result.model_dump(mode="json")],
        }
        attempt = row.attempt
        if effective:
            row.status = CapaStatus.awaiting_closure
        else:
            row.status = CapaStatus.root_cause
            row.attempt += 1
            row.verification_due_at = None
            _notify(
                s,
                f"capa-{row.id}-verification-{n}-to-{row.owner_id}",
                "capa-verification",
                row,
                row.owner,
                f"{_head(row)}: the actions of attempt {attempt} were NOT effective ({text}). "
                f"Back to root cause, attempt {row.attempt}: `aims capa rca {row.id} ...`",
            )
        s.flush()
        uow.audit(
            actor,
            "capa.verified-effective" if effective else "capa.verified-ineffective",
            subject(row.id),
            verification=n,
            attempt=attempt,
            verifier=result.verifier,
            evidence=text,
            evidence_id=ev,
        )
        return _commit_and_anchor(uow, row)


def _closure_details(row: Capa) -> str:
    analysis = _current_analysis(row)
    result = _results(row)[-1]
    actions = [a for a in row.actions if a.attempt == row.attempt]
    lines = [
        f"**{_head(row)}** (source {row.source}, owner {row.owner.email}, attempt {row.attempt})",
        "",
        f"- **root cause**: {analysis['root_cause'] if analysis else '-'}",
        "- **actions**: "
        + "; ".join(f"#{a.id} {a.title} ({a.owner.email}, done)" for a in actions),
        f"- **verification {result['number']}**: effective — {result['evidence']} "
        f"(by {result['verifier'] or result['recorded_by']})",
        "",
        f"Full record: `aims capa show {row.id}`",
    ]
    text = "\n".join(lines)
    return text if len(text) <= DETAILS_MAX else text[: DETAILS_MAX - 1] + "…"


def closure_spec(
    uow: UnitOfWork, capa_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn:
    """The closure approval of a CAPA verified effective: roles, quorum and deadline from the
    policy, the owner as requester (so never an approver), the records as evidence."""
    policy = capa_policy(uow.settings).closure
    with uow.read():
        row = _load(uow.session, capa_id)
        _allowed(row, "a closure request", CapaStatus.awaiting_closure)
        results = _results(row)
        analysis = _current_analysis(row)
        evidence_ids = [
            *([analysis["evidence_id"]] if analysis and analysis["evidence_id"] else []),
            *(a.evidence_id for a in row.actions if a.attempt == row.attempt and a.evidence_id),
            *([results[-1]["evidence_id"]] if results[-1]["evidence_id"] else []),
        ]
        return ApprovalRequestIn(
            idempotency_key=closure_key(row.id, len(results)),
            subject=subject(row.id),
            activity=policy.activity,
            system=row.system.name if row.system else None,
            title=f"Close CAPA {row.id}: {row.title}"[:300],
            details=_closure_details(row),
            approver_roles=list(policy.approver_roles),
            quorum=policy.quorum,
            requester=row.owner.email,
            # From the verification, not from now: a re-run asks with the same deadline.
            deadline=as_utc(datetime.fromisoformat(results[-1]["at"]))
            + timedelta(days=policy.deadline_days)
            if policy.deadline_days
            else None,
            evidence_ids=evidence_ids,
            flow_run_id=flow_run_id,
        )


def record_closure(
    uow: UnitOfWork, capa_id: int, actor: Actor, *, now: datetime | None = None
) -> CapaOut:
    """Apply the closure decision the database holds. Approved: closed, with the whole 10.2
    record as evidence. Rejected: back to verification (due now), the reasons kept. Idempotent."""
    at = _utc(now)
    with uow:
        s = uow.session
        row = _load(s, capa_id, lock=True)
        if row.status is CapaStatus.closed:
            return _out(s, row)
        _allowed(row, "a closure decision", CapaStatus.awaiting_closure)
        results = _results(row)
        request = s.scalar(
            select(ApprovalRequest)
            .where(ApprovalRequest.idempotency_key == closure_key(row.id, len(results)))
            .options(selectinload(ApprovalRequest.decisions))
        )
        if request is None or request.status is ApprovalStatus.open:
            raise Conflict(f"CAPA {row.id}'s closure is not decided yet", "capa")
        approvals = [d.person.email for d in request.decisions if d.outcome is Outcome.approve]
        if request.status is ApprovalStatus.approved:
            row.status = CapaStatus.closed
            row.closed_at = at
            s.flush()
            ev = _evidence(
                uow,
                row,
                f"capa-{row.id}-closed",
                f"CAPA record, closed: {_head(row)}",
                _record_md(row, approvals, request.id),
                actor,
            )
            uow.audit(
                actor,
                "capa.closed",
                subject(row.id),
                request_id=request.id,
                approvals=approvals,
                attempts=row.attempt,
                evidence_id=ev,
            )
        else:
            reasons = [
                f"{d.person.email}: {d.comment}"
                for d in request.decisions
                if d.outcome is Outcome.reject
            ]
            results[-1] = {**results[-1], "closure": "rejected", "closure_reasons": reasons}
            row.verification = {**(row.verification or {}), "results": results}
            row.status = CapaStatus.verification
            row.verification_due_at = at
            s.flush()
            uow.audit(
                actor,
                "capa.closure-rejected",
                subject(row.id),
                request_id=request.id,
                request_status=request.status.value,
                reasons=reasons,
            )
            _notify(
                s,
                f"capa-{row.id}-closure-{len(results)}-to-{row.owner_id}",
                "capa-closure",
                row,
                row.owner,
                f"Closing {_head(row)} was not approved ({'; '.join(reasons) or 'no reason'}). "
                "It needs a new effectiveness verification.",
            )
        return _commit_and_anchor(uow, row)


def _record_md(row: Capa, approvals: list[str], request_id: int) -> str:
    """The documented information 10.2 asks for: the nature of the nonconformity, the actions
    taken, and their results."""
    lines = [_nonconformity_md(row), "## Containment and correction", "", row.containment or "-"]
    for a in _analyses(row):
        lines += ["", f"## Root cause, attempt {a['attempt']}", "", a["root_cause"]]
    lines += ["", "## Actions", ""]
    for act in row.actions:
        done = f"done {as_utc(act.done_at):%Y-%m-%d}" if act.done_at else "not done"
        lines.append(
            f"- attempt {act.attempt}, #{act.id} {act.title} — {act.owner.email}, due "
            f"{as_utc(act.due_at):%Y-%m-%d}, {done}"
            + (f", evidence #{act.evidence_id}" if act.evidence_id else "")
        )
    lines += ["", "## Effectiveness verification", ""]
    for r in _results(row):
        verdict = "effective" if r["effective"] else "not effective"
        extra = f"; closure {r['closure']}" if r.get("closure") else ""
        lines.append(
            f"- {r['number']} (attempt {r['attempt']}): {verdict}{extra} — {r['evidence']}"
        )
    lines += [
        "",
        f"## Closure: approved by {', '.join(approvals)} (request {request_id}), "
        f"{as_utc(row.closed_at or datetime.now(UTC)):%Y-%m-%d %H:%M} UTC",
    ]
    return "\n".join(lines) + "\n"


# --- the report (the run's artifact, `aims capa show --markdown`) --------------------------------


def report_markdown(uow: UnitOfWork, capa_id: int) -> str:
    """The 10.2 checklist, actions, verifications, similar open CAPAs and the timeline."""
    with uow.read():
        s = uow.session
        row = _load(s, capa_id)
        c = _out(s, row)
        similar = [(x.id, x.title, x.status.value) for x in _similar_rows(s, row)]
        events = list(
            s.execute(
                select(AuditEvent.at, AuditEvent.action, AuditEvent.actor, AuditEvent.channel)
                .where(
                    AuditEvent.subject == subject(capa_id), AuditEvent.action.startswith("capa.")
                )
                .order_by(AuditEvent.id)
            )
        )
    order = list(CapaStatus)
    reached = order.index(c.status)

    def box(step: CapaStatus, text: str) -> str:
        return f"- [{'x' if reached > order.index(step) else ' '}] {text}"

    rc = c.root_cause
    lines = [
        f"## CAPA {c.id}: {c.title} — {c.status.value.upper()}",
        "",
        f"- **source**: {c.source}" + (f" (incident {c.incident_id})" if c.incident_id else ""),
        f"- **system**: {c.system or '-'} · **control**: {c.control_id or '-'} · "
        f"**owner**: {c.owner} · **attempt**: {c.attempt}",
        f"- **next**: {c.next_step}",
        "",
        "### ISO/IEC 42001 10.2 checklist",
        "",
        box(CapaStatus.containment, "react: contain and correct, deal with the consequences"),
        box(
            CapaStatus.root_cause,
            f"determine the cause (attempt {c.attempt})" + (f": {rc.root_cause}" if rc else ""),
        ),
        box(CapaStatus.root_cause, "check for similar nonconformities")
        + (f": {', '.join(f'CAPA {i}' for i in rc.similar) or 'none'}" if rc else ""),
        box(CapaStatus.action_plan, f"plan actions ({len(c.current_actions)})"),
        box(
            CapaStatus.tracking,
            f"implement actions ({len(c.current_actions) - len(c.open_actions)} of "
            f"{len(c.current_actions)} done)",
        ),
        box(CapaStatus.verification, "review the effectiveness of the actions"),
        box(CapaStatus.awaiting_closure, "closure approved, records kept"),
    ]
    if c.actions:
        lines += ["", "### Actions", "", "| # | attempt | action | owner | due | done |"]
        lines.append("|---|---|---|---|---|---|")
        for a in c.actions:
            done = f"{a.done_at:%Y-%m-%d}" if a.done_at else "-"
            lines.append(
                f"| {a.id} | {a.attempt} | {_cell(a.title)} | {a.owner} | {a.due} | {done} |"
            )
    if c.verifications:
        lines += ["", "### Effectiveness verifications", ""]
        for v in c.verifications:
            verdict = "effective" if v.effective else "**not effective**"
            lines.append(
                f"- {v.number} (attempt {v.attempt}, {v.at:%Y-%m-%d}): {verdict} by "
                f"{v.verifier or v.recorded_by} — {_cell(v.evidence)}"
                + (f" · closure {v.closure}" if v.closure else "")
            )
    lines += ["", "### Similar open CAPAs (same system or control)", ""]
    lines += [f"- CAPA {i}: {_cell(t)} ({st})" for i, t, st in similar] or ["- none"]
    lines += ["", "### Timeline", "", "| when (UTC) | what | who | via |", "|---|---|---|---|"]
    lines += [
        f"| {as_utc(e.at):%Y-%m-%d %H:%M} | {e.action.removeprefix('capa.')} | {e.actor} | "
        f"{e.channel} |"
        for e in events
    ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:200]


# --- tracking: reminders, escalation, verification due (on a schedule) -------------------------


def _open_actions(session: Session) -> list[CapaAction]:
    return [
        a
        for a in session.scalars(
            select(CapaAction)
            .join(Capa, Capa.id == CapaAction.capa_id)
            .where(
                CapaAction.done_at.is_(None),
                CapaAction.attempt == Capa.attempt,
                Capa.status.in_(OPEN),
            )
            .order_by(CapaAction.id)
        )
    ]


def _reminders_due(policy: CapaPolicy, action: CapaAction, now: datetime) -> int:
    """How many of the action's reminders have fallen due by `now`."""
    return sum(1 for t in policy.tracking.reminder_times(action.due_at) if t <= now)


def _lock_action(session: Session, action_id: int) -> CapaAction | None:
    return session.scalar(
        select(CapaAction)
        .where(CapaAction.id == action_id)
        .options(selectinload(CapaAction.owner))
        .with_for_update(of=CapaAction)
    )


def due_reminders(settings: Settings, now: datetime | None = None) -> TickReport:
    """Remind action owners before and on due dates, escalate overdue actions once.

    Per action at most one reminder per pass (a late-planned action gets the latest reminder
    due, not all the missed ones), and one escalation ever: to the owner's manager and the
    policy's escalation role. Each is queued and recorded in one transaction with the action
    locked and the condition checked again, so a repeat at the same `now` does nothing.
    """
    at = _utc(now)
    report = TickReport(at=at)
    policy = capa_policy(settings)
    with UnitOfWork(settings).read() as uow:
        candidates = [
            (
                a.id,
                _reminders_due(policy, a, at) > a.reminders_sent,
                a.escalated_at is None and policy.tracking.escalation_time(a.due_at) <= at,
            )
            for a in _open_actions(uow.session)
        ]
    for action_id, remind, escalate in candidates:
        for step, wanted, fn in (("remind", remind, _remind), ("escalate", escalate, _escalate)):
            if not wanted:
                continue
            try:
                if fn(settings, policy, action_id, at):
                    (report.reminded_ids if step == "remind" else report.escalated_ids).append(
                        action_id
                    )
            except Exception as exc:  # one bad record must not hold the others up
                log.exception("%s of CAPA action %d failed", step, action_id)
                report.failures.append(Failure(step=step, id=action_id, error=_error(exc)))  # type: ignore[arg-type]
    return report


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _remind(settings: Settings, policy: CapaPolicy, action_id: int, now: datetime) -> bool:
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        action = _lock_action(s, action_id)
        if action is None or action.done_at is not None:
            return False
        n = _reminders_due(policy, action, now)
        if n <= action.reminders_sent:
            return False
        row = _load(s, action.capa_id)
        due = as_utc(action.due_at).date()
        days = (due - now.date()).days
        when = "today" if days == 0 else ("overdue" if days < 0 else f"in {days} day(s)")
        _notify(
            s,
            f"capa-action-{action.id}-reminder-{n}",
            "capa-reminder",
            row,
            action.owner,
            f"Reminder: action {action.id} of {_head(row)} — {action.title} — is due {when} "
            f"({due}). When done: `aims capa done {action.id} --evidence ...`",
        )
        action.reminders_sent = n
        uow.audit(
            TRACKER,
            "capa.action-reminded",
            subject(row.id),
            action_id=action.id,
            reminder=n,
            owner=action.owner.email,
            due=due.isoformat(),
        )
        uow.commit()
    return True


def _escalation_contacts(session: Session, policy: CapaPolicy, action: CapaAction) -> list[Person]:
    people: dict[int, Person] = {}
    manager = action.owner.manager
    if manager is not None and manager.active:
        people[manager.id] = manager
    role = policy.tracking.escalation_role
    for p in _role_holders(session, [role] if role else []):
        people.setdefault(p.id, p)
    return list(people.values())


def _escalate(settings: Settings, policy: CapaPolicy, action_id: int, now: datetime) -> bool:
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        action = _lock_action(s, action_id)
        if (
            action is None
            or action.done_at is not None
            or action.escalated_at is not None
            or policy.tracking.escalation_time(action.due_at) > now
        ):
            return False
        contacts = _escalation_contacts(s, policy, action)
        if not contacts:
            # Not recorded as escalated: tried (and shown failing) every pass until someone can
            # be told.
            raise AimsError(
                f"nobody to escalate to: {action.owner.email} has no active manager and nobody "
                f"holds the role {policy.tracking.escalation_role}"
            )
        row = _load(s, action.capa_id)
        due = as_utc(action.due_at).date()
        for p in contacts:
            _notify(
                s,
                f"capa-action-{action.id}-escalation-to-{p.id}",
                "capa-escalation",
                row,
                p,
                f"Overdue: action {action.id} of {_head(row)} — {action.title} — owned by "
                f"{action.owner.name} <{action.owner.email}>, was due {due}.",
            )
        action.escalated_at = now
        uow.audit(
            TRACKER,
            "capa.action-escalated",
            subject(row.id),
            action_id=action.id,
            owner=action.owner.email,
            due=due.isoformat(),
            contacts=[p.email for p in contacts],
        )
        uow.commit()
    return True


#: `wake(settings, capa) -> ResumeOutcome`: the real one asks the Prefect API.
WakeFn = Callable[[Settings, CapaOut], ResumeOutcome | str]


def _wake_if_sleeping(settings: Settings, c: CapaOut) -> ResumeOutcome:
    """Resume the CAPA's run if it is suspended waiting for the verification date (and only
    then: a run already waiting for the verifier, or running, is left alone)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from notifications.resume import resume_run

    assert c.flow_run_id
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(c.flow_run_id)).state
    except ObjectNotFound:
        return ResumeOutcome.finished
    except Exception as exc:  # Prefect unreachable: the next pass tries again
        log.warning("CAPA %d: cannot read run %s: %s", c.id, c.flow_run_id, exc)
        return ResumeOutcome.deferred
    if state is not None and state.is_final():
        return ResumeOutcome.finished
    if state is None or not state.is_paused():
        return ResumeOutcome.nothing_to_do
    if UNTIL_DUE not in (state.state_details.pause_key or ""):
        return ResumeOutcome.nothing_to_do
    return resume_run(UUID(c.flow_run_id), {}, attempts=1, delay=0)


def wake_due_verifications(
    settings: Settings, now: datetime | None = None, *, wake: WakeFn | None = None
) -> TickReport:
    """For every CAPA whose effectiveness verification has fallen due: tell its owner and the
    verifiers (once per verification), and resume its run if it sleeps until that date, so the
    run asks the verifier. `wake` is injectable for tests; failures are counted, never raised."""
    at = _utc(now)
    wake = wake or _wake_if_sleeping
    report = TickReport(at=at)
    with UnitOfWork(settings).read() as uow:
        due = [
            _out(uow.session, row)
            for row in uow.session.scalars(
                _listing()
                .where(Capa.status == CapaStatus.verification, Capa.verification_due_at <= at)
                .order_by(Capa.id)
            )
        ]
    for c in due:
        try:
            if _announce(settings, c.id, at):
                report.announced_ids.append(c.id)
        except Exception as exc:
            log.exception("verification-due notice of CAPA %d failed", c.id)
            report.failures.append(Failure(step="announce", id=c.id, error=_error(exc)))
        if not c.flow_run_id:
            continue
        try:
            outcome = ResumeOutcome(wake(settings, c))
        except Exception as exc:
            report.failures.append(Failure(step="wake", id=c.id, error=_error(exc)))
            continue
        if outcome is ResumeOutcome.resumed:
            report.woken_ids.append(c.id)
        elif outcome is ResumeOutcome.deferred:
            report.deferred_ids.append(c.id)
        elif outcome is ResumeOutcome.finished:
            report.ended_ids.append(c.id)
    return report


def _announce(settings: Settings, capa_id: int, now: datetime) -> bool:
    """Queue the verification-due notices once per verification and due date (an action added
    meanwhile moves the date: announced again), recorded on the CAPA."""
    policy = capa_policy(settings)
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        row = _load(s, capa_id, lock=True)
        due = as_utc(row.verification_due_at) if row.verification_due_at else None
        n = len(_results(row)) + 1
        announced = list((row.verification or {}).get("announced", []))
        if row.status is not CapaStatus.verification or due is None or due > now:
            return False
        marker = f"v{n}-due-{due:%Y%m%d%H%M%S}"
        if marker in announced:
            return False
        verifiers = [
            p
            for p in _role_holders(s, list(policy.verification.verifier_roles))
            if p.id != row.owner_id or policy.verification.owner_may_verify
        ]
        for p in [row.owner, *verifiers]:
            _notify(
                s,
                f"capa-{row.id}-{marker}-to-{p.id}",
                "capa-verification-due",
                row,
                p,
                f"Effectiveness verification of {_head(row)} is due: has the problem recurred "
                f"since the actions of attempt {row.attempt}? A verifier records it: "
                f"`aims capa verify {row.id} --effective|--ineffective --evidence ... --as EMAIL`",
            )
        row.verification = {**(row.verification or {}), "announced": [*announced, marker]}
        uow.audit(
            TRACKER,
            "capa.verification-due",
            subject(row.id),
            verification=n,
            attempt=row.attempt,
            told=[row.owner.email, *(p.email for p in verifiers)],
        )
        uow.commit()
    return True


def tick(
    settings: Settings, now: datetime | None = None, *, wake: WakeFn | None = None
) -> TickReport:
    """One tracking pass: action reminders and escalations, then due verifications. Queued
    messages go out with the next delivery pass (the approval reconciler's, or `aims capa
    tick`'s own)."""
    at = _utc(now)
    return due_reminders(settings, at).merged(wake_due_verifications(settings, at, wake=wake))
