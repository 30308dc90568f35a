"""The demo organisation's year of history (aims_core/data/demo_history.yaml), recorded through
the services a user's commands and the flows call, each step at its business date in the past.

The script is data: what happened, and when, in days before the load (audits by their quarter).
This module only plays it in order — an incident before its CAPA, a CAPA's actions before its
verification, a gate's evidence before its request and the request before its decisions — with
the approvals decided by eligible people (never the requester). Evidence is appended with the
real time as its chain timestamp; the business date is in the record. Messages the history
queued (owners told, approvers asked) are marked logged: they belong to the past, so the running
demo does not send them. Idempotent: a story already recorded is skipped, so a second load adds
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import func, select

from aims_core.errors import from_validation_error
from aims_core.models import (
    AISystem,
    AuditProgramme,
    Control,
    ControlKind,
    FindingKind,
    GapAssessment,
    GateReview,
    Incident,
    LifecycleStage,
    Notification,
    NotificationStatus,
    Outcome,
    Person,
    Risk,
    SoaEntry,
    TrainingRecord,
    TreatmentOption,
)
from aims_core.schemas import Email
from aims_core.services import (
    approvals,
    audits,
    capa,
    evidence,
    gap,
    gates,
    incidents,
    outbox,
    reviews,
    risks,
    soa,
    training,
)
from aims_core.services.audits.periods import period_bounds, periods_from
from aims_core.services.training.days import local_day, zone_of
from aims_core.uow import Actor, UnitOfWork

__all__ = ["history_section", "load_demo"]

DATA_FILE = "demo_history.yaml"
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Soa(_Strict):
    decided_days_ago: int = Field(ge=0)
    by: Email
    applicable: dict[str, Text]
    not_applicable: dict[str, Text] = Field(default_factory=dict)


class _Trainings(_Strict):
    before_current_days: int = Field(ge=1)


class _Treatment(_Strict):
    option: TreatmentOption
    days_ago: int = Field(ge=0)
    justification: Text
    residual_likelihood: int | None = None
    residual_impact: int | None = None


class _Risk(_Strict):
    system: str
    title: Text
    owner: Email
    likelihood: int
    impact: int
    days_ago: int = Field(ge=0)
    treatment: _Treatment | None = None


class _Rejection(_Strict):
    by: Email
    comment: Text


class _Gate(_Strict):
    system: str
    to: LifecycleStage
    days_ago: int = Field(ge=1)
    requester: Email
    approvers: list[Email] = Field(default_factory=list)
    rejected: _Rejection | None = None


class _Action(_Strict):
    title: Text
    owner: Email
    due_after_days: int = Field(ge=0)
    done_after_days: int | None = Field(default=None, ge=0)


class _Capa(_Strict):
    """A CAPA's course, in days after its start (the incident's awareness, the finding)."""

    owner: Email | None = None  # an incident's; a finding's CAPA gets the audit's owner
    #: An incident's CAPA only (a finding's is opened by the audit with the policy's period).
    containment: Text
    actions: list[_Action] = Field(min_length=1)
    verify_after_days: int | None = Field(default=None, ge=0)
    verified_after_days: int | None = Field(default=None, ge=0)
    verifier: Email | None = None
    evidence: Text | None = None
    closed_after_days: int | None = Field(default=None, ge=0)
    approver: Email | None = None


class _Incident(_Strict):
    key: str
    system: str
    days_ago: int = Field(ge=1)
    severity: str
    category: str
    title: Text
    summary: str = ""
    contained_after_hours: int = Field(ge=0)
    whys: list[Text] = Field(min_length=1, max_length=5)
    root_cause: Text
    lessons: Text
    closed_after_days: int = Field(ge=1)
    capa: _Capa | None = None


class _Finding(_Strict):
    control: str
    kind: FindingKind
    statement: Text
    capa: _Capa | None = None


class _Audit(_Strict):
    position: int = Field(ge=1)
    fieldwork_day: int = Field(ge=0, le=60)
    fieldwork_days: int = Field(ge=1, le=20)
    approved_after_days: int = Field(ge=1, le=14)
    approver: Email
    findings: list[_Finding] = Field(default_factory=list)


class _AuditHistory(_Strict):
    planned_days_before: int = Field(ge=0)
    audits: list[_Audit]


class _Decision(_Strict):
    decision: Text
    kind: Literal["improvement", "change", "resources"]
    owner: Email
    due_after_days: int = Field(ge=0)
    done_after_days: int | None = Field(default=None, ge=0)
    outcome: str = ""


class _Review(_Strict):
    held_days_ago: int = Field(ge=100)  # in a quarter before the last one (the demo's own)
    approver: Email
    approved_after_days: int = Field(ge=0)
    decisions: list[_Decision]


class _Gap(_Strict):
    days_ago: int = Field(ge=1)
    assessor: Email
    approver: Email
    default: str
    answers: dict[str, Any] = Field(default_factory=dict)


class History(_Strict):
    soa: _Soa
    trainings: _Trainings
    risks: list[_Risk]
    gates: list[_Gate]
    incidents: list[_Incident]
    audit: _AuditHistory
    review: _Review
    gap: _Gap


def history_section() -> Any:
    """The `history` section of the packaged script."""
    text = resources.files("aims_core.data").joinpath(DATA_FILE).read_text("utf-8")
    return yaml.safe_load(text)["history"]


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """Play the history (`section`, default: the packaged script) at dates relative to now.
    Returns what it added; nothing the second time."""
    try:
        spec = History.model_validate(section if section is not None else history_section())
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    play = _Player(uow, actor, datetime.now(UTC))
    with uow.read():
        first_note = uow.session.scalar(select(func.max(Notification.id))) or 0
    steps: list[tuple[str, Callable[[], int]]] = [
        ("SoA decisions", lambda: play.soa(spec.soa)),
        ("past audit programme", lambda: play.programme(spec.audit)),
        ("earlier training records", lambda: play.trainings(spec.trainings)),
        ("risks", lambda: play.risks(spec.risks)),
        ("gate reviews", lambda: play.gates(spec.gates)),
        ("incidents", lambda: play.incidents(spec.incidents)),
        ("audits", lambda: play.audits(spec.audit)),
        ("management reviews", lambda: play.review(spec.review)),
        ("gap assessments", lambda: play.gap(spec.gap)),
    ]
    added = {label: step() for label, step in steps}
    play.settle_messages(first_note)
    evidence.sync_anchor(uow.settings)
    return added


def _person(email: str) -> Actor:
    return Actor(who=email, channel="demo")


class _Player:
    def __init__(self, uow: UnitOfWork, actor: Actor, now: datetime) -> None:
        self.uow, self.actor, self.now = uow, actor, now
        self.tz = uow.settings.timezone
        self._programme: audits.ProgrammeOut | None = None

    def ago(self, days: float) -> datetime:
        return self.now - timedelta(days=days)

    # --- approvals, as the flows ask them --------------------------------------------------

    def approve(
        self,
        spec: approvals.ApprovalRequestIn,
        at: datetime,
        who: list[str] | None = None,
        rejection: _Rejection | None = None,
    ) -> int:
        """Ask at `at`, then the eligible approvers decide an hour apart (the first ones up to
        the quorum unless `who` names them); `rejection` rejects instead."""
        req = approvals.create_request(self.uow, spec, self.actor, at=at)
        if rejection is not None:
            decisions = [(rejection.by, Outcome.reject, rejection.comment)]
        else:
            chosen = who or req.approvers[: req.quorum]
            decisions = [(email, Outcome.approve, "") for email in chosen]
        for n, (email, outcome, comment) in enumerate(decisions, 1):
            approvals.decide(
                self.uow,
                approvals.DecisionIn(
                    request_id=req.id, person=email, outcome=outcome, comment=comment
                ),
                _person(email),
                at=at + timedelta(hours=n),
            )
        return req.id

    # --- the sections ------------------------------------------------------------------------

    def soa(self, spec: _Soa) -> int:
        with self.uow.read():
            decided = set(self.uow.session.scalars(select(SoaEntry.control_id)))
            controls = list(
                self.uow.session.scalars(
                    select(Control.id).where(Control.kind == ControlKind.annex_control)
                )
            )
        reasons = {**{c: (True, j) for c, j in spec.applicable.items()}}
        reasons |= {c: (False, j) for c, j in spec.not_applicable.items()}
        added = 0
        for control in controls:
            if control in decided or control not in reasons:
                continue
            applicable, why = reasons[control]
            soa.set_applicability(
                self.uow,
                soa.SoaDecision(control_id=control, applicable=applicable, justification=why),
                _person(spec.by),
                at=self.ago(spec.decided_days_ago),
            )
            added += 1
        return added

    def trainings(self, spec: _Trainings) -> int:
        """Before each demo person's current completion, the one it renewed (expired since)."""
        from aims_core.services.demo import demo_org  # lazily: demo loads this module by name

        emails = [p.email for p in demo_org().people]
        zone = zone_of(self.uow.settings)
        with self.uow.read():
            rows = self.uow.session.execute(
                select(Person.email, TrainingRecord.training, TrainingRecord.completed_at)
                .join(Person, Person.id == TrainingRecord.person_id)
                .where(Person.email.in_(emails))
                .order_by(TrainingRecord.id)
            ).all()
        days: dict[tuple[str, str], list[date]] = {}
        for email, name, completed in rows:
            days.setdefault((email, name), []).append(local_day(completed, zone))
        added = 0
        for (email, name), done in days.items():
            earlier = max(done) - timedelta(days=spec.before_current_days)
            if min(done) <= earlier:
                continue
            out = training.record(
                self.uow,
                training.RecordIn(email=email, training=name, completed=earlier),
                self.actor,
                now=datetime.combine(earlier, time(12), UTC),
            )
            added += 0 if out.replayed else 1
        return added

    def risks(self, specs: list[_Risk]) -> int:
        added = 0
        for r in specs:
            with self.uow.read():
                known = self.uow.session.scalar(
                    select(Risk.id)
                    .join(AISystem, AISystem.id == Risk.system_id)
                    .where(AISystem.name == r.system, Risk.title == r.title)
                )
            if known is not None:
                continue
            out = risks.add_risk(
                self.uow,
                risks.RiskIn(
                    system=r.system,
                    title=r.title,
                    owner=r.owner,
                    likelihood=r.likelihood,
                    impact=r.impact,
                ),
                _person(r.owner),
                at=self.ago(r.days_ago),
            )
            if r.treatment is not None:
                t = r.treatment
                risks.treat_risk(
                    self.uow,
                    risks.TreatmentIn(
                        risk_id=out.id,
                        option=t.option,
                        justification=t.justification,
                        residual_likelihood=t.residual_likelihood,
                        residual_impact=t.residual_impact,
                    ),
                    _person(r.owner),
                    at=self.ago(t.days_ago),
                )
            added += 1
        return added

    def gates(self, specs: list[_Gate]) -> int:
        """Each gate as flows/stage_gate.py runs it: check, open the review, ask (the flow's
        request), record the outcome — with the evidence the gate asks for filed first."""
        seen: dict[tuple[str, LifecycleStage], int] = {}
        added = 0
        for g in specs:
            nth = seen.get((g.system, g.to), 0)
            seen[(g.system, g.to)] = nth + 1
            with self.uow.read():
                done = self.uow.session.scalar(
                    select(func.count())
                    .select_from(GateReview)
                    .join(AISystem, AISystem.id == GateReview.system_id)
                    .where(AISystem.name == g.system, GateReview.to_stage == g.to)
                )
            if (done or 0) > nth:
                continue
            at = self.ago(g.days_ago)
            checklist = gates.check_gate(self.uow, g.system, g.to)
            for kind in checklist.missing:
                evidence.append(
                    self.uow,
                    {
                        "subject": f"system:{g.system}",
                        "kind": kind,
                        "title": f"{kind.replace('-', ' ').capitalize()} for {g.system}",
                        "text": f"# {kind} — {g.system}\n\nFiled for the {g.to.value} gate on "
                        f"{at:%Y-%m-%d} by {g.requester} (demo history).\n",
                        "idempotency_key": f"demo-history:{g.system}:{g.to.value}:{kind}",
                    },
                    _person(g.requester),
                )
            checklist = gates.check_gate(self.uow, g.system, g.to)
            review = gates.open_review(
                self.uow, checklist, self.actor, requested_by=g.requester, at=at
            )
            request_id = self.approve(
                gates.approval_request(review, g.requester),
                at + timedelta(minutes=5),
                g.approvers or None,
                g.rejected,
            )
            gates.record_outcome(
                self.uow, review.id, request_id, self.actor, at=at + timedelta(hours=4)
            )
            added += 1
        return added

    def incidents(self, specs: list[_Incident]) -> int:
        added = 0
        for i in sorted(specs, key=lambda x: -x.days_ago):
            with self.uow.read():
                known = self.uow.session.scalar(
                    select(Incident.id)
                    .join(AISystem, AISystem.id == Incident.system_id)
                    .where(AISystem.name == i.system, Incident.title == i.title)
                )
            if known is None:
                self._incident(i)
                added += 1
        return added

    def _incident(self, i: _Incident) -> None:
        aware = self.ago(i.days_ago)
        responder = _person("security@northwind.example")
        out = incidents.report(
            self.uow,
            incidents.IncidentIn(
                system=i.system,
                title=i.title,
                summary=i.summary,
                severity=i.severity,
                category=i.category,
                aware_at=aware,
            ),
            responder,
            notify=False,
            at=aware + timedelta(minutes=20),
        ).incident
        contained = aware + timedelta(hours=i.contained_after_hours)
        incidents.set_status(self.uow, out.id, "contained", responder, at=contained)
        capa_id = None
        if i.capa is not None:
            capa_id = capa.open_capa(
                self.uow,
                capa.CapaIn(
                    title=f"Incident {out.id}: {i.title}"[:300],
                    description=i.summary,
                    source="incident",
                    system=i.system,
                    incident_id=out.id,
                    owner=i.capa.owner or "",
                    idempotency_key=f"incident-{out.id}",
                    containment=i.capa.containment,
                    verify_after_days=i.capa.verify_after_days,
                ),
                responder,
                now=contained + timedelta(hours=1),
            ).id
        analysed = contained + timedelta(days=1)
        incidents.set_status(self.uow, out.id, "investigating", responder, at=analysed)
        incidents.record_root_cause(
            self.uow,
            out.id,
            incidents.RootCauseIn(whys=i.whys, root_cause=i.root_cause),
            responder,
            at=analysed + timedelta(hours=2),
        )
        closed = aware + timedelta(days=i.closed_after_days)
        incidents.record_lessons(
            self.uow, out.id, i.lessons, responder, at=closed - timedelta(hours=2)
        )
        incidents.set_status(self.uow, out.id, "closed", responder, at=closed)
        if capa_id is not None and i.capa is not None:
            self._capa(capa_id, i.capa, aware, i.whys, i.root_cause, contained=True)

    def _capa(
        self,
        capa_id: int,
        c: _Capa,
        start: datetime,
        whys: list[str],
        root_cause: str,
        *,
        contained: bool,
    ) -> None:
        """A CAPA from its containment to its closure, as far as its script goes."""
        owner = _person(capa.get_capa(self.uow, capa_id).owner)
        if not contained:
            capa.record_containment(self.uow, capa_id, c.containment, owner)
        planned = start + timedelta(days=2)
        capa.record_root_cause(
            self.uow,
            capa_id,
            capa.RootCauseIn(method="5-whys", whys=whys, root_cause=root_cause),
            owner,
            now=planned,
        )
        for a in c.actions:
            capa.add_action(
                self.uow,
                capa_id,
                capa.ActionIn(
                    title=a.title, owner=a.owner, due=(start + timedelta(a.due_after_days)).date()
                ),
                owner,
                now=planned,
            )
        actions = {a.title: a.id for a in capa.get_capa(self.uow, capa_id).actions}
        for a in sorted(c.actions, key=lambda x: x.done_after_days or 0):
            if a.done_after_days is not None:
                capa.complete_action(
                    self.uow,
                    actions[a.title],
                    f"Done on {(start + timedelta(a.done_after_days)):%Y-%m-%d}: {a.title}.",
                    _person(a.owner),
                    now=start + timedelta(days=a.done_after_days),
                )
        if c.verified_after_days is None or c.verifier is None or c.evidence is None:
            return
        capa.record_verification(
            self.uow,
            capa_id,
            True,
            c.evidence,
            _person(c.verifier),
            verifier=c.verifier,
            now=start + timedelta(days=c.verified_after_days),
        )
        if c.closed_after_days is None:
            return
        closed = start + timedelta(days=c.closed_after_days)
        self.approve(
            capa.closure_spec(self.uow, capa_id),
            closed - timedelta(days=1),
            [c.approver] if c.approver else None,
        )
        capa.record_closure(self.uow, capa_id, self.actor, now=closed)

    def programme(self, spec: _AuditHistory) -> int:
        """The audit programme of the four quarters before the current one, planned shortly
        before the first of them."""
        periods = self._periods()
        name = f"AIMS internal audit {periods[0]} to {periods[-1]}"
        with self.uow.read():
            if self.uow.session.scalar(
                select(AuditProgramme.id).where(AuditProgramme.name == name)
            ):
                return 0
        start, _ = self._bounds(periods[0])
        result = audits.plan_programme(
            self.uow,
            audits.PlanIn(start=periods[0], cycle_years=1, name=name),
            self.actor,
            now=start - timedelta(days=spec.planned_days_before),
        )
        self._programme = result.programme
        return 1

    def _periods(self) -> list[str]:
        """The periods of the year before the current one (four quarters, by the policy)."""
        ppy = audits.audit_policy(self.uow.settings).periods_per_year
        local = self.now.astimezone(self._zone())
        first = audits.period_of(local.replace(year=local.year - 1, day=1), ppy, self._zone())
        return periods_from(first, ppy, ppy)

    def _zone(self) -> Any:
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.tz)

    def _bounds(self, period: str) -> tuple[datetime, datetime]:
        ppy = audits.audit_policy(self.uow.settings).periods_per_year
        return period_bounds(period, ppy, self._zone())

    def audits(self, spec: _AuditHistory) -> int:
        if self._programme is None:  # planned by an earlier load: its audits were played then
            return 0
        planned = self._programme.audits
        added = 0
        for a in spec.audits:
            row = planned[a.position - 1]
            self._audit(row, a)
            added += 1
        return added

    def _audit(self, row: audits.AuditOut, a: _Audit) -> None:
        period_start, _ = self._bounds(row.period)
        started = period_start + timedelta(days=a.fieldwork_day, hours=9)
        auditor = _person(row.auditor or "auditor@northwind.example")
        audits.start_audit(self.uow, row.id, None, auditor, now=started)
        to_progress = []
        for n, f in enumerate(a.findings):
            found = started + timedelta(days=min(n, a.fieldwork_days - 1), hours=3)
            out = audits.record_finding(
                self.uow,
                row.id,
                audits.FindingIn(control=f.control, kind=f.kind, statement=f.statement),
                auditor,
                now=found,
            )
            if f.capa is not None and out.capa_id is not None:
                to_progress.append((out.capa_id, f, found))
        completed = started + timedelta(days=a.fieldwork_days)
        audits.complete_fieldwork(self.uow, row.id, auditor, now=completed)
        audits.record_report(self.uow, row.id, auditor)
        decided = completed + timedelta(days=a.approved_after_days)
        request_id = self.approve(
            audits.report_approval_spec(self.uow, row.id),
            completed + timedelta(hours=2),
            [a.approver],
        )
        audits.link_request(self.uow, row.id, request_id, self.actor)
        audits.record_report_decision(self.uow, row.id, request_id, self.actor, now=decided)
        for capa_id, f, found in to_progress:
            assert f.capa is not None
            self._capa(
                capa_id,
                f.capa,
                found,
                [f.statement],
                f"{f.statement} (found by the internal audit of {row.period})",
                contained=False,
            )

    def review(self, spec: _Review) -> int:
        held = self.ago(spec.held_days_ago)
        period = reviews.default_period(held, self.tz)
        if reviews.find_review(self.uow, period) is not None:
            return 0
        reviews.prepare(self.uow, period, None, _person(spec.approver), now=held)
        ids = []
        for d in spec.decisions:
            action = reviews.decide(
                self.uow,
                period,
                reviews.DecisionIn(
                    decision=d.decision,
                    kind=d.kind,
                    owner=d.owner,
                    due=(held + timedelta(days=d.due_after_days)).date(),
                ),
                _person(spec.approver),
                now=held,
            )
            ids.append(action.id)
        review = reviews.get_review(self.uow, period, held)
        approved = held + timedelta(days=spec.approved_after_days)
        request_id = self.approve(reviews.approval_spec(review), approved, [spec.approver])
        reviews.attach_request(self.uow, period, request_id, None, self.actor)
        reviews.record_outcome(self.uow, period, self.actor)
        for action_id, d in zip(ids, spec.decisions, strict=True):
            if d.done_after_days is not None:
                reviews.action_done(
                    self.uow,
                    action_id,
                    d.outcome or "Done.",
                    _person(d.owner),
                    now=held + timedelta(days=d.done_after_days),
                )
        return 1

    def gap(self, spec: _Gap) -> int:
        with self.uow.read():
            if self.uow.session.scalar(select(func.count()).select_from(GapAssessment)):
                return 0
        at = self.ago(spec.days_ago)
        assessor = _person(spec.assessor)
        out = gap.start(self.uow, assessor, assessor=spec.assessor, now=at)
        gap.record(self.uow, out.id, spec.answers, assessor)
        out = gap.accept_suggestions(self.uow, out.id, assessor)
        rest = {r.requirement: spec.default for r in out.requirements if not r.status}
        if rest:
            gap.record(self.uow, out.id, rest, assessor)
        gap.complete(self.uow, out.id, assessor)
        decided = at + timedelta(days=1)
        self.approve(gap.approval_spec(self.uow, out.id), decided, [spec.approver])
        gap.record_decision(self.uow, out.id, self.actor, now=decided + timedelta(hours=2))
        return 1

    def settle_messages(self, after_id: int) -> None:
        """The history's queued messages are past: logged, not sent by the running demo."""
        with self.uow.read():
            ids = list(
                self.uow.session.scalars(
                    select(Notification.id).where(
                        Notification.id > after_id,
                        Notification.status == NotificationStatus.queued,
                    )
                )
            )
        for notification_id in ids:
            outbox.mark_logged(self.uow, notification_id, "demo history: before the demo's load")
