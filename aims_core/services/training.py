"""Training requirements and records: competence that expires (ISO/IEC 42001 7.2, 7.3, A.4.6).

- **Catalog** (data): the trainings an AIMS needs, how long a completion counts, the controls
  each serves, and the default trainings per role — `aims_core/data/training_catalog.yaml`,
  overridable by `training_catalog.yaml` in the data dir.
- **Requirements** (database): a role requires a training (`require`); every holder of the role
  must have it current.
- **Records**: one completion per row, with `training-record` evidence on `person:<email>`; the
  newest per (person, training) counts, so renewing is recording again.
- **Competence check**: a person whose required training expired may not decide approvals
  (`competence_refusal`, always consulted by `approvals.decide`, whatever the channel); never
  completing one refuses too when `training_blocks_missing` is set. A renewal restores the
  right at once.
- **Daily pass** (`tick`): reminders to the holder at each of `training_reminder_days` before
  expiry (once per threshold per record), one escalation to the manager (else the governance
  leads) after expiry — all queued in the outbox with stable keys, so a repeated pass sends
  nothing twice.

Dates a person types or reads (completed, expires) are calendar days in `settings.timezone`: a
training that "expires on 2026-11-23" counts until the start of that day there.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core import catalog
from aims_core.data_files import DataFileInvalid, Strict, load_data_file, parse_data_file
from aims_core.errors import AimsError, Conflict, InvalidInput
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import (
    ApprovalRequest,
    Person,
    PersonRole,
    Role,
    TrainingRecord,
    TrainingRequirement,
    as_utc,
)
from aims_core.schemas import Email
from aims_core.services import evidence, outbox
from aims_core.services.people import get_person
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

__all__ = [
    "CatalogTraining",
    "MatrixRow",
    "RecordIn",
    "RecordOut",
    "RequirementIn",
    "RequirementOut",
    "Status",
    "TickReport",
    "TrainingCatalog",
    "TrainingCatalogInvalid",
    "competence_refusal",
    "export_xlsx",
    "list_requirements",
    "load_demo",
    "matrix",
    "record",
    "require",
    "require_defaults",
    "run_name",
    "tick",
    "training_catalog",
]

log = logging.getLogger("aims.training")

CATALOG_FILE: Final = "training_catalog.yaml"
EVIDENCE_KIND: Final = "training-record"
GOVERNANCE_LEAD: Final = "governance-lead"
#: Who the audit trail names for the daily pass's reminders and escalations.
TRACKER: Final = Actor(who="aims-training-tracker", channel="schedule")
SUMMARY_SHEET: Final = "Summary"

TrainingId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$"
    ),
]


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


# --- the catalog (data) ------------------------------------------------------------------------


class TrainingCatalogInvalid(DataFileInvalid):
    field_name = "training_catalog"


class CatalogTraining(Strict):
    id: TrainingId
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    validity_days: int = Field(ge=1, le=3650)
    description: str = ""
    controls: list[str] = Field(default_factory=list)


class TrainingCatalog(Strict):
    trainings: list[CatalogTraining] = Field(min_length=1)
    #: role id -> the trainings it requires by default
    requirements: dict[str, list[str]] = Field(default_factory=dict)

    def get(self, training: str) -> CatalogTraining:
        """The training, or an InvalidInput listing the catalog."""
        found = next((t for t in self.trainings if t.id == training), None)
        if found is None:
            known = ", ".join(t.id for t in self.trainings)
            raise InvalidInput(
                f"unknown training '{training}' (catalog: {known}; `aims training catalog`)",
                "training",
            )
        return found

    def roles_requiring(self, training: str) -> list[str]:
        return [role for role, ids in self.requirements.items() if training in ids]

    def problems(self) -> list[str]:
        """What a schema cannot check: unique ids, known trainings, roles and controls."""
        out: list[str] = []
        ids = [t.id for t in self.trainings]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            out.append(f"trainings: duplicate id(s) {', '.join(dupes)}")
        controls = {r.id for r in catalog.requirements()}
        for n, t in enumerate(self.trainings):
            unknown = [c for c in t.controls if c not in controls]
            if unknown:
                out.append(
                    f"trainings.{n}.controls: unknown clause or control {', '.join(unknown)}"
                )
        roles = {r.id for r in catalog.roles()}
        for role, wanted in self.requirements.items():
            if role not in roles:
                out.append(f"requirements.{role}: unknown role (roles: {', '.join(sorted(roles))})")
            unknown = [w for w in wanted if w not in ids]
            if unknown:
                out.append(f"requirements.{role}: unknown training(s) {', '.join(unknown)}")
        return out


def parse_training_catalog(text: str, source: str = CATALOG_FILE) -> TrainingCatalog:
    """Parse and check a document; TrainingCatalogInvalid lists every problem found."""
    return parse_data_file(TrainingCatalog, text, source, TrainingCatalogInvalid)


def training_catalog(settings: Settings) -> TrainingCatalog:
    """The catalog in force: the organisation's file in the data dir if present, else the
    shipped one."""
    return load_data_file(settings, TrainingCatalog, CATALOG_FILE, TrainingCatalogInvalid)


# --- boundary models ---------------------------------------------------------------------------


class RequirementIn(BaseModel):
    """A role requires a training; `validity_days` overrides the catalog's period."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    role: Annotated[str, BeforeValidator(_lower), StringConstraints(min_length=1, max_length=64)]
    training: Annotated[TrainingId, BeforeValidator(_lower)]
    validity_days: int | None = Field(default=None, ge=1, le=3650)


