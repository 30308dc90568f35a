"""Incident response (ISO/IEC 42001 clause 10, A.8.4; EU AI Act Art. 73) as one run per incident.

The run walks the incident policy's parts in order, with the incident's playbook (data) deciding
the details: classified (done by intake) → on-call and owner told → the playbook's triage and
containment steps (a step may need approval first; its hook fires at most once) → confirmation
of a likely serious incident → root cause → stakeholders told (the regulator's filers only for a
confirmed serious incident) → a CAPA, started as its own deployment run → lessons learned, which
reopen the system's risk assessment (another deployment run) → closure approval → closed. Every
step writes a timeline line and evidence on `incident:<id>`; the run publishes the timeline as a
markdown artifact before each wait and at the end.

It waits for people suspended (no process kept): for approvals through the shared
`request_approval`, and for answers through typed forms (serious or not, root cause, lessons)
that the CLI can equally give (`aims incident confirm-serious|rca|lessons`, then `aims incident
resume ID`). A resumed run re-runs from the top, so every side effect before a wait is a
persisted task with an idempotency key (and a hook is recorded in the database before it fires,
so it never fires twice even without Prefect's cache); after each wait the run re-reads the
database and waits again only for what is still missing. No flow retries (a retry would
re-suspend under a used key).

A drill (`drill=True`, or an incident recorded as a drill) rehearses every hook and the CAPA
and risk-reassessment starts (recorded, never fired), never tells the regulator's filers, and
marks every message [DRILL]; people still answer its waits, since responding is what a tabletop
exercise practises. `unattended=True` (drills only) answers them itself and keeps every message
in the log: a quick check that a playbook runs end to end after an edit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import DEFAULT
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Completed, State
from pydantic import Field, create_model
from sqlalchemy.orm import Session

from aims_core.errors import AimsError, Conflict, InvalidInput
from aims_core.evidence_schemas import EvidenceIn
from aims_core.incident_policy import incident_policy
from aims_core.messages import escape
from aims_core.models import IncidentStatus, Person, RiskTier
from aims_core.playbooks import (
    DeploymentHook,
    HookResult,
    NotifyRule,
    Playbook,
    ResponsePlan,
    ResponseResult,
    Situation,
    Step,
    StepApproval,
    StepOutcome,
    load_playbook,
)
from aims_core.services import capa, evidence, hooks, incidents, outbox, risks
from aims_core.services.approvals import ApprovalRequestIn, get_request
from aims_core.services.clocks import card, people_with_roles
from aims_core.services.incidents import FISHBONE, IncidentOut, RootCauseIn
from aims_core.services.outbox import TARGET_DM, TARGET_LOG, NotificationIn
from aims_core.services.systems import get_system, show_system
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.approval import ApprovalOutcome, request_approval
from tasks.run_tags import tag_this_run

ACTOR = Actor(who="flow:incident-response", channel="flow")
#: The UI form cannot tell who typed it: answers from it are recorded as coming from the UI.
UI_ACTOR = Actor(who="prefect-ui", channel="ui")
ACTIVITY = "incident-response"
#: The CAPA flow's deployment (flows/capa.py), parameter `capa_id`.
CAPA_DEPLOYMENT = "capa/capa"
NOT_SERIOUS = "not-serious"
DISMISSED = "serious-dismissed"


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


def _incident(incident_id: int) -> IncidentOut:
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


def _recipients(session: Session, rule: NotifyRule, system: str) -> list[Person]:
    people = people_with_roles(session, rule.roles)
    if rule.system_owner:
        people.append(get_system(session, system).owner)
    return list({p.id: p for p in people}.values())


def _tell(
    r: ResponsePlan, name: str, rules: list[NotifyRule], header: str, body: str, *, kind: str
) -> list[str]:
    """Queue one message per recipient of `rules` (and per channel), once per incident; returns
    who was told. Unattended drills keep every message in the log."""
    s, subject = r.situation, f"incident:{r.incident_id}"
    told: list[str] = []
    with _uow() as uow:
        for rule in rules:
            extra = rule.message.format_map(s.values(name)) if rule.message else ""
            text = f"{r.tag}{header}. {body}" + (f" {extra}" if extra else "")
            blocks = card(
                f"{r.tag}{header}",
                escape(body) + (f"\n\n*{escape(extra)}*" if extra else ""),
                f"Incident #{r.incident_id} · `aims incident show {r.incident_id}`",
            )
            for p in _recipients(uow.session, rule, s.system):
                quiet = r.unattended or not p.slack_user_id
                outbox.queue(
                    uow.session,
                    NotificationIn(
                        idempotency_key=f"incident-{r.incident_id}-{name}-to-{p.id}"[:200],
                        kind=kind,
                        subject=subject,
                        recipient=p.email,
                        target=TARGET_LOG if quiet else TARGET_DM,
                        thread_key=f"{subject}-to-{p.id}",
                        text=text[:3000],
                        blocks=blocks,
                    ),
                )
                told.append(p.email)
            if rule.channel:
                outbox.queue(
                    uow.session,
                    NotificationIn(
                        idempotency_key=f"incident-{r.incident_id}-{name}-{rule.channel}"[:200],
                        kind=kind,
                        subject=subject,
                        target=TARGET_LOG if r.unattended else rule.channel,
                        text=text[:3000],
                        blocks=blocks,
                    ),
                )
                told.append(f"#{rule.channel}")
        uow.commit()
    return list(dict.fromkeys(told))


# --- tasks (persisted: a re-run after a resume gets them back cached) ---------------------------


@task(name="open the response", persist_result=True)
def open_response(incident_id: int, drill: bool, unattended: bool) -> ResponsePlan:
    """Attach this run, fix the playbook and the facts it looks at, mark the incident classified
    (the intake classified it) with its first evidence."""
    incident = _incident(incident_id)
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
        f"{r.playbook.title}, {s.severity}. Steps: {steps}. Root cause later: "
        f"`aims incident rca {s.incident_id} --why ...`",
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


@task(name="deliver messages", persist_result=True)
def deliver(stage: str) -> dict[str, Any]:
    """One delivery pass now; whatever Slack does not take stays queued for the delivery flow."""
    from notifications.slack import deliver_due

    return deliver_due(get_settings()).model_dump()


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
        _decision_markdown(outcome),
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
        )
        status, line = hook.status, f"{step.id}: {hook.line()}"
    _line(s.incident_id, f"step-{step.id}", step.phase, f"{step.title}. {line}")
    _evidence(
        s.incident_id,
        f"step-{step.id}",
        "incident-report",
        f"Incident {s.incident_id}, {step.phase}: {step.title} ({status})",
        _step_markdown(step, status, hook),
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


@task(name="publish timeline", persist_result=True)
def publish_timeline(r: ResponsePlan, stage: str) -> None:
    """The timeline as the run's markdown artifact (one version per stage of the response)."""
    incident = _incident(r.incident_id)
    create_markdown_artifact(
        key=f"incident-{r.incident_id}-timeline",
        markdown=timeline_markdown(incident, r.playbook, r.situation),
        description=f"{r.tag}Incident {r.incident_id} ({stage}): {incident.title}"[:2000],
    )


