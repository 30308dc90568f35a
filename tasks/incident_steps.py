"""The incident response's steps: each writes its part of the incident's record once.

Persisted tasks (a re-run after a resume gets them back cached) that call the services: every
step leaves a timeline line and evidence on `incident:<id>` under a key per incident and step,
tells people through the playbook's notify rules, and fires a hook at most once (recorded in the
database before it fires, so never twice even without Prefect's cache). The procedure that
orders them is flows/incident_response.py.
"""

from __future__ import annotations

from prefect import task
from prefect.runtime import flow_run

from aims_core import processes
from aims_core.errors import Conflict, InvalidInput
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import IncidentStatus, RiskTier
from aims_core.rules.playbooks import (
    DeploymentHook,
    HookResult,
    NotifyRule,
    ResponsePlan,
    Situation,
    Step,
    StepOutcome,
    load_playbook,
)
from aims_core.services import capa, evidence, hooks, incident_notices, incidents, risks
from aims_core.services.approvals import get_request
from aims_core.services.incident_cards import (
    decision_markdown,
    rca_markdown,
    report_markdown,
    serious_decision,
    stakeholders_markdown,
    step_markdown,
    timeline_markdown,
)
from aims_core.services.incidents import IncidentOut, RootCauseIn
from aims_core.services.systems import show_system
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from deployments.prefect_runs import PrefectRuns
from tasks.approval import ApprovalOutcome
from tasks.incident_forms import DISMISSED

ACTOR = Actor(who="flow:incident-response", channel="flow")


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


def _runs() -> PrefectRuns:
    """Child runs (CAPA, risk reassessment) and deployment hooks: the API answers this run."""
    return PrefectRuns(check_health=False)


def read_incident(incident_id: int) -> IncidentOut:
    return incidents.get_incident(_uow(), incident_id)


# --- records: timeline, evidence, messages -------------------------------------------------------


def _line(incident_id: int, name: str, kind: str, text: str, data: dict | None = None) -> None:
    incidents.add_timeline(
        _uow(),
        incident_id,
        kind,
        text,
        ACTOR,
        data=data,
        idempotency_key=f"incident-{incident_id}-{name}",
    )


def _evidence(incident_id: int, name: str, kind: str, title: str, text: str) -> int:
    """Append once per incident and name; a second run that sees other facts adds its own."""
    data = EvidenceIn(
        subject=f"incident:{incident_id}",
        kind=kind,
        title=title[:300],
        text=text,
        media_type="text/markdown",
        idempotency_key=f"incident-{incident_id}-{name}",
    )
    try:
        return evidence.append(_uow(), data, ACTOR).id
    except Conflict:
        key = f"{data.idempotency_key}-run-{flow_run.id}"
        return evidence.append(_uow(), data.model_copy(update={"idempotency_key": key}), ACTOR).id


def _tell(
    r: ResponsePlan, name: str, rules: list[NotifyRule], header: str, body: str, *, kind: str
) -> list[str]:
    """Queue the messages of `rules` once per incident and `name`; returns who was told."""
    return incident_notices.tell(_uow(), r, name, rules, header, body, kind=kind)


# --- tasks (persisted: a re-run after a resume gets them back cached) ---------------------------