class RequirementOut(BaseModel):
    role: str
    training: str
    title: str
    validity_days: int
    changed: bool = False


class RecordIn(BaseModel):
    """One completion. `expires` defaults to `completed` + the validity (the shortest a role of
    the person requires, else the catalog's); `evidence` is a certificate or attendance file,
    `note` a line of text (one of them, or neither: the record itself is then the evidence)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: Email
    training: Annotated[TrainingId, BeforeValidator(_lower)]
    completed: date
    expires: date | None = None
    evidence: Annotated[Path | None, BeforeValidator(_blank_to_none)] = None
    note: Annotated[str, StringConstraints(max_length=5_000)] = ""

    @field_validator("note")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:  # named here, not later as the evidence's `text`
            raise ValueError("contains a NUL character")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.expires is not None and self.expires <= self.completed:
            raise ValueError(
                f"expires: {self.expires} is not after the completion date {self.completed}"
            )
        if self.evidence is not None and not self.evidence.expanduser().is_file():
            raise ValueError(f"evidence: no such file: {self.evidence}")
        return self


class RecordOut(BaseModel):
    id: int
    email: str
    training: str
    title: str
    completed_at: datetime
    expires_at: datetime
    expires_on: date
    evidence_id: int | None
    recorded_by: str
    replayed: bool = False


class Status(StrEnum):
    current = "current"
    expiring = "expiring"  # within the first reminder threshold
    expired = "expired"
    missing = "missing"


class MatrixRow(BaseModel):
    """One required training of one person, and where it stands."""

    email: str
    name: str
    roles: list[str]  # the person's roles that require it
    training: str
    title: str
    status: Status
    completed_on: date | None
    expires_on: date | None
    days_left: int | None
    record_id: int | None


class Notice(BaseModel):
    """A reminder or an escalation the daily pass queued."""

    record_id: int
    person: str
    training: str
    title: str
    expires_on: date
    days_left: int
    threshold: int | None = None
    told: list[str]


class Failure(BaseModel):
    step: Literal["remind", "escalate"]
    record_id: int
    error: str


class TickReport(BaseModel):
    """What one daily pass did, and the expired trainings it found. Defined here, not in the
    flow module, so the flow's persisted result unpickles anywhere."""

    at: datetime
    reminders: list[Notice] = Field(default_factory=list)
    escalations: list[Notice] = Field(default_factory=list)
    expired: list[MatrixRow] = Field(default_factory=list)
    missing: int = 0
    failures: list[Failure] = Field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"reminded {len(self.reminders)}",
            f"escalated {len(self.escalations)}",
            f"expired {len(self.expired)}",
            f"missing {self.missing}",
        ]
        if self.failures:
            parts.append(f"failed {len(self.failures)}")
        return ", ".join(parts)

    def markdown(self) -> str:
        """The artifact of a pass: what was sent, and who is blocked from deciding."""
        out = [f"# Training renewals {self.at:%Y-%m-%d %H:%M} UTC", "", self.summary(), ""]
        for head, notices in (("Reminders", self.reminders), ("Escalations", self.escalations)):
            out += [f"## {head} ({len(notices)})", ""]
            if not notices:
                out.append("none")
            else:
                out += [
                    "| person | training | expires | days left | told |",
                    "|---|---|---|---:|---|",
                ]
                out += [
                    f"| {n.person} | {n.title} ({n.training}) | {n.expires_on} | {n.days_left} "
                    f"| {', '.join(n.told)} |"
                    for n in notices
                ]
            out.append("")
        out += [f"## Expired: may not approve ({len(self.expired)})", ""]
        if not self.expired:
            out.append("none")
        else:
            out += ["| person | training | expired on |", "|---|---|---|"]
            out += [
                f"| {r.email} | {r.title} ({r.training}) | {r.expires_on} |" for r in self.expired
            ]
        out.append("")
        if self.failures:
            out += [f"## Failures ({len(self.failures)})", ""]
            out += [f"- {f.step} record {f.record_id}: {f.error}" for f in self.failures]
        return "\n".join(out).rstrip() + "\n"


