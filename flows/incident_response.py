"""Incident response (ISO/IEC 42001 clause 10, A.8.4; EU AI Act Art. 73) as one run per incident.

The run walks the incident policy's parts in order, with the incident's playbook (data) deciding
the details: classified (done by intake) → on-call and owner told → the playbook's triage and
containment steps (a step may need approval first; its hook fires at most once) → confirmation
of a likely serious incident → root cause → stakeholders told (the regulator's filers only for a
confirmed serious incident) → a CAPA, started as its own deployment run → lessons learned, which
reopen the system's risk assessment (another deployment run) → closure approval → closed. Every
step writes a timeline line and evidence on `incident:<id>`; the run publishes the timeline as a
markdown artifact before each wait and at the end.

It waits for people suspended (no process kept), always through an ask (`tasks.asks`): approvals
(steps, closure) and typed answers (serious or not, root cause, lessons, what was changed after
a refused closure), each answered in Slack, the Prefect UI form with the person's personal code,
or the CLI (`aims approve`, `aims incident confirm-serious|rca|lessons --as`, `aims answer`), and
checked by the one answer service; who may answer comes from the incident policy and the
playbook (data). The run applies each answer once, in a persisted task, in the name of whoever
gave it. A resumed run re-runs from the top, so every side effect before a wait is a persisted
task with an idempotency key (and a hook is recorded in the database before it fires, so it
never fires twice even without Prefect's cache); an answer already on the record (e.g. a root
cause recorded from the CLI before the run got there) is not asked for. No flow retries (a retry
would re-suspend under a used key).

A drill (`drill=True`, or an incident recorded as a drill) rehearses every hook and the CAPA
and risk-reassessment starts (recorded, never fired), never tells the regulator's filers, and
marks every message [DRILL]; people still answer its waits, since responding is what a tabletop
exercise practises. `unattended=True` (drills only) answers them itself and keeps every message
in the log: a quick check that a playbook runs end to end after an edit.

This module is the procedure. Its steps (persisted tasks) are in tasks/incident_steps.py, its
asks and the tasks applying their answers in tasks/incident_forms.py (who is asked:
aims_core/services/incidents/review.py); what people read (evidence, the timeline artifact,
the approvers' details, the messages' cards) is built in aims_core/services/incident_cards.py,
and who is told in aims_core/services/incident_notices.py.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Completed, State

from aims_core.errors import AimsError
from aims_core.models import IncidentStatus
from aims_core.rules.playbooks import (
    ResponsePlan,
    ResponseResult,
    Step,
    StepApproval,
    StepOutcome,
    response_run,
)
from aims_core.services import incidents
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.incident_cards import (
    closure_details,
    step_request_details,
    timeline_markdown,
)
from aims_core.settings import get_settings
from aims_core.uow import UnitOfWork
from tasks.approval import request_approval
from tasks.asks import AskOutcome, ask
from tasks.delivery import deliver_now
from tasks.incident_forms import (
    record_amendment,
    record_lessons_answer,
    record_root_cause_answer,
    record_serious_answer,
    serious_confirmation,
    serious_decided,
)
from tasks.incident_steps import (
    answer_for_drill,
    close_incident,
    note,
    open_capa,
    open_response,
    read_incident,
    record_closure_decision,
    record_rca_evidence,
    record_serious_decision,
    record_step_decision,
    rehearse,
    reopen_risk_assessment,
    run_step,
    set_status,
    start_capa_run,
    tell_failure,
    tell_on_call,
    tell_stakeholders,
)
from tasks.run_names import run_name
from tasks.run_tags import tag_this_run

ACTIVITY = "incident-response"

#: One delivery pass at a stage of the response (the stage is the key: once per run).
deliver = deliver_now.with_options(name="deliver messages")


@task(name="publish timeline", persist_result=True)
def publish_timeline(r: ResponsePlan, stage: str) -> None:
    """The timeline as the run's markdown artifact (one version per stage of the response)."""
    incident = read_incident(r.incident_id)
    create_markdown_artifact(
        key=f"incident-{r.incident_id}-timeline",
        markdown=timeline_markdown(get_settings(), incident, r.playbook, r.situation),
        description=f"{r.tag}Incident {r.incident_id} ({stage}): {incident.title}"[:2000],
    )


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
        details=step_request_details(read_incident(r.incident_id), r, step, approval),
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
    incident = read_incident(r.incident_id)
    if not incident.serious_suggested or serious_decided(incident):
        return
    if r.drill:
        rehearse(r, "serious", f"confirmation as serious ({', '.join(incident.serious_suggested)})")
        return
    publish_timeline(r, "serious?")
    outcome = ask(serious_confirmation(incident))
    if outcome.answers:  # none when the ask was cancelled: the incident stays as it is
        record_serious_answer(r.incident_id, outcome)
        record_serious_decision(r.incident_id)


