"""The AIMS database: SQLAlchemy 2.0 typed models.

Enumerations are stored as short strings with CHECK constraints (`native_enum=False`), so the same
migrations run on SQLite and PostgreSQL. Later capabilities (approvals, incidents, CAPA, audits,
reviews, training) add their tables beside these.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Aware UTC. A naive value is UTC by this project's convention (SQLite stores no zone)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps that come back aware UTC from both backends, and are stored as UTC.

    SQLite keeps no time zone (values return naive) and compares the stored text, so every value
    bound for storage or comparison is converted to UTC first.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class RiskTier(enum.StrEnum):
    prohibited = "prohibited"
    high = "high"
    limited = "limited"
    minimal = "minimal"
    gpai = "gpai"


class Criticality(enum.StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class LifecycleStage(enum.StrEnum):
    concept = "concept"
    design = "design"
    development = "development"
    validation = "validation"
    deployment = "deployment"
    operation = "operation"
    decommission = "decommission"


class RaciKind(enum.StrEnum):
    responsible = "responsible"
    consulted = "consulted"
    informed = "informed"


class ControlKind(enum.StrEnum):
    clause = "clause"
    annex_objective = "annex-objective"
    annex_control = "annex-control"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=24,
        values_callable=lambda e: [m.value for m in e],
    )


class Role(Base):
    """The role catalog (top-management, system-owner, internal-auditor, ...)."""

    __tablename__ = "role"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")


class PersonRole(Base):
    __tablename__ = "person_role"

    person_id: Mapped[int] = mapped_column(
        ForeignKey("person.id", ondelete="CASCADE"), primary_key=True
    )
    role_id: Mapped[str] = mapped_column(ForeignKey("role.id"), primary_key=True)


class Person(Base):
    __tablename__ = "person"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    slack_user_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    manager: Mapped[Person | None] = relationship(remote_side=[id])
    roles: Mapped[list[Role]] = relationship(secondary="person_role", order_by=Role.id)


class Vendor(Base):
    """A third-party AI supplier (A.10.3); reassessed at an interval set by its criticality."""

    __tablename__ = "vendor"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    criticality: Mapped[Criticality] = mapped_column(
        _enum(Criticality, "vendor_criticality"), default=Criticality.medium
    )
    services: Mapped[str] = mapped_column(Text, default="")
    contact: Mapped[str] = mapped_column(String(320), default="")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    last_assessed_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    owner: Mapped[Person | None] = relationship()


class AISystem(Base):
    """The AI system inventory.

    `name` is the system's KEY (`aims_core.system_keys`): what commands, run names, RACI scopes
    and evidence subjects (`system:<name>`) use, so every stored reference stays valid.
    `display_name` is what people see (any text); a row written without one shows its key.
    """

    __tablename__ = "ai_system"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    display_name: Mapped[str] = mapped_column(
        String(200), default=lambda context: context.get_current_parameters()["name"]
    )
    purpose: Mapped[str] = mapped_column(Text)
    owner_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    risk_tier: Mapped[RiskTier] = mapped_column(_enum(RiskTier, "risk_tier"))
    criticality: Mapped[Criticality] = mapped_column(_enum(Criticality, "criticality"))
    lifecycle_stage: Mapped[LifecycleStage] = mapped_column(
        _enum(LifecycleStage, "lifecycle_stage"), default=LifecycleStage.concept
    )
    vendor_id: Mapped[int | None] = mapped_column(ForeignKey("vendor.id"))
    # A gate whose approval no longer holds (e.g. "operation" after data drift on a high-risk
    # system): set by a reassessment trigger, cleared when that gate is approved again.
    reapproval_stage: Mapped[LifecycleStage | None] = mapped_column(
        _enum(LifecycleStage, "reapproval_stage")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    owner: Mapped[Person] = relationship()
    vendor: Mapped[Vendor | None] = relationship()


class RaciActivity(Base):
    """RACI for one activity, organisation-wide or for one AI system.

    Exactly one Accountable holds by construction: it is a required column, not a member row.
    `scope` is "org" or "system:<id>" so uniqueness works alike on SQLite and PostgreSQL (NULLs
    never collide in a unique index).
    """

    __tablename__ = "raci_activity"
    __table_args__ = (UniqueConstraint("activity", "scope", name="uq_raci_activity_scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    activity: Mapped[str] = mapped_column(String(120))
    scope: Mapped[str] = mapped_column(String(40))
    system_id: Mapped[int | None] = mapped_column(ForeignKey("ai_system.id", ondelete="CASCADE"))
    accountable_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    system: Mapped[AISystem | None] = relationship()
    accountable: Mapped[Person] = relationship()
    members: Mapped[list[RaciMember]] = relationship(
        cascade="all, delete-orphan", order_by="RaciMember.kind"
    )


class RaciMember(Base):
    __tablename__ = "raci_member"

    raci_id: Mapped[int] = mapped_column(
        ForeignKey("raci_activity.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), primary_key=True)
    kind: Mapped[RaciKind] = mapped_column(_enum(RaciKind, "raci_kind"), primary_key=True)

    person: Mapped[Person] = relationship()


class Control(Base):
    """An ISO/IEC 42001 requirement: a clause or sub-clause, an Annex A objective or control."""

    __tablename__ = "control"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[ControlKind] = mapped_column(_enum(ControlKind, "control_kind"))
    title: Mapped[str] = mapped_column(String(300))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("control.id"))
    position: Mapped[int] = mapped_column(Integer)


class SoaEntry(Base):
    """Statement of Applicability: one row per Annex A control that has been decided."""

    __tablename__ = "soa_entry"
    __table_args__ = (
        CheckConstraint(
            "applicable OR length(trim(justification)) > 0", name="not_applicable_justified"
        ),
    )

    control_id: Mapped[str] = mapped_column(ForeignKey("control.id"), primary_key=True)
    applicable: Mapped[bool] = mapped_column(Boolean)
    justification: Mapped[str] = mapped_column(Text, default="")
    updated_by: Mapped[str] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EvidenceHead(Base):
    """The chain head, one row. Appenders lock it first, so concurrent appends cannot fork."""

    __tablename__ = "evidence_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    head: Mapped[str] = mapped_column(String(64))


class Evidence(Base):
    """Append-only, tamper-evident evidence; `chain` is HMAC(key, prev chain + this record)."""

    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(300))
    content: Mapped[str | None] = mapped_column(Text)
    file_name: Mapped[str | None] = mapped_column(String(300))
    media_type: Mapped[str] = mapped_column(String(120), default="text/plain")
    content_sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    prev_chain: Mapped[str] = mapped_column(String(64))
    chain: Mapped[str] = mapped_column(String(64))


class AuditEvent(Base):
    """Who changed what, when, through which channel (cli, slack, ui, schedule, api, ...)."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(80))
    subject: Mapped[str] = mapped_column(String(200), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --- human decisions ---------------------------------------------------------------------------


class ApprovalStatus(enum.StrEnum):
    open = "open"
    approved = "approved"
    rejected = "rejected"
    cancelled = "cancelled"
    answered = "answered"  # an ask that is not an approval: its quorum of answers is in


class Outcome(enum.StrEnum):
    approve = "approve"
    reject = "reject"
    answer = "answer"  # the typed answer to an ask of another kind (`Decision.answer`)


#: The kind of an ask that is an approval (approve / reject); any other kind names its answer
#: form in `aims_core/ask_forms.py`.
APPROVAL_KIND = "approval"


class ApprovalRequest(Base):
    """An ask: a question put to people — approve this gate, confirm this incident, verify this
    CAPA. `kind` says which (an approval, or the answer form of another kind).

    The eligible approvers are fixed when the request is made (roles, RACI, minus the requester
    and anyone `excluded` for segregation of duties), so a later role change cannot silently
    change who decides an open request.
    """

    __tablename__ = "approval_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(80), default=APPROVAL_KIND, server_default="approval")
    subject: Mapped[str] = mapped_column(String(200), index=True)
    activity: Mapped[str] = mapped_column(String(120))
    system_id: Mapped[int | None] = mapped_column(ForeignKey("ai_system.id"))
    title: Mapped[str] = mapped_column(String(300))
    details: Mapped[str] = mapped_column(Text, default="")
    requester_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    requested_by: Mapped[str] = mapped_column(String(320))
    quorum: Mapped[int] = mapped_column(Integer)
    status: Mapped[ApprovalStatus] = mapped_column(
        _enum(ApprovalStatus, "approval_status"), default=ApprovalStatus.open, index=True
    )
    round: Mapped[int] = mapped_column(Integer, default=1)
    deadline: Mapped[datetime | None] = mapped_column()
    evidence_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    #: Segregation of duties beyond the requester: a person's email → why they may not answer.
    excluded: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    resume_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column()
    last_reminded_at: Mapped[datetime | None] = mapped_column()
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None] = mapped_column()

    system: Mapped[AISystem | None] = relationship()
    requester: Mapped[Person | None] = relationship()
    approvers: Mapped[list[ApprovalApprover]] = relationship(
        cascade="all, delete-orphan", order_by="ApprovalApprover.person_id"
    )
    decisions: Mapped[list[Decision]] = relationship(order_by="Decision.id")


