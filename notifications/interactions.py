"""One Slack button click, from payload to committed decision: shared by HTTP and Socket Mode.

Both transports hand the parsed `block_actions` payload to `handle_interaction`, which decides
through the same approval service the CLI and the Prefect UI use, and returns only after the
decision is committed: the HTTP route answers 200, and the Socket Mode listener acks the envelope,
only then, so an acknowledged click is never lost. Everything slow (updating the Slack message,
delivering the outbox, resuming the Prefect run) is `FollowUp`, run after the answer.

What is decided is taken from the button's value (the request id) and the Slack user who clicked:
nothing else in the payload is trusted. Slack shows any non-200 answer to the user as an error, so a
refusal (not an approver, own request, closed, ...) is a 200 with a message saying why; only a
payload that cannot have come from our buttons is a 400.

Approve is decided at the click. Reject and Answer open a modal (`aims_core/ask_modals.py`) with
`views.open`, inside the request while the click's trigger id is valid (Slack's 3 s; our timeout
is 2 s); when it cannot open, the clicker is told privately how else to answer (the CLI, the
Prefect UI form). The modal's `view_submission` comes back here on the same transports, is read
against the ask's model and decided by the same service: a field's problem is answered inline
(`response_action: errors`, nothing written), anything final (recorded, already answered,
closed, refused) replaces the modal with a view saying so (`response_action: update`). The
answer is committed before that response goes out.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from aims_core import ask_forms
from aims_core.ask_modals import (
    ANSWER_CALLBACK_ID,
    REASON_BLOCK_ID,
    REJECT_CALLBACK_ID,
    VALUE_ACTION_ID,
    answer_modal,
    errors_for,
    errors_from_validation,
    notice_modal,
    options_for,
    read_meta,
    reject_modal,
    values_from_state,
)
from aims_core.errors import AimsError, InvalidInput, NotFound
from aims_core.messages import ANSWER_ACTION_ID, APPROVE_ACTION_ID, REJECT_ACTION_ID
from aims_core.models import APPROVAL_KIND, ApprovalStatus, Outcome
from aims_core.ports import ResumeOutcome
from aims_core.services import approvals, people, reconcile
from aims_core.services.outbox import queue_decision_updates
from aims_core.settings import Settings
from aims_core.uow import Actor, Channel, UnitOfWork
from deployments.prefect_runs import PrefectRuns
from notifications.slack import deliver_due, make_client
from notifications.slack_identities import slack_user

log = logging.getLogger(__name__)

# The buttons' action ids come from the one place that builds the buttons. Approve decides at
# once; the others open a modal whose submission carries the answer (Reject: the reason).
ACTIONS: dict[str, Outcome] = {
    APPROVE_ACTION_ID: Outcome.approve,
    REJECT_ACTION_ID: Outcome.reject,
    ANSWER_ACTION_ID: Outcome.answer,
}
MODAL_ACTIONS = frozenset({REJECT_ACTION_ID, ANSWER_ACTION_ID})
#: Seconds for `views.open`: the click's trigger id is valid for 3 s, and the answer to the
#: click must still go out within Slack's 3 s.
MODAL_TIMEOUT = 2.0
_REQUEST_ID = re.compile(r"^[1-9][0-9]{0,9}$")
_MAX_ID = 2**31 - 1  # the ids are INTEGER columns: a bigger value is no id of ours

REFUSAL_TEXT: dict[str, str] = {
    "not-eligible": "you are not one of the approvers of request #{id}",
    "requester": "you made request #{id} yourself: someone else must decide it",
    "training": "your required training is not current, so you cannot decide request #{id} "
    "until it is renewed",
    "closed": "request #{id} is no longer open",
    "already-decided": "you have already decided request #{id}; a decision cannot be changed",
    "unknown-request": "there is no approval request #{id}",
    "unknown-person": "your Slack account is not linked to a person in AIMS (if your Slack "
    "email is your AIMS email, it is linked in a moment: click again; else ask an AIMS admin to "
    "set your Slack user id)",
    "bad-code": "the personal code does not match request #{id}",
    "moved-on": "request #{id} has moved on to a new round since this form was opened: answer "
    "from its newest message",
}


# --- the payload, as far as we read it -------------------------------------------------------


class _User(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(pattern=r"^[A-Z0-9]{2,32}$")
    team_id: str | None = None


class _Team(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None


class _Action(BaseModel):
    model_config = ConfigDict(extra="ignore")
    action_id: str = Field(max_length=255)
    value: str | None = Field(default=None, max_length=2000)
    block_id: str | None = None


class _Container(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message_ts: str | None = None
    channel_id: str | None = None


class _SlackChannel(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None


class BlockActionsPayload(BaseModel):
    """The parts of Slack's `block_actions` payload the bridge reads; the rest is ignored."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["block_actions"]
    user: _User
    team: _Team | None = None
    actions: list[_Action] = Field(min_length=1, max_length=50)
    container: _Container | None = None
    channel: _SlackChannel | None = None
    trigger_id: str | None = Field(default=None, max_length=255)

    @property
    def team_id(self) -> str | None:
        return (self.team.id if self.team else None) or self.user.team_id

    @property
    def channel_id(self) -> str | None:
        return (self.channel.id if self.channel else None) or (
            self.container.channel_id if self.container else None
        )