@task(name="record rca evidence", persist_result=True)
def record_rca_evidence(incident_id: int) -> int:
    incident = _incident(incident_id)
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
    incident = _incident(r.incident_id)
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
        "\n".join(f"- **{a}**: {', '.join(who)}" for a, who in told.items()) or "nobody to tell",
    )
    return told


@task(name="open CAPA", persist_result=True)
def open_capa(r: ResponsePlan, containment: str) -> int:
    """The corrective action for this incident, once (idempotent on `incident-<id>`)."""
    incident = _incident(r.incident_id)
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
            kind="deployment", deployment=CAPA_DEPLOYMENT, parameters={"capa_id": capa_id}
        ),
        values=r.situation.values("capa"),
        dry_run=False,
        actor=ACTOR,
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
    )
    incident = _incident(s.incident_id)
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
        _decision_markdown(outcome, reasons),
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
    incident = _incident(incident_id)
    decided = next(
        (e for e in reversed(incident.timeline) if e.kind in ("serious-confirmed", DISMISSED)),
        None,
    )
    return _evidence(
        incident_id,
        "serious-decision",
        "decision",
        f"Incident {incident_id}: serious incident "
        + (f"confirmed ({incident.serious_kind})" if incident.serious_kind else "not confirmed"),
        f"- **suggested**: {', '.join(incident.serious_suggested)}\n"
        f"- **decision**: {decided.text if decided else '-'}\n"
        f"- **by**: {decided.actor if decided else '-'}\n",
    )