# --- time: calendar days in the organisation's zone ----------------------------------------------


def _now(now: datetime | None) -> datetime:
    return as_utc(now) if now is not None else datetime.now(UTC)


def _zone(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.timezone)


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first moment of `day` in the zone, as UTC: what a typed date means."""
    return datetime.combine(day, time.min, zone).astimezone(UTC)


def _local_day(at: datetime, zone: ZoneInfo) -> date:
    return as_utc(at).astimezone(zone).date()


def run_name(settings: Settings, at: datetime) -> str:
    """`training renewals 2026-11-24`: the day of the pass in the organisation's zone."""
    return f"training renewals {_local_day(at, _zone(settings))}"


# --- reading -----------------------------------------------------------------------------------


class _Required(BaseModel):
    training: str
    title: str
    roles: list[str]
    validity_days: int  # the shortest of the roles requiring it


def _required(
    session: Session, person_ids: Iterable[int] | None = None
) -> dict[int, dict[str, _Required]]:
    """person id -> training -> what their roles require (active people only)."""
    q = (
        select(PersonRole.person_id, TrainingRequirement)
        .join(TrainingRequirement, TrainingRequirement.role_id == PersonRole.role_id)
        .join(Person, Person.id == PersonRole.person_id)
        .where(Person.active.is_(True))
        .order_by(PersonRole.person_id, TrainingRequirement.training, PersonRole.role_id)
    )
    if person_ids is not None:
        q = q.where(PersonRole.person_id.in_(list(person_ids)))
    out: dict[int, dict[str, _Required]] = {}
    for person_id, req in session.execute(q):
        mine = out.setdefault(person_id, {})
        have = mine.get(req.training)
        if have is None:
            mine[req.training] = _Required(
                training=req.training,
                title=req.title,
                roles=[req.role_id],
                validity_days=req.validity_days,
            )
        else:
            have.roles.append(req.role_id)
            have.validity_days = min(have.validity_days, req.validity_days)
    return out


def _newest(session: Session, person_ids: Iterable[int]) -> dict[tuple[int, str], TrainingRecord]:
    """(person id, training) -> the record that counts: the latest completion (then the latest
    recorded, so a correction of the same completion wins)."""
    ids = list(person_ids)
    if not ids:
        return {}
    out: dict[tuple[int, str], TrainingRecord] = {}
    for r in session.scalars(
        select(TrainingRecord)
        .where(TrainingRecord.person_id.in_(ids))
        .order_by(TrainingRecord.completed_at, TrainingRecord.id)
    ):
        out[(r.person_id, r.training)] = r
    return out


def _status(
    record: TrainingRecord | None, now: datetime, zone: ZoneInfo, window_days: int
) -> tuple[Status, int | None]:
    if record is None:
        return Status.missing, None
    days_left = (_local_day(record.expires_at, zone) - _local_day(now, zone)).days
    if as_utc(record.expires_at) <= now:
        return Status.expired, days_left
    if days_left <= window_days:
        return Status.expiring, days_left
    return Status.current, days_left