class _ViewState(BaseModel):
    model_config = ConfigDict(extra="ignore")
    values: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    callback_id: str = Field(default="", max_length=255)
    private_metadata: str = Field(default="", max_length=3000)
    state: _ViewState = Field(default_factory=_ViewState)


class ViewSubmissionPayload(BaseModel):
    """The parts of a `view_submission` (a modal's Submit) the bridge reads."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["view_submission"]
    user: _User
    team: _Team | None = None
    view: _View

    @property
    def team_id(self) -> str | None:
        return (self.team.id if self.team else None) or self.user.team_id


class BlockSuggestionPayload(BaseModel):
    """An `external_select` asking for options as the person types (choices past 100)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["block_suggestion"]
    user: _User
    team: _Team | None = None
    block_id: str = Field(max_length=255)
    value: str = Field(default="", max_length=2000)
    view: _View

    @property
    def team_id(self) -> str | None:
        return (self.team.id if self.team else None) or self.user.team_id


# --- the result --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InteractionResult:
    """What the transport answers (`status_code`, `message`) and what follows up afterwards."""

    status_code: int
    message: str
    decision: approvals.DecisionResult | None = None
    refused_reason: str | None = None
    request_id: int | None = None
    user_id: str | None = None
    channel_id: str | None = None
    ignored: bool = False  # not one of our buttons (or not a button): nothing to do
    #: What Slack must get back verbatim (a modal's `response_action`, suggested options).
    body: dict[str, Any] | None = None

    def response_body(self) -> dict[str, Any]:
        """`body`, else an ephemeral reply (harmless: Slack ignores a block_actions body)."""
        if self.body is not None:
            return self.body
        return {"response_type": "ephemeral", "replace_original": False, "text": self.message}


def _bad(message: str) -> InteractionResult:
    return InteractionResult(status_code=400, message=message)