class ApprovalApprover(Base):
    """An eligible answerer of one ask, and the state of their personal code for the UI form.

    No code and no hash of one is stored: the code is derived from the evidence key (kept
    outside the database) and `code_counter`, which advances every time a UI submission naming
    this person is read — so a code left in Prefect's stored run inputs is dead once read."""

    __tablename__ = "approval_approver"

    request_id: Mapped[int] = mapped_column(
        ForeignKey("approval_request.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), primary_key=True)
    code_counter: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    wrong_codes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Five wrong codes lock the UI channel for this person and ask (Slack and CLI still work).
    ui_locked_at: Mapped[datetime | None] = mapped_column()

    person: Mapped[Person] = relationship()


class Decision(Base):
    """One person's answer to one request: exactly one, however often it is sent."""

    __tablename__ = "decision"
    __table_args__ = (UniqueConstraint("request_id", "person_id", name="uq_decision_once"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("approval_request.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    outcome: Mapped[Outcome] = mapped_column(_enum(Outcome, "outcome"))
    comment: Mapped[str] = mapped_column(Text, default="")
    #: The typed answer of an ask that is not an approval, as its form validated it.
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    channel: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(320))
    round: Mapped[int] = mapped_column(Integer)
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)

    person: Mapped[Person] = relationship()


# --- notifications (outbox) --------------------------------------------------------------------


class NotificationStatus(enum.StrEnum):
    queued = "queued"
    sent = "sent"
    logged = "logged"  # no Slack configured: written to the log and listed by the CLI
    failed = "failed"  # permanent error (e.g. channel_not_found); kept for an operator


class Notification(Base):
    """A message to a person or channel, written first and delivered after (at least once)."""

    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200), index=True)
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    target: Mapped[str] = mapped_column(String(120))
    thread_key: Mapped[str] = mapped_column(String(200), index=True)
    text: Mapped[str] = mapped_column(Text)
    blocks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("approval_request.id"), index=True)
    updates_id: Mapped[int | None] = mapped_column(ForeignKey("notification.id"))
    status: Mapped[NotificationStatus] = mapped_column(
        _enum(NotificationStatus, "notification_status"),
        default=NotificationStatus.queued,
        index=True,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()
    slack_channel: Mapped[str | None] = mapped_column(String(64))
    slack_ts: Mapped[str | None] = mapped_column(String(64))

    recipient: Mapped[Person | None] = relationship()


# --- life cycle: gates, risks, impact assessments, system events -------------------------------


class GateStatus(enum.StrEnum):
    missing_evidence = "missing-evidence"  # ended without asking anyone: evidence incomplete
    refused = "refused"  # the policy forbids it (e.g. a prohibited system beyond concept)
    waiting = "waiting"  # approval requested
    approved = "approved"
    rejected = "rejected"


class GateReview(Base):
    """One request to pass a gate, with its checklist and outcome (evidence of 8.1 / A.6)."""

    __tablename__ = "gate_review"

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("ai_system.id"), index=True)
    from_stage: Mapped[LifecycleStage] = mapped_column(_enum(LifecycleStage, "gate_from_stage"))
    to_stage: Mapped[LifecycleStage] = mapped_column(_enum(LifecycleStage, "gate_to_stage"))
    status: Mapped[GateStatus] = mapped_column(_enum(GateStatus, "gate_status"))
    checklist: Mapped[dict[str, Any]] = mapped_column(default=dict)
    missing: Mapped[list[str]] = mapped_column(JSON, default=list)
    reasons: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[int | None] = mapped_column(ForeignKey("approval_request.id"))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column()

    system: Mapped[AISystem] = relationship()