def _rows(
    session: Session,
    settings: Settings,
    now: datetime,
    *,
    person: Person | None = None,
    role: str | None = None,
) -> list[MatrixRow]:
    zone = _zone(settings)
    window = max(settings.training_reminder_days, default=0)
    q = select(Person).where(Person.active.is_(True)).order_by(Person.email)
    if person is not None:
        q = q.where(Person.id == person.id)
    if role is not None:
        q = q.join(PersonRole, PersonRole.person_id == Person.id).where(PersonRole.role_id == role)
    people = list(session.scalars(q))
    required = _required(session, [p.id for p in people])
    newest = _newest(session, [p.id for p in people])
    rows: list[MatrixRow] = []
    for p in people:
        for training, req in sorted(required.get(p.id, {}).items()):
            if role is not None and role not in req.roles:
                continue
            rec = newest.get((p.id, training))
            status, days_left = _status(rec, now, zone, window)
            rows.append(
                MatrixRow(
                    email=p.email,
                    name=p.name,
                    roles=req.roles,
                    training=training,
                    title=req.title,
                    status=status,
                    completed_on=_local_day(rec.completed_at, zone) if rec else None,
                    expires_on=_local_day(rec.expires_at, zone) if rec else None,
                    days_left=days_left,
                    record_id=rec.id if rec else None,
                )
            )
    return rows


def _known_role(session: Session, role: str) -> str:
    role = role.strip().lower()
    if session.get(Role, role) is None:
        known = ", ".join(session.scalars(select(Role.id).order_by(Role.id)))
        raise InvalidInput(f"unknown role '{role}' (roles: {known})", "role")
    return role


def matrix(
    uow: UnitOfWork,
    *,
    person: str | None = None,
    role: str | None = None,
    now: datetime | None = None,
) -> list[MatrixRow]:
    """The competence matrix: every active person x every training their roles require, with
    its status (current / expiring / expired / missing) and dates, by person then training."""
    at = _now(now)
    with uow.read():
        s = uow.session
        who = get_person(s, person, "person") if person else None
        wanted = _known_role(s, role) if role else None
        return _rows(s, uow.settings, at, person=who, role=wanted)


def list_requirements(uow: UnitOfWork) -> list[RequirementOut]:
    with uow.read():
        return [
            RequirementOut(
                role=r.role_id, training=r.training, title=r.title, validity_days=r.validity_days
            )
            for r in uow.session.scalars(
                select(TrainingRequirement).order_by(
                    TrainingRequirement.role_id, TrainingRequirement.training
                )
            )
        ]


# --- requirements ------------------------------------------------------------------------------


def _require_in(
    uow: UnitOfWork, data: RequirementIn, actor: Actor, cat: TrainingCatalog
) -> RequirementOut:
    s = uow.session
    role = _known_role(s, data.role)
    spec = cat.get(data.training)
    days = data.validity_days or spec.validity_days
    row = s.scalar(
        select(TrainingRequirement).where(
            TrainingRequirement.role_id == role, TrainingRequirement.training == spec.id
        )
    )
    if row is not None and row.validity_days == days and row.title == spec.title:
        return RequirementOut(role=role, training=spec.id, title=spec.title, validity_days=days)
    if row is None:
        s.add(
            TrainingRequirement(
                role_id=role,
                training=spec.id,
                title=spec.title,
                validity_days=days,
                created_by=actor.who,
            )
        )
        action, previous = "training.required", None
    else:
        action, previous = "training.requirement-changed", row.validity_days
        row.validity_days, row.title = days, spec.title
    s.flush()
    uow.audit(
        actor,
        action,
        f"training:{spec.id}",
        role=role,
        training=spec.id,
        validity_days=days,
        previous_validity_days=previous,
    )
    return RequirementOut(
        role=role, training=spec.id, title=spec.title, validity_days=days, changed=True
    )


def require(
    uow: UnitOfWork, data: RequirementIn | Mapping[str, Any], actor: Actor
) -> RequirementOut:
    """Every holder of `role` must have `training` current. Idempotent; a new validity replaces
    the old one (audited) and applies to records made from then on."""
    if not isinstance(data, RequirementIn):
        data = RequirementIn.model_validate(data)
    cat = training_catalog(uow.settings)
    with uow:
        out = _require_in(uow, data, actor, cat)
        uow.commit()
    return out


def require_defaults(uow: UnitOfWork, actor: Actor) -> list[RequirementOut]:
    """The catalog's default requirement per role, in one transaction (idempotent: only what
    is missing or differs changes). Roles the database does not know are skipped."""
    cat = training_catalog(uow.settings)
    with uow:
        known = set(uow.session.scalars(select(Role.id)))
        out = [
            _require_in(uow, RequirementIn(role=role, training=t), actor, cat)
            for role, trainings in cat.requirements.items()
            if role in known
            for t in trainings
        ]
        uow.commit()
    return out