@task(name="close the incident", persist_result=True)
def close_incident(r: ResponsePlan) -> int:
    """Closed, with the whole timeline kept as the closing evidence."""
    incidents.set_status(_uow(), r.incident_id, IncidentStatus.closed, ACTOR, "closure approved")
    incident = _incident(r.incident_id)
    return _evidence(
        r.incident_id,
        "closed",
        "incident-report",
        f"Incident {r.incident_id} closed: {incident.title}",
        timeline_markdown(incident, r.playbook, r.situation),
    )


# --- answers from the forms (the round's stored input is immutable: the round is the key) -------


@task(name="record serious answer", persist_result=True, cache_policy=DEFAULT - "answers")
def record_serious_answer(incident_id: int, round_: int, answers: dict[str, Any]) -> str | None:
    kind = str(answers.get("kind") or "")
    if not kind:
        return None
    try:
        if kind == NOT_SERIOUS:
            incidents.add_timeline(
                _uow(),
                incident_id,
                DISMISSED,
                "not a serious incident: " + (answers.get("reason") or "no reason given"),
                UI_ACTOR,
                idempotency_key=f"incident-{incident_id}-{DISMISSED}",
            )
        else:
            incidents.confirm_serious(_uow(), incident_id, kind, UI_ACTOR)
    except AimsError as exc:
        return str(exc)
    return None


@task(name="record root cause answer", persist_result=True, cache_policy=DEFAULT - "answers")
def record_rca_answer(incident_id: int, round_: int, answers: dict[str, Any]) -> str | None:
    whys = [answers.get(f"why_{n}", "").strip() for n in range(1, 6)]
    fishbone = {k: _split(answers.get(k, "")) for k in FISHBONE}
    root = str(answers.get("root_cause", "")).strip()
    if not any(whys) and not root and not any(fishbone.values()):
        return None
    try:
        incidents.record_root_cause(
            _uow(),
            incident_id,
            RootCauseIn(
                whys=[w for w in whys if w] or [root],
                fishbone={k: v for k, v in fishbone.items() if v},
                root_cause=root,
            ),
            UI_ACTOR,
        )
    except (AimsError, ValueError) as exc:
        return str(exc)
    return None


@task(name="record lessons answer", persist_result=True, cache_policy=DEFAULT - "answers")
def record_lessons_answer(incident_id: int, round_: int, answers: dict[str, Any]) -> str | None:
    text = str(answers.get("lessons", "")).strip()
    if not text:
        return None
    try:
        incidents.record_lessons(_uow(), incident_id, text, UI_ACTOR)
    except AimsError as exc:
        return str(exc)
    return None


@task(name="record amendment", persist_result=True, cache_policy=DEFAULT - "answers")
def record_amendment(incident_id: int, attempt: int, answers: dict[str, Any]) -> None:
    note = str(answers.get("note", "")).strip()
    _line(
        incident_id,
        f"closure-{attempt}-amended",
        "closure",
        "closure asked again" + (f": {note}" if note else ""),
    )