class TreatmentOption(enum.StrEnum):
    avoid = "avoid"
    mitigate = "mitigate"
    transfer = "transfer"
    accept = "accept"


class RiskStatus(enum.StrEnum):
    open = "open"  # identified, not yet treated
    treated = "treated"  # a treatment is chosen (and, for acceptance above appetite, approved)
    awaiting_acceptance = "awaiting-acceptance"
    closed = "closed"


class Risk(Base):
    """An AI risk of one system (6.1.2), with its treatment (6.1.3) and residual score."""

    __tablename__ = "risk"

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("ai_system.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    likelihood: Mapped[int] = mapped_column(Integer)
    impact: Mapped[int] = mapped_column(Integer)
    score: Mapped[int] = mapped_column(Integer)
    treatment: Mapped[TreatmentOption | None] = mapped_column(
        _enum(TreatmentOption, "treatment_option")
    )
    justification: Mapped[str] = mapped_column(Text, default="")
    residual_likelihood: Mapped[int | None] = mapped_column(Integer)
    residual_impact: Mapped[int | None] = mapped_column(Integer)
    residual_score: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[RiskStatus] = mapped_column(
        _enum(RiskStatus, "risk_status"), default=RiskStatus.open
    )
    acceptance_request_id: Mapped[int | None] = mapped_column(ForeignKey("approval_request.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    system: Mapped[AISystem] = relationship()
    owner: Mapped[Person] = relationship()


class SystemEventKind(enum.StrEnum):
    model_update = "model-update"
    data_drift = "data-drift"
    regulation_change = "regulation-change"


class SystemEvent(Base):
    """What reopens a system's risk assessment (and, when high-risk, its operation gate)."""

    __tablename__ = "system_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("ai_system.id"), index=True)
    kind: Mapped[SystemEventKind] = mapped_column(_enum(SystemEventKind, "system_event_kind"))
    details: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(32))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    system: Mapped[AISystem] = relationship()


class ImpactStatus(enum.StrEnum):
    draft = "draft"
    answered = "answered"
    approved = "approved"
    rejected = "rejected"


class ImpactAssessment(Base):
    """An AI system impact assessment (6.1.4, A.5): answers to the questionnaire, its approval."""

    __tablename__ = "impact_assessment"

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("ai_system.id"), index=True)
    questionnaire: Mapped[str] = mapped_column(String(64))
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[ImpactStatus] = mapped_column(
        _enum(ImpactStatus, "impact_status"), default=ImpactStatus.draft
    )
    request_id: Mapped[int | None] = mapped_column(ForeignKey("approval_request.id"))
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()

    system: Mapped[AISystem] = relationship()


# --- incidents, regulatory clocks, CAPA --------------------------------------------------------


class IncidentStatus(enum.StrEnum):
    open = "open"
    contained = "contained"
    investigating = "investigating"
    awaiting_closure = "awaiting-closure"
    closed = "closed"


class Incident(Base):
    """An AI incident (clause 10, A.8.4); `aware_at` starts the regulatory clocks (Art. 73)."""

    __tablename__ = "incident"

    id: Mapped[int] = mapped_column(primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("ai_system.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    summary: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(8))  # SEV1..SEV4, from the classification data
    category: Mapped[str] = mapped_column(String(40))  # from the classification data
    status: Mapped[IncidentStatus] = mapped_column(
        _enum(IncidentStatus, "incident_status"), default=IncidentStatus.open, index=True
    )
    source: Mapped[str] = mapped_column(String(32))  # cli, api, alertmanager, drill
    fingerprint: Mapped[str | None] = mapped_column(String(200), index=True)
    aware_at: Mapped[datetime] = mapped_column()
    reported_at: Mapped[datetime] = mapped_column(default=utcnow)
    serious_suggested: Mapped[list[str]] = mapped_column(JSON, default=list)
    serious_kind: Mapped[str | None] = mapped_column(String(40))
    serious_confirmed_at: Mapped[datetime | None] = mapped_column()
    is_drill: Mapped[bool] = mapped_column(Boolean, default=False)
    playbook: Mapped[str | None] = mapped_column(String(64))
    root_cause: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lessons: Mapped[str] = mapped_column(Text, default="")
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    reported_by: Mapped[str] = mapped_column(String(320))
    closed_at: Mapped[datetime | None] = mapped_column()

    system: Mapped[AISystem] = relationship()
    timeline: Mapped[list[IncidentEvent]] = relationship(order_by="IncidentEvent.id")


class IncidentEvent(Base):
    """One line of an incident's timeline: what happened, when, by whom."""

    __tablename__ = "incident_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str] = mapped_column(String(320))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)


class HookRun(Base):
    """A playbook hook fired (or rehearsed): recorded before it runs, so it never runs twice."""

    __tablename__ = "hook_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id"), index=True)
    step: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(20))  # shell, http, deployment
    target: Mapped[str] = mapped_column(Text)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20))  # started, succeeded, failed, rehearsed
    output: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class ClockStatus(enum.StrEnum):
    running = "running"
    met = "met"
    overdue = "overdue"
    stopped = "stopped"


