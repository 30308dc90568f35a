"""Gap assessments against ISO/IEC 42001: pre-fill, answer, complete, approve, maturity.

An assessment covers every leaf clause (4.1 ... 10.2) and Annex A control. It starts pre-filled:
the rules of `gap_prefill.yaml` run probes over the engine's own records and suggest a status
with the records found; everything else is "not assessed". Every channel (the flow's Prefect UI
form per area, `aims gap record`, an answers file) records through `record`, which checks each
answer and writes all or nothing. The completed assessment is approved through the approval
service; on approval the maturity (`gap_maturity.yaml`) is frozen on the assessment, the
implementation plan is made (`aims_core.services.plan`) and the report is kept as evidence, all in
one transaction. No Prefect here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from dateutil.relativedelta import relativedelta
from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from aims_core import catalog
from aims_core.errors import Conflict, InvalidInput, NotFound, refuse_answers
from aims_core.evidence_schemas import EvidenceIn
from aims_core.gap_policy import (
    Conformity,
    MaturityRule,
    Probe,
    ProbeParams,
    area_of,
    areas,
    assessable,
    maturity_rule,
    plan_policy,
    prefill_rules,
)
from aims_core.models import (
    AISystem,
    ApprovalRequest,
    ApprovalStatus,
    Audit,
    AuditFinding,
    AuditProgramme,
    AuditStatus,
    Capa,
    CapaStatus,
    ContextEntry,
    Decision,
    FindingKind,
    GapAnswer,
    GapAssessment,
    GapStatus,
    ImpactAssessment,
    ImpactStatus,
    ManagementReview,
    Outcome,
    Person,
    Policy,
    PolicyVersionStatus,
    RaciActivity,
    ReviewStatus,
    Risk,
    RiskTier,
    SoaEntry,
    as_utc,
)
from aims_core.services import evidence
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.people import get_person
from aims_core.services.policies import next_review_due
from aims_core.services.runs import take_over_open
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

EVIDENCE_KIND: Final = "gap-assessment"
OPEN: Final = (GapStatus.draft, GapStatus.answered)
NOTE_MAX: Final = 5_000
DETAILS_MAX: Final = 2800  # the approval's details also go into a Slack section (3,000 chars)


def subject(assessment_id: int) -> str:
    return f"gap:{assessment_id}"


def run_name(at: datetime) -> str:
    """A gap-assessment run's name in the Prefect UI: `gap assessment 2026-12-06`."""
    return f"gap assessment {as_utc(at):%Y-%m-%d}"


def approval_key(assessment_id: int) -> str:
    return f"gap-assessment-{assessment_id}-approval"


def _now(now: datetime | None = None) -> datetime:
    return as_utc(now) if now is not None else datetime.now(UTC)


# --- probes: what the records say --------------------------------------------------------------


class Finding(BaseModel):
    """What a probe found: `found`, `stale` or `missing`, and the records it looked at.

    A probe that finds something per requirement (an SoA exclusion) says so in `per`, each with
    the `note` a confirmation records (the exclusion's justification); a requirement it does not
    name there counts as missing."""

    state: str
    records: list[str] = Field(default_factory=list)
    note: str = ""
    per: dict[str, Finding] | None = None

    def for_requirement(self, requirement: str) -> Finding:
        if self.per is None:
            return self
        return self.per.get(requirement) or Finding(state="missing")


def _approved_policy(s: Session, p: ProbeParams, now: datetime) -> Finding:
    row = s.scalar(
        select(Policy).where(Policy.key == p.policy).options(selectinload(Policy.versions))
    )
    approved = [
        v for v in (row.versions if row else []) if v.status is PolicyVersionStatus.approved
    ]
    if row is None or not approved:
        return Finding(state="missing")
    v, due = approved[-1], next_review_due(row)
    records = [f"policy {row.key} v{v.version} approved (evidence #{v.evidence_id})"]
    if due < now:
        return Finding(state="stale", records=[*records, f"review overdue since {due:%Y-%m-%d}"])
    return Finding(state="found", records=[*records, f"next review {due:%Y-%m-%d}"])