@task(name="answer for the drill", persist_result=True)
def answer_for_drill(incident_id: int, what: str) -> None:
    """An unattended drill answers its own forms with placeholders saying so."""
    text = "unattended drill: no investigation was made"
    if what == "rca":
        incidents.record_root_cause(_uow(), incident_id, RootCauseIn(whys=[text]), ACTOR)
    else:
        incidents.record_lessons(_uow(), incident_id, text, ACTOR)


def _split(value: object) -> list[str]:
    return [x.strip() for x in str(value or "").replace("\n", ";").split(";") if x.strip()]


# --- waits ---------------------------------------------------------------------------------------


def wait_key(incident_id: int, what: str, round_: int) -> str:
    """A suspend key: lowercase, digits, dashes; distinct per incident, wait and round."""
    return f"incident-{incident_id}-{what}-round-{round_}"


def _answers(answer: RunInput) -> dict[str, Any]:
    return {name: getattr(answer, name) for name in answer.model_fields_set}


def wait_until(
    incident_id: int,
    what: str,
    done: Callable[[IncidentOut], bool],
    form: Callable[[IncidentOut, str | None], type[RunInput]],
    record: Any,
) -> IncidentOut:
    """Suspend until the database says `done` (from the form or the CLI), round after round."""
    logger = get_run_logger()
    refusal: str | None = None
    round_ = 1
    while True:
        incident = _incident(incident_id)
        if done(incident):
            return incident
        logger.info("incident %s: waiting for %s (round %d)", incident_id, what, round_)
        answer = suspend_flow_run(
            wait_for_input=form(incident, refusal),
            key=wait_key(incident_id, what, round_),
            timeout=None,
        )
        refusal = record(incident_id, round_, _answers(answer))
        round_ += 1


def _serious_decided(incident: IncidentOut) -> bool:
    return bool(incident.serious_kind) or any(e.kind == DISMISSED for e in incident.timeline)


def _head(incident: IncidentOut, refusal: str | None, ask: str) -> list[str]:
    lines = [
        f"### Incident #{incident.id}: {incident.title}",
        "",
        f"- **system**: {incident.system} ({incident.system_tier}-risk)",
        f"- **severity / category**: {incident.severity} {incident.category}",
        f"- **status**: {incident.status.value}",
    ]
    if refusal:
        lines.append(f"- **your last answer was not recorded**: {refusal}")
    return [*lines, "", ask]


def serious_form(incident: IncidentOut, refusal: str | None) -> type[RunInput]:
    kinds = incident_policy(get_settings()).classification.kind_ids
    choice = Literal[("", NOT_SERIOUS, *kinds)]  # type: ignore[valid-type]
    form = create_model(
        "SeriousIncidentForm",
        __base__=RunInput,
        kind=(choice, Field(default="", description="The serious-incident kind, or not-serious")),
        reason=(str, Field(default="", description="Why not serious (kept on the timeline)")),
    )
    ask = (
        f"Likely a **serious incident** ({', '.join(incident.serious_suggested)}). Confirming "
        "starts the EU AI Act Art. 73 reporting clocks from the aware-at time. Choose the kind, "
        f"or not-serious with a reason; or `aims incident confirm-serious {incident.id} --kind "
        f"KIND` and `aims incident resume {incident.id}`."
    )
    return form.with_initial_data(description="\n".join(_head(incident, refusal, ask)))


class RootCauseForm(RunInput):
    why_1: str = Field(default="", title="Why? (1)")
    why_2: str = Field(default="", title="Why? (2)")
    why_3: str = Field(default="", title="Why? (3)")
    why_4: str = Field(default="", title="Why? (4)")
    why_5: str = Field(default="", title="Why? (5)")
    people: str = Field(default="", description="Fishbone: people causes (separate by ;)")
    process: str = Field(default="", description="Fishbone: process causes")
    data: str = Field(default="", description="Fishbone: data causes")
    model: str = Field(default="", description="Fishbone: model causes")
    infrastructure: str = Field(default="", description="Fishbone: infrastructure causes")
    environment: str = Field(default="", description="Fishbone: environment causes")
    root_cause: str = Field(default="", description="The root cause (default: the last why)")


