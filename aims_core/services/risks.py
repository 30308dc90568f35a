"""The AI risk register (6.1.2) and risk treatment (6.1.3), scored by the risk policy.

Scales, scoring, appetite and who accepts come from `aims_core.rules.risk` (data, not code).
Accepting a risk above appetite is not the treater's call: the risk waits (`awaiting-acceptance`)
until the `risk-assessment` flow has the policy's approvers decide. No Prefect here: the flow
calls these functions from its tasks, and every one of them is safe to repeat.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from aims_core import processes
from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.models import (
    ApprovalRequest,
    ApprovalStatus,
    LifecycleStage,
    Risk,
    RiskStatus,
    RiskTier,
    TreatmentOption,
    as_utc,
)
from aims_core.rules.risk import RiskPolicy, risk_policy
from aims_core.schemas import Email, SystemName, no_nul
from aims_core.services.approvals import ApprovalRequestIn, rejection_reasons
from aims_core.services.people import get_person
from aims_core.services.systems import get_system
from aims_core.uow import Actor, UnitOfWork

__all__ = [
    "ACCEPTANCE_ACTIVITY",
    "DEPLOYMENT",
    "AssessmentOut",
    "AssessmentRunSpec",
    "RiskAssessmentResult",
    "RiskIn",
    "RiskOut",
    "TreatmentIn",
    "Trigger",
    "acceptance_request",
    "add_risk",
    "assess_system",
    "assessment_run",
    "get_risk",
    "link_acceptance_request",
    "list_risks",
    "settle_acceptance",
    "treat_risk",
]

#: The served deployment that runs an assessment (flows/risk_assessment.py).
DEPLOYMENT: Final = processes.RISK_ASSESSMENT.id
#: The RACI activity that scopes who may approve a risk acceptance.
ACCEPTANCE_ACTIVITY: Final = "risk-assessment"

Trigger = Literal["manual", "model-update", "data-drift", "regulation-change"]


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("one line only (put the rest in the description)")
    return value


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=300),
    AfterValidator(_one_line),
]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    _no_nul = model_validator(mode="before")(no_nul)


class RiskIn(_In):
    system: SystemName
    title: Title
    description: LongText = ""
    owner: Email
    likelihood: int
    impact: int


class TreatmentIn(_In):
    risk_id: int = Field(ge=1)
    option: TreatmentOption
    justification: LongText
    residual_likelihood: int | None = None
    residual_impact: int | None = None

    @field_validator("justification")
    @classmethod
    def _justified(cls, value: str) -> str:
        if not value:
            raise ValueError("required: say why this treatment was chosen (6.1.3)")
        return value

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.residual_likelihood is None) != (self.residual_impact is None):
            raise ValueError(
                "give both --residual-likelihood and --residual-impact, or neither (the residual "
                "then equals the inherent risk)"
            )
        return self


class RiskOut(BaseModel):
    id: int
    system: str
    title: str
    description: str
    owner: str
    likelihood: int
    likelihood_label: str
    impact: int
    impact_label: str
    score: int
    level: str
    treatment: TreatmentOption | None
    justification: str
    residual_likelihood: int | None
    residual_impact: int | None
    residual_score: int | None
    current_score: int = Field(description="The residual score once treated, else the score.")
    above_appetite: bool = Field(description="current_score is above the policy's appetite.")
    status: RiskStatus
    acceptance_request_id: int | None
    created_at: datetime
    updated_at: datetime

    @property
    def residual_text(self) -> str:
        if self.residual_score is None:
            return "-"
        return f"{self.residual_score} ({self.residual_likelihood}x{self.residual_impact})"


def risk_out(r: Risk, policy: RiskPolicy) -> RiskOut:
    current = r.residual_score if r.residual_score is not None else r.score
    return RiskOut(
        id=r.id,
        system=r.system.name,
        title=r.title,
        description=r.description,
        owner=r.owner.email,
        likelihood=r.likelihood,
        likelihood_label=policy.label("likelihood", r.likelihood),
        impact=r.impact,
        impact_label=policy.label("impact", r.impact),
        score=r.score,
        level=policy.level(r.score),
        treatment=r.treatment,
        justification=r.justification,
        residual_likelihood=r.residual_likelihood,
        residual_impact=r.residual_impact,
        residual_score=r.residual_score,
        current_score=current,
        above_appetite=policy.above_appetite(current),
        status=r.status,
        acceptance_request_id=r.acceptance_request_id,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _load(session: Session, risk_id: int, *, lock: bool = False) -> Risk:
    q = (
        select(Risk)
        .where(Risk.id == risk_id)
        .options(selectinload(Risk.system), selectinload(Risk.owner))
    )
    if lock:
        q = q.with_for_update()
    risk = session.scalar(q)
    if risk is None:
        raise NotFound(f"no risk {risk_id} (see `aims risks list`)", field="risk")
    return risk


def _subject(risk: Risk) -> str:
    return f"risk:{risk.id}"


# --- the register ------------------------------------------------------------------------------


def add_risk(uow: UnitOfWork, data: RiskIn, actor: Actor, *, at: datetime | None = None) -> RiskOut:
    """Register a risk; its score comes from the policy, never from the caller. `at`: when it
    was registered (a past business date); default now."""
    policy = risk_policy(uow.settings)
    policy.check("likelihood", data.likelihood, "likelihood")
    policy.check("impact", data.impact, "impact")
    with uow:
        s = uow.session
        system = get_system(s, data.system)
        owner = get_person(s, data.owner, field="owner")
        if not owner.active:
            raise InvalidInput(f"{owner.email} is no longer active", field="owner")
        clash = s.scalar(
            select(Risk.id).where(
                Risk.system_id == system.id,
                Risk.title == data.title,
                Risk.status != RiskStatus.closed,
            )
        )
        if clash is not None:
            raise Conflict(
                f"{system.name} already has risk {clash} titled '{data.title}'", field="title"
            )
        risk = Risk(
            system=system,
            title=data.title,
            description=data.description,
            owner=owner,
            likelihood=data.likelihood,
            impact=data.impact,
            score=policy.score(data.likelihood, data.impact),
            status=RiskStatus.open,
            **({"created_at": as_utc(at), "updated_at": as_utc(at)} if at else {}),
        )
        s.add(risk)
        s.flush()
        uow.audit(
            actor,
            "risk.added",
            _subject(risk),
            system=system.name,
            title=data.title,
            owner=owner.email,
            likelihood=data.likelihood,
            impact=data.impact,
            score=risk.score,
        )
        out = risk_out(risk, policy)
        uow.commit()
    return out


def get_risk(uow: UnitOfWork, risk_id: int) -> RiskOut:
    policy = risk_policy(uow.settings)
    with uow.read():
        return risk_out(_load(uow.session, risk_id), policy)


def list_risks(
    uow: UnitOfWork, *, system: str | None = None, above_appetite: bool = False
) -> list[RiskOut]:
    """The register, by system then id; `above_appetite` keeps risks whose current (residual
    once treated) score exceeds the appetite."""
    policy = risk_policy(uow.settings)
    with uow.read():
        s = uow.session
        q = select(Risk).options(selectinload(Risk.system), selectinload(Risk.owner))
        if system is not None:
            q = q.where(Risk.system_id == get_system(s, system).id)
        rows = [risk_out(r, policy) for r in s.scalars(q.order_by(Risk.system_id, Risk.id))]
    rows.sort(key=lambda r: (r.system, r.id))
    return [r for r in rows if r.above_appetite] if above_appetite else rows


def treat_risk(
    uow: UnitOfWork, data: TreatmentIn, actor: Actor, *, at: datetime | None = None
) -> RiskOut:
    """Choose a treatment. Accepting a risk whose residual score is above appetite leaves it
    `awaiting-acceptance` until the policy's approvers agree (the risk-assessment flow asks).
    `at`: when it was chosen (a past business date); default now."""
    policy = risk_policy(uow.settings)
    with uow:
        s = uow.session
        risk = _load(s, data.risk_id, lock=True)
        if risk.status is RiskStatus.closed:
            raise Conflict(f"risk {risk.id} is closed", field="risk")
        pending = _open_request(s, risk.acceptance_request_id)
        if pending is not None:
            raise Conflict(
                f"risk {risk.id} waits for the decision on its acceptance (request "
                f"{pending.id}); decide that first (`aims approvals show {pending.id}`)",
                field="risk",
            )
        if data.residual_likelihood is not None and data.residual_impact is not None:
            rl = policy.check("likelihood", data.residual_likelihood, "residual_likelihood")
            ri = policy.check("impact", data.residual_impact, "residual_impact")
            for field, residual, inherent in (
                ("residual_likelihood", rl, risk.likelihood),
                ("residual_impact", ri, risk.impact),
            ):
                if residual > inherent:
                    raise InvalidInput(
                        f"{residual} is above the inherent {field.split('_')[1]} {inherent}: a "
                        "treatment does not make a risk worse (re-rate the risk instead)",
                        field=field,
                    )
        else:
            rl, ri = risk.likelihood, risk.impact
        residual = policy.score(rl, ri)
        needs_approval = data.option is TreatmentOption.accept and policy.above_appetite(residual)
        before = risk.status
        risk.treatment = data.option
        risk.justification = data.justification
        risk.residual_likelihood, risk.residual_impact, risk.residual_score = rl, ri, residual
        risk.status = RiskStatus.awaiting_acceptance if needs_approval else RiskStatus.treated
        risk.acceptance_request_id = None
        if at is not None:
            risk.updated_at = as_utc(at)
        s.flush()
        uow.audit(
            actor,
            "risk.treated",
            _subject(risk),
            option=data.option.value,
            justification=data.justification,
            residual_likelihood=rl,
            residual_impact=ri,
            residual_score=residual,
            appetite=policy.appetite,
            status_before=before.value,
            status=risk.status.value,
        )
        out = risk_out(risk, policy)
        uow.commit()
    return out


def _open_request(session: Session, request_id: int | None) -> ApprovalRequest | None:
    if request_id is None:
        return None
    req = session.get(ApprovalRequest, request_id)
    return req if req is not None and req.status is ApprovalStatus.open else None


# --- the assessment (called by flows/risk_assessment.py) ---------------------------------------


class AssessmentOut(BaseModel):
    """One assessment of one system's risks: what the flow publishes, records and asks."""

    system: str
    risk_tier: RiskTier
    lifecycle_stage: LifecycleStage
    reapproval_stage: LifecycleStage | None
    trigger: Trigger
    event_id: int | None
    appetite: int
    approver_roles: list[str]
    quorum: int
    risks: list[RiskOut]
    to_ask: list[int] = Field(description="Risks whose acceptance this assessment asks for.")
    pending: dict[int, int] = Field(
        description="Risk id → open acceptance request another run already waits on."
    )
    changes: list[str] = Field(description="What this assessment changed, in words.")

    def rows(self) -> list[dict[str, object]]:
        """The artifact's table: one row per risk."""
        return [
            {
                "risk": f"#{r.id} {r.title}",
                "owner": r.owner,
                "score": f"{r.score} {r.level} ({r.likelihood}x{r.impact})",
                "treatment": r.treatment.value if r.treatment else "-",
                "residual": r.residual_text,
                "above appetite": "yes" if r.above_appetite else "no",
                "status": r.status.value
                + (f" (request {r.acceptance_request_id})" if r.acceptance_request_id else ""),
            }
            for r in self.risks
        ]

    def markdown(self) -> str:
        """The evidence record's text: deterministic for a given assessment (retry-safe)."""
        head = [
            f"# AI risk assessment: {self.system}",
            "",
            f"- risk tier: {self.risk_tier.value}; lifecycle stage: {self.lifecycle_stage.value}"
            + (
                f"; gate needing re-approval: {self.reapproval_stage.value}"
                if self.reapproval_stage
                else ""
            ),
            f"- trigger: {self.trigger}" + (f" (event {self.event_id})" if self.event_id else ""),
            f"- appetite: {self.appetite}; acceptance above it by "
            f"{', '.join(self.approver_roles)} (quorum {self.quorum})",
            f"- risks: {len(self.risks)}; above appetite: "
            f"{sum(r.above_appetite for r in self.risks)}; acceptance asked: {len(self.to_ask)}",
            "",
        ]
        rows = self.rows()
        if not rows:
            return "\n".join([*head, "No open risks are registered for this system."])
        cols = list(rows[0])
        table = [
            "| " + " | ".join(cols) + " |",
            "|" + "---|" * len(cols),
            *("| " + " | ".join(str(r[c]).replace("|", "/") for c in cols) + " |" for r in rows),
        ]
        changes = ["", "Changes made by this assessment:", *(f"- {c}" for c in self.changes)]
        return "\n".join(head + table + (changes if self.changes else []))


