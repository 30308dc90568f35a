"""Corrective action (ISO/IEC 42001 10.2) as one run that follows a CAPA until it is closed.

The database says what the CAPA waits for (`capa.wait_step`): containment, root cause, an action
plan, the actions being done, the verification date, the verification itself, closure approval.
The run suspends for each (no process kept) with a Prefect UI form for that step; the same step
can be recorded with `aims capa ...`, which wakes the run once the step is complete. After every
wait the run re-reads the database and waits only for what is still missing.

A suspended run re-runs from the top on resume. Its wait keys are built from the database
(CAPA, attempt, step, verification number) plus a round counted per key within the run, so a
re-run meets its earlier waits again in the same order and gets their stored answers back; the
answers are recorded by a persisted task keyed by the wait, so each is applied once. An
ineffective verification raises the attempt, so the next root cause waits under new keys.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import DEFAULT
from prefect.context import FlowRunContext
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field, ValidationError

from aims_core.errors import AimsError, from_validation_error
from aims_core.models import CapaStatus
from aims_core.ports import EngineNotRunning
from aims_core.services import capa as capas
from aims_core.services.capa import FISHBONE, CapaOut, CapaResult, WaitStep
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from deployments.prefect_runs import PrefectRuns
from tasks.approval import request_approval
from tasks.asks import AskOutcome, ask
from tasks.delivery import deliver_afresh
from tasks.run_names import run_name
from tasks.run_tags import system_tags, tag_this_run

FLOW_ACTOR = Actor(who="flow:capa", channel="flow")
#: The UI form cannot tell who typed it: what comes from it is recorded as coming from the UI.
UI_ACTOR = Actor(who="prefect-ui", channel="ui")


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


def _get(capa_id: int) -> CapaOut:
    return capas.get_capa(_uow(), capa_id)


# --- the forms (every field has a blank default: a wake from the CLI sends none) ----------------


class ContainmentForm(RunInput):
    containment: str = Field(
        default="",
        title="Containment and correction",
        description="What was done to control and correct it and deal with the consequences",
    )


class RootCauseForm(RunInput):
    method: Literal["5-whys", "fishbone", "other"] = "5-whys"
    why_1: str = Field(default="", title="Why? (1)")
    why_2: str = Field(default="", title="Why? (2)")
    why_3: str = Field(default="", title="Why? (3)")
    why_4: str = Field(default="", title="Why? (4)")
    why_5: str = Field(default="", title="Why? (5)")
    data: str = Field(default="", description="Fishbone: data causes (several: separate by ;)")
    model: str = Field(default="", description="Fishbone: model causes")
    process: str = Field(default="", description="Fishbone: process causes")
    people: str = Field(default="", description="Fishbone: people causes")
    tooling: str = Field(default="", description="Fishbone: tooling causes")
    environment: str = Field(default="", description="Fishbone: environment causes")
    root_cause: str = Field(default="", title="Root cause", description="The cause to remove")


class ActionForm(RunInput):
    title: str = Field(default="", title="Action")
    owner: str = Field(default="", description="Email of who does it (blank: the CAPA's owner)")
    due: str = Field(default="", description="Due date, YYYY-MM-DD")


class ActionDoneForm(RunInput):
    action_id: int = Field(default=0, ge=0, title="Action done (its number)")
    evidence: str = Field(default="", description="What shows it is done")


class UntilDueForm(RunInput):
    """Nothing to fill in: the run sleeps until the effectiveness check falls due; the form
    only says so (Resume merely makes it look again)."""


FORMS: dict[str, type[RunInput]] = {
    "containment": ContainmentForm,
    "root-cause": RootCauseForm,
    "action-plan": ActionForm,
    "tracking": ActionDoneForm,
}


def _description(c: CapaOut, step: WaitStep, refusal: str | None) -> str:
    """What the person resuming sees: the CAPA, the step, and how else to give it."""
    lines = [
        f"### CAPA {c.id}: {c.title} — {step.kind.replace('-', ' ')} (attempt {c.attempt})",
        "",
        f"- **system**: {c.system or '-'} · **source**: {c.source} · **owner**: {c.owner}",
    ]
    if c.containment:
        lines.append(f"- **containment**: {c.containment}")
    if c.root_cause:
        lines.append(f"- **root cause**: {c.root_cause.root_cause}")
    lines += [
        f"- action {a.id}: {a.title} — {a.owner}, due {a.due}" + (" (done)" if a.done_at else "")
        for a in c.current_actions
    ]
    for v in c.verifications:
        verdict = "effective" if v.effective else "not effective"
        lines.append(f"- verification {v.number} (attempt {v.attempt}): {verdict}, {v.evidence}")
    if refusal:
        lines.append(f"- **your last input was not recorded**: {refusal}")
    lines += ["", f"Fill in and press Resume, or from a shell: {c.next_step}."]
    return "\n".join(lines)


def _sleep_description(c: CapaOut) -> str:
    """The form of the wait with no input: what the run sleeps until, and what wakes it."""
    due = c.verification_due_at
    when = f"{due:%Y-%m-%d %H:%M} UTC" if due else "its due date"
    return "\n".join(
        [
            f"### CAPA {c.id}: {c.title} — waiting for the effectiveness check "
            f"(attempt {c.attempt})",
            "",
            f"- **system**: {c.system or '-'} · **source**: {c.source} · **owner**: {c.owner}",
            f"- **verification due**: {when}",
            "",
            "Nothing to fill in. The CAPA tracker (approval-reconciler) wakes this run when the "
            f"check falls due and asks a verifier; to record it earlier: `aims capa verify {c.id} "
            "--effective|--ineffective --evidence ... --as EMAIL`. Resume only makes it look "
            "again.",
        ]
    )


def _given(answer: RunInput) -> dict[str, Any]:
    """What the person actually gave: fields present in the stored input and not blank."""
    given = {name: getattr(answer, name) for name in answer.model_fields_set}
    given = {k: v.strip() if isinstance(v, str) else v for k, v in given.items()}
    return {k: v for k, v in given.items() if v not in ("", 0)}


# --- tasks (persisted: a re-run after a resume gets them back cached) ---------------------------


def _run_ended(flow_run_id: str) -> bool:
    """Whether the run ended (or Prefect does not know it); a live one keeps the CAPA."""
    state = PrefectRuns(check_health=False).state(flow_run_id)
    if state is None:  # Prefect cannot be asked now: the claim fails, the run can be restarted
        raise EngineNotRunning(f"cannot read run {flow_run_id} (Prefect API unreachable)")
    return state.final


@task(name="claim the CAPA", persist_result=True)
def claim_capa(capa_id: int) -> str | None:
    """This run follows the CAPA from now on, unless another live run already does (its id is
    returned: a duplicate start, e.g. a repeated incident step, then ends at once)."""
    c = _get(capa_id)
    mine = str(flow_run.id)
    if c.flow_run_id and c.flow_run_id != mine and not _run_ended(c.flow_run_id):
        return c.flow_run_id
    capas.attach_run(_uow(), capa_id, mine, FLOW_ACTOR)
    return None


# The input is the wait's stored answer (immutable once given), so the wait's key alone
# identifies the call: a re-run must not apply it again over later changes from the CLI.
@task(name="record form input", persist_result=True, cache_policy=DEFAULT - "given")
def record_form_input(capa_id: int, kind: str, key: str, given: dict[str, Any]) -> str | None:
    """Input typed into a form, through the same service (and checks) as the CLI. Returns why it
    was refused, for the next form to say; the run never fails on bad input."""
    if set(given) <= {"method"}:  # the form's one non-blank default alone: nothing given
        return None
    try:
        _record(capa_id, kind, given)
    except ValidationError as exc:
        return str(from_validation_error(exc))
    except AimsError as exc:
        get_run_logger().warning("input from the form refused: %s", exc)
        return str(exc)
    return None


def _record(capa_id: int, kind: str, given: dict[str, Any]) -> None:
    uow = _uow()
    if kind == "containment":
        capas.record_containment(uow, capa_id, given.get("containment", ""), UI_ACTOR)
    elif kind == "root-cause":
        capas.record_root_cause(
            uow,
            capa_id,
            {
                "method": given.get("method", "5-whys"),
                "whys": [given[f"why_{n}"] for n in range(1, 6) if given.get(f"why_{n}")],
                "fishbone": {
                    c: [x.strip() for x in given[c].split(";") if x.strip()]
                    for c in FISHBONE
                    if given.get(c)
                },
                "root_cause": given.get("root_cause", ""),
            },
            UI_ACTOR,
        )
    elif kind == "action-plan":
        owner = given.get("owner") or _get(capa_id).owner
        capas.add_action(
            uow,
            capa_id,
            {"title": given.get("title", ""), "owner": owner, "due": given.get("due")},
            UI_ACTOR,
        )
    elif kind == "tracking":
        action_id = int(given.get("action_id", 0))
        if action_id not in {a.id for a in _get(capa_id).open_actions}:
            raise AimsError(f"{action_id} is not an open action of CAPA {capa_id}", "action_id")
        capas.complete_action(uow, action_id, given.get("evidence"), UI_ACTOR)


@task(name="record closure decision", persist_result=True)
def record_closure(capa_id: int, request_id: int) -> CapaOut:
    """Approved: closed, the whole record kept as evidence. Rejected: back to verification."""
    return capas.record_closure(_uow(), capa_id, FLOW_ACTOR)


# --- the waits ------------------------------------------------------------------------------------


class Report:
    """The timeline/checklist artifact, published when it changed (not on every loop)."""

    def __init__(self, capa_id: int) -> None:
        self.capa_id, self.shown = capa_id, ""

    def publish(self) -> None:
        markdown = capas.report_markdown(_uow(), self.capa_id)
        if markdown != self.shown:
            create_markdown_artifact(
                key=f"capa-{self.capa_id}", markdown=markdown, description="CAPA (10.2)"
            )
            self.shown = markdown


class Waits:
    """The rounds of each wait key prefix within this run (a re-run counts them the same way,
    meeting its used keys in order) and the last refusal per prefix, for the next form."""

    def __init__(self) -> None:
        self.rounds: Counter[str] = Counter()
        self.refusals: dict[str, str | None] = {}
        # The keys this run already waited under: a re-run passes them again without waiting.
        context = FlowRunContext.get()
        policy = context.flow_run.empirical_policy if context and context.flow_run else None
        self.used: set[str] = set(policy.pause_keys or ()) if policy else set()

    def next_key(self, step: WaitStep) -> str:
        self.rounds[step.prefix] += 1
        return f"{step.prefix}-r{self.rounds[step.prefix]}"


def wait_for_people(c: CapaOut, waits: Waits, report: Report) -> None:
    """One wait for the step the CAPA is at, and whatever its form brought. Sleeping until the
    verification date has no form: `aims capa verify` or the tracker's tick
    (`capa.wake_due_verifications`) wakes it."""
    step = capas.wait_step(c)
    assert step is not None
    key = waits.next_key(step)
    if key not in waits.used:  # a new wait (not one a re-run passes again): tell, then show
        deliver_afresh(key)  # what the last step queued (owners, verifiers); the rest stays queued
        report.publish()
        get_run_logger().info("CAPA %d waits for %s (%s)", c.id, step.kind, key)
    form = FORMS.get(step.kind)
    if form is None:
        suspend_flow_run(
            wait_for_input=UntilDueForm.with_initial_data(description=_sleep_description(c)),
            key=key,
            timeout=None,
        )
        return
    refusal = waits.refusals.get(step.prefix)
    answer = suspend_flow_run(
        wait_for_input=form.with_initial_data(description=_description(c, step, refusal)),
        key=key,
        timeout=None,
    )
    given = _given(answer)  # nothing from a wake by the CLI or the tracker
    waits.refusals[step.prefix] = record_form_input(c.id, step.kind, key, given) if given else None


@task(name="record verification answer", persist_result=True)
def record_verification_answer(capa_id: int, outcome: AskOutcome) -> CapaOut:
    """The answered verification ask, applied once, in the name of the verifier who answered
    (the service checks them again: a verifier role, not the owner)."""
    answer = outcome.answer
    verifier = str(answer["answered_by"])
    return capas.record_verification(
        _uow(),
        capa_id,
        answer["result"] == "effective",
        str(answer["evidence"]),
        Actor(who=verifier, channel=str(answer["answered_in"])),
        verifier=verifier,
    )


def verify_effectiveness(c: CapaOut) -> bool:
    """Once due, the effectiveness verification is an ask to the verifiers (not the owner),
    answered in Slack, the UI form with a personal code, or `aims capa verify`. False when the
    ask ended unanswered (cancelled): the run then waits to be woken."""
    spec = capas.verification_spec(_uow(), c.id, flow_run_id=str(flow_run.id))
    outcome = ask(spec)
    if outcome.answers:
        record_verification_answer(c.id, outcome)
    return bool(outcome.answers)


def ask_for_closure(c: CapaOut) -> None:
    """The shared approval step (roles and quorum from the CAPA policy), then its outcome."""
    spec = capas.closure_spec(_uow(), c.id, flow_run_id=str(flow_run.id))
    outcome = request_approval(spec)
    record_closure(c.id, outcome.request_id)


# --- the flow ------------------------------------------------------------------------------------


def _tag_run(c: CapaOut) -> None:
    """Tags for the UI's filters, however the run was started (CLI, incident flow, UI)."""
    tag_this_run([*capas.run_tags(c), *system_tags(c.system)])


