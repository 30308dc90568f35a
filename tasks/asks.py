"""`ask`: the one way a flow waits for people — an approval, or a typed answer of another kind.

A flow-level helper, not a task: Prefect refuses to suspend from inside a task. Everything before
the wait is a persisted task keyed by the ask, so when the suspended run re-runs from the top
those steps come back cached and nothing is written or sent twice. The wait key comes from the
database (ask id + round), stable across re-runs and distinct per round; on resume the loop
re-reads the database, which stays the authority (answers may equally come from Slack or the
CLI). The Prefect UI form shows the ask's own model plus the person and their personal code:
whatever is typed there goes through the same answer service as every other channel.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import BaseModel, Field, create_model

from aims_core.ask_forms import APPROVAL_KIND, FORM_TITLES, answer_model
from aims_core.models import Outcome
from aims_core.services import approvals, outbox
from aims_core.services.reconcile import wait_key
from aims_core.settings import Settings, get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.delivery import deliver_now

FLOW_ACTOR = "flow"


class ApprovalInput(RunInput):
    """The Prefect UI's resume form of an approval. The approver typed here is only a claim: it
    counts only together with that approver's personal code for this request."""

    approver: str = Field(description="Your email address")
    decision: Literal["approve", "reject"] = Field(description="approve or reject")
    code: str = Field(default="", description="Your personal code for this request")
    comment: str = Field(default="", description="Reasons (required to reject)")


class AskOutcome(BaseModel):
    """How an ask ended, as the database holds it."""

    request_id: int
    kind: str
    status: str
    approved: bool
    approvals: list[str]
    rejections: list[str]
    comments: list[str]
    #: Each typed answer with who gave it (`answered_by`) and in which channel (`answered_in`):
    #: asks of a kind other than approval.
    answers: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def answer(self) -> dict[str, Any]:
        """The first typed answer (most asks want one person's)."""
        return self.answers[0] if self.answers else {}


@task(name="open ask", persist_result=True)
def open_request(spec: approvals.ApprovalRequestIn) -> int:
    """Write the ask and queue its messages, once (idempotent on the spec's key)."""
    settings = get_settings()
    spec = spec.model_copy(update={"flow_run_id": str(flow_run.id)})
    actor = Actor(who=FLOW_ACTOR, channel="flow")
    request = approvals.create_request(UnitOfWork(settings), spec, actor)
    if request.flow_run_id != spec.flow_run_id:
        # The same ask asked again by a new run (the first one ended): this run now waits.
        approvals.attach_flow_run(UnitOfWork(settings), request.id, str(flow_run.id), actor)
    outbox.queue_request_messages(UnitOfWork(settings), request.id, settings.evidence_key_bytes())
    return request.id


def deliver_request(request_id: int) -> dict[str, object]:
    """One delivery pass once the ask's messages are queued, once per ask in a run (`ask` and a
    flow that opened the ask first share the key)."""
    return deliver_now(f"approval-request-{request_id}")


def ui_form(
    settings: Settings, request: approvals.ApprovalRequestOut, refusal: str | None = None
) -> type[RunInput]:
    """The resume form: what is asked, on what, of whom, and why the last answer typed here was
    not counted (if it was not); the ask's own fields, the person and their code."""
    description = _description(settings, request, refusal)
    if request.kind == APPROVAL_KIND:
        return ApprovalInput.with_initial_data(
            description=description, approver="", decision="approve"
        )
    model = answer_model(settings, request.kind, request.subject)
    fields: dict[str, Any] = {
        "person": (str, Field(description="Your email address")),
        "code": (str, Field(default="", description="Your personal code for this ask")),
    }
    # Optional in the form (the answer service says what is missing): a resume from another
    # channel sends only `person: "-"`, and Prefect checks every resume against this schema.
    fields |= {
        name: (f.annotation | None, Field(default=None, title=f.title, description=f.description))
        for name, f in model.model_fields.items()
    }
    form = create_model(f"{model.__name__}Form", __base__=RunInput, **fields)
    return form.with_initial_data(description=description, person="")