def assess_system(
    uow: UnitOfWork, system: str, trigger: Trigger, event_id: int | None, actor: Actor
) -> AssessmentOut:
    """Re-score every open risk with the policy in force and settle what the database already
    knows: a decided acceptance is applied, an accepted risk that has crossed the appetite
    goes back to waiting. Says which acceptances to ask for and which another run waits on."""
    policy = risk_policy(uow.settings)
    with uow:
        s = uow.session
        sys_row = get_system(s, system)
        if event_id is not None:
            _check_event(s, event_id, sys_row.id, sys_row.name)
        risks = list(
            s.scalars(
                select(Risk)
                .where(Risk.system_id == sys_row.id, Risk.status != RiskStatus.closed)
                .options(selectinload(Risk.system), selectinload(Risk.owner))
                .order_by(Risk.id)
                .with_for_update()
            )
        )
        changes: list[str] = []
        to_ask: list[int] = []
        pending: dict[int, int] = {}
        for risk in risks:
            changes += _rescore(uow, risk, policy, actor)
            changes += _reconcile_acceptance(uow, risk, policy, actor)
            if risk.status is RiskStatus.awaiting_acceptance:
                req = _open_request(s, risk.acceptance_request_id)
                if req is None:
                    to_ask.append(risk.id)
                else:
                    pending[risk.id] = req.id
        s.flush()
        out = AssessmentOut(
            system=sys_row.name,
            risk_tier=sys_row.risk_tier,
            lifecycle_stage=sys_row.lifecycle_stage,
            reapproval_stage=sys_row.reapproval_stage,
            trigger=trigger,
            event_id=event_id,
            appetite=policy.appetite,
            approver_roles=list(policy.acceptance.approver_roles),
            quorum=policy.acceptance.quorum,
            risks=[risk_out(r, policy) for r in risks],
            to_ask=to_ask,
            pending=pending,
            changes=changes,
        )
        uow.audit(
            actor,
            "risk.assessed",
            f"system:{sys_row.name}",
            trigger=trigger,
            event_id=event_id,
            risks=len(risks),
            above_appetite=sum(r.above_appetite for r in out.risks),
            to_ask=to_ask,
            changes=changes,
        )
        uow.commit()
    return out


