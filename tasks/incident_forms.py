"""The incident response's questions to people, as asks, and the tasks applying their answers.

What only people give — serious or not, the root cause, the lessons learned, what was changed
after a refused closure — is an ask (`tasks.asks.ask`): a typed form answered in Slack, the run's
Prefect UI form with the person's personal code, or the CLI (`aims incident confirm-serious|rca|
lessons --as EMAIL`, `aims answer ASK --as EMAIL`), all through the one answer service, which
checks who may answer (the incident policy says who: data, not code). The run applies the answer
once, in a persisted task keyed by the ask's outcome and in the name of whoever gave it, so a
re-run from the top records nothing twice and never re-applies it over later changes.
"""

from __future__ import annotations

from prefect import task

from aims_core.ask_forms import NOT_SERIOUS, SERIOUS_CONFIRMATION
from aims_core.rules.incident import incident_policy
from aims_core.services import incidents
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.incidents import IncidentOut
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.asks import FLOW_ACTOR, AskOutcome

#: The timeline kind of a "not a serious incident" answer.
DISMISSED = "serious-dismissed"
#: The run itself (as tasks/incident_steps.py writes it).
FLOW = Actor(who=f"{FLOW_ACTOR}:incident-response", channel="flow")


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


# --- the asks -------------------------------------------------------------------------------------


def serious_confirmation(incident: IncidentOut) -> ApprovalRequestIn:
    """The ask whether a likely serious incident is one: to the roles the incident policy names
    (`serious_incident.confirmed_by`), answered in Slack, the UI form or the CLI."""
    rule = incident_policy(get_settings()).classification.serious_incident.confirmed_by
    details = (
        f"Likely a **serious incident** ({', '.join(incident.serious_suggested)}): "
        f"{incident.severity} {incident.category} on {incident.system} "
        f"({incident.system_tier}-risk). Confirming starts the EU AI Act Art. 73 reporting "
        "clocks from the aware-at time; not-serious needs a reason, kept on the timeline."
    )
    return ApprovalRequestIn(
        idempotency_key=f"incident-{incident.id}-serious-confirmation",
        kind=SERIOUS_CONFIRMATION,
        subject=f"incident:{incident.id}",
        activity=rule.activity,
        system=incident.system,
        title=f"Serious incident? #{incident.id}: {incident.title}"[:300],
        details=details,
        approver_roles=list(rule.roles),
        quorum=rule.quorum,
    )


def serious_decided(incident: IncidentOut) -> bool:
    return bool(incident.serious_kind) or any(e.kind == DISMISSED for e in incident.timeline)


# --- the answers, applied once --------------------------------------------------------------------


def _answerer(outcome: AskOutcome) -> Actor:
    """Who gave the (first) answer, in the channel they used: the record is in their name."""
    answer = outcome.answer
    return Actor(who=str(answer["answered_by"]), channel=str(answer["answered_in"]))


@task(name="record serious answer", persist_result=True)
def record_serious_answer(incident_id: int, outcome: AskOutcome) -> None:
    """The answered ask, applied to the incident once: the kind confirmed (its clocks start) or
    the dismissal with its reason, in the name of whoever answered."""
    answer, actor = outcome.answer, _answerer(outcome)
    if answer["kind"] == NOT_SERIOUS:
        incidents.add_timeline(
            _uow(),
            incident_id,
            DISMISSED,
            f"not a serious incident: {answer.get('reason') or 'no reason given'}",
            actor,
            idempotency_key=f"incident-{incident_id}-{DISMISSED}",
        )
    else:
        incidents.confirm_serious(_uow(), incident_id, str(answer["kind"]), actor)


@task(name="record root cause answer", persist_result=True)
def record_root_cause_answer(incident_id: int, outcome: AskOutcome) -> None:
    """The answered root-cause ask, applied once: the 5 whys and fishbone causes."""
    analysis = incidents.root_cause_of(outcome.answer)
    incidents.record_root_cause(_uow(), incident_id, analysis, _answerer(outcome))


@task(name="record lessons answer", persist_result=True)
def record_lessons_answer(incident_id: int, outcome: AskOutcome) -> None:
    """The answered lessons ask, applied once (the risk reassessment follows in the flow)."""
    lessons = str(outcome.answer["lessons"])
    incidents.record_lessons(_uow(), incident_id, lessons, _answerer(outcome))


@task(name="record amendment", persist_result=True)
def record_amendment(incident_id: int, attempt: int, outcome: AskOutcome) -> None:
    """What was changed after closure attempt `attempt` was refused, on the timeline once (the
    next closure request's approvers read it there)."""
    actor, text = FLOW, f"closure asked again (amendment ask {outcome.request_id} unanswered)"
    if outcome.answers:
        actor, text = _answerer(outcome), f"closure asked again: {outcome.answer['changes']}"
    incidents.add_timeline(
        _uow(),
        incident_id,
        "closure",
        text,
        actor,
        idempotency_key=f"incident-{incident_id}-closure-{attempt}-amended",
    )