@task(name="open the response", persist_result=True)
def open_response(incident_id: int, drill: bool, unattended: bool) -> ResponsePlan:
    """Attach this run, fix the playbook and the facts it looks at, mark the incident classified
    (the intake classified it) with its first evidence."""
    incident = read_incident(incident_id)
    if drill and not incident.is_drill:
        raise InvalidInput(
            f"incident {incident_id} is a real incident: it is never rehearsed (start a drill "
            "with `aims incident drill --playbook ...`)",
            "drill",
        )
    if unattended and not incident.is_drill:
        raise InvalidInput("only a drill runs unattended", "unattended")
    if not incident.playbook:
        raise InvalidInput(f"incident {incident_id} names no playbook", "playbook")
    playbook = load_playbook(get_settings(), incident.playbook)
    system = show_system(_uow(), incident.system)
    situation = Situation(
        incident_id=incident.id,
        system=incident.system,
        tier=incident.system_tier,
        stage=system.lifecycle_stage.value,
        severity=incident.severity,
        category=incident.category,
        playbook=playbook.id,
        drill=incident.is_drill,
        flow_run_id=str(flow_run.id),
    )
    incidents.attach_run(_uow(), incident_id, str(flow_run.id), ACTOR)
    steps = playbook.steps_for(situation)
    _line(
        incident_id,
        "classified",
        "classified",
        f"classified {incident.severity} {incident.category} on {incident.system} "
        f"({incident.system_tier}-risk, {situation.stage}); playbook {playbook.id} "
        f"({playbook.source}): {len(steps)} step(s) apply: " + ", ".join(step.id for step in steps),
        {"playbook": playbook.id, "source": playbook.source, "steps": [x.id for x in steps]},
    )
    _evidence(
        incident_id,
        "report",
        "incident-report",
        f"Incident {incident_id} reported and classified: {incident.title}",
        report_markdown(incident, playbook, situation),
    )
    return ResponsePlan(situation=situation, playbook=playbook, unattended=unattended)


@task(name="tell the on-call", persist_result=True)
def tell_on_call(r: ResponsePlan) -> list[str]:
    """The responders and the owner learn which playbook runs, its steps, and where to follow."""
    s = r.situation
    steps = "; ".join(f"{x.id} ({x.phase})" for x in r.playbook.steps_for(s))
    told = _tell(
        r,
        "on-call",
        r.playbook.notify_rules("on-call", s.severity),
        f"Playbook {r.playbook.id} started for incident #{s.incident_id} on {s.system}",
        f"{r.playbook.title}, {s.severity}. Steps: {steps}. After containment the run asks "
        f"you for the root cause (here, or `aims incident rca {s.incident_id} --why ... --as "
        "EMAIL`)",
        kind="incident-playbook",
    )
    who = ", ".join(told) or "nobody"
    _line(s.incident_id, "on-call", "notified", f"on-call told: {who}")
    _evidence(
        s.incident_id,
        "on-call",
        "incident-report",
        f"Incident {s.incident_id}: responders notified",
        f"Playbook {r.playbook.id} ({r.playbook.source}) started; told: {who}.\n",
    )
    return told


@task(name="record step decision", persist_result=True)
def record_step_decision(r: ResponsePlan, step: Step, outcome: ApprovalOutcome) -> bool:
    """The approval of a step as evidence and a timeline line; True when approved."""
    verdict = "approved" if outcome.approved else f"not approved ({outcome.status})"
    who = ", ".join(outcome.approvals or outcome.rejections) or "-"
    _line(
        r.incident_id,
        f"step-{step.id}-decision",
        "approval",
        f"step {step.id} {verdict} by {who} (request {outcome.request_id})",
    )
    _evidence(
        r.incident_id,
        f"step-{step.id}-decision",
        "decision",
        f"Incident {r.incident_id}: {step.title}: {verdict}",
        decision_markdown(outcome),
    )
    return outcome.approved


@task(name="run step", persist_result=True)
def run_step(r: ResponsePlan, step: Step, approved: bool) -> StepOutcome:
    """Fire the step's hook once (rehearse it in a drill), or hand a manual step to people;
    each with a timeline line and evidence."""
    s = r.situation
    hook: HookResult | None = None
    if not approved:
        status, line = "not-approved", f"{step.id}: not run (not approved)"
    elif step.hook is None:
        status, line = "manual", f"{step.id}: by hand — {step.instructions.strip() or step.title}"
    else:
        hook = hooks.fire_once(
            _uow(),
            key=f"incident-{s.incident_id}-step-{step.id}",
            incident_id=s.incident_id,
            step=step.id,
            hook=step.hook,
            values=s.values(step.id),
            dry_run=s.drill,
            actor=ACTOR,
            runs=_runs(),
        )
        status, line = hook.status, f"{step.id}: {hook.line()}"
    _line(s.incident_id, f"step-{step.id}", step.phase, f"{step.title}. {line}")
    _evidence(
        s.incident_id,
        f"step-{step.id}",
        "incident-report",
        f"Incident {s.incident_id}, {step.phase}: {step.title} ({status})",
        step_markdown(step, status, hook),
    )
    return StepOutcome(step=step.id, phase=step.phase, status=status, line=line, hook=hook)