def _check_event(session: Session, event_id: int, system_id: int, name: str) -> None:
    from aims_core.models import SystemEvent

    event = session.get(SystemEvent, event_id)
    if event is None or event.system_id != system_id:
        raise NotFound(f"no system event {event_id} on {name}", field="event_id")


def _rescore(uow: UnitOfWork, risk: Risk, policy: RiskPolicy, actor: Actor) -> list[str]:
    """Scores follow the policy in force (it may have changed since the risk was rated)."""
    score = policy.score(risk.likelihood, risk.impact)
    residual = (
        policy.score(risk.residual_likelihood, risk.residual_impact)
        if risk.residual_likelihood is not None and risk.residual_impact is not None
        else None
    )
    if (score, residual) == (risk.score, risk.residual_score):
        return []
    uow.audit(
        actor,
        "risk.rescored",
        _subject(risk),
        score_before=risk.score,
        score=score,
        residual_before=risk.residual_score,
        residual=residual,
    )
    note = f"risk {risk.id}: score {risk.score}→{score}, residual {risk.residual_score}→{residual}"
    risk.score, risk.residual_score = score, residual
    return [note]


def _reconcile_acceptance(
    uow: UnitOfWork, risk: Risk, policy: RiskPolicy, actor: Actor
) -> list[str]:
    if risk.treatment is not TreatmentOption.accept:
        return []
    current = risk.residual_score if risk.residual_score is not None else risk.score
    above = policy.above_appetite(current)
    req = uow.session.get(ApprovalRequest, risk.acceptance_request_id or 0)
    approved = req is not None and req.status is ApprovalStatus.approved
    if risk.status is RiskStatus.treated and above and not approved:
        risk.status = RiskStatus.awaiting_acceptance
        risk.acceptance_request_id = None
        uow.audit(actor, "risk.acceptance-required", _subject(risk), residual=current)
        return [f"risk {risk.id}: residual {current} is above appetite: acceptance needed"]
    if risk.status is RiskStatus.awaiting_acceptance and not above:
        risk.status = RiskStatus.treated
        uow.audit(actor, "risk.within-appetite", _subject(risk), residual=current)
        return [f"risk {risk.id}: residual {current} is within appetite: accepted"]
    decided = req is not None and req.status in (ApprovalStatus.approved, ApprovalStatus.rejected)
    if risk.status is RiskStatus.awaiting_acceptance and decided and req is not None:
        return [_apply_decision(uow, risk, req, actor)]
    return []