def ask_people(
    r: ResponsePlan, spec: ApprovalRequestIn, what: str, *, needed: bool = True
) -> AskOutcome:
    """Ask whom the incident policy names and wait. Nobody to ask, or a `needed` answer that
    never came (the ask was cancelled), is said on the record and fails the run: the record
    cannot go on without it (`aims incident rca|lessons` record it directly then)."""
    try:
        outcome = ask(spec)
    except AimsError as exc:
        note(r.incident_id, f"{what}-unaskable", "ask", f"cannot ask for the {what}: {exc}")
        raise
    if needed and not outcome.answers:
        why = f"the {what} ask {outcome.request_id} ended {outcome.status}, unanswered"
        note(r.incident_id, f"{what}-unanswered", "ask", why)
        raise AimsError(f"incident {r.incident_id}: {why}; record the {what} from the CLI", what)
    return outcome


def investigate(r: ResponsePlan) -> None:
    set_status(r.incident_id, IncidentStatus.investigating, "root cause analysis")
    if r.unattended:
        answer_for_drill(r.incident_id, "rca")
    elif not read_incident(r.incident_id).root_cause:  # none yet from `aims incident rca`
        publish_timeline(r, "investigating")
        spec = incidents.root_cause_ask(_uow(), r.incident_id)
        record_root_cause_answer(r.incident_id, ask_people(r, spec, "root-cause"))
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
    elif not read_incident(r.incident_id).lessons:  # none yet from `aims incident lessons`
        publish_timeline(r, "lessons")
        spec = incidents.lessons_ask(_uow(), r.incident_id)
        record_lessons_answer(r.incident_id, ask_people(r, spec, "lessons"))
    reopen_risk_assessment(r)


def approve_closure(r: ResponsePlan) -> int | None:
    """Closure approval, asked again (a new request) after a rejection and an amendment: an ask
    to the responders and the owner, never to whoever refused (an amendment ask cancelled
    unanswered asks the closure again all the same)."""
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
        spec = incidents.amendment_ask(_uow(), r.incident_id, attempt, outcome.request_id)
        amended = ask_people(r, spec, f"amendment-{attempt}", needed=False)
        record_amendment(r.incident_id, attempt, amended)
        attempt += 1


def _closure_spec(r: ResponsePlan, attempt: int) -> ApprovalRequestIn:
    incident = read_incident(r.incident_id)
    details = closure_details(get_settings(), incident, r.playbook)
    amended = [e.text for e in incident.timeline if e.text.startswith("closure asked again")]
    if attempt > 1 and amended:
        details = f"**Since the last request**: {amended[-1]}\n\n{details}"[:20_000]
    return ApprovalRequestIn(
        idempotency_key=f"incident-{r.incident_id}-closure-{attempt}",
        subject=f"incident:{r.incident_id}",
        activity=ACTIVITY,
        system=incident.system,
        title=f"{r.tag}Close incident {incident.id}: {incident.title}"[:300],
        details=details,
        approver_roles=list(r.playbook.closure.roles),
        quorum=r.playbook.closure.quorum,
    )


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


def _who(approval: StepApproval | Any) -> str:
    return f"{approval.quorum} of {', '.join(approval.roles)}"


# --- the flow ------------------------------------------------------------------------------------


def _response_name(parameters: dict[str, Any]) -> str:
    i = read_incident(int(parameters["incident_id"]))
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


@flow(
    name="incident-response",
    flow_run_name=run_name(
        _response_name, lambda p: f"incident {int(p['incident_id'])}", errors=(AimsError,)
    ),
    log_prints=True,
)
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