class RegulatoryClock(Base):
    """A reporting deadline counted from `aware_at` (Art. 73, GDPR 72 h, internal SLAs...)."""

    __tablename__ = "regulatory_clock"
    __table_args__ = (UniqueConstraint("incident_id", "rule", name="uq_clock_per_rule"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id"), index=True)
    rule: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(300))
    started_at: Mapped[datetime] = mapped_column()
    deadline: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[ClockStatus] = mapped_column(
        _enum(ClockStatus, "clock_status"), default=ClockStatus.running
    )
    reminders_fired: Mapped[list[float]] = mapped_column(JSON, default=list)
    escalated_at: Mapped[datetime | None] = mapped_column()
    met_at: Mapped[datetime | None] = mapped_column()


class CapaStatus(enum.StrEnum):
    containment = "containment"
    root_cause = "root-cause"
    action_plan = "action-plan"
    tracking = "tracking"
    verification = "verification"
    awaiting_closure = "awaiting-closure"
    closed = "closed"


class Capa(Base):
    """Corrective and preventive action (10.2): from a nonconformity to a verified fix."""

    __tablename__ = "capa"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(32))  # incident, audit-finding, manual
    system_id: Mapped[int | None] = mapped_column(ForeignKey("ai_system.id"), index=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id"))
    control_id: Mapped[str | None] = mapped_column(ForeignKey("control.id"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    status: Mapped[CapaStatus] = mapped_column(
        _enum(CapaStatus, "capa_status"), default=CapaStatus.containment, index=True
    )
    containment: Mapped[str] = mapped_column(Text, default="")
    root_cause: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempt: Mapped[int] = mapped_column(Integer, default=1)  # +1 each time verification fails
    verify_after_days: Mapped[int] = mapped_column(Integer, default=30)
    verification_due_at: Mapped[datetime | None] = mapped_column()
    verification: Mapped[dict[str, Any]] = mapped_column(default=dict)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column()

    owner: Mapped[Person] = relationship()
    system: Mapped[AISystem | None] = relationship()
    actions: Mapped[list[CapaAction]] = relationship(order_by="CapaAction.id")


class CapaAction(Base):
    __tablename__ = "capa_action"

    id: Mapped[int] = mapped_column(primary_key=True)
    capa_id: Mapped[int] = mapped_column(ForeignKey("capa.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    owner_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    due_at: Mapped[datetime] = mapped_column()
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    done_at: Mapped[datetime | None] = mapped_column()
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None] = mapped_column()

    owner: Mapped[Person] = relationship()


# --- scheduled cycles: training, policies, vendors, internal audit, management review ---------


class TrainingRequirement(Base):
    """A training every holder of a role must have current (7.2, A.4.6)."""

    __tablename__ = "training_requirement"
    __table_args__ = (UniqueConstraint("role_id", "training", name="uq_training_per_role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    role_id: Mapped[str] = mapped_column(ForeignKey("role.id"))
    training: Mapped[str] = mapped_column(String(64))  # an id from the training catalog
    title: Mapped[str] = mapped_column(String(300))
    validity_days: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainingRecord(Base):
    """One completion of a training by a person; the newest per (person, training) counts."""

    __tablename__ = "training_record"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    training: Mapped[str] = mapped_column(String(64), index=True)
    completed_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    recorded_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Days-before-expiry thresholds already reminded (e.g. [30, 7]); set when escalated.
    reminders_sent: Mapped[list[int]] = mapped_column(JSON, default=list)
    escalated_at: Mapped[datetime | None] = mapped_column()

    person: Mapped[Person] = relationship()


class PolicyVersionStatus(enum.StrEnum):
    draft = "draft"
    in_approval = "in-approval"
    approved = "approved"
    rejected = "rejected"
    superseded = "superseded"


class Policy(Base):
    """A governed document (5.2, A.2): the AI policy, the AI incident management policy, ..."""

    __tablename__ = "policy"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    owner_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    review_interval_months: Mapped[int] = mapped_column(Integer)
    template: Mapped[str | None] = mapped_column(String(120))
    last_reviewed_at: Mapped[datetime | None] = mapped_column()
    # The due date a reminder was last sent for: one reminder per due review.
    review_notified_for: Mapped[datetime | None] = mapped_column()
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    owner: Mapped[Person] = relationship()
    versions: Mapped[list[PolicyVersion]] = relationship(order_by="PolicyVersion.version")


class PolicyVersion(Base):
    __tablename__ = "policy_version"
    __table_args__ = (UniqueConstraint("policy_id", "version", name="uq_policy_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[PolicyVersionStatus] = mapped_column(
        _enum(PolicyVersionStatus, "policy_version_status"), default=PolicyVersionStatus.draft
    )
    body: Mapped[str] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64))
    change_note: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[int | None] = mapped_column(ForeignKey("approval_request.id"))
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    approved_at: Mapped[datetime | None] = mapped_column()


class PolicyReview(Base):
    """A periodic review of a policy: kept as is, or changed by a new version."""

    __tablename__ = "policy_review"

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id"), index=True)
    reviewed_at: Mapped[datetime] = mapped_column()
    reviewer: Mapped[str] = mapped_column(String(320))
    outcome: Mapped[str] = mapped_column(String(24))  # unchanged, new-version
    notes: Mapped[str] = mapped_column(Text, default="")
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))


class ExceptionStatus(enum.StrEnum):
    open = "open"
    closed = "closed"


class PolicyException(Base):
    """A granted deviation from a policy, valid until `expires_at`, then closed."""

    __tablename__ = "policy_exception"

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(Text)
    system_id: Mapped[int | None] = mapped_column(ForeignKey("ai_system.id"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    granted_by: Mapped[str] = mapped_column(String(320))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[ExceptionStatus] = mapped_column(
        _enum(ExceptionStatus, "exception_status"), default=ExceptionStatus.open, index=True
    )
    reminders_sent: Mapped[list[int]] = mapped_column(JSON, default=list)
    closed_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    policy: Mapped[Policy] = relationship()
    owner: Mapped[Person] = relationship()


class VendorAssessmentStatus(enum.StrEnum):
    open = "open"
    completed = "completed"


class VendorAssessment(Base):
    """A (re)assessment of a third-party AI vendor (A.10.3), due by its criticality."""

    __tablename__ = "vendor_assessment"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    vendor_id: Mapped[int] = mapped_column(ForeignKey("vendor.id"), index=True)
    status: Mapped[VendorAssessmentStatus] = mapped_column(
        _enum(VendorAssessmentStatus, "vendor_assessment_status"),
        default=VendorAssessmentStatus.open,
    )
    reason: Mapped[str] = mapped_column(String(40))  # scheduled, initial, manual, incident
    due_at: Mapped[datetime] = mapped_column()
    assessor_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    result: Mapped[str | None] = mapped_column(String(24))  # acceptable, conditional, unacceptable
    notes: Mapped[str] = mapped_column(Text, default="")
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()


class AuditProgramme(Base):
    """The internal audit programme (9.2.2): every requirement audited within the cycle."""

    __tablename__ = "audit_programme"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    cycle_years: Mapped[int] = mapped_column(Integer)
    starts_on: Mapped[datetime] = mapped_column()
    ends_on: Mapped[datetime] = mapped_column()
    periods: Mapped[list[str]] = mapped_column(JSON, default=list)  # e.g. ["2026Q4", ...]
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    audits: Mapped[list[Audit]] = relationship(order_by="Audit.period")


class AuditStatus(enum.StrEnum):
    planned = "planned"
    in_progress = "in-progress"
    reporting = "reporting"  # fieldwork done, report awaiting approval
    closed = "closed"
    cancelled = "cancelled"


class Audit(Base):
    """One internal audit of the programme: a period, a scope, an independent auditor."""

    __tablename__ = "audit"
    __table_args__ = (UniqueConstraint("programme_id", "period", name="uq_audit_period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("audit_programme.id"), index=True)
    period: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(300))
    scope: Mapped[list[str]] = mapped_column(JSON, default=list)  # control ids
    scope_reasons: Mapped[dict[str, Any]] = mapped_column(default=dict)  # control id -> why
    systems: Mapped[list[str]] = mapped_column(JSON, default=list)  # system names sampled
    auditor_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    status: Mapped[AuditStatus] = mapped_column(
        _enum(AuditStatus, "audit_status"), default=AuditStatus.planned, index=True
    )
    checklist: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("approval_request.id"))
    report_evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    planned_start: Mapped[datetime] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()

    programme: Mapped[AuditProgramme] = relationship(back_populates="audits")
    auditor: Mapped[Person | None] = relationship()
    findings: Mapped[list[AuditFinding]] = relationship(order_by="AuditFinding.id")


class FindingKind(enum.StrEnum):
    major = "major-nc"
    minor = "minor-nc"
    observation = "observation"
    opportunity = "opportunity"


class AuditFinding(Base):
    __tablename__ = "audit_finding"

    id: Mapped[int] = mapped_column(primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audit.id"), index=True)
    control_id: Mapped[str] = mapped_column(ForeignKey("control.id"))
    kind: Mapped[FindingKind] = mapped_column(_enum(FindingKind, "finding_kind"))
    statement: Mapped[str] = mapped_column(Text)
    system_id: Mapped[int | None] = mapped_column(ForeignKey("ai_system.id"))
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    capa_id: Mapped[int | None] = mapped_column(ForeignKey("capa.id"))
    recorded_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContextKind(enum.StrEnum):
    external_issue = "external-issue"
    internal_issue = "internal-issue"
    interested_party = "interested-party"
    improvement = "improvement"  # an opportunity for continual improvement raised by anyone


class ContextEntry(Base):
    """A change in the organisation's context (4.1, 4.2) recorded for the management review."""

    __tablename__ = "context_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[ContextKind] = mapped_column(_enum(ContextKind, "context_kind"))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    change: Mapped[str] = mapped_column(String(16), default="new")  # new, changed, resolved
    recorded_by: Mapped[str] = mapped_column(String(320))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ReviewStatus(enum.StrEnum):
    prepared = "prepared"  # pack written, minutes approval open
    approved = "approved"
    rejected = "rejected"


class ManagementReview(Base):
    """A management review (9.3) of one period: the pack, its minutes, the decisions taken."""

    __tablename__ = "management_review"

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(16), unique=True)  # 2026Q4
    status: Mapped[ReviewStatus] = mapped_column(
        _enum(ReviewStatus, "review_status"), default=ReviewStatus.prepared
    )
    period_start: Mapped[datetime] = mapped_column()
    period_end: Mapped[datetime] = mapped_column()
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the figures of the pack
    pack_dir: Mapped[str | None] = mapped_column(Text)
    pack_evidence_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    minutes: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[int | None] = mapped_column(ForeignKey("approval_request.id"))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    prepared_by: Mapped[str] = mapped_column(String(320))
    prepared_at: Mapped[datetime] = mapped_column(default=utcnow)
    approved_at: Mapped[datetime | None] = mapped_column()

    actions: Mapped[list[ReviewAction]] = relationship(order_by="ReviewAction.id")


class ReviewAction(Base):
    """A decision of a management review (9.3.3), tracked until done; input a) of the next."""

    __tablename__ = "review_action"

    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("management_review.id"), index=True)
    decision: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(24))  # improvement, change, resources
    owner_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    due_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, done, dropped
    done_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str] = mapped_column(Text, default="")
    recorded_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)

    owner: Mapped[Person] = relationship()


# --- gap assessment and the implementation plan ------------------------------------------------


class GapStatus(enum.StrEnum):
    draft = "draft"
    answered = "answered"
    approved = "approved"
    rejected = "rejected"


class GapAssessment(Base):
    """Where the organisation stands against ISO/IEC 42001: one conformity per requirement,
    approved; `maturity` is frozen at approval (the rule may change later)."""

    __tablename__ = "gap_assessment"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[GapStatus] = mapped_column(
        _enum(GapStatus, "gap_status"), default=GapStatus.draft, index=True
    )
    maturity: Mapped[dict[str, Any]] = mapped_column(default=dict)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("approval_request.id"))
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()
    approved_at: Mapped[datetime | None] = mapped_column()

    answers: Mapped[list[GapAnswer]] = relationship(order_by="GapAnswer.position")