def _apply_decision(uow: UnitOfWork, risk: Risk, req: ApprovalRequest, actor: Actor) -> str:
    if req.status is ApprovalStatus.approved:
        risk.status = RiskStatus.treated
        uow.audit(actor, "risk.accepted", _subject(risk), request_id=req.id)
        return f"risk {risk.id}: acceptance approved (request {req.id})"
    reasons = "; ".join(rejection_reasons(req))
    risk.status = RiskStatus.open
    risk.treatment = None
    risk.residual_likelihood = risk.residual_impact = risk.residual_score = None
    risk.justification = f"acceptance rejected (request {req.id}): {reasons}"
    uow.audit(actor, "risk.acceptance-rejected", _subject(risk), request_id=req.id, reasons=reasons)
    return f"risk {risk.id}: acceptance rejected (request {req.id}): {reasons}"


def acceptance_request(
    assessment: AssessmentOut, risk_id: int, run_key: str, evidence_ids: list[int] | None = None
) -> ApprovalRequestIn:
    """The approval to ask for accepting one risk; keyed by risk and run, so a re-run of the same
    run finds its request again while a later assessment asks afresh."""
    risk = next(r for r in assessment.risks if r.id == risk_id)
    title = risk.title if len(risk.title) <= 160 else risk.title[:157] + "..."
    details = "\n".join(
        [
            f"**Accept risk #{risk.id} on {risk.system}** above the risk appetite "
            f"({risk.current_score} > {assessment.appetite}).",
            "",
            f"- risk: {risk.title}",
            f"- owner: {risk.owner}",
            f"- inherent: {risk.score} ({risk.likelihood} {risk.likelihood_label} x "
            f"{risk.impact} {risk.impact_label}, {risk.level})",
            f"- residual: {risk.residual_text}",
            f"- justification: {risk.justification}",
            *([f"- description: {risk.description}"] if risk.description else []),
        ]
    )
    return ApprovalRequestIn(
        idempotency_key=f"risk-acceptance-{risk.id}-{run_key}",
        subject=f"risk:{risk.id}",
        activity=ACCEPTANCE_ACTIVITY,
        system=risk.system,
        title=f"Accept risk #{risk.id} on {risk.system} above appetite: {title}",
        details=details,
        approver_roles=assessment.approver_roles,
        quorum=assessment.quorum,
        # Whoever owns a risk does not approve accepting it (segregation of duties).
        requester=risk.owner,
        evidence_ids=evidence_ids or [],
    )


