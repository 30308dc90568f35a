"""Third-party AI vendors and their reassessment (ISO/IEC 42001 A.10.2, A.10.3).

A vendor appears when an AI system names it (`aims systems add --vendor`) or is registered with
`aims vendor add` (criticality, services, owner). How often it is reassessed follows from its
criticality (`vendor_policy.yaml`): the next assessment is due the interval after the last one
completed, and at once for a vendor never assessed. The monthly pass (`tick`) opens one
reassessment per vendor and due date (its idempotency key), and tells the vendor's owner and the
Responsible of the `vendor-assessment` RACI; `aims vendor assess` completes it with a result,
notes and evidence (`vendor-assessment`, on `vendor:<slug>`). No Prefect here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal
from uuid import uuid4

from dateutil.relativedelta import relativedelta
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from aims_core.errors import Conflict, NotFound
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import (
    Criticality,
    Person,
    RaciActivity,
    RaciKind,
    Vendor,
    VendorAssessment,
    VendorAssessmentStatus,
    as_utc,
)
from aims_core.rules.loading import Strict, load_data_file, unknown_roles
from aims_core.schemas import Email, _lower, no_nul
from aims_core.services import evidence, outbox
from aims_core.services.directory import role_holders
from aims_core.services.passes import PassReport, each
from aims_core.services.people import get_person
from aims_core.services.systems import _vendor as find_or_create
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork, locked

POLICY_FILE: Final = "vendor_policy.yaml"
EVIDENCE_KIND: Final = "vendor-assessment"
#: Who the audit trail names for the monthly pass.
TRACKER: Final = Actor(who="aims-vendor-tracker", channel="schedule")
Result = Literal["acceptable", "conditional", "unacceptable"]


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


# --- the policy (data) -------------------------------------------------------------------------


class NotifyPolicy(Strict):
    raci_activity: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$")] | None = (
        None
    )
    notify_roles: list[str] = Field(default_factory=list)


class VendorPolicy(Strict):
    reassess_every_months: dict[Criticality, Annotated[int, Field(ge=1, le=120)]]
    notify: NotifyPolicy = NotifyPolicy()

    def problems(self) -> list[str]:
        missing = [c.value for c in Criticality if c not in self.reassess_every_months]
        out = [f"reassess_every_months.{c}: missing" for c in missing]
        return out + unknown_roles("notify.notify_roles", self.notify.notify_roles)

    def interval(self, criticality: Criticality) -> int:
        return self.reassess_every_months[criticality]


def vendor_policy(settings: Settings) -> VendorPolicy:
    """The policy in force: the organisation's vendor_policy.yaml in the data dir, else ours."""
    return load_data_file(settings, VendorPolicy, POLICY_FILE)


# --- boundary models ---------------------------------------------------------------------------

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class VendorIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    _no_nul = model_validator(mode="before")(no_nul)

    name: Name
    criticality: Annotated[Criticality, BeforeValidator(_lower)]  # as `aims systems add`: any case
    services: Annotated[str, StringConstraints(max_length=5000)] = ""
    owner: Email
    contact: Annotated[str, StringConstraints(max_length=320)] = ""


class AssessmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    result: Result
    notes: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    assessor: Email
    evidence_file: Annotated[Path | None, BeforeValidator(_blank_to_none)] = None


class AssessmentOut(BaseModel):
    id: int
    vendor: str
    status: VendorAssessmentStatus
    reason: str
    due_at: datetime
    assessor: str | None
    result: str | None
    notes: str
    evidence_id: int | None
    completed_at: datetime | None


class VendorOut(BaseModel):
    id: int
    name: str
    slug: str
    criticality: Criticality
    services: str
    contact: str
    owner: str | None
    systems: list[str]
    reassess_every_months: int
    last_assessed_at: datetime | None
    next_due: datetime
    overdue: bool
    open_assessment: AssessmentOut | None


class TickReport(PassReport):
    """What one monthly pass did: vendors that got a reassessment (their people told)."""

    opened: list[str] = Field(default_factory=list)

    summary_parts: ClassVar[tuple[tuple[str, str], ...]] = (("opened", "reassessments opened"),)


# --- helpers -----------------------------------------------------------------------------------


