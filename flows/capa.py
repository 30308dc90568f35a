"""Corrective action (ISO/IEC 42001 10.2) as one run that follows a CAPA until it is closed.

The database says what the CAPA waits for: containment, root cause, the action plan, each action
done, the verification date, the verification itself, closure approval. Every human step is an
ask (`tasks.asks.ask`): to the CAPA's owner (an action's completion: that action's owner and the
CAPA's owner) and the policy's stand-ins, the verification to the verifiers, never the owner;
answered in Slack, the run's Prefect UI form with a personal code, or `aims capa ... --as EMAIL`,
all through the one answer service. The run applies each answer once, in a persisted task, in
the name of who answered; after every answer it re-reads the database and asks only for what is
still missing. The plan is asked one action at a time, until an answer says it is complete.

A suspended run re-runs from the top on resume. The asks' keys come from the database (CAPA,
attempt, step, action, a number that moves on only when an ask is spent), so a re-run meets the
same asks and gets their answers back, and the tasks applying them come back cached: nothing is
recorded twice. An ineffective verification raises the attempt, so the next root cause is a new
ask. Sleeping until the verification is due is not a human step: a wait with no input, woken by
the tracker's tick (`capa.wake_due_verifications`) or `aims capa verify`.
"""

from __future__ import annotations

from collections import Counter

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run

from aims_core.models import CapaStatus
from aims_core.ports import EngineNotRunning
from aims_core.services import approvals
from aims_core.services import capa as capas
from aims_core.services.capa import CapaOut, CapaResult
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from deployments.prefect_runs import PrefectRuns
from tasks.approval import request_approval
from tasks.asks import AskOutcome, ask
from tasks.delivery import deliver_afresh
from tasks.run_names import run_name
from tasks.run_tags import system_tags, tag_this_run

FLOW_ACTOR = Actor(who="flow:capa", channel="flow")


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


def _get(capa_id: int) -> CapaOut:
    return capas.get_capa(_uow(), capa_id)


class UntilDueForm(RunInput):
    """Nothing to fill in: the run sleeps until the effectiveness check falls due; the form
    only says so (Resume merely makes it look again)."""


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


@task(name="record the answer", persist_result=True)
def record_answer(capa_id: int, outcome: AskOutcome) -> str | None:
    """The answered step, applied once (keyed by the ask's outcome) as the database holds it, in
    the name of who answered; the service checks it again. If the CAPA cannot take it (e.g. the
    action's owner left since), that is recorded, the person told and the step asked again:
    returns why."""
    applied = capas.apply_answer(_uow(), outcome.request_id, FLOW_ACTOR)
    if isinstance(applied, str):
        get_run_logger().warning("answer to ask %d not applied: %s", outcome.request_id, applied)
        return applied
    return None


@task(name="record closure decision", persist_result=True)
def record_closure(capa_id: int, request_id: int) -> CapaOut:
    """Approved: closed, the whole record kept as evidence. Rejected: back to verification."""
    return capas.record_closure(_uow(), capa_id, FLOW_ACTOR)


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


class Sleeps:
    """The rounds of each sleep's key prefix within this run (a re-run counts them the same
    way, meeting its used keys in order)."""

    def __init__(self) -> None:
        self.rounds: Counter[str] = Counter()
        # The keys this run already waited under: a re-run passes them again without waiting.
        context = FlowRunContext.get()
        policy = context.flow_run.empirical_policy if context and context.flow_run else None
        self.used: set[str] = set(policy.pause_keys or ()) if policy else set()

    def next_key(self, prefix: str) -> str:
        self.rounds[prefix] += 1
        return f"{prefix}-r{self.rounds[prefix]}"


def sleep_until_woken(c: CapaOut, sleeps: Sleeps, report: Report) -> None:
    """Wait with no input until the verification falls due (or an unanswered verification ask
    is asked again): `aims capa verify` or the tracker's tick wakes it."""
    step = capas.wait_step(c)
    assert step is not None
    key = sleeps.next_key(step.prefix)
    if key not in sleeps.used:  # a new wait (not one a re-run passes again): tell, then show
        deliver_afresh(key)  # what the last step queued (e.g. the verifiers' notice)
        report.publish()
        get_run_logger().info("CAPA %d waits for %s (%s)", c.id, step.kind, key)
    suspend_flow_run(
        wait_for_input=UntilDueForm.with_initial_data(description=_sleep_description(c)),
        key=key,
        timeout=None,
    )


def take_step(c: CapaOut, report: Report) -> None:
    """Ask for the step the CAPA is at (containment, root cause, the plan's next action, an
    action's completion) and apply the answer. An ask ended unanswered is asked again."""
    spec = capas.step_spec(_uow(), c.id, flow_run_id=str(flow_run.id))
    assert spec is not None, c.status
    if approvals.request_by_key(_uow(), spec.idempotency_key) is None:  # a new step, not a re-run
        report.publish()
    outcome = ask(spec)
    if outcome.answers:
        record_answer(c.id, outcome)


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
    report, sleeps = Report(capa_id), Sleeps()
    while (c := _get(capa_id)).status is not CapaStatus.closed:
        if c.status is CapaStatus.awaiting_closure:
            report.publish()
            ask_for_closure(c)
        elif c.status is CapaStatus.verification:
            step = capas.wait_step(c)
            report.publish()
            if step is None or step.kind != "verification" or not verify_effectiveness(c):
                sleep_until_woken(c, sleeps, report)
        else:
            take_step(c, report)
    report.publish()
    return _result(c)


def _result(c: CapaOut) -> CapaResult:
    approved: list[str] = []
    if c.closure_request_id is not None:
        approved = approvals.get_request(_uow(), c.closure_request_id).approvals
    return CapaResult(
        capa_id=c.id,
        status=c.status.value,
        attempts=c.attempt,
        closure_request_id=c.closure_request_id,
        approvals=approved,
    )
