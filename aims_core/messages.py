"""The Slack messages of human decisions, as Block Kit plain dicts.

Pure functions of plain values: no database, no slack_sdk. They live in aims_core (not in
notifications/) because the outbox service renders a message when it queues it, inside the
caller's transaction, and the domain must not import the delivery layer. The delivery step sends
whatever blocks the row holds.

What a message may carry follows from who reads it: an approval DM goes to one person, so it can
offer their personal code for the Prefect UI form (stored as a placeholder, rendered only at
delivery); the Approve / Reject buttons carry only the request id (`value`), because the bridge
trusts nothing else in a click. Approve is recorded at once; Reject opens a modal asking why
(`aims_core/ask_modals.py`). An ask of another kind has one Answer button opening its form.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, Field

APPROVE_ACTION_ID: Final = "aims_approve"
REJECT_ACTION_ID: Final = "aims_reject"
ANSWER_ACTION_ID: Final = "aims_answer"
#: The kind of an ask that is an approval (`models.APPROVAL_KIND`); others are answered in a form.
APPROVAL: Final = "approval"
DECISION_BLOCK_ID: Final = "aims_decision"

#: Stands for the recipient's personal code in a stored message. The code itself is rendered only
#: at delivery (from the evidence key, outside the database, and the person's code counter): the
#: database keeps neither the code nor its hash, in a notification row or anywhere else.
PERSONAL_CODE_PLACEHOLDER: Final = "{aims:personal-code}"

# Slack's limits (Block Kit reference): header 150 chars, section text 3,000, 10 fields.
HEADER_MAX: Final = 150
SECTION_MAX: Final = 3000
FIELD_MAX: Final = 2000
EVIDENCE_SHOWN: Final = 10
FALLBACK_MAX: Final = 3000

Block = dict[str, Any]


class EvidenceLine(BaseModel):
    id: int
    title: str
    kind: str
    sha256: str


class ApprovalView(BaseModel):
    """What an approver needs to see to decide, read from the database by the outbox service."""

    request_id: int
    kind: str = APPROVAL
    title: str
    subject: str
    activity: str
    system: str | None = None
    risk_tier: str | None = None
    stage: str | None = None
    details: str = ""
    quorum: int
    approver_count: int
    round: int = 1
    deadline: datetime | None = None
    requester: str | None = Field(default=None, description="A Slack mention or a name.")
    evidence: list[EvidenceLine] = Field(default_factory=list)
    flow_run_id: str | None = None


class DecisionLine(BaseModel):
    who: str = Field(description="A Slack mention (<@U…>) or the person's name.")
    outcome: Literal["approve", "reject", "answer"]
    at: datetime
    comment: str = ""


class SlackMessage(BaseModel):
    """A message as the outbox stores it: fallback text (notifications, logs) and blocks."""

    text: str
    blocks: list[Block]


# --- text helpers ------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Slack mrkdwn control characters: user text must not turn into <!channel> or a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fmt_utc(value: datetime) -> str:
    """`2026-11-24 10:15 UTC`; naive values (SQLite gives them back) are UTC by convention."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def mention(slack_user_id: str | None, name: str) -> str:
    return f"<@{slack_user_id}>" if slack_user_id else escape(name)


_MD_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_MD_BOLD = re.compile(r"\*\*(.+?)\*\*")
_MD_HEADING = re.compile(r"^#{1,6}\s+(.+)$", re.MULTILINE)


def md_to_mrkdwn(text: str) -> str:
    """The common Markdown of `details` (shared with the Prefect UI form) as Slack mrkdwn."""
    text = escape(text)
    text = _MD_HEADING.sub(r"*\1*", text)
    text = _MD_BOLD.sub(r"*\1*", text)
    return _MD_LINK.sub(lambda m: f"<{m.group(2).replace('|', '%7C')}|{m.group(1)}>", text)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _header(title: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(title, HEADER_MAX)}}


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SECTION_MAX)}}


def _context(*texts: str) -> Block:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": _clip(t, FIELD_MAX)} for t in texts[:10]],
    }