# --- records -----------------------------------------------------------------------------------


def _record_out(r: TrainingRecord, title: str, zone: ZoneInfo, *, replayed: bool) -> RecordOut:
    return RecordOut(
        id=r.id,
        email=r.person.email,
        training=r.training,
        title=title,
        completed_at=as_utc(r.completed_at),
        expires_at=as_utc(r.expires_at),
        expires_on=_local_day(r.expires_at, zone),
        evidence_id=r.evidence_id,
        recorded_by=r.recorded_by,
        replayed=replayed,
    )


def _record_in(
    uow: UnitOfWork, data: RecordIn, actor: Actor, cat: TrainingCatalog, now: datetime
) -> RecordOut:
    """Record inside the caller's transaction (the caller commits and syncs the anchor)."""
    s = uow.session
    zone = _zone(uow.settings)
    spec = cat.get(data.training)
    person = get_person(s, data.email, "email")
    today = _local_day(now, zone)
    if data.completed > today:
        raise InvalidInput(f"{data.completed} is in the future (today is {today})", "completed")
    completed_at = _day_start(data.completed, zone)
    if data.expires is not None:
        expires_at = _day_start(data.expires, zone)
    else:
        required = _required(s, [person.id]).get(person.id, {}).get(spec.id)
        days = required.validity_days if required else spec.validity_days
        expires_at = _day_start(data.completed + timedelta(days=days), zone)
    same = s.scalar(
        select(TrainingRecord)
        .where(
            TrainingRecord.person_id == person.id,
            TrainingRecord.training == spec.id,
            TrainingRecord.completed_at == completed_at,
        )
        .order_by(TrainingRecord.id.desc())
        .limit(1)
    )
    if same is not None:
        if as_utc(same.expires_at) == expires_at:
            return _record_out(same, spec.title, zone, replayed=True)
        raise Conflict(
            f"{person.email} already has {spec.id} completed on {data.completed} recorded "
            f"(record {same.id}, expires on {_local_day(same.expires_at, zone)})",
            "expires",
        )
    expires_on = _local_day(expires_at, zone)
    head = f"{spec.title}: {person.name} <{person.email}> completed {data.completed}"
    text = None
    if data.evidence is None:
        text = "\n".join(
            [
                f"# {head}",
                "",
                f"- **training**: {spec.title} ({spec.id})",
                f"- **completed**: {data.completed}",
                f"- **expires on**: {expires_on}",
                f"- **controls**: {', '.join(spec.controls) or '-'}",
                f"- **recorded by**: {actor.who} ({actor.channel})",
                *(["", data.note] if data.note else []),
            ]
        )
    ev = evidence.append_in(
        uow,
        EvidenceIn(
            subject=f"person:{person.email}",
            kind=EVIDENCE_KIND,
            title=head[:300],
            text=text,
            file=data.evidence.expanduser() if data.evidence else None,
            media_type="text/markdown; charset=utf-8" if text else None,
            idempotency_key=f"training-{person.id}-{spec.id}-{data.completed:%Y%m%d}",
        ),
        actor,
    )
    row = TrainingRecord(
        person=person,
        training=spec.id,
        completed_at=completed_at,
        expires_at=expires_at,
        evidence_id=ev.id,
        recorded_by=actor.who,
        reminders_sent=[],
    )
    s.add(row)
    s.flush()
    uow.audit(
        actor,
        "training.recorded",
        f"person:{person.email}",
        training=spec.id,
        completed=data.completed.isoformat(),
        expires=expires_on.isoformat(),
        evidence_id=ev.id,
        note=data.note,
    )
    return _record_out(row, spec.title, zone, replayed=False)


def record(
    uow: UnitOfWork,
    data: RecordIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
) -> RecordOut:
    """Record a completion with its evidence; the newest completion counts from now on, so a
    renewal restores the person's right to decide at once. The same completion again returns
    the record made first (`replayed`); the same completion with another expiry is a Conflict."""
    if not isinstance(data, RecordIn):
        data = RecordIn.model_validate(data)
    cat = training_catalog(uow.settings)
    with uow:
        out = _record_in(uow, data, actor, cat, _now(now))
        if out.replayed:
            return out
        uow.commit()
    evidence.sync_anchor(uow.settings)
    return out