def slug(name: str) -> str:
    """`Acme LLM Ltd` → `acme-llm-ltd`: the id in the vendor's evidence subject."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "vendor"


def subject(v: Vendor) -> str:
    return f"vendor:{slug(v.name)}"


def _utc(value: datetime | None) -> datetime:
    return as_utc(value) if value is not None else datetime.now(UTC)


def next_due(v: Vendor, policy: VendorPolicy) -> datetime:
    """The interval of its criticality after the last assessment; never assessed: due since it
    was registered (at once)."""
    if v.last_assessed_at is None:
        return as_utc(v.created_at)
    return as_utc(v.last_assessed_at) + relativedelta(months=policy.interval(v.criticality))


def due_key(v: Vendor, due: datetime) -> str:
    return f"vendor-{v.id}-due-{due:%Y-%m-%d}"


def _get(session: Session, name: str, *, lock: bool = False) -> Vendor:
    q = select(Vendor).where(Vendor.name == name.strip()).options(selectinload(Vendor.owner))
    if lock:
        q = q.with_for_update(of=Vendor)
    v = session.scalar(q)
    if v is None:
        raise NotFound(f"no vendor named '{name}' (see `aims vendor list`)", "vendor")
    return v


def _open(session: Session, vendor_id: int) -> VendorAssessment | None:
    return session.scalar(
        select(VendorAssessment)
        .where(
            VendorAssessment.vendor_id == vendor_id,
            VendorAssessment.status == VendorAssessmentStatus.open,
        )
        .order_by(VendorAssessment.id)
    )


def _assessment_out(session: Session, v: Vendor, a: VendorAssessment) -> AssessmentOut:
    assessor = session.get(Person, a.assessor_id) if a.assessor_id else None
    return AssessmentOut(
        id=a.id,
        vendor=v.name,
        status=a.status,
        reason=a.reason,
        due_at=as_utc(a.due_at),
        assessor=assessor.email if assessor else None,
        result=a.result,
        notes=a.notes,
        evidence_id=a.evidence_id,
        completed_at=as_utc(a.completed_at) if a.completed_at else None,
    )


def _out(session: Session, v: Vendor, policy: VendorPolicy, now: datetime) -> VendorOut:
    from aims_core.models import AISystem

    due = next_due(v, policy)
    a = _open(session, v.id)
    return VendorOut(
        id=v.id,
        name=v.name,
        slug=slug(v.name),
        criticality=v.criticality,
        services=v.services,
        contact=v.contact,
        owner=v.owner.email if v.owner else None,
        systems=list(
            session.scalars(
                select(AISystem.name).where(AISystem.vendor_id == v.id).order_by(AISystem.name)
            )
        ),
        reassess_every_months=policy.interval(v.criticality),
        last_assessed_at=as_utc(v.last_assessed_at) if v.last_assessed_at else None,
        next_due=due,
        overdue=due <= now,
        open_assessment=_assessment_out(session, v, a) if a else None,
    )


def _notify(session: Session, idem: str, v: Vendor, person: Person, text: str) -> None:
    outbox.tell(
        session,
        person,
        key=idem,
        kind="vendor-reassessment",
        subject=subject(v),
        thread_key=f"vendor-{v.id}-to-{person.id}",
        text=text,
    )


def _told(session: Session, v: Vendor, policy: VendorPolicy) -> list[Person]:
    """The vendor's owner, the RACI's Responsible (organisation-wide), the policy's roles."""
    people: dict[int, Person] = {}
    if v.owner is not None and v.owner.active:
        people[v.owner.id] = v.owner
    if policy.notify.raci_activity:
        raci = session.scalar(
            select(RaciActivity)
            .where(
                RaciActivity.activity == policy.notify.raci_activity, RaciActivity.scope == "org"
            )
            .options(selectinload(RaciActivity.members))
        )
        if raci is not None:
            for m in raci.members:
                if m.kind is RaciKind.responsible and m.person.active:
                    people.setdefault(m.person.id, m.person)
    for p in role_holders(session, policy.notify.notify_roles):
        people.setdefault(p.id, p)
    return list(people.values())


# --- reading -----------------------------------------------------------------------------------