@task(name="tell the on-call a step failed", persist_result=True)
def tell_failure(r: ResponsePlan, outcome: StepOutcome) -> list[str]:
    s = r.situation
    return _tell(
        r,
        f"step-{outcome.step}-failed",
        r.playbook.notify_rules("on-call", s.severity),
        f"Incident #{s.incident_id}: step {outcome.step} did not run",
        f"{outcome.line}. Do it by hand and record it on the timeline.",
        kind="incident-step-failed",
    )


@task(name="set status", persist_result=True)
def set_status(incident_id: int, status: IncidentStatus, note: str) -> None:
    incidents.set_status(_uow(), incident_id, status, ACTOR, note)


@task(name="record rca evidence", persist_result=True)
def record_rca_evidence(incident_id: int) -> int:
    incident = read_incident(incident_id)
    return _evidence(
        incident_id,
        "root-cause-analysis",
        "root-cause-analysis",
        f"Incident {incident_id}: root cause analysis",
        rca_markdown(incident),
    )


@task(name="tell stakeholders", persist_result=True)
def tell_stakeholders(r: ResponsePlan) -> dict[str, list[str]]:
    """Internal escalation and affected parties as the playbook says for this severity; the
    regulator's filers only for a confirmed serious incident, never in a drill."""
    incident = read_incident(r.incident_id)
    s = r.situation
    root = incident.root_cause.get("root_cause", "")
    told: dict[str, list[str]] = {}
    for audience in ("internal-escalation", "affected-parties", "regulator"):
        rules = r.playbook.notify_rules(audience, s.severity)
        if audience == "regulator" and (r.drill or not incident.serious_kind):
            why = "a drill" if r.drill else "not confirmed serious"
            _line(r.incident_id, audience, "stakeholders", f"{audience}: not told ({why})")
            continue
        if not rules:
            continue
        told[audience] = _tell(
            r,
            audience,
            rules,
            f"Incident #{s.incident_id} on {s.system} ({s.severity} {s.category}): {audience}",
            f"{incident.title}. Root cause: {root}"
            + (f". Serious incident: {incident.serious_kind}" if incident.serious_kind else ""),
            kind=f"incident-{audience}",
        )
        _line(
            r.incident_id, audience, "stakeholders", f"{audience}: told {', '.join(told[audience])}"
        )
    _evidence(
        r.incident_id,
        "stakeholders",
        "incident-report",
        f"Incident {r.incident_id}: stakeholder notification",
        stakeholders_markdown(told),
    )
    return told


@task(name="open CAPA", persist_result=True)
def open_capa(r: ResponsePlan, containment: str) -> int:
    """The corrective action for this incident, once (idempotent on `incident-<id>`)."""
    incident = read_incident(r.incident_id)
    owner = show_system(_uow(), incident.system).owner
    out = capa.open_capa(
        _uow(),
        capa.CapaIn(
            title=f"Incident {incident.id}: {incident.title}"[:300],
            description=rca_markdown(incident),
            source="incident",
            system=incident.system,
            incident_id=incident.id,
            owner=owner,
            idempotency_key=f"incident-{incident.id}",
            containment=containment,
        ),
        ACTOR,
    )
    _line(r.incident_id, "capa", "capa", f"CAPA {out.id} opened, owner {out.owner}")
    return out.id


@task(name="start CAPA run", persist_result=True)
def start_capa_run(r: ResponsePlan, capa_id: int) -> HookResult:
    """The CAPA's own run, a deployment run (never a subflow: it waits for people), once."""
    result = hooks.fire_once(
        _uow(),
        key=f"incident-{r.incident_id}-capa-run",
        incident_id=r.incident_id,
        step="capa",
        hook=DeploymentHook(
            kind="deployment", deployment=processes.CAPA.id, parameters={"capa_id": capa_id}
        ),
        values=r.situation.values("capa"),
        dry_run=False,
        actor=ACTOR,
        runs=_runs(),
    )
    _line(r.incident_id, "capa-run", "capa", f"CAPA {capa_id}: {result.line()}")
    return result