# --- the competence check of approvals -----------------------------------------------------------


def competence_refusal(
    session: Session, person: Person, request: ApprovalRequest, settings: Settings
) -> str | None:
    """Why `person` may not decide `request` for want of training, or None.

    Consulted by `approvals.decide` inside the decision's transaction, whatever the channel:
    a training required by any role of the person whose newest record expired refuses; one
    never completed refuses only with `training_blocks_missing`."""
    zone = _zone(settings)
    now = datetime.now(UTC)
    required = _required(session, [person.id]).get(person.id, {})
    if not required:
        return None
    newest = _newest(session, [person.id])
    problems: list[tuple[str, str]] = []  # (training, what is wrong)
    for training, req in sorted(required.items()):
        rec = newest.get((person.id, training))
        if rec is None:
            if settings.training_blocks_missing:
                problems.append(
                    (training, f"required training '{req.title}' ({training}) never completed")
                )
        elif as_utc(rec.expires_at) <= now:
            problems.append(
                (
                    training,
                    f"required training '{req.title}' ({training}) expired on "
                    f"{_local_day(rec.expires_at, zone)}",
                )
            )
    if not problems:
        return None
    return (
        f"{person.email} may not decide request {request.id}: "
        f"{'; '.join(text for _, text in problems)} — renew: "
        f"`aims training record {person.email} {problems[0][0]} --completed YYYY-MM-DD "
        "--evidence FILE`"
    )


# --- the daily pass ------------------------------------------------------------------------------


def _notify(session: Session, key: str, kind: str, about: Person, to: Person, text: str) -> None:
    """A message to one person about `about`'s training, queued in the caller's transaction."""
    outbox.queue(
        session,
        outbox.NotificationIn(
            idempotency_key=key,
            kind=kind,
            subject=f"person:{about.email}",
            recipient=to.email,
            target=outbox.TARGET_DM if to.slack_user_id else outbox.TARGET_LOG,
            thread_key=f"training-{about.id}-to-{to.id}",
            text=text,
        ),
    )


def _lock_current(session: Session, record_id: int) -> tuple[TrainingRecord, _Required] | None:
    """The record locked, if it still counts (newest of its person and training, person active,
    training required); None otherwise."""
    row = session.scalar(
        select(TrainingRecord).where(TrainingRecord.id == record_id).with_for_update()
    )
    if row is None or not row.person.active:
        return None
    newest = _newest(session, [row.person_id]).get((row.person_id, row.training))
    req = _required(session, [row.person_id]).get(row.person_id, {}).get(row.training)
    if newest is None or newest.id != row.id or req is None:
        return None
    return row, req


def _renew_hint(person: Person, training: str) -> str:
    return (
        f"Once renewed: `aims training record {person.email} {training} "
        "--completed YYYY-MM-DD --evidence FILE`"
    )


def _remind(settings: Settings, record_id: int, now: datetime) -> Notice | None:
    zone = _zone(settings)
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        found = _lock_current(s, record_id)
        if found is None:
            return None
        row, req = found
        if as_utc(row.expires_at) <= now:
            return None
        expires_on = _local_day(row.expires_at, zone)
        days_left = (expires_on - _local_day(now, zone)).days
        sent = set(row.reminders_sent or [])
        due = {t for t in settings.training_reminder_days if days_left <= t}
        new = due - sent
        if not new:
            return None
        # A record first seen inside several thresholds gets one reminder: the nearest one.
        threshold = min(new)
        person = row.person
        _notify(
            s,
            f"training-record-{row.id}-reminder-{threshold}",
            "training-reminder",
            person,
            person,
            f"Reminder: your training '{req.title}' ({row.training}) expires on {expires_on} "
            f"(in {days_left} day(s)). After that you may not approve AIMS decisions until it is "
            f"renewed. {_renew_hint(person, row.training)}",
        )
        row.reminders_sent = sorted(sent | due, reverse=True)
        uow.audit(
            TRACKER,
            "training.reminded",
            f"person:{person.email}",
            record_id=row.id,
            training=row.training,
            threshold=threshold,
            expires=expires_on.isoformat(),
        )
        uow.commit()
    return Notice(
        record_id=record_id,
        person=person.email,
        training=row.training,
        title=req.title,
        expires_on=expires_on,
        days_left=days_left,
        threshold=threshold,
        told=[person.email],
    )


