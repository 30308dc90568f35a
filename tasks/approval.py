"""`request_approval`: the one way a flow waits for people.

A flow-level helper, not a task: Prefect refuses to suspend from inside a task. Everything before
the wait is a persisted task keyed by the request, so when the suspended run re-runs from the top
those steps come back cached and nothing is written or sent twice. The wait key comes from the
database (request id + round), stable across re-runs and distinct per round.
"""

from __future__ import annotations

from typing import Literal

from prefect import get_run_logger, task
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from aims_core.services import approvals, outbox
from aims_core.services.reconcile import wait_key
from aims_core.settings import Settings, get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.delivery import deliver_now

FLOW_ACTOR = "flow"


class ApprovalInput(RunInput):
    """The Prefect UI's resume form. The approver typed here is only a claim: it counts only
    together with that approver's personal code for this request."""

    approver: str = Field(description="Your email address")
    decision: Literal["approve", "reject"] = Field(description="approve or reject")
    code: str = Field(default="", description="Your personal code for this request")
    comment: str = Field(default="", description="Reasons (required to reject)")


class ApprovalOutcome(BaseModel):
    request_id: int
    status: str
    approved: bool
    approvals: list[str]
    rejections: list[str]
    comments: list[str]


@task(name="open approval request", persist_result=True)
def open_request(spec: approvals.ApprovalRequestIn) -> int:
    """Write the request and queue its messages, once (idempotent on the spec's key)."""
    settings = get_settings()
    spec = spec.model_copy(update={"flow_run_id": str(flow_run.id)})
    actor = Actor(who=FLOW_ACTOR, channel="flow")
    request = approvals.create_request(UnitOfWork(settings), spec, actor)
    if request.flow_run_id != spec.flow_run_id:
        # The same request asked again by a new run (the first one ended): this run now waits.
        approvals.attach_flow_run(UnitOfWork(settings), request.id, str(flow_run.id), actor)
    outbox.queue_request_messages(UnitOfWork(settings), request.id, settings.evidence_key_bytes())
    return request.id


@task(name="claim approval request", persist_result=True)
def claim_request(request_id: int | None) -> None:
    """A run taking over a record (`take_over`) takes over its approval request too: the
    decision must resume this run, not the one that ended."""
    if request_id is not None:
        approvals.attach_flow_run(
            UnitOfWork(get_settings()),
            request_id,
            str(flow_run.id),
            Actor(who=FLOW_ACTOR, channel="flow"),
        )


def deliver_request(request_id: int) -> dict[str, object]:
    """One delivery pass once the request's messages are queued, once per request in a run
    (`request_approval` and a flow that opened the request first share the key)."""
    return deliver_now(f"approval-request-{request_id}")


def _form(
    settings: Settings, request: approvals.ApprovalRequestOut, refusal: str | None = None
) -> type[ApprovalInput]:
    """The resume form's description: what is decided, on what, by whom, on what evidence, and
    why the last answer typed here was not counted (if it was not)."""
    lines = [
        f"### {request.title}",
        "",
        f"- **subject**: `{request.subject}`",
    ]
    if request.system:
        from aims_core.services.systems import show_system

        system = show_system(UnitOfWork(settings), request.system)
        lines.append(
            f"- **system**: {system.name} — risk tier **{system.risk_tier.value}**, "
            f"stage {system.lifecycle_stage.value}, owner {system.owner_name}"
        )
    lines += [
        f"- **quorum**: {len(request.approvals)} of {request.quorum} approvals so far",
        f"- **eligible approvers**: {', '.join(request.approvers)}",
    ]
    if request.deadline:
        lines.append(f"- **deadline**: {request.deadline:%Y-%m-%d %H:%M %Z}")
    if request.evidence_ids:
        lines.append(f"- **evidence**: {', '.join(f'#{i}' for i in request.evidence_ids)}")
    if refusal:
        lines.append(f"- **your last answer was not counted**: {refusal}")
    if request.details:
        lines += ["", request.details]
    lines += [
        "",
        "Approve in Slack, with `aims approve "
        f"{request.id} --as EMAIL`, or here: type your email, your decision and the personal "
        "code you were sent for this request (without it the decision is refused), then press "
        "Resume. Rejecting needs a comment. The run waits on until the quorum is reached or "
        "someone rejects.",
    ]
    return ApprovalInput.with_initial_data(
        description="\n".join(lines), approver="", decision="approve"
    )


def request_approval(spec: approvals.ApprovalRequestIn) -> ApprovalOutcome:
    """Ask, wait suspended (no process kept), and return the decision the database holds."""
    logger = get_run_logger()
    settings = get_settings()
    request_id = open_request(spec)
    deliver_request(request_id)
    refusal: str | None = None
    while True:
        request = approvals.get_request(UnitOfWork(settings), request_id)
        if request.status != "open":
            # This run is the one that goes on: nothing is left for the reconciler to resume.
            approvals.mark_resumed(UnitOfWork(settings), request_id)
            return _outcome(request)
        logger.info(
            "waiting for %s (round %d): %d of %d approvals",
            request.subject,
            request.round,
            len(request.approvals),
            request.quorum,
        )
        answer = suspend_flow_run(
            wait_for_input=_form(settings, request, refusal),
            key=wait_key(request_id, request.round),
            timeout=None,
        )
        refusal = None
        if answer.approver.strip() not in ("", "-"):
            refusal = _decide_from_ui(settings, request_id, answer)
        approvals.next_round(UnitOfWork(settings), request_id, expected_round=request.round)


def _decide_from_ui(settings, request_id: int, answer: ApprovalInput) -> str | None:  # type: ignore[no-untyped-def]
    """A UI decision goes through the same service; a refusal is audited there and we wait on.
    Returns why it was not counted, for the next form to say."""
    logger = get_run_logger()
    try:
        result = approvals.decide(
            UnitOfWork(settings),
            approvals.DecisionIn(
                request_id=request_id,
                person=answer.approver,
                outcome=answer.decision,
                comment=answer.comment,
                code=answer.code,
            ),
            Actor(who=f"ui-claim:{answer.approver.strip().lower()}", channel="ui"),
        )
        logger.info(
            "UI decision recorded: %s (%d of %d)", result.status, result.approvals, result.quorum
        )
        # Same follow-up as any channel, minus the resume: this run is the one that goes on.
        from notifications.interactions import after_decision

        after_decision(settings, result, resume=lambda *_: None)
    except approvals.Refused as exc:
        logger.warning("UI decision refused: %s", exc)
        return str(exc)
    except Exception as exc:  # bad input typed into the form: refuse, keep waiting
        logger.warning("UI decision not accepted: %s", exc)
        return str(exc)
    return None


def _outcome(request: approvals.ApprovalRequestOut) -> ApprovalOutcome:
    return ApprovalOutcome(
        request_id=request.id,
        status=str(request.status),
        approved=request.status == "approved",
        approvals=request.approvals,
        rejections=request.rejections,
        comments=[],
    )