def handle_interaction(
    settings: Settings, payload: dict[str, Any], channel: Channel = "slack"
) -> InteractionResult:
    """Decide what the click says, commit it, and say how it went.

    Returns only after the decision (or the service's refusal audit event) is committed. Raises
    only when the database fails (or Slack cannot say which workspace the bot token is in): the
    transport must then not acknowledge, so Slack shows an error (HTTP) or redelivers (Socket
    Mode), and nothing is half-recorded. A click from another team than ours is a 400.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        return _bad("malformed payload: not a Slack interaction")
    kind = payload["type"]
    if kind not in _PAYLOADS:
        # Shortcuts, view closings, ...: not ours. 200 so Slack does not show an error.
        return InteractionResult(status_code=200, message="", ignored=True)
    try:
        parsed = _PAYLOADS[kind].model_validate(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        return _bad(f"malformed {kind} payload: {where}: {err.get('msg')}")
    team_id = parsed.team_id
    if not team_id:
        return _bad(f"malformed {kind} payload: no team id")
    expected_team = workspace_team(settings)
    if expected_team is None:
        return InteractionResult(
            status_code=503,
            message="Slack interactions need the workspace they come from: set "
            "AIMS_SLACK_TEAM_ID (T...) or AIMS_SLACK_BOT_TOKEN (its workspace is used)",
        )
    if team_id != expected_team:
        return _bad(f"interaction from team {team_id}, not this workspace")
    if isinstance(parsed, ViewSubmissionPayload):
        return _submission(settings, parsed, team_id, channel)
    if isinstance(parsed, BlockSuggestionPayload):
        return _suggestions(settings, parsed)
    assert isinstance(parsed, BlockActionsPayload)

    action = next((a for a in parsed.actions if a.action_id in ACTIONS), None)
    if action is None:
        return InteractionResult(status_code=200, message="", ignored=True)
    value = (action.value or "").strip()
    if not _REQUEST_ID.match(value) or int(value) > _MAX_ID:
        return _bad(f"malformed button value {action.value[:40]!r}: not a request id")
    request_id = int(value)
    user_id = parsed.user.id
    outcome = ACTIONS[action.action_id]
    context = {"request_id": request_id, "user_id": user_id, "channel_id": parsed.channel_id}
    actor = Actor(who=f"slack:{user_id}", channel=channel)

    email = approvals.person_for_slack_user(UnitOfWork(settings), user_id)
    if email is None:
        _audit_unknown_user(settings, actor, request_id, user_id, team_id, outcome)
        return _refused("unknown-person", **context)
    if action.action_id in MODAL_ACTIONS:
        return _open_modal(settings, parsed, action.action_id, request_id, email, context)
    data = approvals.DecisionIn(request_id=request_id, person=email, outcome=outcome)
    try:
        result = approvals.decide(UnitOfWork(settings), data, actor)
    except approvals.Refused as exc:
        return _refused(exc.reason, detail=str(exc), **context)
    except AimsError as exc:  # e.g. a request that vanished: a refusal all the same
        log.info("slack decision on #%s by %s refused: %s", request_id, user_id, exc)
        return InteractionResult(
            status_code=200, message=f"Not recorded: {exc}", refused_reason="error", **context
        )
    return InteractionResult(
        status_code=200, message=_decided_text(result, outcome), decision=result, **context
    )


_PAYLOADS: dict[str, type[BaseModel]] = {
    "block_actions": BlockActionsPayload,
    "view_submission": ViewSubmissionPayload,
    "block_suggestion": BlockSuggestionPayload,
}


# --- modals: open one for a click, take its submission -------------------------------------------


def modal_client(settings: Settings) -> WebClient | None:
    """A client for `views.open` inside a click's request: short timeout, no retry sleeps."""
    return make_client(settings, timeout=MODAL_TIMEOUT, rate_limit_retries=0, connection_retries=0)


def _other_channels(request_id: int, email: str, action_id: str) -> str:
    if action_id == REJECT_ACTION_ID:
        cli = f'`aims reject {request_id} --as {email} --comment "why"`'
    else:
        cli = (
            f"`aims answer {request_id} --as {email} --set FIELD=VALUE ...` (`aims asks show "
            f"{request_id}` lists the fields)"
        )
    return (
        f"answer with {cli} on the command line, or in the Prefect UI form of the waiting run "
        "with your personal code"
    )


def _open_modal(
    settings: Settings,
    parsed: BlockActionsPayload,
    action_id: str,
    request_id: int,
    email: str,
    context: dict[str, Any],
) -> InteractionResult:
    """`views.open` for a Reject or Answer click, or a private message saying how else to
    answer. Nothing is decided here: the modal's submission is (`_submission`)."""
    try:
        request = approvals.get_request(UnitOfWork(settings), request_id)
    except NotFound:
        return _refused("unknown-request", **context)
    if request.status is not ApprovalStatus.open:
        return _refused("closed", **context)
    if email in {d.person for d in request.decisions}:
        return _refused("already-decided", **context)
    try:
        if action_id == REJECT_ACTION_ID:
            view = reject_modal(request)
        else:
            model = ask_forms.answer_model(settings, request.kind, request.subject)
            form = ask_forms.FORM_TITLES.get(request.kind, "")
            view = answer_modal(request, model, form=form)
    except AimsError as exc:  # no form for this kind, or a model no modal can carry
        log.warning("no modal for request #%s: %s", request_id, exc)
        return _modal_fallback(
            f"this form cannot be shown in Slack ({exc})", action_id, email, context
        )
    client = modal_client(settings)
    if client is None or not parsed.trigger_id:
        return _modal_fallback("Slack is not configured to open forms", action_id, email, context)
    try:
        client.views_open(trigger_id=parsed.trigger_id, view=view)
    except SlackApiError as exc:
        why = str(exc.response.get("error") or "refused")
        log.warning("views.open for request #%s refused: %s", request_id, why)
        return _modal_fallback(f"Slack did not open the form ({why})", action_id, email, context)
    except (SlackClientError, OSError, HTTPException) as exc:  # timeout, connection refused
        log.warning("views.open for request #%s failed: %s", request_id, exc)
        return _modal_fallback("Slack did not answer in time", action_id, email, context)
    return InteractionResult(status_code=200, message="", **context)


