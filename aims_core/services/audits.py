"""The internal audit programme, audits, findings and reports (ISO/IEC 42001 9.2).

- **Programme** (9.2.2): `plan_programme` allocates every clause 4-10 (sub-clauses included) and
  every Annex A control to the periods of a cycle (`settings.audit_cycle_years`), one audit per
  period, balancing the load. Requirements are grouped in areas (the policy, data:
  `aims_core/data/audit_policy.yaml`); an area that touches high-risk AI systems, or had a
  nonconformity in the last months, is audited every year instead of once per cycle. Each
  allocation keeps its reason (`Audit.scope_reasons`).
- **Independence**: an auditor holds the auditor role, is not Responsible or Accountable for an
  activity of an area in scope, and owns no sampled system (`conflicts`). Planning assigns an
  independent auditor when there is one; `assign_auditor` refuses naming the conflict.
- **Audit**: planned → in-progress (the `internal-audit` run, or `start_audit`) → reporting
  (fieldwork complete) → closed once the report's approval is granted (rejected: back to
  fieldwork). A major or minor nonconformity opens its CAPA when it is recorded, so it is never
  lost whatever happens to the run (`ensure_capas` repairs a crash in between).
- **Monthly planning pass** (`planning_pass`): a programme covers the current cycle, areas with
  new nonconformities join the next planned audit, audits starting within a month get an
  auditor who is told, overdue audits are reported.

Evidence: `audit-programme` on `plan:<programme>`, `audit-finding` on `finding:<id>`,
`audit-report` (HTML and Markdown) and the report `decision` on `audit:<id>`.
No Prefect here.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from aims_core import catalog, reports
from aims_core.data_files import DataFileInvalid, Strict, load_data_file, parse_data_file
from aims_core.errors import AimsError, Conflict, InvalidInput, NotFound
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import (
    AISystem,
    ApprovalRequest,
    ApprovalStatus,
    Audit,
    AuditFinding,
    AuditProgramme,
    AuditStatus,
    Capa,
    Control,
    ControlKind,
    Evidence,
    FindingKind,
    Incident,
    LifecycleStage,
    Notification,
    Outcome,
    Person,
    PersonRole,
    RaciActivity,
    RaciKind,
    RiskTier,
    SoaEntry,
    as_utc,
)
from aims_core.schemas import SystemName
from aims_core.services import capa as capas
from aims_core.services import evidence, outbox
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.people import get_person
from aims_core.services.runs import attach_run
from aims_core.services.systems import get_system
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

POLICY_FILE: Final = "audit_policy.yaml"
#: Who the audit trail names for the monthly planning pass.
PLANNER: Final = Actor(who="aims-audit-planner", channel="schedule")
NONCONFORMITIES: Final = (FindingKind.major, FindingKind.minor)
OPEN: Final = (AuditStatus.planned, AuditStatus.in_progress, AuditStatus.reporting)
#: EU AI Act tiers in the order systems are sampled (high-risk first), then by criticality.
_TIER_ORDER: Final = {t: i for i, t in enumerate(("high", "prohibited", "limited", "gpai"))}
_CRIT_ORDER: Final = {c: i for i, c in enumerate(("critical", "high", "medium", "low"))}
_FINDING_ORDER: Final = {k: i for i, k in enumerate(FindingKind)}

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=120)]


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


# --- the policy (data) -------------------------------------------------------------------------


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


class AuditPolicy(Strict):
    periods_per_year: int = Field(default=4)
    auditor_role: str = "internal-auditor"
    systems_per_audit: int = Field(default=3, ge=0, le=50)
    weighting: Weighting = Field(default_factory=Weighting)
    report_approval: ReportApproval
    capa_owner_role: str = "governance-lead"
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


# --- periods -----------------------------------------------------------------------------------

_PERIOD_RE: Final = re.compile(r"^(\d{4})(?:Q([1-4])|H([12])|-(\d{2}))?$")


def _label(year: int, index: int, per_year: int) -> str:
    """`2026Q4` (quarters), `2026H2` (halves), `2026-10` (months), `2026` (years)."""
    match per_year:
        case 4:
            return f"{year}Q{index + 1}"
        case 2:
            return f"{year}H{index + 1}"
        case 12:
            return f"{year}-{index + 1:02d}"
        case _:
            return str(year)


def parse_period(label: str, per_year: int) -> tuple[int, int]:
    """(year, index within the year) of a period label in the policy's format."""
    example = _label(2026, per_year - 1, per_year)
    m = _PERIOD_RE.match(label.strip().upper())
    if m is None:
        raise InvalidInput(f"'{label}' is not a period like {example}", "start")
    year = int(m.group(1))
    given = {4: m.group(2), 2: m.group(3), 12: m.group(4), 1: None}
    other = [g for n, g in given.items() if n != per_year and g is not None]
    if other or (per_year != 1 and given[per_year] is None):
        raise InvalidInput(f"'{label}' is not a period like {example} (the policy's)", "start")
    index = int(given[per_year]) - 1 if per_year != 1 else 0  # type: ignore[arg-type]
    if per_year == 12 and not 0 <= index < 12:
        raise InvalidInput(f"'{label}': no month {index + 1}", "start")
    return year, index


def _period_start(year: int, index: int, per_year: int, tz: ZoneInfo) -> datetime:
    months = 12 // per_year
    extra_years, month0 = divmod(index * months, 12)
    return datetime(year + extra_years, month0 + 1, 1, tzinfo=tz).astimezone(UTC)


