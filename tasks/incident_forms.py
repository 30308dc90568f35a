"""The incident response's waits for people: its Prefect UI forms, the wait, and the answers.

The run waits suspended (no process kept) for what only people give — serious or not, the root
cause, the lessons learned, what changed after a refused closure — through a typed form that the
CLI can equally answer (`aims incident confirm-serious|rca|lessons`, then `aims incident resume
ID`). After each wait the run re-reads the database, which is authoritative, and waits again
only for what is still missing, under a new key. A round's answers come from its stored input
(immutable once given), so they are recorded by a persisted task keyed by the round: a re-run
records nothing twice and never re-applies them over later changes from the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import DEFAULT
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from pydantic import Field

from aims_core.ask_forms import NOT_SERIOUS, SERIOUS_CONFIRMATION
from aims_core.errors import AimsError
from aims_core.rules.incident import incident_policy
from aims_core.services import incidents
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.incidents import FISHBONE, IncidentOut, RootCauseIn
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.asks import AskOutcome

#: The UI form cannot tell who typed it: answers from it are recorded as coming from the UI.
UI_ACTOR = Actor(who="prefect-ui", channel="ui")
#: The timeline kind of a "not a serious incident" answer.
DISMISSED = "serious-dismissed"


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


def _incident(incident_id: int) -> IncidentOut:
    return incidents.get_incident(_uow(), incident_id)


# --- the forms -----------------------------------------------------------------------------------


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


# --- the waits -----------------------------------------------------------------------------------


def wait_key(incident_id: int, what: str, round_: int) -> str:
    """A suspend key: lowercase, digits, dashes; distinct per incident, wait and round."""
    return f"incident-{incident_id}-{what}-round-{round_}"


def answers_of(answer: RunInput) -> dict[str, Any]:
    """The fields present in the stored input."""
    return {name: getattr(answer, name) for name in answer.model_fields_set}


def serious_decided(incident: IncidentOut) -> bool:
    return bool(incident.serious_kind) or any(e.kind == DISMISSED for e in incident.timeline)


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
        refusal = record(incident_id, round_, answers_of(answer))
        round_ += 1


def wait_for_amendment(incident_id: int, attempt: int, request_id: int, by: str) -> dict[str, Any]:
    """After a refused closure (request `request_id`, refused by `by`): wait until someone
    changed what was asked and says what, or the CLI resumes the run."""
    ask = (
        f"Closure (request #{request_id}) was **not approved** by {by}: see the request's "
        f"reasons (`aims approvals show {request_id}`). Change what they asked (e.g. `aims "
        "incident rca|lessons ...`), then note what changed here and press Resume to ask "
        f"again, or `aims incident resume {incident_id}`."
    )
    answer = suspend_flow_run(
        wait_for_input=AmendForm.with_initial_data(
            description="\n".join(_head(_incident(incident_id), None, ask))
        ),
        key=f"incident-{incident_id}-closure-{attempt}-amend",
        timeout=None,
    )
    return answers_of(answer)


# --- answers from the forms (the round's stored input is immutable: the round is the key) -------


@task(name="record serious answer", persist_result=True)
def record_serious_answer(incident_id: int, outcome: AskOutcome) -> None:
    """The answered ask, applied to the incident once: the kind confirmed (its clocks start) or
    the dismissal with its reason, in the name of whoever answered."""
    answer = outcome.answer
    actor = Actor(who=str(answer["answered_by"]), channel=str(answer["answered_in"]))
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


def _split(value: object) -> list[str]:
    return [x.strip() for x in str(value or "").replace("\n", ";").split(";") if x.strip()]