def _modal_fallback(
    why: str, action_id: str, email: str, context: dict[str, Any]
) -> InteractionResult:
    """The clicker is told privately (FollowUp: chat.postEphemeral) where else to answer."""
    rid = context["request_id"]
    return InteractionResult(
        status_code=200,
        message=f"Could not open the form for request #{rid}: {why}. Nothing is recorded yet: "
        + _other_channels(rid, email, action_id)
        + ".",
        **context,
    )


def _notice(title: str, text: str) -> dict[str, Any]:
    return {"response_action": "update", "view": notice_modal(title, text)}


def _submission(
    settings: Settings, parsed: ViewSubmissionPayload, team_id: str, channel: Channel
) -> InteractionResult:
    """A modal's Submit: read against the ask's model and decided by the approvals service.

    Problems with a field: `response_action: errors` on its block, nothing written. Final
    outcomes (recorded, already answered, closed, refused) replace the modal with a view saying
    so; refusals are audited by the service, as for clicks."""
    callback = parsed.view.callback_id
    if callback not in (ANSWER_CALLBACK_ID, REJECT_CALLBACK_ID):
        return InteractionResult(status_code=200, message="", ignored=True)
    meta = read_meta(parsed.view.private_metadata)
    if meta is None or meta.request_id > _MAX_ID:
        return _bad("malformed view_submission payload: view.private_metadata names no request")
    rid, user_id = meta.request_id, parsed.user.id
    context: dict[str, Any] = {"request_id": rid, "user_id": user_id, "channel_id": None}
    actor = Actor(who=f"slack:{user_id}", channel=channel)
    rejecting = callback == REJECT_CALLBACK_ID
    outcome = Outcome.reject if rejecting else Outcome.answer

    email = approvals.person_for_slack_user(UnitOfWork(settings), user_id)
    if email is None:
        _audit_unknown_user(settings, actor, rid, user_id, team_id, outcome)
        return _final(_refused("unknown-person", **context), "Not recorded")
    try:
        kind, subject, round_ = approvals.ask_header(UnitOfWork(settings), rid)
    except NotFound:
        return _final(_refused("unknown-request", **context), "Not recorded")
    if round_ != meta.round:
        return _final(_refused("moved-on", **context), "Not recorded")
    state = parsed.view.state.values
    if rejecting:
        blocks = [REASON_BLOCK_ID]
        reason = state.get(REASON_BLOCK_ID, {}).get(VALUE_ACTION_ID, {}).get("value") or ""
        data = approvals.DecisionIn(
            request_id=rid, person=email, outcome=outcome, comment=str(reason)
        )
    else:
        try:
            model = ask_forms.answer_model(settings, kind, subject)
        except AimsError as exc:
            return _final(_refused("error", detail=str(exc), **context), "Not recorded")
        blocks = list(model.model_fields)
        values = values_from_state(model, state)
        try:  # every field's problem at once, before the service (which says only the first)
            model.model_validate(values)
        except ValidationError as exc:
            return InteractionResult(
                status_code=200, message="", body=errors_from_validation(exc, blocks), **context
            )
        data = approvals.DecisionIn(request_id=rid, person=email, outcome=outcome, answer=values)
    try:
        result = approvals.decide(UnitOfWork(settings), data, actor)
    except InvalidInput as exc:
        field = (exc.field or "").removeprefix("answer.")
        where = field if field in blocks else blocks[0]
        return InteractionResult(
            status_code=200, message="", body=errors_for(where, exc.message), **context
        )
    except approvals.Refused as exc:
        title = {"already-decided": "Already answered", "closed": "Closed"}.get(exc.reason)
        return _final(_refused(exc.reason, detail=str(exc), **context), title or "Not recorded")
    except AimsError as exc:
        log.info("slack answer on #%s by %s refused: %s", rid, user_id, exc)
        return _final(_refused("error", detail=str(exc), **context), "Not recorded")
    text = _decided_text(result, outcome)
    title = "Recorded" if result.recorded else "Already answered"
    return InteractionResult(
        status_code=200,
        message=text,
        decision=result,
        body=_notice(title, text),
        **context,
    )