def rca_form(incident: IncidentOut, refusal: str | None) -> type[RunInput]:
    ask = (
        "Investigation: record the **root cause** (5 whys and/or fishbone causes). Or: "
        f"`aims incident rca {incident.id} --why ... --root-cause ...` and "
        f"`aims incident resume {incident.id}`."
    )
    return RootCauseForm.with_initial_data(description="\n".join(_head(incident, refusal, ask)))


class LessonsForm(RunInput):
    lessons: str = Field(default="", description="What changes so it does not happen again")


def lessons_form(incident: IncidentOut, refusal: str | None) -> type[RunInput]:
    ask = (
        f"Root cause: {incident.root_cause.get('root_cause', '-')}\n\n"
        "Record the **lessons learned**; the system's risk assessment is then reopened. Or: "
        f"`aims incident lessons {incident.id} --text ...` and `aims incident resume "
        f"{incident.id}`."
    )
    return LessonsForm.with_initial_data(description="\n".join(_head(incident, refusal, ask)))


class AmendForm(RunInput):
    note: str = Field(default="", description="What was changed for the next closure request")


# --- the parts of the flow -----------------------------------------------------------------------


def run_playbook(r: ResponsePlan) -> list[StepOutcome]:
    """Triage and containment, in the playbook's order; approval first where a step needs it."""
    outcomes = []
    for step in r.playbook.steps_for(r.situation):
        approved = True
        approval = step.approval_for(r.situation)
        if approval is not None and r.unattended:
            rehearse(r, f"approval-{step.id}", f"approval of {step.id} ({_who(approval)})")
        elif approval is not None:
            approved = _approve_step(r, step, approval)
        outcome = run_step(r, step, approved)
        if not outcome.ok:
            tell_failure(r, outcome)
        outcomes.append(outcome)
    deliver("playbook")
    containment = [o for o in outcomes if o.phase == "containment"]
    if all(o.ok for o in containment):
        set_status(r.incident_id, IncidentStatus.contained, f"{len(containment)} step(s) done")
    return outcomes


def _approve_step(r: ResponsePlan, step: Step, approval: StepApproval) -> bool:
    spec = ApprovalRequestIn(
        idempotency_key=f"incident-{r.incident_id}-step-{step.id}",
        subject=f"incident:{r.incident_id}",
        activity=ACTIVITY,
        system=r.situation.system,
        title=f"{r.tag}Incident {r.incident_id}: {step.title}"[:300],
        details=_step_request_details(r, step, approval),
        approver_roles=list(approval.roles),
        quorum=approval.quorum,
    )
    try:
        outcome = request_approval(spec)
    except AimsError as exc:  # nobody can be asked: the step does not run, people are told
        why = f"approval of {step.id} cannot be asked: {exc}"
        note(r.incident_id, f"unaskable-{step.id}", "approval", why)
        return False
    return record_step_decision(r, step, outcome)


def decide_serious(r: ResponsePlan) -> None:
    incident = _incident(r.incident_id)
    if not incident.serious_suggested or _serious_decided(incident):
        return
    if r.drill:
        rehearse(r, "serious", f"confirmation as serious ({', '.join(incident.serious_suggested)})")
        return
    publish_timeline(r, "serious?")
    wait_until(r.incident_id, "serious", _serious_decided, serious_form, record_serious_answer)
    record_serious_decision(r.incident_id)


def investigate(r: ResponsePlan) -> None:
    set_status(r.incident_id, IncidentStatus.investigating, "root cause analysis")
    if r.unattended:
        answer_for_drill(r.incident_id, "rca")
    else:
        publish_timeline(r, "investigating")
        wait_until(r.incident_id, "rca", lambda i: bool(i.root_cause), rca_form, record_rca_answer)
    record_rca_evidence(r.incident_id)