def list_vendors(uow: UnitOfWork, *, now: datetime | None = None) -> list[VendorOut]:
    at = _utc(now)
    policy = vendor_policy(uow.settings)
    with uow.read():
        s = uow.session
        rows = s.scalars(select(Vendor).options(selectinload(Vendor.owner)).order_by(Vendor.name))
        return [_out(s, v, policy, at) for v in rows]


def get_vendor(uow: UnitOfWork, name: str, *, now: datetime | None = None) -> VendorOut:
    policy = vendor_policy(uow.settings)
    with uow.read():
        return _out(uow.session, _get(uow.session, name), policy, _utc(now))


def assessments(uow: UnitOfWork, name: str) -> list[AssessmentOut]:
    with uow.read():
        s = uow.session
        v = _get(s, name)
        rows = s.scalars(
            select(VendorAssessment)
            .where(VendorAssessment.vendor_id == v.id)
            .order_by(VendorAssessment.id)
        )
        return [_assessment_out(s, v, a) for a in rows]


# --- writing -----------------------------------------------------------------------------------


def add_vendor(
    uow: UnitOfWork,
    data: VendorIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
) -> VendorOut:
    """Register a vendor: a new one, or one an AI system already named (its details filled in).
    A vendor registered before (it has an owner) is a Conflict."""
    if not isinstance(data, VendorIn):
        data = VendorIn.model_validate(data)
    policy = vendor_policy(uow.settings)
    with uow:
        s = uow.session
        owner = get_person(s, data.owner, "owner")
        v = find_or_create(s, data.name, {})
        assert v is not None
        if v.owner_id is not None:
            raise Conflict(
                f"vendor '{v.name}' is already registered "
                f"(owner {v.owner.email if v.owner else '-'})",
                "name",
            )
        v.criticality = data.criticality
        v.services = data.services
        v.contact = data.contact
        v.owner = owner
        if v.created_at is None and now is not None:
            v.created_at = _utc(now)
        s.flush()
        uow.audit(actor, "vendor.registered", subject(v), **data.model_dump(mode="json"))
        out = _out(s, v, policy, _utc(now))
        uow.commit()
    return out


def assess(
    uow: UnitOfWork,
    name: str,
    data: AssessmentIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
) -> AssessmentOut:
    """Record an assessment's outcome: it completes the open reassessment, or is recorded as a
    new one (`manual`). The next one then counts from now. Evidence on `vendor:<slug>`: the
    attached file (if any), and the result with the notes."""
    if not isinstance(data, AssessmentIn):
        data = AssessmentIn.model_validate(data)
    at = _utc(now)
    with uow:
        s = uow.session
        v = _get(s, name, lock=True)
        assessor = get_person(s, data.assessor, "assessor")
        a = _open(s, v.id)
        if a is None:
            a = VendorAssessment(
                idempotency_key=f"vendor-{v.id}-manual-{uuid4().hex[:12]}",
                vendor_id=v.id,
                status=VendorAssessmentStatus.open,
                reason="manual",
                due_at=at,
            )
            s.add(a)
            s.flush()
        attached = None
        if data.evidence_file is not None:
            attached = evidence.append_in(
                uow,
                EvidenceIn(
                    subject=subject(v),
                    kind=EVIDENCE_KIND,
                    title=f"Assessment {a.id} of {v.name}: {data.evidence_file.name}"[:300],
                    file=data.evidence_file,
                    idempotency_key=f"vendor-assessment-{a.id}-file",
                ),
                actor,
            ).id
        a.status = VendorAssessmentStatus.completed
        a.result = data.result
        a.notes = data.notes
        a.assessor_id = assessor.id
        a.completed_at = at
        a.evidence_id = evidence.append_in(
            uow,
            EvidenceIn(
                subject=subject(v),
                kind=EVIDENCE_KIND,
                title=f"Assessment of {v.name}: {data.result}",
                text=(
                    f"# Assessment of {v.name} ({v.criticality.value})\n\n"
                    f"- **result**: {data.result}\n- **assessor**: {assessor.name} "
                    f"<{assessor.email}>\n"
                    f"- **reason**: {a.reason}, due {as_utc(a.due_at):%Y-%m-%d}\n"
                    f"- **completed**: {at:%Y-%m-%d %H:%M} UTC\n"
                    + (f"- **attached**: evidence #{attached}\n" if attached else "")
                    + f"\n{data.notes}\n"
                ),
                media_type="text/markdown; charset=utf-8",
                idempotency_key=f"vendor-assessment-{a.id}-completed",
            ),
            actor,
        ).id
        v.last_assessed_at = at
        s.flush()
        uow.audit(
            actor,
            "vendor.assessed",
            subject(v),
            assessment_id=a.id,
            result=data.result,
            assessor=assessor.email,
            evidence_id=a.evidence_id,
            file_evidence_id=attached,
        )
        out = _assessment_out(s, v, a)
        uow.commit()
    evidence.sync_anchor(uow.settings)
    return out


