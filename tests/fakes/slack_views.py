"""Modal payloads shaped as Slack sends them: a `view_submission` of a view the bridge opened.

`view_submission_payload(user, view, answers)` fills the view's input blocks the way a person
would (Slack sends every input block in `view.state.values`, empty ones with a null value) and
returns the payload; sign it with `fakes.slack_signing.signed_interaction` like a click.
`reject_submission_payload(user, request_id, reason)` is a Slack rejection: the reason modal,
submitted.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from notifications.fake_slack import TEAM_ID


def _option(value: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": value, "emoji": True}, "value": value}


def _state(element: dict[str, Any], answer: Any) -> dict[str, Any]:
    """One element's entry in `view.state.values`, per element type."""
    kind = element["type"]
    if kind in ("static_select", "external_select", "radio_buttons"):
        picked = None if answer is None else _option(str(answer))
        return {"type": kind, "selected_option": picked}
    if kind in ("multi_static_select", "multi_external_select", "checkboxes"):
        return {"type": kind, "selected_options": [_option(str(a)) for a in answer or []]}
    if kind == "datepicker":
        value = answer.isoformat() if isinstance(answer, date) else answer
        return {"type": kind, "selected_date": value}
    if kind == "datetimepicker":
        value = int(answer.timestamp()) if isinstance(answer, datetime) else answer
        return {"type": kind, "selected_date_time": value}
    if kind == "number_input":
        return {"type": kind, "value": None if answer is None else str(answer)}
    return {"type": kind, "value": answer}


def view_state(view: dict[str, Any], answers: dict[str, Any]) -> dict[str, Any]:
    """`view.state.values` for `view` with `answers` (block id → what the person entered)."""
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        if block.get("type") != "input":
            continue
        element = block["element"]
        values[block["block_id"]] = {
            element["action_id"]: _state(element, answers.get(block["block_id"]))
        }
    return values


def view_submission_payload(
    user_id: str, view: dict[str, Any], answers: dict[str, Any], team_id: str = TEAM_ID
) -> dict[str, Any]:
    """The `view_submission` Slack sends when `user_id` submits `view` filled with `answers`."""
    view_id = f"V{uuid.uuid4().hex[:10].upper()}"
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "aims-demo"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": team_id},
        "api_app_id": "A0AIMSAPP",
        "token": "deprecated-verification-token",
        "trigger_id": f"2.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:16]}",
        "view": {
            **view,
            "id": view_id,
            "team_id": team_id,
            "state": {"values": view_state(view, answers)},
            "hash": uuid.uuid4().hex[:20],
            "app_id": "A0AIMSAPP",
            "bot_id": "B0AIMSBOT",
        },
        "response_urls": [],
        "is_enterprise_install": False,
    }


class _Ask:
    def __init__(self, request_id: int, round: int) -> None:
        self.id, self.round, self.title, self.details = request_id, round, "Reject", ""


def reject_submission_payload(
    user_id: str, request_id: int, reason: str, round: int = 1
) -> dict[str, Any]:
    """The reject modal the bridge opens for a Reject click (`ask_modals.reject_modal`),
    submitted by `user_id` with `reason`: how a rejection reaches the bridge from Slack."""
    from aims_core.ask_modals import REASON_BLOCK_ID, reject_modal

    view = reject_modal(_Ask(request_id, round))
    return view_submission_payload(user_id, view, {REASON_BLOCK_ID: reason})