def _escalation_contacts(session: Session, person: Person) -> list[Person]:
    """The person's active manager; without one, the governance leads."""
    manager = person.manager
    if manager is not None and manager.active:
        return [manager]
    return [
        p
        for p in session.scalars(
            select(Person)
            .join(PersonRole, PersonRole.person_id == Person.id)
            .where(PersonRole.role_id == GOVERNANCE_LEAD, Person.active.is_(True))
            .order_by(Person.id)
        )
        if p.id != person.id
    ]


def _escalate(settings: Settings, record_id: int, now: datetime) -> Notice | None:
    zone = _zone(settings)
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        found = _lock_current(s, record_id)
        if found is None:
            return None
        row, req = found
        if row.escalated_at is not None or as_utc(row.expires_at) > now:
            return None
        person = row.person
        contacts = _escalation_contacts(s, person)
        if not contacts:
            # Not marked escalated: tried (and shown failing) every pass until someone can be told.
            raise AimsError(
                f"nobody to escalate to: {person.email} has no active manager and nobody else "
                f"holds the role {GOVERNANCE_LEAD}"
            )
        expires_on = _local_day(row.expires_at, zone)
        what = f"'{req.title}' ({row.training})"
        _notify(
            s,
            f"training-record-{row.id}-expired",
            "training-expired",
            person,
            person,
            f"Your required training {what} expired on {expires_on}: you may not approve AIMS "
            f"decisions until it is renewed. {_renew_hint(person, row.training)}",
        )
        for c in contacts:
            _notify(
                s,
                f"training-record-{row.id}-escalation-to-{c.id}",
                "training-escalation",
                person,
                c,
                f"Expired training: {person.name} <{person.email}> has not renewed the required "
                f"training {what} (expired on {expires_on}, roles: {', '.join(req.roles)}) and "
                "may not approve AIMS decisions until it is renewed.",
            )
        row.escalated_at = now
        uow.audit(
            TRACKER,
            "training.escalated",
            f"person:{person.email}",
            record_id=row.id,
            training=row.training,
            expires=expires_on.isoformat(),
            contacts=[c.email for c in contacts],
        )
        uow.commit()
    return Notice(
        record_id=record_id,
        person=person.email,
        training=row.training,
        title=req.title,
        expires_on=expires_on,
        days_left=(expires_on - _local_day(now, zone)).days,
        told=[person.email, *(c.email for c in contacts)],
    )


def tick(settings: Settings, now: datetime | None = None) -> TickReport:
    """One daily pass: remind holders before expiry, escalate expired trainings once, and list
    who is blocked. Each record is locked and checked again before anything is queued, so a
    repeated or overlapping pass queues nothing twice; one bad record never holds up the rest.
    Queued messages go out with the next delivery pass."""
    at = _now(now)
    report = TickReport(at=at)
    with UnitOfWork(settings).read() as uow:
        rows = _rows(uow.session, settings, at)
        escalated = {
            r.id
            for r in uow.session.scalars(
                select(TrainingRecord).where(TrainingRecord.escalated_at.is_not(None))
            )
        }
    report.expired = [r for r in rows if r.status is Status.expired]
    report.missing = sum(1 for r in rows if r.status is Status.missing)
    records = {r.record_id: r for r in rows if r.record_id is not None}
    for record_id, r in records.items():
        if r.status is Status.expired and record_id in escalated:
            continue
        step: Literal["remind", "escalate"] = "escalate" if r.status is Status.expired else "remind"
        try:
            if step == "escalate":
                notice = _escalate(settings, record_id, at)
                if notice:
                    report.escalations.append(notice)
            else:
                notice = _remind(settings, record_id, at)
                if notice:
                    report.reminders.append(notice)
        except Exception as exc:  # one bad record must not hold the others up
            log.exception("%s of training record %d failed", step, record_id)
            report.failures.append(
                Failure(step=step, record_id=record_id, error=f"{type(exc).__name__}: {exc}"[:500])
            )
    return report


# --- the Excel export ----------------------------------------------------------------------------

_COLUMNS: Final = (
    "person",
    "name",
    "training",
    "title",
    "status",
    "completed",
    "expires",
    "days_left",
    "roles",
)