class GapAnswer(Base):
    """One requirement of one assessment: what the records suggest, what the assessor says."""

    __tablename__ = "gap_answer"
    __table_args__ = (
        UniqueConstraint("assessment_id", "requirement_id", name="uq_gap_answer_requirement"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assessment_id: Mapped[int] = mapped_column(ForeignKey("gap_assessment.id"), index=True)
    requirement_id: Mapped[str] = mapped_column(ForeignKey("control.id"))
    position: Mapped[int] = mapped_column(Integer)
    suggested_status: Mapped[str | None] = mapped_column(String(24))
    suggested_records: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: What confirming the suggestion records as the note (an SoA exclusion's justification).
    suggested_note: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str | None] = mapped_column(String(24))
    note: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[list[str]] = mapped_column(JSON, default=list)
    answered_by: Mapped[str | None] = mapped_column(String(320))
    answered_at: Mapped[datetime | None] = mapped_column()


class PlanTaskStatus(enum.StrEnum):
    open = "open"
    done = "done"
    superseded = "superseded"  # a later approved assessment made a new plan


class PlanTask(Base):
    """A task of the implementation plan: closes one gap, closed by the evidence it names."""

    __tablename__ = "plan_task"
    __table_args__ = (
        UniqueConstraint("assessment_id", "requirement_id", name="uq_plan_task_requirement"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assessment_id: Mapped[int] = mapped_column(ForeignKey("gap_assessment.id"), index=True)
    requirement_id: Mapped[str] = mapped_column(ForeignKey("control.id"))
    title: Mapped[str] = mapped_column(String(300))
    phase: Mapped[str] = mapped_column(String(64))
    milestone: Mapped[str] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(16))
    rank: Mapped[int] = mapped_column(Integer)
    owner_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    due_at: Mapped[datetime] = mapped_column(index=True)
    depends_on: Mapped[list[str]] = mapped_column(JSON, default=list)  # requirement ids
    evidence_kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[PlanTaskStatus] = mapped_column(
        _enum(PlanTaskStatus, "plan_task_status"), default=PlanTaskStatus.open, index=True
    )
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    done_at: Mapped[datetime | None] = mapped_column()
    reminded_on: Mapped[str | None] = mapped_column(String(10))  # ISO day of the last reminder
    escalated_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    owner: Mapped[Person] = relationship()