def _final(result: InteractionResult, title: str) -> InteractionResult:
    """A refusal as the view that replaces the modal (the modal cannot fix it)."""
    return InteractionResult(
        status_code=result.status_code,
        message=result.message,
        refused_reason=result.refused_reason,
        request_id=result.request_id,
        user_id=result.user_id,
        channel_id=result.channel_id,
        body=_notice(title, result.message),
    )


def _suggestions(settings: Settings, parsed: BlockSuggestionPayload) -> InteractionResult:
    """The options of an `external_select` (a choice of more than 100) matching the typed text,
    read from the ask's model; none for anything that is not one of our modals."""
    meta = read_meta(parsed.view.private_metadata)
    options: list[dict[str, Any]] = []
    if meta is not None and parsed.view.callback_id == ANSWER_CALLBACK_ID:
        try:
            request = approvals.get_request(UnitOfWork(settings), meta.request_id)
            if request.kind != APPROVAL_KIND:
                model = ask_forms.answer_model(settings, request.kind, request.subject)
                options = options_for(model, parsed.block_id, parsed.value)
        except AimsError:
            options = []
    return InteractionResult(status_code=200, message="", ignored=True, body={"options": options})


# (Web API base URL, SHA-256 of the bot token) -> the team id auth.test answered for it.
_learned_teams: dict[tuple[str, str], str] = {}


def workspace_team(settings: Settings) -> str | None:
    """The team id whose clicks count: AIMS_SLACK_TEAM_ID, else the bot token's workspace (one
    auth.test per token and process), else None (nothing to compare with: clicks are refused).

    Raises when Slack cannot tell (unreachable, token refused): the click is then not
    acknowledged, as when the database fails, and Slack shows an error or redelivers."""
    if settings.slack_team_id and settings.slack_team_id.strip():
        return settings.slack_team_id.strip()
    client = make_client(settings)
    if client is None or not client.token:
        return None
    key = (client.base_url, hashlib.sha256(client.token.encode()).hexdigest())
    team = _learned_teams.get(key)
    if team is None:
        answer = client.auth_test()
        team = str(answer.get("team_id") or "")
        if not team:
            raise RuntimeError("Slack's auth.test named no team for the bot token")
        _learned_teams[key] = team
    return team


def _refused(
    reason: str,
    *,
    request_id: int,
    user_id: str,
    channel_id: str | None,
    detail: str = "",
) -> InteractionResult:
    text = REFUSAL_TEXT.get(reason)
    why = text.format(id=request_id) if text else (detail or reason)
    log.info("slack decision on #%s by %s refused: %s", request_id, user_id, reason)
    return InteractionResult(
        status_code=200,
        message=f"Not recorded: {why}.",
        refused_reason=reason,
        request_id=request_id,
        user_id=user_id,
        channel_id=channel_id,
    )


def _decided_text(result: approvals.DecisionResult, outcome: Outcome) -> str:
    rid = result.request_id
    if not result.recorded:
        return f"Your decision on request #{rid} was already recorded."
    if outcome is Outcome.answer:
        done = " The ask is complete." if result.status is ApprovalStatus.answered else ""
        return f"Recorded: your answer to ask #{rid}.{done}"
    verb = "approval" if outcome is Outcome.approve else "rejection"
    if result.status is ApprovalStatus.approved:
        return f"Recorded: request #{rid} is approved ({result.approvals} of {result.quorum})."
    if result.status is ApprovalStatus.rejected:
        return f"Recorded: request #{rid} is rejected."
    return (
        f"Your {verb} of request #{rid} is recorded: {result.approvals} of {result.quorum} "
        "approvals so far."
    )


def _audit_unknown_user(
    settings: Settings,
    actor: Actor,
    request_id: int,
    user_id: str,
    team_id: str,
    outcome: Outcome,
) -> None:
    """A click from a Slack user no Person is linked to: a refusal, and refusals are audited.

    The service cannot write this one (it is never called without a person), so the bridge does.
    """
    uow = UnitOfWork(settings)
    with uow:
        uow.audit(
            actor,
            "approval.refused",
            f"approval:{request_id}",  # the service's subject for a request
            reason="unknown-person",
            person=None,
            outcome=outcome.value,
            message=f"Slack user {user_id} (team {team_id}) is not linked to a person",
            slack_user_id=user_id,
            slack_team_id=team_id,
        )
        uow.commit()