@task(name="reopen risk assessment", persist_result=True)
def reopen_risk_assessment(r: ResponsePlan) -> HookResult:
    """Lessons learned feed the risk register: the system's risk assessment runs again, as a
    deployment run of its own (rehearsed in a drill)."""
    s = r.situation
    spec = risks.assessment_run(s.system, RiskTier(s.tier), "manual")
    result = hooks.fire_once(
        _uow(),
        key=f"incident-{s.incident_id}-risk-reassessment",
        incident_id=s.incident_id,
        step="risk-reassessment",
        hook=DeploymentHook(
            kind="deployment",
            deployment=spec.deployment,
            parameters=spec.parameters,
            run_name=f"{spec.name}: lessons of incident {{incident_id}}",
            tags=(*spec.tags, "incident"),
        ),
        values=s.values("risk-reassessment"),
        dry_run=s.drill,
        actor=ACTOR,
        runs=_runs(),
    )
    incident = read_incident(s.incident_id)
    _line(s.incident_id, "risk-reassessment", "lessons", f"risk register: {result.line()}")
    _evidence(
        s.incident_id,
        "lessons",
        "incident-report",
        f"Incident {s.incident_id}: lessons learned",
        f"{incident.lessons}\n\nRisk assessment of {s.system} reopened: {result.line()}\n",
    )
    return result


@task(name="record closure decision", persist_result=True)
def record_closure_decision(r: ResponsePlan, attempt: int, outcome: ApprovalOutcome) -> None:
    verdict = "approved" if outcome.approved else f"not approved ({outcome.status})"
    request = get_request(_uow(), outcome.request_id)
    reasons = "; ".join(d.comment for d in request.decisions if d.comment)
    _line(
        r.incident_id,
        f"closure-{attempt}",
        "closure",
        f"closure {verdict} by {', '.join(outcome.approvals or outcome.rejections) or '-'}"
        + (f": {reasons}" if reasons else ""),
    )
    _evidence(
        r.incident_id,
        f"closure-{attempt}",
        "decision",
        f"Incident {r.incident_id}: closure {verdict}",
        decision_markdown(outcome, reasons),
    )


@task(name="note", persist_result=True)
def note(incident_id: int, name: str, kind: str, text: str) -> None:
    """A timeline line for something the run did not do, and why (a drill rehearses it, or
    nobody could be asked)."""
    _line(incident_id, name, kind, text)


def rehearse(r: ResponsePlan, what: str, text: str) -> None:
    """A step a drill only walks through: said on the timeline, nothing done."""
    note(r.incident_id, f"rehearsed-{what}", "drill", f"rehearsed: {text}")


@task(name="record serious decision", persist_result=True)
def record_serious_decision(incident_id: int) -> int:
    title, text = serious_decision(read_incident(incident_id), DISMISSED)
    return _evidence(incident_id, "serious-decision", "decision", title, text)


@task(name="close the incident", persist_result=True)
def close_incident(r: ResponsePlan) -> int:
    """Closed, with the whole timeline kept as the closing evidence."""
    incidents.set_status(_uow(), r.incident_id, IncidentStatus.closed, ACTOR, "closure approved")
    incident = read_incident(r.incident_id)
    return _evidence(
        r.incident_id,
        "closed",
        "incident-report",
        f"Incident {r.incident_id} closed: {incident.title}",
        timeline_markdown(get_settings(), incident, r.playbook, r.situation),
    )


@task(name="answer for the drill", persist_result=True)
def answer_for_drill(incident_id: int, what: str) -> None:
    """An unattended drill answers its own forms with placeholders saying so."""
    text = "unattended drill: no investigation was made"
    if what == "rca":
        incidents.record_root_cause(_uow(), incident_id, RootCauseIn(whys=[text]), ACTOR)
    else:
        incidents.record_lessons(_uow(), incident_id, text, ACTOR)