def correct_and_prevent(r: ResponsePlan, outcomes: list[StepOutcome]) -> int | None:
    if r.drill:
        rehearse(r, "capa", "a real incident opens a CAPA here and starts its run")
        return None
    containment = "\n".join(f"- {o.line}" for o in outcomes) or "no containment step applied"
    capa_id = open_capa(r, f"Incident playbook {r.playbook.id}:\n{containment}")
    start_capa_run(r, capa_id)
    return capa_id


def learn(r: ResponsePlan) -> None:
    if r.unattended:
        answer_for_drill(r.incident_id, "lessons")
    else:
        publish_timeline(r, "lessons")
        wait_until(
            r.incident_id, "lessons", lambda i: bool(i.lessons), lessons_form, record_lessons_answer
        )
    reopen_risk_assessment(r)


def approve_closure(r: ResponsePlan) -> int | None:
    """Closure approval, asked again (a new request) after a rejection and an amendment."""
    set_status(r.incident_id, IncidentStatus.awaiting_closure, "closure approval")
    if r.unattended:
        rehearse(r, "closure", f"closure approval ({_who(r.playbook.closure)})")
        return None
    attempt = 1
    while True:
        publish_timeline(r, f"closure {attempt}")
        try:
            outcome = request_approval(_closure_spec(r, attempt))
        except AimsError as exc:  # nobody can be asked: say so on the record, then fail the run
            note(r.incident_id, f"closure-{attempt}-unaskable", "closure", f"cannot ask: {exc}")
            raise
        record_closure_decision(r, attempt, outcome)
        deliver(f"closure-{attempt}")
        if outcome.approved:
            return outcome.request_id
        ask = (
            f"Closure (request #{outcome.request_id}) was **not approved** by "
            f"{', '.join(outcome.rejections) or 'the approvers'}: see the request's reasons "
            f"(`aims approvals show {outcome.request_id}`). Change what they asked (e.g. `aims "
            "incident rca|lessons ...`), then note what changed here and press Resume to ask "
            f"again, or `aims incident resume {r.incident_id}`."
        )
        answer = suspend_flow_run(
            wait_for_input=AmendForm.with_initial_data(
                description="\n".join(_head(_incident(r.incident_id), None, ask))
            ),
            key=f"incident-{r.incident_id}-closure-{attempt}-amend",
            timeout=None,
        )
        record_amendment(r.incident_id, attempt, _answers(answer))
        attempt += 1


def _closure_spec(r: ResponsePlan, attempt: int) -> ApprovalRequestIn:
    incident = _incident(r.incident_id)
    return ApprovalRequestIn(
        idempotency_key=f"incident-{r.incident_id}-closure-{attempt}",
        subject=f"incident:{r.incident_id}",
        activity=ACTIVITY,
        system=incident.system,
        title=f"{r.tag}Close incident {incident.id}: {incident.title}"[:300],
        details=closure_details(incident, r.playbook),
        approver_roles=list(r.playbook.closure.roles),
        quorum=r.playbook.closure.quorum,
    )


def _who(approval: StepApproval | Any) -> str:
    return f"{approval.quorum} of {', '.join(approval.roles)}"


# --- the flow ------------------------------------------------------------------------------------


def _run_name() -> str:
    from aims_core.playbooks import response_run

    params = flow_run.parameters
    incident_id = int(params["incident_id"])
    try:
        i = _incident(incident_id)
    except AimsError:
        return f"incident {incident_id}"
    return response_run(
        i.id,
        system=i.system,
        tier=i.system_tier,
        severity=i.severity,
        category=i.category,
        playbook=i.playbook,
        drill=i.is_drill,
    ).name