@flow(
    name="capa",
    # An unknown CAPA (or no database): the first step says so clearly.
    flow_run_name=run_name(
        lambda p: capas.run_name(_get(int(p["capa_id"]))), lambda p: f"capa {p['capa_id']}"
    ),
    log_prints=True,
)
def capa(capa_id: int) -> CapaResult:
    """Follow CAPA `capa_id` from containment to approved closure (ISO/IEC 42001 10.2):
    containment → root cause → action plan → actions done → effectiveness verification
    (ineffective: back to root cause) → closure approval."""
    other = claim_capa(capa_id)
    c = _get(capa_id)
    if other is not None:
        note = f"CAPA {capa_id} is already followed by run {other}: nothing to do here"
        get_run_logger().info(note)
        return CapaResult(
            capa_id=c.id,
            status=c.status.value,
            attempts=c.attempt,
            closure_request_id=None,
            note=note,
        )
    _tag_run(c)
    report, waits = Report(capa_id), Waits()
    while (c := _get(capa_id)).status is not CapaStatus.closed:
        if c.status is CapaStatus.awaiting_closure:
            report.publish()
            ask_for_closure(c)
        elif (step := capas.wait_step(c)) is not None and step.kind == "verification":
            report.publish()
            if not verify_effectiveness(c):
                wait_for_people(c, waits, report)
        else:
            wait_for_people(c, waits, report)
    report.publish()
    return _result(c)


def _result(c: CapaOut) -> CapaResult:
    approvals: list[str] = []
    if c.closure_request_id is not None:
        from aims_core.services.approvals import get_request

        approvals = get_request(_uow(), c.closure_request_id).approvals
    return CapaResult(
        capa_id=c.id,
        status=c.status.value,
        attempts=c.attempt,
        closure_request_id=c.closure_request_id,
        approvals=approvals,
    )