def link_acceptance_request(
    uow: UnitOfWork, risk_id: int, request_id: int, actor: Actor
) -> RiskOut:
    """Remember which request decides the risk's acceptance (the register shows it)."""
    policy = risk_policy(uow.settings)
    with uow:
        risk = _load(uow.session, risk_id, lock=True)
        if (
            risk.status is RiskStatus.awaiting_acceptance
            and risk.acceptance_request_id != request_id
        ):
            risk.acceptance_request_id = request_id
            uow.session.flush()
            uow.audit(actor, "risk.acceptance-requested", _subject(risk), request_id=request_id)
        out = risk_out(risk, policy)
        uow.commit()
    return out


def settle_acceptance(uow: UnitOfWork, risk_id: int, request_id: int, actor: Actor) -> RiskOut:
    """Apply the decided request the database holds: approved → treated, rejected → open with
    the reasons. A risk re-treated meanwhile, or already settled, is left as it is."""
    policy = risk_policy(uow.settings)
    with uow:
        s = uow.session
        risk = _load(s, risk_id, lock=True)
        req = s.scalar(
            select(ApprovalRequest)
            .where(ApprovalRequest.id == request_id)
            .options(selectinload(ApprovalRequest.decisions))
        )
        if req is None:
            raise NotFound(f"no approval request {request_id}", field="request")
        if (
            risk.status is RiskStatus.awaiting_acceptance
            and risk.acceptance_request_id == request_id
            and req.status in (ApprovalStatus.approved, ApprovalStatus.rejected)
        ):
            _apply_decision(uow, risk, req, actor)
            s.flush()
        out = risk_out(risk, policy)
        uow.commit()
    return out


class RiskAssessmentResult(BaseModel):
    """What a `risk-assessment` run returns (kept here: results must unpickle anywhere)."""

    system: str
    trigger: Trigger
    evidence_id: int
    risks: int
    above_appetite: int
    accepted: list[int]
    rejected: list[int]
    pending_elsewhere: dict[int, int]


# --- starting an assessment run (the CLI and the HTTP intake build the same run) ---------------


class AssessmentRunSpec(BaseModel):
    deployment: str
    parameters: dict[str, object]
    name: str
    tags: list[str]


def assessment_run(
    system: str, tier: RiskTier, trigger: Trigger, event_id: int | None = None
) -> AssessmentRunSpec:
    """The deployment run of one assessment: readable name, tags an operator filters by."""
    return AssessmentRunSpec(
        deployment=DEPLOYMENT,
        parameters={"system": system, "trigger": trigger, "event_id": event_id},
        name=run_name(system, trigger),
        tags=["risk-assessment", system, tier.value, trigger],
    )


def run_name(system: str, trigger: str) -> str:
    return f"risk assessment {system} ({trigger})"