# --- after the answer --------------------------------------------------------------------------

ResumeFn = Callable[[Settings, int], object]


def resume_through_prefect(settings: Settings, request_id: int) -> ResumeOutcome:
    """The decided request's run resumed through the engine (retried briefly: a click can race
    the run's first wait); what fails stays pending for the reconciler."""
    return reconcile.resume_request(
        settings, request_id, PrefectRuns(check_health=False), attempts=5, delay=0.5
    )


def after_decision(
    settings: Settings,
    decision: approvals.DecisionResult,
    *,
    resume: ResumeFn = resume_through_prefect,
    slack_client: WebClient | None = None,
) -> object | None:
    """What follows a new decision on any channel (Slack, Socket Mode, CLI, UI).

    Queue the update of the request's Slack messages (decided: every message loses its buttons;
    partial quorum: the decider's shows it), make one delivery pass (what fails stays queued), and
    resume the waiting run when the request is decided. Each step is best effort: the database
    already holds the decision, and the reconciler resumes what is left. Returns the resume
    outcome, if a resume was due.
    """
    if not decision.recorded:
        return None
    _best_effort("queue message updates", _queue_updates, settings, decision.request_id)
    _best_effort("deliver notifications", deliver_due, settings, slack_client)
    if decision.resume_needed:
        return _best_effort("resume run", resume, settings, decision.request_id)
    return None


def _best_effort(what: str, fn: Callable[..., object], *args: Any) -> object | None:
    try:
        outcome = fn(*args)
        log.debug("follow-up %s: %s", what, outcome)
        return outcome
    except Exception:  # the decision is committed; a failed extra must not hide that
        log.exception("follow-up %s failed", what)
        return None


def _queue_updates(settings: Settings, request_id: int) -> None:
    uow = UnitOfWork(settings)
    with uow:
        queue_decision_updates(uow.session, request_id)
        uow.commit()


@dataclass
class FollowUp:
    """The slow part of a click, run after Slack got its answer (never before).

    Queue the update of the request's Slack messages (the outbox decides which), make one
    delivery pass (what fails stays queued for the delivery flow), tell the clicker privately what
    happened, and resume the waiting Prefect run when the quorum is met. A clicker no person is
    linked to is linked by their Slack profile email (`people.link_from_slack_profile`), so their
    next click counts. Each step is best effort: the database already holds the decision, and
    the reconciler resumes what is left.
    """

    settings: Settings
    resume: ResumeFn = resume_through_prefect
    slack_client: WebClient | None = None  # default: made from the settings (None: no token)

    def __call__(self, result: InteractionResult) -> None:
        if result.message and not result.ignored and result.status_code == 200:
            _best_effort("ephemeral reply", self._ephemeral, result)
        if result.refused_reason == "unknown-person":
            _best_effort("link the Slack user by email", self._link_unknown, result)
        if result.decision is not None:
            after_decision(
                self.settings, result.decision, resume=self.resume, slack_client=self.slack_client
            )

    def _client(self) -> WebClient | None:
        return self.slack_client if self.slack_client is not None else make_client(self.settings)

    def _link_unknown(self, result: InteractionResult) -> str | None:
        """A click from a Slack user nobody is linked to: their Slack profile email (users.info)
        names the person to link, for their next click (this one stays refused)."""
        client = self._client()
        if client is None or not result.user_id:
            return None
        user = slack_user(client, result.user_id)
        if user is None:
            return None
        actor = Actor(who=f"slack:{result.user_id}", channel="slack")
        return people.link_from_slack_profile(UnitOfWork(self.settings), user, actor)

    def _ephemeral(self, result: InteractionResult) -> None:
        """Only the clicker sees this; Slack ignores an interaction's response body."""
        client = self._client()
        if client is None or not result.channel_id or not result.user_id:
            return
        try:
            client.chat_postEphemeral(
                channel=result.channel_id, user=result.user_id, text=result.message
            )
        except SlackApiError as exc:  # e.g. the user left the channel: nothing to repair
            log.warning(
                "ephemeral reply to %s not sent: %s", result.user_id, exc.response.get("error")
            )
