"""The stage gate (ISO/IEC 42001 8.1, A.6.2): check the evidence, ask the people the gate policy
names, and on approval move the system to its next life-cycle stage.

An incomplete or forbidden gate ends at once, recorded and explained, without asking anyone to
approve it. The run suspends while it waits for people (so it is served as a deployment and takes
no flow retries); it re-runs from the top on resume, so every step before the wait is a persisted
task, and the outcome is recorded by an idempotent service call.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Completed, State

from aims_core.errors import AimsError
from aims_core.models import GateStatus, LifecycleStage
from aims_core.services import gates
from aims_core.services.gates import Checklist, GateReviewOut
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.approval import request_approval
from tasks.delivery import deliver_afresh
from tasks.run_names import run_name
from tasks.run_tags import tag_this_run

ACTOR = Actor(who="flow:stage-gate", channel="flow")

#: The final state's name per outcome, so the UI's run list says how each gate ended.
STATE_NAMES = {
    GateStatus.missing_evidence: "Missing evidence",
    GateStatus.refused: "Refused",
    GateStatus.approved: "Approved",
    GateStatus.rejected: "Rejected",
}


# --- steps -------------------------------------------------------------------------------------


@task(name="check evidence", persist_result=True)
def check_evidence(system: str, to_stage: LifecycleStage) -> Checklist:
    """The checklist as it stands when the gate is requested (kept for the whole run)."""
    return gates.check_gate(UnitOfWork(get_settings()), system, to_stage)


@task(name="open gate review", persist_result=True)
def open_gate_review(checklist: Checklist, requester: str | None) -> GateReviewOut:
    """Record the request: waiting when ready, closed at once when evidence is missing or the
    policy refuses (idempotent per run)."""
    return gates.open_review(
        UnitOfWork(get_settings()),
        checklist,
        ACTOR,
        requested_by=requester,
        flow_run_id=str(flow_run.id),
    )


@task(name="publish checklist", persist_result=True)
def publish_checklist(review: GateReviewOut) -> str:
    """The checklist (and the decision, once there is one) as the run's markdown artifact."""
    artifact = create_markdown_artifact(
        key=f"gate-{review.id}",
        markdown=review.markdown(),
        description=f"Gate {review.checklist.gate}: {review.status.value}",
    )
    return str(artifact)


@task(name="close unaskable review", persist_result=True)
def close_unaskable_review(review_id: int, reason: str) -> GateReviewOut:
    """Nobody can be asked (e.g. too few eligible approvers): close it so it blocks nothing."""
    return gates.abandon_review(UnitOfWork(get_settings()), review_id, reason, ACTOR)


@task(name="record gate outcome", persist_result=True)
def record_gate_outcome(review_id: int, request_id: int) -> GateReviewOut:
    """Approved: enter the stage; rejected: keep the reasons, tell the owner; evidence both ways."""
    return gates.record_outcome(UnitOfWork(get_settings()), review_id, request_id, ACTOR)


#: Send the owner's message now; whatever Slack does not take stays queued.
notify_owner = deliver_afresh.with_options(name="notify the owner")


# --- the flow ----------------------------------------------------------------------------------


# An unknown system or stage: the first step says so clearly.
_run_name = run_name(
    lambda p: gates.gate_run_name(UnitOfWork(get_settings()), p["system"], str(p["to_stage"])),
    lambda p: f"gate {p['system']}: ?→{p['to_stage']!s}",
    errors=(AimsError,),
)


@flow(name="stage-gate", flow_run_name=_run_name, log_prints=True)
def stage_gate(system: str, to_stage: LifecycleStage, requester: str | None = None) -> State:
    """Take `system` through the gate into `to_stage`, as the gate policy demands."""
    checklist = check_evidence(system, to_stage)
    _tag_run(checklist)
    review = open_gate_review(checklist, requester)
    publish_checklist(review)
    if review.status is not GateStatus.waiting:
        return _end(review)
    try:
        decision = request_approval(gates.approval_request(review, requester))
    except AimsError as exc:  # e.g. fewer eligible approvers than the quorum
        review = close_unaskable_review(review.id, f"nobody can be asked: {exc.message}")
        publish_checklist(review)
        return _end(review)
    review = record_gate_outcome(review.id, decision.request_id)
    if review.status is GateStatus.rejected:
        notify_owner("the gate was rejected")
    publish_checklist(review)
    return _end(review)


def _tag_run(checklist: Checklist) -> None:
    """Tags for the UI's filters (also on runs started from the UI, not only by the CLI): the
    bare tier as every process has it, and `tier:<tier>`, which `aims gate request` adds."""
    tier = checklist.tier.value
    tag_this_run(("gate", checklist.system, tier, f"tier:{tier}"))


def _end(review: GateReviewOut) -> State:
    """A Completed state named after the outcome, carrying it as the run's result."""
    outcome = gates.outcome_of(review)
    get_run_logger().info(outcome.message)
    return Completed(name=STATE_NAMES[review.status], message=outcome.message, data=outcome)