def _description(
    settings: Settings, request: approvals.ApprovalRequestOut, refusal: str | None
) -> str:
    approval = request.kind == APPROVAL_KIND
    head = request.title if approval else f"{FORM_TITLES.get(request.kind)}: {request.title}"
    lines = [
        f"### {head}",
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
    counted = request.approvals if approval else request.answered_by
    noun = "approvals" if approval else "answers"
    lines += [
        f"- **quorum**: {len(counted)} of {request.quorum} {noun} so far",
        f"- **{'eligible approvers' if approval else 'who may answer'}**: "
        + ", ".join(request.approvers),
    ]
    for email, why in request.excluded.items():
        lines.append(f"- **not {email}**: {why}")
    if request.deadline:
        lines.append(f"- **deadline**: {request.deadline:%Y-%m-%d %H:%M %Z}")
    if request.evidence_ids:
        lines.append(f"- **evidence**: {', '.join(f'#{i}' for i in request.evidence_ids)}")
    if refusal:
        lines.append(f"- **your last answer was not counted**: {refusal}")
    if request.details:
        lines += ["", request.details]
    if approval:
        how = (
            f"Approve in Slack, with `aims approve {request.id} --as EMAIL`, or here: type your "
            "email, your decision and the personal code you were sent for this request (without "
            "it the decision is refused), then press Resume. Rejecting needs a comment. The run "
            "waits on until the quorum is reached or someone rejects."
        )
    else:
        how = (
            f"Answer in Slack (the Answer button), with `aims answer {request.id} --as EMAIL "
            "--set field=value`, or here: type your email, the personal code you were sent for "
            "this ask (a code works once) and your answer, then press Resume."
        )
    return "\n".join([*lines, "", how])


def ask(spec: approvals.ApprovalRequestIn) -> AskOutcome:
    """Ask, wait suspended (no process kept), and return the outcome the database holds."""
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
            return outcome_of(request)
        logger.info(
            "waiting for %s (round %d): %d of %d %s",
            request.subject,
            request.round,
            len(request.approvals) + len(request.answered_by),
            request.quorum,
            "approvals" if request.kind == APPROVAL_KIND else f"answers ({request.kind})",
        )
        answer = suspend_flow_run(
            wait_for_input=ui_form(settings, request, refusal),
            key=wait_key(request_id, request.round),
            timeout=None,
        )
        refusal = None
        if _claimed(answer) not in ("", "-"):
            refusal = answer_from_ui(settings, request, answer)
        approvals.next_round(UnitOfWork(settings), request_id, expected_round=request.round)


def _claimed(answer: RunInput) -> str:
    return str(getattr(answer, "approver", None) or getattr(answer, "person", "") or "").strip()


def answer_from_ui(
    settings: Settings, request: approvals.ApprovalRequestOut, answer: RunInput
) -> str | None:
    """A UI answer goes through the same service; a refusal is audited there and we wait on.
    Returns why it was not counted, for the next form to say."""
    logger = get_run_logger()
    person = _claimed(answer)
    data: dict[str, Any] = {"request_id": request.id, "person": person, "code": answer.code}
    if request.kind == APPROVAL_KIND:
        data |= {"outcome": answer.decision, "comment": answer.comment}
    else:
        fields = answer_model(settings, request.kind, request.subject).model_fields
        given = {f: getattr(answer, f) for f in fields if getattr(answer, f) is not None}
        data |= {"outcome": Outcome.answer, "answer": given}
    try:
        result = approvals.decide(
            UnitOfWork(settings),
            approvals.DecisionIn.model_validate(data),
            Actor(who=f"ui-claim:{person.lower()}", channel="ui"),
        )
        logger.info("UI answer recorded: %s", result.summary())
        # Same follow-up as any channel, minus the resume: this run is the one that goes on.
        from notifications.interactions import after_decision

        after_decision(settings, result, resume=lambda *_: None)
    except approvals.Refused as exc:
        logger.warning("UI answer refused: %s", exc)
        return str(exc)
    except Exception as exc:  # bad input typed into the form: refuse, keep waiting
        logger.warning("UI answer not accepted: %s", exc)
        return str(exc)
    return None


def outcome_of(request: approvals.ApprovalRequestOut) -> AskOutcome:
    return AskOutcome(
        request_id=request.id,
        kind=request.kind,
        status=str(request.status),
        approved=request.status in ("approved", "answered"),
        approvals=request.approvals,
        rejections=request.rejections,
        comments=[d.comment for d in request.decisions if d.comment],
        answers=[
            {**(d.answer or {}), "answered_by": d.person, "answered_in": d.channel}
            for d in request.decisions
            if d.outcome is Outcome.answer
        ],
    )