def _share(have: list[str], want: list[str], what: str) -> Finding:
    """found when every wanted item is there, stale when some are, missing when none."""
    records = [f"{what} {x}" for x in want if x in have]
    if not records:
        return Finding(state="missing")
    lacking = [x for x in want if x not in have]
    if lacking:
        return Finding(state="stale", records=[*records, f"no {what} {', '.join(lacking)}"])
    return Finding(state="found", records=records)


def _raci(s: Session, p: ProbeParams, now: datetime) -> Finding:
    have = list(s.scalars(select(RaciActivity.activity).where(RaciActivity.scope == "org")))
    return _share(have, p.activities, "RACI of")


def _context(s: Session, p: ProbeParams, now: datetime) -> Finding:
    rows = s.scalars(
        select(ContextEntry)
        .where(
            ContextEntry.kind.in_(p.kinds),
            ContextEntry.recorded_at >= now - relativedelta(months=p.months),
        )
        .order_by(ContextEntry.id)
    ).all()
    records = [f"context #{c.id} ({c.kind.value}): {c.title}" for c in rows]
    return Finding(state="found" if records else "missing", records=records)


def _inventory(s: Session, p: ProbeParams, now: datetime) -> Finding:
    count = s.scalar(select(func.count()).select_from(AISystem)) or 0
    return Finding(
        state="found" if count else "missing",
        records=[f"AI system inventory: {count} systems"] if count else [],
    )


def _soa(s: Session, p: ProbeParams, now: datetime) -> Finding:
    total = len(catalog.annex_a_controls())
    decided = s.scalar(select(func.count()).select_from(SoaEntry)) or 0
    if not decided:
        return Finding(state="missing")
    state = "found" if decided >= total else "stale"
    return Finding(state=state, records=[f"Statement of Applicability: {decided}/{total} decided"])


def _soa_exclusions(s: Session, p: ProbeParams, now: datetime) -> Finding:
    rows = s.scalars(
        select(SoaEntry).where(SoaEntry.applicable.is_(False)).order_by(SoaEntry.control_id)
    ).all()
    per = {
        e.control_id: Finding(
            state="found",
            records=[f"Statement of Applicability excludes {e.control_id}: {e.justification}"],
            note=e.justification,
        )
        for e in rows
    }
    records = [f"Statement of Applicability: {len(per)} control(s) excluded"] if per else []
    return Finding(state="found" if per else "missing", records=records, per=per)


def _high_risk(s: Session) -> list[AISystem]:
    return list(
        s.scalars(select(AISystem).where(AISystem.risk_tier == RiskTier.high).order_by(AISystem.id))
    )


def _per_high_risk_system(s: Session, have: set[int], what: str) -> Finding:
    systems = _high_risk(s)
    if not systems:
        return Finding(state="found" if have else "missing", records=[f"{what}: {len(have)}"])
    names = {x.id: x.name for x in systems}
    return _share([names[i] for i in have if i in names], list(names.values()), what)


def _risk_register(s: Session, p: ProbeParams, now: datetime) -> Finding:
    have = set(s.scalars(select(Risk.system_id).distinct()))
    return _per_high_risk_system(s, have, "risk register of")


def _impact_assessments(s: Session, p: ProbeParams, now: datetime) -> Finding:
    have = set(
        s.scalars(
            select(ImpactAssessment.system_id).where(
                ImpactAssessment.status == ImpactStatus.approved
            )
        )
    )
    return _per_high_risk_system(s, have, "approved impact assessment of")


def _audit_programme(s: Session, p: ProbeParams, now: datetime) -> Finding:
    rows = s.scalars(select(AuditProgramme).order_by(AuditProgramme.id)).all()
    records = [f"audit programme {r.name}" for r in rows]
    return Finding(state="found" if records else "missing", records=records)


def _audit_done(s: Session, p: ProbeParams, now: datetime) -> Finding:
    since = now - relativedelta(months=p.months)
    closed = s.scalars(
        select(Audit).where(Audit.status == AuditStatus.closed, Audit.completed_at >= since)
    ).all()
    if closed:
        return Finding(state="found", records=[f"audit #{a.id} {a.period} closed" for a in closed])
    if s.scalar(select(func.count()).select_from(AuditProgramme)):
        return Finding(state="stale", records=[f"no audit closed in {p.months} months"])
    return Finding(state="missing")