# --- blocks shared by every message about one request ------------------------------------------


def _summary(view: ApprovalView) -> Block:
    fields = [f"*Subject*\n`{escape(view.subject)}`"]
    if view.system:
        fields.append(f"*System*\n{escape(view.system)}")
    if view.risk_tier:
        fields.append(f"*Risk tier*\n{escape(view.risk_tier)}")
    if view.stage:
        fields.append(f"*Current stage*\n{escape(view.stage)}")
    fields.append(f"*Quorum*\n{view.quorum} of {view.approver_count} approvers")
    fields.append(f"*Deadline*\n{fmt_utc(view.deadline) if view.deadline else 'none'}")
    if view.requester:
        fields.append(f"*Requested by*\n{view.requester}")
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": _clip(f, FIELD_MAX)} for f in fields[:10]],
    }


def _evidence(view: ApprovalView) -> Block:
    if not view.evidence:
        return _section("*Evidence*\n_none attached_")
    lines = [
        f"• #{e.id} {escape(e.title)} — `{escape(e.kind)}`, sha256 `{e.sha256[:12]}`"
        for e in view.evidence[:EVIDENCE_SHOWN]
    ]
    more = len(view.evidence) - EVIDENCE_SHOWN
    if more > 0:
        lines.append(f"• … and {more} more")
    where = f"system:{view.system}" if view.system else view.subject
    lines.append(f"_`aims evidence list --subject {escape(where)}` shows them all._")
    return _section("*Evidence*\n" + "\n".join(lines))


def _meta(view: ApprovalView) -> str:
    parts = [f"Request #{view.request_id}", f"round {view.round}", f"activity `{view.activity}`"]
    if view.flow_run_id:
        parts.append(f"Prefect run `{view.flow_run_id}`")
    return " · ".join(parts)


def _body(view: ApprovalView) -> list[Block]:
    blocks = [_header(view.title), _summary(view)]
    if view.details.strip():
        blocks.append(_section(md_to_mrkdwn(view.details.strip())))
    blocks.append(_evidence(view))
    return blocks


def decision_buttons(request_id: int, kind: str = APPROVAL) -> Block:
    """Approve / Reject for an approval, one Answer button for an ask of another kind. `value`
    is the request id and nothing else: the bridge trusts only it."""
    value = str(request_id)
    if kind != APPROVAL:
        answer = {
            "type": "button",
            "action_id": ANSWER_ACTION_ID,
            "text": {"type": "plain_text", "text": "Answer"},
            "style": "primary",
            "value": value,
        }
        return {"type": "actions", "block_id": DECISION_BLOCK_ID, "elements": [answer]}
    return {
        "type": "actions",
        "block_id": DECISION_BLOCK_ID,
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION_ID,
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": value,
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION_ID,
                "text": {"type": "plain_text", "text": "Reject"},
                "style": "danger",
                "value": value,
            },
        ],
    }


def _code_context(with_code: bool, kind: str = APPROVAL) -> Block:
    if with_code:
        return _context(
            "Your personal code for this request in the Prefect UI form: "
            f"`{PERSONAL_CODE_PLACEHOLDER}` (sent only to you; don't share it)."
        )
    if kind != APPROVAL:
        return _context("Answer here, or with `aims answer` on the command line.")
    return _context("Decide here, or with `aims approve` / `aims reject` on the command line.")


def _fallback(text: str) -> str:
    return _clip(text, FALLBACK_MAX)


def render_placeholder(blocks: list[Block], value: str) -> list[Block]:
    """The blocks with the personal-code placeholder replaced in every string (a deep copy)."""

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return node.replace(PERSONAL_CODE_PLACEHOLDER, value)
        if isinstance(node, list):
            return [walk(n) for n in node]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node

    return [walk(b) for b in blocks]


# --- the messages ------------------------------------------------------------------------------