# --- the monthly pass --------------------------------------------------------------------------


def _reassess(settings: Settings, policy: VendorPolicy, vendor_id: int, at: datetime) -> bool:
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        v = locked(s, Vendor, vendor_id)
        if v is None or _open(s, v.id) is not None:
            return False
        due = next_due(v, policy)
        key = due_key(v, due)
        if due > at or s.scalar(
            select(VendorAssessment.id).where(VendorAssessment.idempotency_key == key)
        ):
            return False
        a = VendorAssessment(
            idempotency_key=key,
            vendor_id=v.id,
            status=VendorAssessmentStatus.open,
            reason="scheduled" if v.last_assessed_at else "initial",
            due_at=due,
        )
        s.add(a)
        s.flush()
        told = _told(s, v, policy)
        last = (
            f"last assessed {as_utc(v.last_assessed_at):%Y-%m-%d}"
            if v.last_assessed_at
            else "never assessed"
        )
        for p in told:
            _notify(
                s,
                f"vendor-assessment-{a.id}-to-{p.id}",
                v,
                p,
                f"{v.name} ({v.criticality.value}) is due for reassessment ({last}; every "
                f"{policy.interval(v.criticality)} months). Record it: `aims vendor assess "
                f'"{v.name}" --result acceptable|conditional|unacceptable --notes ... --as EMAIL`',
            )
        uow.audit(
            TRACKER,
            "vendor.reassessment-opened",
            subject(v),
            assessment_id=a.id,
            due=due.isoformat(),
            reason=a.reason,
            told=[p.email for p in told],
        )
        uow.commit()
    return True


def tick(settings: Settings, now: datetime | None = None) -> TickReport:
    """The monthly pass: every vendor past its interval (never assessed: at once) and without an
    open reassessment gets one, keyed by vendor and due date, and its people are told. Each
    vendor in its own transaction, locked and checked again: a repeat opens nothing more."""
    at = _utc(now)
    policy = vendor_policy(settings)
    report = TickReport(at=at)
    with UnitOfWork(settings).read() as uow:
        vendors = list(
            uow.session.execute(select(Vendor.id, Vendor.name).order_by(Vendor.name)).tuples()
        )

    def reassess(vendor: tuple[int, str]) -> None:
        vendor_id, name = vendor
        try:
            opened = _reassess(settings, policy, vendor_id, at)
        except IntegrityError:  # a concurrent pass opened it first
            return
        if opened:
            report.opened.append(name)

    each(report, "reassess", vendors, reassess, key=lambda vendor: vendor[0])
    return report


def tick_rows(settings: Settings, report: TickReport) -> list[dict[str, str]]:
    """The pass as a table for the run's artifact."""
    return [
        {
            "vendor": v.name,
            "criticality": v.criticality.value,
            "last assessed": f"{v.last_assessed_at:%Y-%m-%d}" if v.last_assessed_at else "never",
            "next due": f"{v.next_due:%Y-%m-%d}",
            "open assessment": f"#{v.open_assessment.id}" if v.open_assessment else "",
            "this pass": "reassessment opened, people told" if v.name in report.opened else "",
        }
        for v in list_vendors(UnitOfWork(settings), now=report.at)
    ]


__all__ = [
    "AssessmentIn",
    "AssessmentOut",
    "TickReport",
    "VendorIn",
    "VendorOut",
    "VendorPolicy",
    "add_vendor",
    "assess",
    "assessments",
    "get_vendor",
    "list_vendors",
    "next_due",
    "tick",
    "vendor_policy",
]