def _management_review(s: Session, p: ProbeParams, now: datetime) -> Finding:
    since = now - relativedelta(months=p.months)
    rows = s.scalars(
        select(ManagementReview)
        .where(ManagementReview.prepared_at >= since)
        .order_by(ManagementReview.id)
    ).all()
    approved = [r for r in rows if r.status is ReviewStatus.approved]
    if approved:
        return Finding(state="found", records=[f"management review {r.period}" for r in approved])
    if rows:
        return Finding(
            state="stale",
            records=[f"management review {r.period} ({r.status.value})" for r in rows],
        )
    return Finding(state="missing")


def _no_major_nonconformity(s: Session, p: ProbeParams, now: datetime) -> Finding:
    rows = s.execute(
        select(AuditFinding.id, AuditFinding.control_id, Capa.status)
        .outerjoin(Capa, Capa.id == AuditFinding.capa_id)
        .where(AuditFinding.kind == FindingKind.major)
    ).all()
    open_ = [f"major nonconformity #{i} on {c}" for i, c, st in rows if st is not CapaStatus.closed]
    if open_:
        return Finding(state="stale", records=open_)
    return Finding(state="found", records=[f"no open major nonconformity ({len(rows)} closed)"])


def _trainings(settings: Settings, now: datetime) -> Finding:
    from aims_core.services import training

    rows = training.matrix(UnitOfWork(settings), now=now)
    if not rows:
        return Finding(state="missing")
    lacking = [
        f"{r.email}: {r.training} {r.status.value}"
        for r in rows
        if r.status in ("expired", "missing")
    ]
    current = len(rows) - len(lacking)
    records = [f"trainings current: {current}/{len(rows)}", *lacking]
    return Finding(state="stale" if lacking else "found", records=records)


def _vendor_assessments(settings: Settings, now: datetime) -> Finding:
    from aims_core.services import vendors

    rows = vendors.list_vendors(UnitOfWork(settings), now=now)
    current = [v.name for v in rows if v.last_assessed_at is not None and not v.overdue]
    return _share(current, [v.name for v in rows], "current assessment of vendor")


#: Probes over another service's view (it opens its own transaction).
_SERVICE_PROBES: Final[dict[str, Callable[[Settings, datetime], Finding]]] = {
    "trainings": _trainings,
    "vendor-assessments": _vendor_assessments,
}

_PROBES: Final[dict[str, Callable[[Session, ProbeParams, datetime], Finding]]] = {
    "approved-policy": _approved_policy,
    "raci": _raci,
    "context": _context,
    "inventory": _inventory,
    "soa": _soa,
    "soa-exclusions": _soa_exclusions,
    "risk-register": _risk_register,
    "impact-assessments": _impact_assessments,
    "audit-programme": _audit_programme,
    "audit-done": _audit_done,
    "management-review": _management_review,
    "no-major-nonconformity": _no_major_nonconformity,
}


def probe(uow: UnitOfWork, name: Probe, params: ProbeParams, now: datetime) -> Finding:
    """Run one probe (read only)."""
    if name in _SERVICE_PROBES:
        return _SERVICE_PROBES[name](uow.settings, now)
    with uow.read():
        return _PROBES[name](uow.session, params, now)


class Suggestion(BaseModel):
    status: str
    records: list[str]
    note: str = ""  # what confirming it records (an SoA exclusion's justification)


def suggestions(uow: UnitOfWork, now: datetime | None = None) -> dict[str, Suggestion]:
    """Requirement id -> the status the records suggest (first rule naming it wins)."""
    at = _now(now)
    out: dict[str, Suggestion] = {}
    cache: dict[str, Finding] = {}
    for rule in prefill_rules(uow.settings).rules:
        key = f"{rule.probe}:{rule.params.model_dump_json()}"
        if key not in cache:
            cache[key] = probe(uow, rule.probe, rule.params, at)
        for req in rule.covers():
            found = cache[key].for_requirement(req)
            status = rule.status_for(found.state)
            if status is not None:
                out.setdefault(
                    req, Suggestion(status=status, records=found.records, note=found.note)
                )
    return out


# --- boundary models ---------------------------------------------------------------------------