def approval_request_message(view: ApprovalView, *, with_code: bool) -> SlackMessage:
    """The DM asking one approver to decide; `with_code` adds the personal-code placeholder."""
    blocks = [*_body(view), _context(_meta(view)), _code_context(with_code, view.kind)]
    blocks.append(decision_buttons(view.request_id, view.kind))
    deadline = f", deadline {fmt_utc(view.deadline)}" if view.deadline else ""
    asked = "Approval requested" if view.kind == APPROVAL else "Your answer is requested"
    text = f"{asked}: {view.title} ({view.subject}){deadline}"
    return SlackMessage(text=_fallback(text), blocks=blocks)


def reminder_message(view: ApprovalView, n: int, *, with_code: bool) -> SlackMessage:
    """Reminder `n` to an approver who has not decided yet: the same card, buttons included."""
    due = f" Deadline: {fmt_utc(view.deadline)}." if view.deadline else ""
    intro = _section(
        f":alarm_clock: *Reminder {n}:* this request is waiting for your decision.{due}"
    )
    blocks = [intro, *_body(view), _context(_meta(view)), _code_context(with_code, view.kind)]
    blocks.append(decision_buttons(view.request_id, view.kind))
    text = f"Reminder {n}: approval waiting for you: {view.title} ({view.subject})"
    return SlackMessage(text=_fallback(text), blocks=blocks)


def decision_line(d: DecisionLine) -> str:
    if d.outcome == "approve":
        line = f":white_check_mark: Approved by {d.who} at {fmt_utc(d.at)}"
    elif d.outcome == "answer":
        line = f":memo: Answered by {d.who} at {fmt_utc(d.at)}"
    else:
        line = f":x: Rejected by {d.who} at {fmt_utc(d.at)}"
    if d.comment.strip():
        line += f": “{escape(d.comment.strip())}”"
    return line


def decision_update_message(
    view: ApprovalView,
    status: str,
    decisions: list[DecisionLine],
    decided_at: datetime | None,
) -> SlackMessage:
    """The final state of an approval message: same header, the outcome, no buttons left."""
    lines = [decision_line(d) for d in decisions]
    if status == "cancelled":
        when = f" at {fmt_utc(decided_at)}" if decided_at else ""
        lines.append(f":no_entry_sign: Request cancelled{when}.")
    elif not lines:
        lines.append(f"Request {escape(status)}.")
    blocks = [*_body(view), _section("\n".join(lines)), _context(_meta(view))]
    text = f"{view.title}: {status}. " + "; ".join(
        re.sub(r"^:[a-z_]+: ", "", line) for line in lines
    )
    return SlackMessage(text=_fallback(text), blocks=blocks)


def progress_update_message(
    view: ApprovalView, decision: DecisionLine, approvals: int
) -> SlackMessage:
    """A decided approver's own message while the quorum is not met yet: no buttons left."""
    waiting = max(view.quorum - approvals, 0)
    noun = "approval(s)" if view.kind == APPROVAL else "answer(s)"
    status = f"Waiting for {waiting} more {noun}: {approvals} of {view.quorum}."
    blocks = [
        *_body(view),
        _section(decision_line(decision) + "\n" + status),
        _context(_meta(view)),
    ]
    text = f"{view.title}: {re.sub(r'^:[a-z_]+: ', '', decision_line(decision))}. {status}"
    return SlackMessage(text=_fallback(text), blocks=blocks)


def escalation_message(
    view: ApprovalView, waiting_on: list[str], approvals: int, *, overdue: bool
) -> SlackMessage:
    """To a manager or the governance lead: who is holding the request up. No buttons (the
    reader is not necessarily an eligible approver)."""
    state = "is past its deadline" if overdue else "needs attention"
    who = ", ".join(waiting_on) if waiting_on else "nobody (quorum reachable by decided approvers)"
    intro = _section(
        f":rotating_light: *Escalation:* this request {state}. "
        f"{approvals} of {view.quorum} {'approvals' if view.kind == APPROVAL else 'answers'} "
        f"so far; waiting on {who}."
    )
    blocks = [intro, *_body(view), _context(_meta(view))]
    text = f"Escalation: {view.title} ({view.subject}) {state}; waiting on " + (
        ", ".join(waiting_on) or "nobody"
    )
    return SlackMessage(text=_fallback(text), blocks=blocks)