def _tag_run(r: ResponsePlan) -> None:
    """Tags for the UI's filters, however the run was started (CLI, intake, UI)."""
    from aims_core.playbooks import response_run

    s = r.situation
    wanted = response_run(
        s.incident_id,
        system=s.system,
        tier=s.tier,
        severity=s.severity,
        category=s.category,
        playbook=s.playbook,
        drill=s.drill,
    ).tags
    tag_this_run(wanted)


@flow(name="incident-response", flow_run_name=_run_name, log_prints=True)
def incident_response(incident_id: int, drill: bool = False, unattended: bool = False) -> State:
    """Respond to incident `incident_id` with its playbook, from classification to closure.

    `drill`: a tabletop exercise of a drill incident (hooks rehearsed, never fired);
    `unattended`: the drill answers its own waits."""
    try:
        r = open_response(incident_id, drill, unattended)
    except AimsError as exc:  # e.g. a broken playbook: on the record too, not only in the UI
        with contextlib.suppress(AimsError):
            note(incident_id, f"no-run-{flow_run.id}", "run", f"response run failed: {exc}")
        raise
    _tag_run(r)
    tell_on_call(r)
    deliver("on-call")
    outcomes = run_playbook(r)
    publish_timeline(r, "contained")
    decide_serious(r)
    investigate(r)
    tell_stakeholders(r)
    deliver("stakeholders")
    capa_id = correct_and_prevent(r, outcomes)
    learn(r)
    request_id = approve_closure(r)
    close_incident(r)
    publish_timeline(r, "closed")
    result = ResponseResult(
        incident_id=incident_id,
        drill=r.drill,
        status=IncidentStatus.closed.value,
        steps=outcomes,
        capa_id=capa_id,
        closure_request_id=request_id,
    )
    name = "Drill closed" if r.drill else "Closed"
    return Completed(name=name, message=f"incident {incident_id} closed", data=result)


# --- what is shown: markdown for evidence, the artifact and approvers -----------------------------


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "/")