class AnswerIn(BaseModel):
    """One requirement's conformity as an assessor records it."""

    status: Conformity
    note: str = Field(default="", max_length=NOTE_MAX)
    evidence: list[str] = Field(default_factory=list, max_length=50)

    @field_validator("note", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("evidence", mode="before")
    @classmethod
    def _links(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        return value


class RequirementOut(BaseModel):
    requirement: str
    title: str
    area: str
    suggested_status: str | None
    suggested_records: list[str]
    suggested_note: str
    status: str | None
    note: str
    evidence: list[str]
    answered_by: str | None

    @property
    def shown_status(self) -> str:
        return self.status or "not assessed"


class AreaMaturity(BaseModel):
    area: str
    title: str
    kind: str  # clause | annex-objective
    score: float | None
    level: int
    name: str
    counts: dict[str, int]


class Maturity(BaseModel):
    areas: list[AreaMaturity]
    overall: int
    overall_name: str

    def levels(self, kind: str | None = None) -> dict[str, int]:
        return {a.area: a.level for a in self.areas if kind is None or a.kind == kind}


class GapAssessmentOut(BaseModel):
    id: int
    status: GapStatus
    assessor: str
    requirements: list[RequirementOut]
    answered: int
    total: int
    suggested: int
    missing: list[str]
    maturity: Maturity | None
    request_id: int | None
    evidence_id: int | None
    flow_run_id: str | None
    created_at: datetime
    completed_at: datetime | None
    approved_at: datetime | None

    @property
    def subject(self) -> str:
        return subject(self.id)

    def by_id(self) -> dict[str, RequirementOut]:
        return {r.requirement: r for r in self.requirements}

    def missing_in(self, area: str) -> list[str]:
        return [r for r in self.missing if area_of(r) == area]


class GapResult(BaseModel):
    """What a gap-assessment run returns (defined here so the persisted result unpickles)."""

    assessment_id: int
    status: str
    request_id: int | None
    evidence_id: int | None
    overall: int | None
    plan_tasks: int
    approvals: list[str]
    rejections: list[str]


# --- reading -----------------------------------------------------------------------------------


def _load(session: Session, assessment_id: int, *, lock: bool = False) -> GapAssessment:
    q = (
        select(GapAssessment)
        .where(GapAssessment.id == assessment_id)
        .options(selectinload(GapAssessment.answers))
    )
    if lock:
        q = q.with_for_update(of=GapAssessment)
    row = session.scalar(q)
    if row is None:
        raise NotFound(f"no gap assessment {assessment_id} (see `aims gap list`)", "assessment")
    return row


def compute_maturity(rule: MaturityRule, statuses: Mapping[str, str | None]) -> Maturity:
    """Level per area and overall, by the rule (a draft computes too: nothing assessed = 1)."""
    kinds = {r.id: r.kind.value for r in catalog.requirements()}
    out: list[AreaMaturity] = []
    for area, title in areas():
        mine = [statuses.get(r.id) for r in assessable() if area_of(r.id) == area]
        counts: dict[str, int] = {}
        for st in mine:
            counts[st or "not-assessed"] = counts.get(st or "not-assessed", 0) + 1
        score = rule.score(mine)
        level = rule.level(score) if score is not None else rule.levels[-1].level
        out.append(
            AreaMaturity(
                area=area,
                title=title,
                kind="clause" if kinds[area] == "clause" else "annex-objective",
                score=None if score is None else round(score, 4),
                level=level,
                name=rule.name(level),
                counts=counts,
            )
        )
    overall = rule.overall_level([a.level for a in out])
    return Maturity(areas=out, overall=overall, overall_name=rule.name(overall))


def _out(session: Session, settings: Settings, row: GapAssessment) -> GapAssessmentOut:
    titles = {r.id: r.title for r in catalog.requirements()}
    reqs = [
        RequirementOut(
            requirement=a.requirement_id,
            title=titles[a.requirement_id],
            area=area_of(a.requirement_id),
            suggested_status=a.suggested_status,
            suggested_records=list(a.suggested_records or []),
            suggested_note=a.suggested_note or "",
            status=a.status,
            note=a.note,
            evidence=list(a.evidence or []),
            answered_by=a.answered_by,
        )
        for a in row.answers
    ]
    if row.maturity:
        maturity: Maturity | None = Maturity.model_validate(row.maturity)
    else:
        maturity = compute_maturity(
            maturity_rule(settings), {r.requirement: r.status for r in reqs}
        )
    request_id = row.request_id or session.scalar(
        select(ApprovalRequest.id).where(ApprovalRequest.idempotency_key == approval_key(row.id))
    )
    return GapAssessmentOut(
        id=row.id,
        status=row.status,
        assessor=row.created_by,
        requirements=reqs,
        answered=sum(1 for r in reqs if r.status),
        total=len(reqs),
        suggested=sum(1 for r in reqs if r.suggested_status),
        missing=[r.requirement for r in reqs if not r.status],
        maturity=maturity,
        request_id=request_id,
        evidence_id=row.evidence_id,
        flow_run_id=row.flow_run_id,
        created_at=as_utc(row.created_at),
        completed_at=as_utc(row.completed_at) if row.completed_at else None,
        approved_at=as_utc(row.approved_at) if row.approved_at else None,
    )


def get(uow: UnitOfWork, assessment_id: int) -> GapAssessmentOut:
    with uow.read():
        return _out(uow.session, uow.settings, _load(uow.session, assessment_id))


def list_assessments(uow: UnitOfWork) -> list[GapAssessmentOut]:
    """Every assessment, newest first."""
    with uow.read():
        s = uow.session
        rows = s.scalars(
            select(GapAssessment)
            .options(selectinload(GapAssessment.answers))
            .order_by(GapAssessment.id.desc())
        )
        return [_out(s, uow.settings, r) for r in rows]


def _open_row(session: Session) -> GapAssessment | None:
    return session.scalar(
        select(GapAssessment)
        .where(GapAssessment.status.in_(OPEN))
        .options(selectinload(GapAssessment.answers))
        .order_by(GapAssessment.id.desc())
    )


def open_assessment(uow: UnitOfWork) -> GapAssessmentOut | None:
    """The assessment still being answered or approved, if there is one."""
    with uow.read():
        row = _open_row(uow.session)
        return _out(uow.session, uow.settings, row) if row else None


def latest_approved(uow: UnitOfWork) -> GapAssessmentOut | None:
    with uow.read():
        s = uow.session
        row = s.scalar(
            select(GapAssessment)
            .where(GapAssessment.status == GapStatus.approved)
            .options(selectinload(GapAssessment.answers))
            .order_by(GapAssessment.approved_at.desc(), GapAssessment.id.desc())
        )
        return _out(s, uow.settings, row) if row else None


def resolve(uow: UnitOfWork, target: str | None) -> int:
    """An assessment id; none given: the open one, else the latest approved."""
    if target and target.strip():
        if not target.strip().isdigit():
            raise InvalidInput(f"'{target}' is not an assessment id (a number)", "assessment")
        return int(target)
    found = open_assessment(uow) or latest_approved(uow)
    if found is None:
        raise NotFound("no gap assessment yet: start one with `aims gap start`", "assessment")
    return found.id


# --- writing -----------------------------------------------------------------------------------


def start(
    uow: UnitOfWork,
    actor: Actor,
    *,
    assessor: str | None = None,
    flow_run_id: str | None = None,
    take_over: bool = False,
    now: datetime | None = None,
) -> GapAssessmentOut:
    """Open a new assessment, pre-filled from the records (one open assessment at a time).

    Idempotent for the flow: the same `flow_run_id` gets its assessment back. `take_over` lets
    a new run continue the open assessment of a run that ended (answers kept). The assessor
    (default: the caller, recorded as given) never approves the assessment.
    """
    flow_run_id = str(flow_run_id) if flow_run_id else None
    suggested = suggestions(uow, now)  # read first: probes open their own transactions
    with uow:
        s = uow.session
        who = get_person(s, assessor, "assessor").email if assessor else actor.who
        existing = _open_row(s)
        if existing is not None:
            take_over_open(
                uow,
                actor,
                existing,
                flow_run_id,
                take_over=take_over,
                action="gap.run-replaced",
                subject=subject(existing.id),
                refusal=f"gap assessment {existing.id} is still {existing.status.value}: "
                f"finish it first (`aims gap show {existing.id}`)",
                field="assessment",
            )
            return _out(s, uow.settings, existing)
        row = GapAssessment(status=GapStatus.draft, flow_run_id=flow_run_id, created_by=who)
        s.add(row)
        s.flush()
        for n, req in enumerate(assessable()):
            hint = suggested.get(req.id)
            s.add(
                GapAnswer(
                    assessment_id=row.id,
                    requirement_id=req.id,
                    position=n,
                    suggested_status=hint.status if hint else None,
                    suggested_records=hint.records if hint else [],
                    suggested_note=hint.note if hint else "",
                    evidence=[],
                )
            )
        s.flush()
        s.refresh(row, ["answers"])
        uow.audit(
            actor,
            "gap.started",
            subject(row.id),
            assessor=who,
            flow_run_id=flow_run_id,
            suggested={k: v.status for k, v in suggested.items()},
        )
        out = _out(s, uow.settings, row)
        uow.commit()
    return out


def check_answers(answers: Mapping[str, object]) -> dict[str, AnswerIn]:
    """Every answer checked; InvalidInput names the requirement and the problem (all at once)."""
    if not isinstance(answers, Mapping) or not answers:
        raise InvalidInput("no answers given", "answers")
    known = {r.id for r in assessable()}
    checked: dict[str, AnswerIn] = {}
    problems: list[tuple[str, str]] = []
    for req, value in answers.items():
        rid = str(req).strip()
        if rid not in known:
            problems.append((rid, "not an assessable requirement (see `aims gap requirements`)"))
            continue
        if isinstance(value, str):
            value = {"status": value}
        try:
            answer = AnswerIn.model_validate(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if where == "status":
                msg = (
                    f"'{err.get('input')}' is not one of: {', '.join(c.value for c in Conformity)}"
                )
            problems.append((f"{rid}.{where}" if where else rid, msg))
            continue
        if answer.status is Conformity.not_applicable and not answer.note:
            problems.append((f"{rid}.note", "not applicable needs a justification (--note)"))
            continue
        checked[rid] = answer
    refuse_answers(problems)
    return checked


def _draft(row: GapAssessment) -> None:
    if row.status is not GapStatus.draft:
        raise Conflict(
            f"gap assessment {row.id} is {row.status.value}: its answers are frozen", "assessment"
        )


def record(
    uow: UnitOfWork, assessment_id: int, answers: Mapping[str, object], actor: Actor
) -> GapAssessmentOut:
    """Record conformity per requirement (merged into earlier answers); all or nothing."""
    checked = check_answers(answers)
    with uow:
        s = uow.session
        row = _load(s, assessment_id, lock=True)
        _draft(row)
        by_req = {a.requirement_id: a for a in row.answers}
        changed: dict[str, dict[str, Any]] = {}
        at = _now()
        for rid, ans in checked.items():
            a = by_req[rid]
            new = (ans.status.value, ans.note, ans.evidence)
            if (a.status, a.note, list(a.evidence or [])) == new:
                continue
            a.status, a.note, a.evidence = new[0], new[1], list(new[2])
            a.answered_by, a.answered_at = actor.who, at
            changed[rid] = ans.model_dump(mode="json")
        if changed:
            s.flush()
            uow.audit(actor, "gap.recorded", subject(row.id), answers=changed)
        out = _out(s, uow.settings, row)
        uow.commit()
    return out


def accept_suggestions(
    uow: UnitOfWork, assessment_id: int, actor: Actor, *, only: list[str] | None = None
) -> GapAssessmentOut:
    """Confirm the suggested status of every requirement not answered yet (or of `only`)."""
    current = get(uow, assessment_id)
    answers = {
        r.requirement: {
            "status": r.suggested_status,
            "note": r.suggested_note
            or "confirmed from the records: " + "; ".join(r.suggested_records),
        }
        for r in current.requirements
        if r.suggested_status and (r.requirement in only if only else not r.status)
    }
    if not answers:
        return current
    return record(uow, assessment_id, answers, actor)


def complete(uow: UnitOfWork, assessment_id: int, actor: Actor) -> GapAssessmentOut:
    """Freeze the answers once every requirement has one. Idempotent past draft."""
    with uow:
        s = uow.session
        row = _load(s, assessment_id, lock=True)
        if row.status is GapStatus.draft:
            missing = [a.requirement_id for a in row.answers if not a.status]
            if missing:
                raise InvalidInput(
                    f"{len(missing)} requirement(s) not assessed: {', '.join(missing[:10])}"
                    + (" …" if len(missing) > 10 else ""),
                    "answers",
                )
            row.status = GapStatus.answered
            row.completed_at = _now()
            s.flush()
            uow.audit(actor, "gap.completed", subject(row.id), answered=len(row.answers))
            uow.commit()
        return _out(s, uow.settings, row)


def approval_spec(
    uow: UnitOfWork, assessment_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn:
    """The approval of a completed assessment: roles and quorum from `gap_plan.yaml`, the
    assessor as requester (so never an approver), the maturity and gaps as details."""
    out = get(uow, assessment_id)
    with uow.read():
        assessor_is_person = uow.session.scalar(
            select(Person.id).where(Person.email == out.assessor)
        )
    if out.status is GapStatus.draft:
        raise Conflict(
            f"gap assessment {out.id} is not complete: {len(out.missing)} requirement(s) not "
            "assessed",
            "assessment",
        )
    rule = plan_policy(uow.settings).approval
    return ApprovalRequestIn(
        idempotency_key=approval_key(out.id),
        subject=subject(out.id),
        activity=rule.activity,
        title=f"Approve gap assessment #{out.id} and its implementation plan",
        details=_summary(out),
        approver_roles=list(rule.approver_roles),
        quorum=rule.quorum,
        requester=out.assessor if assessor_is_person else None,
        flow_run_id=flow_run_id,
    )


def _summary(out: GapAssessmentOut) -> str:
    counts: dict[str, int] = {}
    for r in out.requirements:
        counts[r.shown_status] = counts.get(r.shown_status, 0) + 1
    lines = [
        f"Gap assessment **#{out.id}** against ISO/IEC 42001 by {out.assessor}: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
        "",
    ]
    if out.maturity:
        lines.append(
            f"- overall maturity: **{out.maturity.overall} ({out.maturity.overall_name})**"
        )
        lines.append(
            "- by clause: "
            + ", ".join(f"{a}: {lv}" for a, lv in out.maturity.levels("clause").items())
        )
    lines += ["", f"Full report: `aims gap report {out.id} --output DIR`"]
    text = "\n".join(lines)
    return text if len(text) <= DETAILS_MAX else text[: DETAILS_MAX - 1] + "…"


def _request(session: Session, row: GapAssessment) -> ApprovalRequest | None:
    return session.scalar(
        select(ApprovalRequest)
        .where(ApprovalRequest.idempotency_key == approval_key(row.id))
        .options(selectinload(ApprovalRequest.decisions).selectinload(Decision.person))
    )


def record_decision(
    uow: UnitOfWork, assessment_id: int, actor: Actor, *, now: datetime | None = None
) -> GapAssessmentOut:
    """Apply the decision the approval request holds (the database decides).

    Approved: maturity frozen, the implementation plan made, the report kept as evidence — one
    transaction. Rejected: back to draft so the assessor can revise and submit again (the
    reasons in the audit trail). Idempotent: a decided assessment comes back unchanged.
    """
    from aims_core.services import plan

    at = _now(now)
    with uow:
        s = uow.session
        row = _load(s, assessment_id, lock=True)
        if row.status in (GapStatus.approved, GapStatus.rejected):
            return _out(s, uow.settings, row)
        request = _request(s, row)
        if row.status is not GapStatus.answered or request is None:
            raise Conflict(
                f"gap assessment {row.id} has no approval request yet ({row.status.value})",
                "assessment",
            )
        if request.status is ApprovalStatus.open:
            raise Conflict(f"approval request {request.id} is still open", "request")
        row.request_id = request.id
        if request.status is ApprovalStatus.approved:
            statuses = {a.requirement_id: a.status for a in row.answers}
            maturity = compute_maturity(maturity_rule(uow.settings), statuses)
            row.maturity = maturity.model_dump(mode="json")
            row.status = GapStatus.approved
            row.approved_at = at
            s.flush()
            tasks = plan.make_plan(uow, row, at, actor)
            from aims_core.services import gap_report

            markdown = gap_report.render_markdown(uow, _out(s, uow.settings, row))
            ev = evidence.append_in(
                uow,
                EvidenceIn(
                    subject=subject(row.id),
                    kind=EVIDENCE_KIND,
                    title=f"Gap assessment #{row.id}, approved: maturity {maturity.overall}",
                    text=markdown,
                    media_type="text/markdown; charset=utf-8",
                    idempotency_key=f"gap-assessment-{row.id}",
                ),
                actor,
            )
            row.evidence_id = ev.id
            s.flush()
            uow.audit(
                actor,
                "gap.approved",
                subject(row.id),
                request_id=request.id,
                approvals=[
                    d.person.email for d in request.decisions if d.outcome is Outcome.approve
                ],
                overall=maturity.overall,
                plan_tasks=len(tasks),
                evidence_id=ev.id,
            )
        else:
            row.status = GapStatus.rejected
            s.flush()
            uow.audit(
                actor,
                "gap.rejected",
                subject(row.id),
                request_id=request.id,
                request_status=request.status.value,
                reasons=[
                    f"{d.person.email}: {d.comment}"
                    for d in request.decisions
                    if d.outcome is Outcome.reject
                ],
            )
        out = _out(s, uow.settings, row)
        uow.commit()
    if out.evidence_id is not None:
        evidence.sync_anchor(uow.settings)
    return out


# --- trends ------------------------------------------------------------------------------------


class TrendPoint(BaseModel):
    assessment_id: int
    approved_at: datetime
    overall: int
    conforming_pct: float
    levels: dict[str, int]


def trends(uow: UnitOfWork) -> list[TrendPoint]:
    """Approved assessments, oldest first: overall level, share conforming, level per area."""
    points = []
    for a in reversed(list_assessments(uow)):
        if a.status is not GapStatus.approved or a.maturity is None or a.approved_at is None:
            continue
        applicable = [r for r in a.requirements if r.status != Conformity.not_applicable]
        conforming = sum(1 for r in applicable if r.status == Conformity.conforming)
        points.append(
            TrendPoint(
                assessment_id=a.id,
                approved_at=a.approved_at,
                overall=a.maturity.overall,
                conforming_pct=round(100 * conforming / len(applicable), 1) if applicable else 0,
                levels=a.maturity.levels(),
            )
        )
    return points


# --- certification readiness ------------------------------------------------------------------


class ReadinessRow(BaseModel):
    requirement: str
    title: str
    asks: str
    ready: bool
    records: list[str]


class Readiness(BaseModel):
    assessment_id: int | None
    rows: list[ReadinessRow]
    percent: float

    @property
    def ready(self) -> int:
        return sum(1 for r in self.rows if r.ready)


def readiness(uow: UnitOfWork, now: datetime | None = None) -> Readiness:
    """Per requirement: what an auditor asks for and whether the records exist, and one
    percentage. Listed checks run their probe now; the rest count as ready when the latest
    approved assessment says they conform or do not apply (with their evidence links)."""
    at = _now(now)
    rules = prefill_rules(uow.settings)
    checks = {item.requirement: item for item in rules.readiness}
    latest = latest_approved(uow)
    answers = latest.by_id() if latest else {}
    kinds = catalog.evidence_kinds().values()
    by_id = {r.id: r for r in catalog.requirements()}
    rows = []
    for req in assessable():
        item = checks.get(req.id)
        if item is not None:
            found = probe(uow, item.probe, item.params, at)
            rows.append(
                ReadinessRow(
                    requirement=req.id,
                    title=req.title,
                    asks=item.asks,
                    ready=found.state == "found",
                    records=found.records or ["none found"],
                )
            )
            continue
        asked = [k.title for k in kinds if req.id in k.controls or req.parent in k.controls]
        ans = answers.get(req.id)
        ok = ans is not None and ans.status in (Conformity.conforming, Conformity.not_applicable)
        records = [f"assessment #{latest.id}: {ans.shown_status}"] if latest and ans else []
        records += ans.evidence if ans else []
        rows.append(
            ReadinessRow(
                requirement=req.id,
                title=by_id[req.id].title,
                asks=", ".join(asked) or "Documented information showing the requirement is met",
                ready=ok,
                records=records or ["no approved gap assessment says so"],
            )
        )
    percent = round(100 * sum(r.ready for r in rows) / len(rows), 1) if rows else 0.0
    return Readiness(assessment_id=latest.id if latest else None, rows=rows, percent=percent)