def export_xlsx(uow: UnitOfWork, path: Path, *, now: datetime | None = None) -> list[MatrixRow]:
    """The competence matrix as a workbook: a Summary sheet (per role: people and how many
    required trainings are current / expiring / expired / missing) and one sheet per role.
    Written to a temporary file and moved into place, so a failure leaves no half file."""
    if path.suffix.lower() != ".xlsx":
        raise InvalidInput(f"{path} must end in .xlsx", "xlsx")
    if not path.parent.is_dir():
        raise InvalidInput(f"directory {path.parent} does not exist", "xlsx")
    at = _now(now)
    with uow.read():
        s = uow.session
        rows = _rows(s, uow.settings, at)
        titles = {role_id: title for role_id, title in s.execute(select(Role.id, Role.title))}
    import pandas as pd  # lazily: pandas costs about a second at import, `aims --help` must not

    by_role: dict[str, list[MatrixRow]] = {}
    for r in rows:
        for role in r.roles:
            by_role.setdefault(role, []).append(r)

    def frame(items: list[MatrixRow]) -> Any:
        return pd.DataFrame(
            [
                (
                    r.email,
                    r.name,
                    r.training,
                    r.title,
                    r.status.value,
                    r.completed_on,
                    r.expires_on,
                    r.days_left,
                    ", ".join(r.roles),
                )
                for r in items
            ],
            columns=list(_COLUMNS),
        )

    def counts(items: list[MatrixRow]) -> list[int]:
        return [sum(1 for r in items if r.status is st) for st in Status]

    summary = pd.DataFrame(
        [
            (role, titles.get(role, role), len({r.email for r in items}), *counts(items))
            for role, items in sorted(by_role.items())
        ]
        + [("all", "every required training", len({r.email for r in rows}), *counts(rows))],
        columns=["role", "title", "people", *(st.value for st in Status)],
    )
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            summary.to_excel(writer, sheet_name=SUMMARY_SHEET, index=False)
            for role, items in sorted(by_role.items()):
                frame(items).to_excel(writer, sheet_name=role[:31], index=False)
            for ws in writer.sheets.values():
                ws.freeze_panes = "A2"
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return rows


# --- the demo organisation -----------------------------------------------------------------------


class _DemoException(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    training: TrainingId
    completed_days_ago: int = Field(ge=0)


class _DemoTraining(BaseModel):
    """`requirements: catalog-defaults` applies the catalog's default per role; every demo
    person then completed each training their roles require `completed_days_ago` days ago,
    except the listed ones."""

    model_config = ConfigDict(extra="forbid")

    requirements: Literal["catalog-defaults"] = "catalog-defaults"
    completed_days_ago: int = Field(ge=0)
    exceptions: list[_DemoException] = Field(default_factory=list)


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The demo organisation's `training` section (aims_core/data/demo_org.yaml); idempotent:
    only requirements and records that are missing are added, so a second load adds nothing.
    Records are made for the demo's people only, never for people of a real organisation."""
    spec = _DemoTraining.model_validate(section)
    added = sum(1 for r in require_defaults(uow, actor) if r.changed)
    cat = training_catalog(uow.settings)
    zone = _zone(uow.settings)
    now = datetime.now(UTC)
    today = _local_day(now, zone)
    ago = {(e.email, e.training): e.completed_days_ago for e in spec.exceptions}
    recorded = 0
    from aims_core.services.demo import demo_org  # lazily: demo loads this module by name

    emails = [p.email for p in demo_org().people]
    with uow:
        s = uow.session
        people = list(
            s.scalars(
                select(Person)
                .where(Person.email.in_(emails), Person.active.is_(True))
                .order_by(Person.id)
            )
        )
        required = _required(s, [p.id for p in people])
        newest = _newest(s, [p.id for p in people])
        for p in people:
            for training in sorted(required.get(p.id, {})):
                if (p.id, training) in newest:
                    continue
                days = ago.get((p.email, training), spec.completed_days_ago)
                _record_in(
                    uow,
                    RecordIn(
                        email=p.email, training=training, completed=today - timedelta(days=days)
                    ),
                    actor,
                    cat,
                    now,
                )
                recorded += 1
        uow.commit()
    if recorded:
        evidence.sync_anchor(uow.settings)
    return {"training requirements": added, "training records": recorded}