def period_bounds(label: str, per_year: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a period, in UTC, its days counted in the configured time zone."""
    year, index = parse_period(label, per_year)
    nxt = (year + 1, 0) if index + 1 == per_year else (year, index + 1)
    return _period_start(year, index, per_year, tz), _period_start(*nxt, per_year, tz)


def period_of(at: datetime, per_year: int, tz: ZoneInfo) -> str:
    local = as_utc(at).astimezone(tz)
    return _label(local.year, (local.month - 1) // (12 // per_year), per_year)


def periods_from(start: str, count: int, per_year: int) -> list[str]:
    year, index = parse_period(start, per_year)
    out = []
    for _ in range(count):
        out.append(_label(year, index, per_year))
        year, index = (year + 1, 0) if index + 1 == per_year else (year, index + 1)
    return out


def _tz(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.timezone)


def _utc(value: datetime | None) -> datetime:
    return as_utc(value) if value is not None else datetime.now(UTC)


# --- boundary models ---------------------------------------------------------------------------


class PlanIn(BaseModel):
    """`aims audit plan`: a cycle of `cycle_years` from period `start` (default: the current)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    cycle_years: int | None = Field(default=None, ge=1, le=10)
    start: Annotated[str | None, BeforeValidator(_blank_to_none)] = None
    name: Annotated[
        Annotated[str, StringConstraints(min_length=1, max_length=200)] | None,
        BeforeValidator(_blank_to_none),
    ] = None


class FindingIn(BaseModel):
    """One finding of an audit: a requirement in scope, its kind, what was found."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    control: Annotated[str, StringConstraints(min_length=1, max_length=16)]
    kind: FindingKind
    statement: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    system: Annotated[SystemName | None, BeforeValidator(_blank_to_none)] = None
    evidence: Path | None = None


class FindingOut(BaseModel):
    id: int
    audit_id: int
    control_id: str
    kind: FindingKind
    statement: str
    system: str | None
    evidence_id: int | None
    capa_id: int | None
    recorded_by: str
    created_at: datetime

    @property
    def nonconformity(self) -> bool:
        return self.kind in NONCONFORMITIES


class AuditOut(BaseModel):
    id: int
    programme_id: int
    programme: str
    period: str
    title: str
    scope: list[str]
    scope_reasons: dict[str, str]
    areas: list[str]
    systems: list[str]
    auditor: str | None
    auditor_name: str | None
    status: AuditStatus
    checklist: list[dict[str, Any]]
    request_id: int | None
    report_evidence_id: int | None
    flow_run_id: str | None
    planned_start: datetime
    period_end: datetime
    started_at: datetime | None
    completed_at: datetime | None
    findings: list[FindingOut]

    @property
    def subject(self) -> str:
        return f"audit:{self.id}"

    @property
    def nonconformities(self) -> list[FindingOut]:
        return [f for f in self.findings if f.nonconformity]

    def next_step(self) -> str:
        i = self.id
        match self.status:
            case AuditStatus.planned:
                if not self.auditor:
                    return f"an auditor: `aims audit assign {i} --auditor EMAIL`"
                return f"the fieldwork run: `aims audit start {i}`"
            case AuditStatus.in_progress:
                return (
                    f"fieldwork: `aims audit finding {i} --control ID --kind minor-nc "
                    f"--statement ...`, then `aims audit complete {i}`"
                )
            case AuditStatus.reporting:
                req = self.request_id
                return (
                    f"the report's approval: `aims approve {req} --as EMAIL`"
                    if req
                    else "the report's approval (asked by the audit's run)"
                )
            case _:
                return f"nothing: {self.status.value}"


class Coverage(BaseModel):
    clauses_total: int
    clauses_covered: int
    annex_total: int
    annex_covered: int
    missing: list[str]

    def lines(self) -> list[str]:
        return [
            f"clauses covered {self.clauses_covered}/{self.clauses_total}",
            f"Annex A controls covered {self.annex_covered}/{self.annex_total}",
        ]


class ProgrammeOut(BaseModel):
    id: int
    name: str
    cycle_years: int
    starts_on: datetime
    ends_on: datetime
    periods: list[str]
    created_by: str
    created_at: datetime
    audits: list[AuditOut]
    coverage: Coverage

    @property
    def times_audited(self) -> Counter[str]:
        """How many audits of the programme each requirement is in."""
        return Counter(c for a in self.audits for c in a.scope)


class PlanResult(BaseModel):
    programme: ProgrammeOut
    created: bool
    yearly: dict[str, str] = Field(default_factory=dict)  # area id -> why every year
    unassigned: list[str] = Field(default_factory=list)  # why an audit has no auditor
    evidence_id: int | None = None


class PlanningReport(BaseModel):
    """What one monthly planning pass did."""

    at: datetime
    programme: str | None = None
    programme_created: bool = False
    scope_added: list[str] = Field(default_factory=list)
    assigned: list[str] = Field(default_factory=list)
    told: list[str] = Field(default_factory=list)
    unassigned: list[str] = Field(default_factory=list)
    overdue: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        return (
            f"programme {self.programme or '-'}"
            + (" (created)" if self.programme_created else "")
            + f", scope added {len(self.scope_added)}, auditors assigned {len(self.assigned)}, "
            f"told {len(self.told)}, unassigned {len(self.unassigned)}, overdue {len(self.overdue)}"
        )

    def rows(self) -> list[dict[str, str]]:
        rows = [{"what": "programme created", "detail": self.programme or ""}] * (
            1 if self.programme_created else 0
        )
        for what, items in (
            ("scope added", self.scope_added),
            ("auditor assigned", self.assigned),
            ("auditor told", self.told),
            ("no independent auditor", self.unassigned),
            ("overdue", self.overdue),
        ):
            rows += [{"what": what, "detail": item} for item in items]
        return rows or [{"what": "nothing to do", "detail": self.programme or ""}]


# --- reading -----------------------------------------------------------------------------------


def subject(audit_id: int) -> str:
    return f"audit:{audit_id}"


def _audit_query() -> Any:
    return select(Audit).options(
        selectinload(Audit.programme),
        selectinload(Audit.auditor),
        selectinload(Audit.findings),
    )


def _load(session: Session, audit_id: int, *, lock: bool = False) -> Audit:
    q = _audit_query().where(Audit.id == audit_id)
    if lock:
        q = q.with_for_update(of=Audit)
    row = session.scalar(q)
    if row is None:
        raise NotFound(f"no audit {audit_id} (see `aims audit list`)", "audit")
    return row


def _system_names(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(AISystem.id, AISystem.name).where(AISystem.id.in_(wanted)))
    return {i: n for i, n in rows}


def _finding_out(f: AuditFinding, systems: Mapping[int, str]) -> FindingOut:
    return FindingOut(
        id=f.id,
        audit_id=f.audit_id,
        control_id=f.control_id,
        kind=f.kind,
        statement=f.statement,
        system=systems.get(f.system_id) if f.system_id else None,
        evidence_id=f.evidence_id,
        capa_id=f.capa_id,
        recorded_by=f.recorded_by,
        created_at=as_utc(f.created_at),
    )


def _areas_of(policy: AuditPolicy, scope: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for c in scope:
        area = policy.area_of(c)
        if area is not None:
            seen.setdefault(area.id, None)
    return list(seen)


def _out(session: Session, row: Audit, policy: AuditPolicy, tz: ZoneInfo) -> AuditOut:
    systems = _system_names(session, (f.system_id for f in row.findings))
    _, end = period_bounds(row.period, policy.periods_per_year, tz)
    return AuditOut(
        id=row.id,
        programme_id=row.programme_id,
        programme=row.programme.name,
        period=row.period,
        title=row.title,
        scope=list(row.scope),
        scope_reasons=dict(row.scope_reasons),
        areas=_areas_of(policy, row.scope),
        systems=list(row.systems),
        auditor=row.auditor.email if row.auditor else None,
        auditor_name=row.auditor.name if row.auditor else None,
        status=row.status,
        checklist=list(row.checklist),
        request_id=row.request_id,
        report_evidence_id=row.report_evidence_id,
        flow_run_id=row.flow_run_id,
        planned_start=as_utc(row.planned_start),
        period_end=end,
        started_at=as_utc(row.started_at) if row.started_at else None,
        completed_at=as_utc(row.completed_at) if row.completed_at else None,
        findings=[_finding_out(f, systems) for f in row.findings],
    )


def _coverage(session: Session, audits: Iterable[Audit | AuditOut]) -> Coverage:
    kinds = dict(
        session.execute(
            select(Control.id, Control.kind).where(Control.kind != ControlKind.annex_objective)
        ).all()
    )
    covered = {c for a in audits for c in a.scope}
    clauses = [c for c, k in kinds.items() if k is ControlKind.clause]
    annex = [c for c, k in kinds.items() if k is ControlKind.annex_control]
    order = {r.id: r.position for r in catalog.requirements()}
    return Coverage(
        clauses_total=len(clauses),
        clauses_covered=sum(1 for c in clauses if c in covered),
        annex_total=len(annex),
        annex_covered=sum(1 for c in annex if c in covered),
        missing=sorted((c for c in kinds if c not in covered), key=lambda c: order.get(c, 0)),
    )


def _programme_out(session: Session, row: AuditProgramme, settings: Settings) -> ProgrammeOut:
    policy, tz = audit_policy(settings), _tz(settings)
    audits = [
        _out(session, a, policy, tz)
        for a in session.scalars(
            _audit_query().where(Audit.programme_id == row.id).order_by(Audit.planned_start)
        )
    ]
    return ProgrammeOut(
        id=row.id,
        name=row.name,
        cycle_years=row.cycle_years,
        starts_on=as_utc(row.starts_on),
        ends_on=as_utc(row.ends_on),
        periods=list(row.periods),
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        audits=audits,
        coverage=_coverage(session, [a for a in audits if a.status is not AuditStatus.cancelled]),
    )


def get_audit(uow: UnitOfWork, audit_id: int) -> AuditOut:
    with uow.read():
        return _out(
            uow.session, _load(uow.session, audit_id), audit_policy(uow.settings), _tz(uow.settings)
        )


def list_audits(uow: UnitOfWork, *, programme: str | None = None) -> list[AuditOut]:
    """Audits in the order they are planned; `programme` keeps one programme's (by name)."""
    policy, tz = audit_policy(uow.settings), _tz(uow.settings)
    with uow.read():
        s = uow.session
        q = _audit_query().order_by(Audit.planned_start, Audit.id)
        if programme is not None:
            q = q.where(Audit.programme_id == _programme_by_name(s, programme).id)
        return [_out(s, a, policy, tz) for a in s.scalars(q)]


def _programme_by_name(session: Session, name: str) -> AuditProgramme:
    row = session.scalar(select(AuditProgramme).where(AuditProgramme.name == name.strip()))
    if row is None:
        raise NotFound(f"no audit programme '{name}' (see `aims audit list`)", "programme")
    return row


def get_programme(uow: UnitOfWork, name: str) -> ProgrammeOut:
    with uow.read():
        return _programme_out(uow.session, _programme_by_name(uow.session, name), uow.settings)


def list_programmes(uow: UnitOfWork) -> list[ProgrammeOut]:
    with uow.read():
        s = uow.session
        rows = s.scalars(select(AuditProgramme).order_by(AuditProgramme.starts_on))
        return [_programme_out(s, r, uow.settings) for r in rows]


def run_name(a: AuditOut) -> str:
    """`audit 2026Q4: 9 requirements (auditor Olu Adeyemi)`: the run's name in the UI."""
    who = f"auditor {a.auditor_name}" if a.auditor_name else "no auditor yet"
    return f"audit {a.period}: {len(a.scope)} requirements ({who})"


def run_tags(a: AuditOut) -> list[str]:
    return ["audit", a.period, *(f"area:{x}" for x in a.areas)]


# --- weighting: what is audited every year -------------------------------------------------------


def _nonconformities(
    session: Session, policy: AuditPolicy, since: datetime
) -> dict[str, list[str]]:
    """Area id -> the nonconformities since `since` on its requirements (CAPAs, audit
    nonconformities; incidents count against the policy's incident requirements)."""
    out: dict[str, list[str]] = defaultdict(list)

    def add(control: str, what: str) -> None:
        area = policy.area_of(control)
        if area is not None and what not in out[area.id]:
            out[area.id].append(what)

    for cid, control in session.execute(
        select(Capa.id, Capa.control_id).where(
            Capa.control_id.is_not(None), Capa.created_at >= since
        )
    ):
        add(control, f"CAPA {cid} on {control}")
    for fid, control in session.execute(
        select(AuditFinding.id, AuditFinding.control_id).where(
            AuditFinding.kind.in_(NONCONFORMITIES), AuditFinding.created_at >= since
        )
    ):
        add(control, f"finding {fid} on {control}")
    incidents = list(
        session.scalars(
            select(Incident.id).where(Incident.reported_at >= since, Incident.is_drill.is_(False))
        )
    )
    if incidents:
        shown = ", ".join(map(str, incidents[:5])) + (" ..." if len(incidents) > 5 else "")
        for control in policy.weighting.incident_requirements:
            add(control, f"incident(s) {shown}")
    return dict(out)


def _high_risk_systems(session: Session, policy: AuditPolicy) -> list[str]:
    return list(
        session.scalars(
            select(AISystem.name)
            .where(
                AISystem.risk_tier.in_(policy.weighting.high_risk_tiers),
                AISystem.lifecycle_stage != LifecycleStage.decommission,
            )
            .order_by(AISystem.name)
        )
    )


def yearly_areas(session: Session, policy: AuditPolicy, now: datetime) -> dict[str, str]:
    """Area id -> why it is audited every year rather than once per cycle."""
    since = now - timedelta(days=round(policy.weighting.nonconformity_months * 30.44))
    out: dict[str, list[str]] = defaultdict(list)
    high = _high_risk_systems(session, policy)
    if high:
        for a in policy.areas:
            if a.system_facing:
                out[a.id].append(f"touches high-risk systems ({', '.join(high)})")
    months = policy.weighting.nonconformity_months
    for area_id, items in _nonconformities(session, policy, since).items():
        out[area_id].append(f"nonconformities in the last {months} months ({'; '.join(items)})")
    return {k: "; ".join(v) for k, v in out.items()}


# --- planning ------------------------------------------------------------------------------------


def _sample_systems(session: Session, policy: AuditPolicy, index: int) -> list[str]:
    """High-risk systems first (most critical first); the other slots rotate across periods."""
    rows = list(
        session.execute(
            select(AISystem.name, AISystem.risk_tier, AISystem.criticality).where(
                AISystem.lifecycle_stage != LifecycleStage.decommission
            )
        )
    )

    def rank(r: Any) -> tuple[int, int, str]:
        return (
            _TIER_ORDER.get(r.risk_tier.value, 9),
            _CRIT_ORDER.get(r.criticality.value, 9),
            r.name,
        )

    rows.sort(key=rank)
    first = [r.name for r in rows if r.risk_tier in policy.weighting.high_risk_tiers]
    rest = [r.name for r in rows if r.risk_tier not in policy.weighting.high_risk_tiers]
    n = policy.systems_per_audit
    if rest:
        shift = index % len(rest)
        rest = rest[shift:] + rest[:shift]
    return (first + rest)[:n]


def _kinds_for(requirement: str) -> list[catalog.EvidenceKind]:
    """Evidence kinds the catalog maps to this requirement, its parents or its children."""

    def related(c: str) -> bool:
        return (
            c == requirement or c.startswith(requirement + ".") or requirement.startswith(c + ".")
        )

    return [k for k in catalog.evidence_kinds().values() if any(related(c) for c in k.controls)]


def _checklist(
    session: Session, policy: AuditPolicy, scope: list[str], systems: list[str]
) -> list[dict[str, Any]]:
    """Per requirement: the question, what evidence to look for, and the records the engine
    holds now (evidence of those kinds, the SoA decision, CAPAs on it)."""
    reqs = {r.id: r for r in catalog.requirements()}
    ev_counts = dict(
        session.execute(select(Evidence.kind, func.count()).group_by(Evidence.kind)).all()
    )
    subjects = [f"system:{s}" for s in systems]
    per_system: dict[tuple[str, str], int] = {}
    if subjects:
        per_system = {
            (k, s): n
            for k, s, n in session.execute(
                select(Evidence.kind, Evidence.subject, func.count())
                .where(Evidence.subject.in_(subjects))
                .group_by(Evidence.kind, Evidence.subject)
            )
        }
    soa = {
        e.control_id: e
        for e in session.scalars(select(SoaEntry).where(SoaEntry.control_id.in_(scope)))
    }
    capa_rows = list(
        session.execute(
            select(Capa.id, Capa.control_id, Capa.status).where(Capa.control_id.in_(scope))
        )
    )
    items = []
    for cid in scope:
        req = reqs[cid]
        area = policy.area_of(cid)
        if req.kind is ControlKind.annex_control:
            question = (
                f"Is control {cid} ({req.title}) implemented as the Statement of Applicability "
                "says, and effective on the sampled systems?"
            )
        else:
            question = (
                f"How does the organisation meet {cid} ({req.title})? Show the documented "
                "information and the records that it is done."
            )
        kinds = _kinds_for(cid)
        records = []
        for k in kinds:
            n = ev_counts.get(k.id, 0)
            mine = ", ".join(
                f"{s} {per_system[(k.id, f'system:{s}')]}"
                for s in systems
                if (k.id, f"system:{s}") in per_system
            )
            records.append(f"{k.id}: {n} record(s)" + (f" ({mine})" if mine else ""))
        if req.kind is ControlKind.annex_control:
            e = soa.get(cid)
            records.append(
                "SoA: not decided"
                if e is None
                else f"SoA: {'applicable' if e.applicable else 'not applicable'}"
                + (f" — {e.justification}" if e.justification else "")
            )
        mine_capas = [(i, st) for i, c, st in capa_rows if c == cid]
        if mine_capas:
            still = sum(1 for _, st in mine_capas if st.value != "closed")
            records.append(
                f"CAPAs on {cid}: {', '.join(str(i) for i, _ in mine_capas)} ({still} open)"
            )
        items.append(
            {
                "control": cid,
                "title": req.title,
                "area": area.id if area else None,
                "question": question,
                "look_for": [f"{k.title} ({k.id})" for k in kinds]
                or ["documented information showing the requirement is met"],
                "records": records,
            }
        )
    return items


def _title(policy: AuditPolicy, period: str, scope: list[str]) -> str:
    names = [policy.area(a).title for a in _areas_of(policy, scope)]
    return f"Internal audit {period}: {'; '.join(names)}"[:300]


def _allocate(
    policy: AuditPolicy, periods: list[str], yearly: Mapping[str, str], cycle_years: int
) -> list[dict[str, str]]:
    """Per period, control id -> reason. Whole areas, biggest first, each into the least loaded
    period: yearly areas once in every year, the others once in the cycle."""
    members: dict[str, list[str]] = defaultdict(list)
    for r in auditable():
        area = policy.area_of(r.id)
        assert area is not None  # the policy's problems() guarantees it
        members[area.id].append(r.id)
    load = [0] * len(periods)
    out: list[dict[str, str]] = [{} for _ in periods]
    ppy = policy.periods_per_year

    def place(area_id: str, candidates: range, reason: str) -> None:
        i = min(candidates, key=lambda j: (load[j], j))
        for c in members[area_id]:
            out[i][c] = reason
        load[i] += len(members[area_id])

    by_size = sorted(members, key=lambda a: (-len(members[a]), a))
    for area_id in by_size:
        title = policy.area(area_id).title
        if area_id in yearly:
            for y in range(cycle_years):
                place(
                    area_id,
                    range(y * ppy, (y + 1) * ppy),
                    f"{title}: audited every year (year {y + 1} of {cycle_years}): "
                    f"{yearly[area_id]}",
                )
    for area_id in by_size:
        if area_id not in yearly:
            title = policy.area(area_id).title
            place(area_id, range(len(periods)), f"{title}: once per {cycle_years}-year cycle")
    return out


def _programme_md(p: ProgrammeOut, yearly: Mapping[str, str]) -> str:
    lines = [
        f"# Internal audit programme: {p.name}",
        "",
        f"- **cycle**: {p.cycle_years} year(s), {p.periods[0]} to {p.periods[-1]} "
        f"({p.starts_on:%Y-%m-%d} to {p.ends_on:%Y-%m-%d} UTC)",
        *(f"- **{line}**" for line in p.coverage.lines()),
        "",
        "## Audited every year",
        "",
        *([f"- {a}: {why}" for a, why in yearly.items()] or ["- none"]),
        "",
        "## Audits",
        "",
        "| period | requirements | areas | systems | auditor |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {a.period} | {', '.join(a.scope)} | {', '.join(a.areas)} | "
        f"{', '.join(a.systems) or '-'} | {a.auditor or 'unassigned'} |"
        for a in p.audits
    ]
    return "\n".join(lines) + "\n"


def plan_programme(
    uow: UnitOfWork,
    data: PlanIn | Mapping[str, Any] | None = None,
    actor: Actor | None = None,
    *,
    now: datetime | None = None,
) -> PlanResult:
    """Build the audit programme of a cycle: one planned audit per period with its scope (and
    why), sampled systems, a checklist, and an independent auditor where one exists. Idempotent
    by name: an existing programme of that name is returned as it is (`created` False)."""
    if not isinstance(data, PlanIn):
        data = PlanIn.model_validate(data or {})
    actor = actor or Actor.cli()
    at = _utc(now)
    settings = uow.settings
    policy, tz = audit_policy(settings), _tz(settings)
    ppy = policy.periods_per_year
    cycle_years = data.cycle_years or settings.audit_cycle_years
    start = data.start.upper() if data.start else period_of(at, ppy, tz)
    periods = periods_from(start, cycle_years * ppy, ppy)
    name = data.name or f"AIMS internal audit {periods[0]} to {periods[-1]}"
    try:
        with uow:
            s = uow.session
            existing = s.scalar(select(AuditProgramme).where(AuditProgramme.name == name))
            if existing is not None:
                return PlanResult(programme=_programme_out(s, existing, settings), created=False)
            yearly = yearly_areas(s, policy, at)
            allocation = _allocate(policy, periods, yearly, cycle_years)
            starts_on, _ = period_bounds(periods[0], ppy, tz)
            _, ends_on = period_bounds(periods[-1], ppy, tz)
            row = AuditProgramme(
                name=name,
                cycle_years=cycle_years,
                starts_on=starts_on,
                ends_on=ends_on,
                periods=periods,
                created_by=actor.who,
            )
            s.add(row)
            s.flush()
            order = {r.id: r.position for r in catalog.requirements()}
            unassigned: list[str] = []
            for i, (period, reasons) in enumerate(zip(periods, allocation, strict=True)):
                scope = sorted(reasons, key=lambda c: order[c])
                facing = any(policy.area(a).system_facing for a in _areas_of(policy, scope))
                systems = _sample_systems(s, policy, i) if facing else []
                audit = Audit(
                    programme=row,
                    period=period,
                    title=_title(policy, period, scope),
                    scope=scope,
                    scope_reasons={c: reasons[c] for c in scope},
                    systems=systems,
                    status=AuditStatus.planned,
                    checklist=_checklist(s, policy, scope, systems),
                    planned_start=period_bounds(period, ppy, tz)[0],
                )
                s.add(audit)
                s.flush()
                who, why = _pick_auditor(s, policy, audit, row.id)
                if who is None:
                    unassigned.append(f"audit {audit.id} ({period}): {why}")
                audit.auditor = who
            s.flush()
            out = _programme_out(s, row, settings)
            ev = evidence.append_in(
                uow,
                EvidenceIn(
                    subject=f"plan:audit-programme-{row.id}",
                    kind="audit-programme",
                    title=f"Internal audit programme: {name}"[:300],
                    text=_programme_md(out, yearly),
                    media_type="text/markdown; charset=utf-8",
                    idempotency_key=f"audit-programme-{row.id}",
                ),
                actor,
            )
            uow.audit(
                actor,
                "audit.programme-planned",
                f"plan:audit-programme-{row.id}",
                name=name,
                cycle_years=cycle_years,
                periods=periods,
                yearly=yearly,
                coverage=out.coverage.model_dump(),
                unassigned=unassigned,
                evidence_id=ev.id,
            )
            uow.commit()
    except IntegrityError:
        # A concurrent plan of the same name won the race: return that programme.
        with uow.read():
            return PlanResult(
                programme=_programme_out(
                    uow.session, _programme_by_name(uow.session, name), settings
                ),
                created=False,
            )
    evidence.sync_anchor(settings)
    return PlanResult(
        programme=out, created=True, yearly=yearly, unassigned=unassigned, evidence_id=ev.id
    )


# --- independence --------------------------------------------------------------------------------


def conflicts(session: Session, policy: AuditPolicy, audit: Audit, person: Person) -> list[str]:
    """Why `person` may not audit `audit` (empty: independent). An auditor holds the auditor
    role, is not Responsible or Accountable for an activity of an area in scope (organisation-
    wide, or for a sampled system), and owns no sampled system."""
    out = []
    if not person.active:
        out.append(f"{person.email} is not active")
    if policy.auditor_role not in {r.id for r in person.roles}:
        out.append(f"{person.email} does not hold the role {policy.auditor_role}")
    sampled = {
        sys.id: sys
        for sys in session.scalars(select(AISystem).where(AISystem.name.in_(list(audit.systems))))
    }
    scopes = ["org", *(f"system:{i}" for i in sampled)]
    by_area: dict[str, list[str]] = defaultdict(list)
    for c in audit.scope:
        area = policy.area_of(c)
        if area is not None:
            by_area[area.id].append(c)
    for area_id, reqs in by_area.items():
        activities = policy.area(area_id).activities
        if not activities:
            continue
        rows = session.scalars(
            select(RaciActivity)
            .where(RaciActivity.activity.in_(activities), RaciActivity.scope.in_(scopes))
            .options(selectinload(RaciActivity.members), selectinload(RaciActivity.system))
            .order_by(RaciActivity.activity, RaciActivity.scope)
        )
        for r in rows:
            parts = []
            if any(m.person_id == person.id and m.kind is RaciKind.responsible for m in r.members):
                parts.append("Responsible")
            if r.accountable_id == person.id:
                parts.append("Accountable")
            if parts:
                where = f"@{r.system.name}" if r.system else ""
                shown = ", ".join(reqs[:6]) + (" ..." if len(reqs) > 6 else "")
                out.append(
                    f"{person.email} is {' and '.join(parts)} for {r.activity}{where}, "
                    f"which covers {shown} in this audit's scope"
                )
    out += [
        f"{person.email} owns {sys.name}, a system sampled by this audit"
        for sys in sampled.values()
        if sys.owner_id == person.id
    ]
    return out


def _pick_auditor(
    session: Session, policy: AuditPolicy, audit: Audit, programme_id: int
) -> tuple[Person | None, str]:
    """The independent auditor with the fewest audits in the programme (None, and why not)."""
    holders = list(
        session.scalars(
            select(Person)
            .join(PersonRole, PersonRole.person_id == Person.id)
            .where(PersonRole.role_id == policy.auditor_role, Person.active.is_(True))
            .options(selectinload(Person.roles))
            .order_by(Person.id)
        )
    )
    if not holders:
        return None, f"nobody holds the role {policy.auditor_role}"
    load = Counter(
        session.scalars(
            select(Audit.auditor_id).where(
                Audit.programme_id == programme_id, Audit.auditor_id.is_not(None)
            )
        )
    )
    reasons = []
    for p in sorted(holders, key=lambda p: (load[p.id], p.id)):
        problems = conflicts(session, policy, audit, p)
        if not problems:
            return p, ""
        reasons.append(problems[0])
    return None, "no independent auditor: " + "; ".join(reasons)


def assign_auditor(uow: UnitOfWork, audit_id: int, email: str, actor: Actor) -> AuditOut:
    """Make `email` the audit's auditor, if independent; else Conflict naming every conflict."""
    policy, tz = audit_policy(uow.settings), _tz(uow.settings)
    with uow:
        s = uow.session
        row = _load(s, audit_id, lock=True)
        if row.status not in (AuditStatus.planned,):
            raise Conflict(
                f"audit {row.id} is {row.status.value}: the auditor is chosen before it starts",
                "audit",
            )
        person = get_person(s, email, "auditor")
        problems = conflicts(s, policy, row, person)
        if problems:
            raise Conflict(
                f"{person.name} may not audit audit {row.id} ({row.period}), an auditor may not "
                f"audit their own work: {'; '.join(problems)}",
                "auditor",
            )
        if row.auditor_id != person.id:
            previous = row.auditor.email if row.auditor else None
            row.auditor = person
            s.flush()
            uow.audit(
                actor,
                "audit.auditor-assigned",
                subject(row.id),
                auditor=person.email,
                previous=previous,
            )
        out = _out(s, row, policy, tz)
        uow.commit()
    return out


# --- the audit: start, findings, fieldwork complete ----------------------------------------------


def _startable(session: Session, policy: AuditPolicy, row: Audit) -> Person:
    """The auditor of a planned audit, if it may start (Conflict naming why not)."""
    if row.auditor is None:
        raise Conflict(
            f"audit {row.id} has no auditor: `aims audit assign {row.id} --auditor EMAIL`",
            "auditor",
        )
    problems = conflicts(session, policy, row, row.auditor)
    if problems:
        raise Conflict(
            f"{row.auditor.email} is no longer independent for audit {row.id}: "
            f"{'; '.join(problems)} (assign another auditor)",
            "auditor",
        )
    return row.auditor


def check_startable(uow: UnitOfWork, audit_id: int) -> AuditOut:
    """The audit, if a run may start for it now (before starting one: no run left failing)."""
    policy, tz = audit_policy(uow.settings), _tz(uow.settings)
    with uow.read():
        row = _load(uow.session, audit_id)
        if row.status in (AuditStatus.closed, AuditStatus.cancelled):
            raise Conflict(f"audit {row.id} is {row.status.value}: nothing to run", "audit")
        if row.status is AuditStatus.planned:
            _startable(uow.session, policy, row)
        return _out(uow.session, row, policy, tz)


def start_audit(
    uow: UnitOfWork,
    audit_id: int,
    flow_run_id: str | None,
    actor: Actor,
    *,
    now: datetime | None = None,
) -> AuditOut:
    """Fieldwork begins: planned → in-progress, the checklist's records refreshed, the run
    attached. Needs an independent auditor (checked again: RACI may have changed). A repeat,
    or a later run of an audit in progress, only attaches the run."""
    policy, tz = audit_policy(uow.settings), _tz(uow.settings)
    with uow:
        s = uow.session
        row = _load(s, audit_id, lock=True)
        if row.status is AuditStatus.planned:
            auditor = _startable(s, policy, row)
            row.status = AuditStatus.in_progress
            row.started_at = _utc(now)
            row.checklist = _checklist(s, policy, list(row.scope), list(row.systems))
            uow.audit(
                actor,
                "audit.started",
                subject(row.id),
                auditor=auditor.email,
                flow_run_id=flow_run_id,
            )
        elif row.status in (AuditStatus.closed, AuditStatus.cancelled):
            raise Conflict(f"audit {row.id} is {row.status.value}", "audit")
        attach_run(uow, actor, row, flow_run_id, "audit.run-attached", subject(row.id))
        s.flush()
        out = _out(s, row, policy, tz)
        uow.commit()
    return out


def _finding_md(a: Audit, f: AuditFinding, system: str | None, title: str) -> str:
    return (
        f"# Audit {a.id} ({a.period}) finding {f.id}: {f.kind.value}\n\n"
        f"- **requirement**: {f.control_id} {title}\n"
        f"- **system**: {system or '-'}\n"
        f"- **auditor**: {a.auditor.email if a.auditor else '-'}\n"
        f"- **recorded by**: {f.recorded_by}\n\n{f.statement}\n"
    )


def record_finding(
    uow: UnitOfWork, audit_id: int, data: FindingIn | Mapping[str, Any], actor: Actor
) -> FindingOut:
    """Record a finding during fieldwork (the requirement must be in scope), kept as
    `audit-finding` evidence (the file given, else the statement). A major or minor
    nonconformity opens its CAPA at once (`ensure_capas`)."""
    if not isinstance(data, FindingIn):
        data = FindingIn.model_validate(data)
    if data.evidence is not None and not data.evidence.is_file():
        raise InvalidInput(f"no file {data.evidence}", "evidence")
    with uow:
        s = uow.session
        row = _load(s, audit_id, lock=True)
        if row.status is not AuditStatus.in_progress:
            raise Conflict(
                f"audit {row.id} is {row.status.value}: findings are recorded during fieldwork"
                + (f" (`aims audit start {row.id}`)" if row.status is AuditStatus.planned else ""),
                "audit",
            )
        control = s.get(Control, data.control)
        if control is None:
            raise NotFound(
                f"no clause or control '{data.control}' (see `aims catalog list`)", "control"
            )
        if control.id not in row.scope:
            raise InvalidInput(
                f"{control.id} is not in the scope of audit {row.id} ({row.period}: "
                f"{', '.join(row.scope)})",
                "control",
            )
        system = get_system(s, data.system) if data.system else None
        f = AuditFinding(
            audit_id=row.id,
            control_id=control.id,
            kind=data.kind,
            statement=data.statement,
            system_id=system.id if system else None,
            recorded_by=actor.who,
        )
        s.add(f)
        s.flush()
        head = f"Audit {row.period} finding {f.id} ({f.kind.value}, {control.id})"
        content: dict[str, Any] = (
            {"file": data.evidence}
            if data.evidence is not None
            else {
                "text": _finding_md(row, f, system.name if system else None, control.title),
                "media_type": "text/markdown; charset=utf-8",
            }
        )
        ev = evidence.append_in(
            uow,
            EvidenceIn(
                subject=f"finding:{f.id}",
                kind="audit-finding",
                title=f"{head}: {' '.join(data.statement.split())}"[:300],
                idempotency_key=f"audit-{row.id}-finding-{f.id}",
                **content,
            ),
            actor,
        )
        f.evidence_id = ev.id
        uow.audit(
            actor,
            "audit.finding-recorded",
            subject(row.id),
            finding_id=f.id,
            control_id=control.id,
            kind=f.kind.value,
            system=system.name if system else None,
            evidence_id=ev.id,
        )
        uow.commit()
        finding_id = f.id
    evidence.sync_anchor(uow.settings)
    if data.kind in NONCONFORMITIES:
        ensure_capas(uow, audit_id, actor)
    with uow.read():
        f = uow.session.get(AuditFinding, finding_id)
        assert f is not None
        return _finding_out(f, _system_names(uow.session, [f.system_id]))


def _capa_owner(session: Session, policy: AuditPolicy, f: AuditFinding) -> str:
    """The sampled system's owner; else the Accountable of the area's activity; else a holder
    of the policy's CAPA owner role."""
    if f.system_id is not None:
        system = session.get(AISystem, f.system_id)
        assert system is not None
        return system.owner.email
    area = policy.area_of(f.control_id)
    for activity in area.activities if area else []:
        raci = session.scalar(
            select(RaciActivity).where(
                RaciActivity.activity == activity, RaciActivity.scope == "org"
            )
        )
        if raci is not None and raci.accountable.active:
            return raci.accountable.email
    holder = session.scalar(
        select(Person)
        .join(PersonRole, PersonRole.person_id == Person.id)
        .where(PersonRole.role_id == policy.capa_owner_role, Person.active.is_(True))
        .order_by(Person.id)
    )
    if holder is None:
        raise AimsError(
            f"nobody can own the CAPA of finding {f.id}: no system named, no RACI for the "
            f"area's activities, nobody holds {policy.capa_owner_role}",
            "capa_owner",
        )
    return holder.email


def ensure_capas(uow: UnitOfWork, audit_id: int, actor: Actor) -> list[int]:
    """Every major/minor nonconformity of the audit has its CAPA (opened once: idempotent on
    `audit-finding-<id>`), linked both ways. Returns the CAPA ids opened or found."""
    policy = audit_policy(uow.settings)
    with uow.read():
        s = uow.session
        a = _load(s, audit_id)
        todo = []
        for f in a.findings:
            if f.kind in NONCONFORMITIES and f.capa_id is None:
                control = s.get(Control, f.control_id)
                system = s.get(AISystem, f.system_id) if f.system_id else None
                todo.append(
                    (
                        f.id,
                        capas.CapaIn(
                            title=f"Audit {a.period} finding {f.id}: "
                            f"{' '.join(f.statement.split())}"[:300],
                            description=(
                                f"{f.kind.value} found by internal audit {a.id} ({a.title}) "
                                f"against {f.control_id} {control.title if control else ''}, "
                                f"auditor {a.auditor.email if a.auditor else '-'}.\n\n{f.statement}"
                            ),
                            source="audit-finding",
                            system=system.name if system else None,
                            control_id=f.control_id,
                            owner=_capa_owner(s, policy, f),
                            idempotency_key=f"audit-finding-{f.id}",
                        ),
                    )
                )
        ids = [f.capa_id for f in a.findings if f.capa_id is not None]
    for finding_id, spec in todo:
        c = capas.open_capa(uow, spec, actor)
        with uow:
            f = uow.session.get(AuditFinding, finding_id, with_for_update=True)
            assert f is not None
            if f.capa_id is None:
                f.capa_id = c.id
                uow.audit(
                    actor,
                    "audit.finding-capa",
                    subject(audit_id),
                    finding_id=finding_id,
                    capa_id=c.id,
                )
                uow.commit()
        ids.append(c.id)
    return ids


def complete_fieldwork(
    uow: UnitOfWork, audit_id: int, actor: Actor, *, now: datetime | None = None
) -> AuditOut:
    """Fieldwork done: in-progress → reporting (the run renders the report and asks for its
    approval). Every nonconformity has its CAPA first. A repeat changes nothing."""
    policy, tz = audit_policy(uow.settings), _tz(uow.settings)
    with uow.read():
        status = _load(uow.session, audit_id).status
    if status is AuditStatus.in_progress:
        ensure_capas(uow, audit_id, actor)
    with uow:
        s = uow.session
        row = _load(s, audit_id, lock=True)
        if row.status is AuditStatus.in_progress:
            row.status = AuditStatus.reporting
            row.completed_at = _utc(now)
            row.request_id = None
            counts = Counter(f.kind.value for f in row.findings)
            uow.audit(actor, "audit.fieldwork-completed", subject(row.id), findings=dict(counts))
        elif row.status is not AuditStatus.reporting:
            raise Conflict(
                f"audit {row.id} is {row.status.value}: fieldwork is completed when it is "
                "in-progress",
                "audit",
            )
        s.flush()
        out = _out(s, row, policy, tz)
        uow.commit()
    return out


# --- the report --------------------------------------------------------------------------------


def report_round(session: Session, audit_id: int) -> int:
    """1 + the report approvals already refused (a rejected report is written and asked anew)."""
    refused = session.scalar(
        select(func.count())
        .select_from(ApprovalRequest)
        .where(
            ApprovalRequest.idempotency_key.startswith(f"audit-{audit_id}-report-"),
            ApprovalRequest.status.in_([ApprovalStatus.rejected, ApprovalStatus.cancelled]),
        )
    )
    return 1 + (refused or 0)


def _result_of(findings: list[FindingOut], completed: bool) -> str:
    if findings:
        worst = min(findings, key=lambda f: _FINDING_ORDER[f.kind])
        return worst.kind.value
    return "conforming" if completed else "not yet audited"


def _conclusion(a: AuditOut) -> str:
    counts = Counter(f.kind for f in a.findings)
    if a.completed_at is None:
        return "Fieldwork is not complete: this is a draft."
    if counts[FindingKind.major]:
        return (
            f"The AIMS does not conform in the audited scope: {counts[FindingKind.major]} major "
            f"and {counts[FindingKind.minor]} minor nonconformit(ies), each with a CAPA."
        )
    if counts[FindingKind.minor]:
        return (
            f"The AIMS conforms in the audited scope except for {counts[FindingKind.minor]} minor "
            "nonconformit(ies), each with a CAPA."
        )
    return "The AIMS conforms to ISO/IEC 42001 in the audited scope; no nonconformity was found."


def report_context(uow: UnitOfWork, audit_id: int, *, approval: bool = True) -> dict[str, Any]:
    """What the report templates show. `approval` False leaves out the approval's outcome and
    the CAPAs' progress: the version kept as evidence depends on the fieldwork alone."""
    a = get_audit(uow, audit_id)
    by_control: dict[str, list[FindingOut]] = defaultdict(list)
    for f in a.findings:
        by_control[f.control_id].append(f)
    done = a.completed_at is not None
    checklist = [
        {**item, "result": _result_of(by_control.get(item["control"], []), done)}
        for item in a.checklist
    ]
    capa_rows = []
    for f in a.nonconformities:
        if f.capa_id is None:
            continue
        c = capas.get_capa(uow, f.capa_id)
        capa_rows.append(
            {
                "id": c.id,
                "finding": f.id,
                "control": c.control_id,
                "system": c.system,
                "owner": c.owner,
                "title": c.title,
                "status": c.status.value if approval else None,
            }
        )
    decision = None
    if approval and a.request_id is not None:
        from aims_core.services.approvals import get_request

        r = get_request(uow, a.request_id)
        decision = {
            "id": r.id,
            "status": str(r.status),
            "approvals": r.approvals,
            "rejections": r.rejections,
        }
    return {
        "audit": a.model_dump(),
        "checklist": checklist,
        "groups": [
            {"kind": k.value, "findings": [f.model_dump() for f in a.findings if f.kind is k]}
            for k in FindingKind
        ],
        "capas": capa_rows,
        "conclusion": _conclusion(a),
        "approval": decision,
        "live": approval,  # CAPA progress shown (not in the version kept as evidence)
    }


def render_report(
    uow: UnitOfWork, audit_id: int, out_dir: Path, *, approval: bool = True
) -> tuple[Path, Path]:
    """Write `audit-<id>-report.html` and `.md` into `out_dir`; returns their paths."""
    context = report_context(uow, audit_id, approval=approval)
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / f"audit-{audit_id}-report.html"
    md = out_dir / f"audit-{audit_id}-report.md"
    html.write_text(reports.render("audit_report.html.j2", **context), "utf-8")
    md.write_text(reports.render("audit_report.md.j2", **context), "utf-8")
    return html, md


def reports_dir(settings: Settings) -> Path:
    return settings.data_dir / "audit-reports"


def record_report(uow: UnitOfWork, audit_id: int, actor: Actor) -> AuditOut:
    """Write the report of a completed fieldwork and keep it as `audit-report` evidence (HTML
    and Markdown), once per report round."""
    settings = uow.settings
    with uow.read():
        row = _load(uow.session, audit_id)
        if row.status is not AuditStatus.reporting:
            raise Conflict(
                f"audit {row.id} is {row.status.value}: the report is recorded after fieldwork",
                "audit",
            )
        n = report_round(uow.session, audit_id)
    html, md = render_report(
        uow, audit_id, reports_dir(settings) / f"audit-{audit_id}-r{n}", approval=False
    )
    with uow:
        row = _load(uow.session, audit_id, lock=True)
        title = f"Internal audit report {row.period} (audit {row.id})"
        ev_html = evidence.append_in(
            uow,
            EvidenceIn(
                subject=subject(row.id),
                kind="audit-report",
                title=title,
                data=html.read_bytes(),
                file_name=html.name,
                media_type="text/html; charset=utf-8",
                idempotency_key=f"audit-{row.id}-report-r{n}-html",
            ),
            actor,
        )
        ev_md = evidence.append_in(
            uow,
            EvidenceIn(
                subject=subject(row.id),
                kind="audit-report",
                title=f"{title} (Markdown)",
                text=md.read_text("utf-8"),
                media_type="text/markdown; charset=utf-8",
                idempotency_key=f"audit-{row.id}-report-r{n}-md",
            ),
            actor,
        )
        if row.report_evidence_id != ev_html.id:
            row.report_evidence_id = ev_html.id
            uow.audit(
                actor,
                "audit.report-recorded",
                subject(row.id),
                round=n,
                evidence_ids=[ev_html.id, ev_md.id],
                files=[str(html), str(md)],
            )
        uow.session.flush()
        out = _out(uow.session, row, audit_policy(settings), _tz(settings))
        uow.commit()
    evidence.sync_anchor(settings)
    return out


def report_approval_spec(
    uow: UnitOfWork, audit_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn:
    """The report's approval: roles from the policy within the RACI of its activity, the
    auditor as requester (so never an approver), the report as evidence."""
    policy = audit_policy(uow.settings).report_approval
    with uow.read():
        s = uow.session
        row = _load(s, audit_id)
        if row.status is not AuditStatus.reporting or row.report_evidence_id is None:
            raise Conflict(f"audit {row.id} has no report awaiting approval", "audit")
        n = report_round(s, audit_id)
        ids = list(
            s.scalars(
                select(Evidence.id).where(
                    Evidence.idempotency_key.startswith(f"audit-{row.id}-report-r{n}-")
                )
            )
        )
        counts = Counter(f.kind.value for f in row.findings)
        found = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no findings"
        details = (
            f"Internal audit {row.id}, {row.period}: {len(row.scope)} requirements "
            f"({', '.join(row.scope)}), systems {', '.join(row.systems) or '-'}, auditor "
            f"{row.auditor.email if row.auditor else '-'}. Findings: {found}. "
            f"Report: evidence {', '.join(f'#{i}' for i in ids)}; "
            f"`aims audit report {row.id}` writes it out."
        )
        completed = as_utc(row.completed_at) if row.completed_at else _utc(None)
        return ApprovalRequestIn(
            idempotency_key=f"audit-{row.id}-report-{n}",
            subject=subject(row.id),
            activity=policy.activity,
            title=f"Approve the internal audit report {row.period} (audit {row.id})",
            details=details[:2800],
            approver_roles=list(policy.approver_roles),
            quorum=policy.quorum,
            requester=row.auditor.email if row.auditor else None,
            # From the fieldwork's end, not from now: a re-run asks with the same deadline.
            deadline=completed + timedelta(days=policy.deadline_days)
            if policy.deadline_days
            else None,
            evidence_ids=ids,
            flow_run_id=flow_run_id,
        )


def link_request(uow: UnitOfWork, audit_id: int, request_id: int, actor: Actor) -> None:
    with uow:
        row = _load(uow.session, audit_id, lock=True)
        if row.request_id != request_id:
            row.request_id = request_id
            uow.audit(actor, "audit.report-approval-asked", subject(row.id), request_id=request_id)
            uow.commit()


def record_report_decision(
    uow: UnitOfWork, audit_id: int, request_id: int, actor: Actor, *, now: datetime | None = None
) -> AuditOut:
    """Apply the decision the database holds. Approved: closed, the decision kept as evidence.
    Rejected: back to fieldwork, the auditor told the reasons. Idempotent."""
    policy, tz = audit_policy(uow.settings), _tz(uow.settings)
    with uow:
        s = uow.session
        row = _load(s, audit_id, lock=True)
        request = s.get(ApprovalRequest, request_id)
        if request is None:
            raise NotFound(f"no approval request {request_id}", "request")
        if row.status is AuditStatus.reporting and request.status is not ApprovalStatus.open:
            approvals = [d.person.email for d in request.decisions if d.outcome is Outcome.approve]
            reasons = [
                f"{d.person.email}: {d.comment}"
                for d in request.decisions
                if d.outcome is Outcome.reject
            ]
            if request.status is ApprovalStatus.approved:
                row.status = AuditStatus.closed
                ev = evidence.append_in(
                    uow,
                    EvidenceIn(
                        subject=subject(row.id),
                        kind="decision",
                        title=f"approved: internal audit report {row.period} (audit {row.id})",
                        text=f"Request {request.id} approved by {', '.join(approvals)}.\n",
                        idempotency_key=f"decision-audit-report-{request.id}",
                    ),
                    actor,
                )
                uow.audit(
                    actor,
                    "audit.closed",
                    subject(row.id),
                    request_id=request.id,
                    approvals=approvals,
                    evidence_id=ev.id,
                )
            else:
                row.status = AuditStatus.in_progress
                row.completed_at = None
                uow.audit(
                    actor,
                    "audit.report-rejected",
                    subject(row.id),
                    request_id=request.id,
                    reasons=reasons,
                )
                if row.auditor is not None:
                    _notify(
                        s,
                        f"audit-{row.id}-report-{request.id}-rejected",
                        "audit-report-rejected",
                        row,
                        row.auditor,
                        f"The report of audit {row.id} ({row.period}) was not approved: "
                        f"{'; '.join(reasons) or request.status.value}. Fieldwork is open again: "
                        f"`aims audit complete {row.id}` when done.",
                    )
        s.flush()
        out = _out(s, row, policy, tz)
        uow.commit()
    evidence.sync_anchor(uow.settings)
    return out


def _notify(session: Session, key: str, kind: str, row: Audit, person: Person, text: str) -> None:
    """A message to one person, queued in the caller's transaction (Slack DM, else the log)."""
    outbox.queue(
        session,
        outbox.NotificationIn(
            idempotency_key=key,
            kind=kind,
            subject=subject(row.id),
            recipient=person.email,
            target=outbox.TARGET_DM if person.slack_user_id else outbox.TARGET_LOG,
            thread_key=f"audit-{row.id}-to-{person.id}",
            text=text,
        ),
    )


# --- the monthly planning pass -------------------------------------------------------------------


def _current_programme(session: Session, at: datetime) -> AuditProgramme | None:
    return session.scalar(
        select(AuditProgramme)
        .where(AuditProgramme.starts_on <= at, AuditProgramme.ends_on > at)
        .order_by(AuditProgramme.created_at.desc())
    )


def _add_new_nonconformities(
    uow: UnitOfWork, policy: AuditPolicy, tz: ZoneInfo, programme_id: int, at: datetime
) -> list[str]:
    """Areas with nonconformities in the window that no audit of the next 12 months covers join
    the next planned audit's scope (its checklist regenerated; its auditor re-checked)."""
    added: list[str] = []
    since = at - timedelta(days=round(policy.weighting.nonconformity_months * 30.44))
    horizon = at + timedelta(days=366)
    with uow:
        s = uow.session
        ncs = _nonconformities(s, policy, since)
        audits = list(
            s.scalars(
                _audit_query()
                .where(Audit.programme_id == programme_id, Audit.status != AuditStatus.cancelled)
                .order_by(Audit.planned_start)
                .with_for_update(of=Audit)
            )
        )
        ppy = policy.periods_per_year
        live = [a for a in audits if period_bounds(a.period, ppy, tz)[1] > at]
        soon = [a for a in live if as_utc(a.planned_start) <= horizon]
        target = next(
            (a for a in live if a.status is AuditStatus.planned and as_utc(a.planned_start) > at),
            None,
        ) or next((a for a in live if a.status is AuditStatus.planned), None)
        if target is None:
            return added
        order = {r.id: r.position for r in catalog.requirements()}
        members: dict[str, list[str]] = defaultdict(list)
        for r in auditable():
            area = policy.area_of(r.id)
            if area is not None:
                members[area.id].append(r.id)
        for area_id, items in ncs.items():
            reqs = members.get(area_id, [])
            if all(any(c in a.scope for a in soon) for c in reqs):
                continue
            new = [c for c in reqs if c not in target.scope]
            if not new:
                continue
            why = (
                f"{policy.area(area_id).title}: added by the monthly planning pass, "
                f"nonconformities since planning ({'; '.join(items)})"
            )
            target.scope = sorted([*target.scope, *new], key=lambda c: order[c])
            target.scope_reasons = {**target.scope_reasons, **dict.fromkeys(new, why)}
            target.title = _title(policy, target.period, list(target.scope))
            if not target.systems and policy.area(area_id).system_facing:
                target.systems = _sample_systems(s, policy, 0)
            target.checklist = _checklist(s, policy, list(target.scope), list(target.systems))
            uow.audit(
                PLANNER,
                "audit.scope-added",
                subject(target.id),
                area=area_id,
                requirements=new,
                reason=why,
            )
            added.append(f"audit {target.id} ({target.period}): {area_id} ({', '.join(new)})")
            if target.auditor is not None and conflicts(s, policy, target, target.auditor):
                uow.audit(
                    PLANNER,
                    "audit.auditor-unassigned",
                    subject(target.id),
                    auditor=target.auditor.email,
                    reason="no longer independent",
                )
                target.auditor = None
        s.flush()
        uow.commit()
    return added


def planning_pass(settings: Settings, now: datetime | None = None) -> PlanningReport:
    """One monthly pass: a programme covers the current cycle (planned if none does), areas with
    new nonconformities join the next planned audit, audits starting within a month get an
    independent auditor who is told (once per audit and auditor), overdue audits are named."""
    at = _utc(now)
    report = PlanningReport(at=at)
    policy, tz = audit_policy(settings), _tz(settings)
    uow = UnitOfWork(settings)
    with uow.read():
        current = _current_programme(uow.session, at)
        programme_id = current.id if current else None
    if programme_id is None:
        result = plan_programme(uow, PlanIn(), PLANNER, now=at)
        programme_id = result.programme.id
        report.programme_created = result.created
        report.unassigned += result.unassigned
    report.scope_added = _add_new_nonconformities(uow, policy, tz, programme_id, at)
    month = at + timedelta(days=31)
    with uow:
        s = uow.session
        programme = s.get(AuditProgramme, programme_id)
        assert programme is not None
        report.programme = programme.name
        due = list(
            s.scalars(
                _audit_query()
                .where(
                    Audit.programme_id == programme_id,
                    Audit.status == AuditStatus.planned,
                    Audit.planned_start <= month,
                )
                .order_by(Audit.planned_start)
                .with_for_update(of=Audit)
            )
        )
        for a in due:
            if a.auditor is None:
                who, why = _pick_auditor(s, policy, a, programme_id)
                if who is None:
                    report.unassigned.append(f"audit {a.id} ({a.period}): {why}")
                    continue
                a.auditor = who
                s.flush()
                uow.audit(PLANNER, "audit.auditor-assigned", subject(a.id), auditor=who.email)
                report.assigned.append(f"audit {a.id} ({a.period}): {who.email}")
            assert a.auditor is not None
            key = f"audit-{a.id}-assigned-to-{a.auditor.id}"
            if s.scalar(select(Notification.id).where(Notification.idempotency_key == key)) is None:
                _notify(
                    s,
                    key,
                    "audit-assigned",
                    a,
                    a.auditor,
                    f"You audit {a.title} from {as_utc(a.planned_start).astimezone(tz):%Y-%m-%d}: "
                    f"{len(a.scope)} requirements, systems {', '.join(a.systems) or '-'}. "
                    f"Checklist: `aims audit show {a.id}`; to begin: `aims audit start {a.id}`.",
                )
                uow.audit(PLANNER, "audit.auditor-told", subject(a.id), auditor=a.auditor.email)
                report.told.append(f"audit {a.id} ({a.period}): {a.auditor.email}")
        overdue = s.scalars(
            _audit_query().where(Audit.status.in_(OPEN)).order_by(Audit.planned_start)
        )
        for a in overdue:
            _, end = period_bounds(a.period, policy.periods_per_year, tz)
            if end <= at:
                report.overdue.append(
                    f"audit {a.id} ({a.period}, {a.programme.name}): {a.status.value}, period "
                    f"ended {end.astimezone(tz):%Y-%m-%d}"
                )
        uow.commit()
    return report


# --- the demo organisation -----------------------------------------------------------------------


class _DemoAudit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    programme: PlanIn = Field(default_factory=PlanIn)


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The demo organisation's `audit` section: an audit programme from the current period,
    planned once (no programme yet). Idempotent."""
    spec = _DemoAudit.model_validate(section or {})
    with uow.read():
        if uow.session.scalar(select(func.count()).select_from(AuditProgramme)):
            return {}
    result = plan_programme(uow, spec.programme, actor)
    return {"audit programme": 1} if result.created else {}


class AuditRunResult(BaseModel):
    """What an `internal-audit` run returns. Defined here, not in the flow module, so the
    persisted result unpickles anywhere (served flows load their module by file path)."""

    audit_id: int
    status: str
    findings: int
    capa_ids: list[int] = Field(default_factory=list)
    report_evidence_id: int | None = None
    request_id: int | None = None
    approvals: list[str] = Field(default_factory=list)