def _at(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"


def report_markdown(incident: IncidentOut, playbook: Playbook, s: Situation) -> str:
    lines = [
        f"# Incident {incident.id}{' (drill)' if incident.is_drill else ''}: {incident.title}",
        "",
        f"- **system**: {incident.system} ({incident.system_tier}-risk, {s.stage})",
        f"- **severity**: {incident.severity}; **category**: {incident.category}",
        f"- **source**: {incident.source}; **aware at**: {_at(incident.aware_at)}; "
        f"**reported at**: {_at(incident.reported_at)}",
        f"- **playbook**: {playbook.id} — {playbook.title} ({playbook.source})",
    ]
    if incident.serious_suggested:
        lines.append(f"- **likely serious**: {', '.join(incident.serious_suggested)}")
    if incident.summary:
        lines += ["", incident.summary]
    return "\n".join(lines) + "\n"


def rca_markdown(incident: IncidentOut) -> str:
    rca = incident.root_cause
    lines = [f"# Root cause analysis of incident {incident.id}: {incident.title}", ""]
    lines += [f"{n}. Why? {why}" for n, why in enumerate(rca.get("whys", []), 1)]
    for category, causes in (rca.get("fishbone") or {}).items():
        lines.append(f"- **{category}**: {'; '.join(causes)}")
    lines += ["", f"**Root cause**: {rca.get('root_cause', '-')}"]
    return "\n".join(lines) + "\n"


def _step_markdown(step: Step, status: str, hook: HookResult | None) -> str:
    lines = [f"# {step.title}", "", f"- **step**: {step.id} ({step.phase})"]
    lines.append(f"- **outcome**: {status}")
    if step.instructions:
        lines.append(f"- **instructions**: {' '.join(step.instructions.split())}")
    if hook is not None:
        lines += [
            f"- **hook**: {hook.kind} `{hook.target}`",
            f"- **started**: {_at(hook.started_at)}"
            + (f"; **finished**: {_at(hook.finished_at)}" if hook.finished_at else ""),
            "",
            "```",
            hook.output.strip() or "(no output)",
            "```",
        ]
    return "\n".join(lines) + "\n"


def _decision_markdown(outcome: ApprovalOutcome, reasons: str = "") -> str:
    return (
        f"- **request**: {outcome.request_id}, {outcome.status}\n"
        f"- **approved by**: {', '.join(outcome.approvals) or '-'}\n"
        f"- **rejected by**: {', '.join(outcome.rejections) or '-'}\n"
        + (f"- **reasons**: {reasons}\n" if reasons else "")
    )


def _step_request_details(r: ResponsePlan, step: Step, approval: StepApproval) -> str:
    incident = _incident(r.incident_id)
    target = hooks.target_of(step.hook, r.situation.values(step.id)) if step.hook else "by hand"
    return (
        f"{incident.severity} {incident.category} on {incident.system}: {incident.title}\n\n"
        f"Step **{step.id}** ({step.phase}) needs approval here "
        f"({approval.when.describe()}): {step.title}.\n"
        f"It will call: `{target}`" + (" (drill: rehearsed only)" if r.drill else "")
    )


def evidence_checklist(incident: IncidentOut, playbook: Playbook) -> list[tuple[str, str, str]]:
    """(kind, what, collected records) for each piece of evidence the playbook asks for: on the
    incident, or on the system since the incident was reported."""
    settings = get_settings()
    out = []
    for item in playbook.evidence:
        found = [
            e
            for subject in (f"incident:{incident.id}", f"system:{incident.system}")
            for e in evidence.list_evidence(settings, subject=subject, kind=item.kind)
            if subject.startswith("incident:") or e.created_at >= incident.reported_at
        ]
        out.append((item.kind, item.title, ", ".join(f"#{e.id}" for e in found) or "missing"))
    return out


def closure_details(incident: IncidentOut, playbook: Playbook) -> str:
    steps = [e for e in incident.timeline if e.kind in ("triage", "containment", "recovery")]
    told = [e for e in incident.timeline if e.kind == "stakeholders"]
    lines = [
        f"{incident.severity} {incident.category} on {incident.system}: {incident.title}",
        "",
        "**Playbook steps**",
        *(f"- {e.text}" for e in steps),
        "",
        f"**Root cause**: {incident.root_cause.get('root_cause', '-')}",
        f"**Lessons learned**: {incident.lessons or '-'}",
        f"**Serious incident**: {incident.serious_kind or 'no'}",
        "",
        "**Stakeholders**",
        *(f"- {e.text}" for e in told),
        "",
        "**Evidence the playbook asks for**",
        *(
            f"- {kind} ({what}): {found}"
            for kind, what, found in evidence_checklist(incident, playbook)
        ),
    ]
    return "\n".join(lines)[:20_000]


def timeline_markdown(incident: IncidentOut, playbook: Playbook, s: Situation) -> str:
    lines = [
        report_markdown(incident, playbook, s),
        f"**Status**: {incident.status.value}"
        + (f" · **serious**: {incident.serious_kind}" if incident.serious_kind else ""),
        "",
        "| at | what | text | by |",
        "|---|---|---|---|",
        *(
            f"| {e.at:%Y-%m-%d %H:%M:%S} | {e.kind} | {_cell(e.text)} | {_cell(e.actor)} |"
            for e in incident.timeline
        ),
    ]
    if incident.clocks:
        lines += ["", "| clock | deadline | status |", "|---|---|---|"]
        lines += [
            f"| {_cell(c.label)} | {_at(c.deadline)} | {c.status.value} |" for c in incident.clocks
        ]
    checklist = evidence_checklist(incident, playbook)
    if checklist:
        lines += ["", "| evidence asked for | kind | records |", "|---|---|---|"]
        lines += [f"| {_cell(what)} | {kind} | {found} |" for kind, what, found in checklist]
    return "\n".join(lines) + "\n"
