"""Real, correctly signed Slack interaction requests, built the way Slack builds them.

Tests post these bytes to the bridge exactly as Slack would: a form-encoded body with one field,
`payload` (JSON), signed with HMAC-SHA256 over `v0:{timestamp}:{body}`. The signature is computed
here with `hmac` directly, not with slack-sdk's verifier, so a test does not merely check that the
verifier agrees with itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any, Literal
from urllib.parse import urlencode

from aims_core.messages import APPROVE_ACTION_ID, DECISION_BLOCK_ID, REJECT_ACTION_ID
from notifications.fake_slack import TEAM_ID


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """Slack's request signature: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def encode_interaction(payload: dict[str, Any]) -> bytes:
    """The body Slack POSTs for an interaction: `payload=<url-encoded JSON>`."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def signed_interaction(
    secret: str, payload: dict[str, Any], timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of an interaction request signed with `secret` at `timestamp` (now)."""
    ts = int(time.time()) if timestamp is None else timestamp
    body = encode_interaction(payload)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sign(secret, body, ts),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }
    return body, headers


def block_actions_payload(
    user_id: str,
    request_id: int | str,
    action: Literal["approve", "reject"] = "approve",
    team_id: str | None = TEAM_ID,
    message_ts: str = "1700000000.000100",
    channel_id: str = "C0AIMS01",
    *,
    action_id: str | None = None,
) -> dict[str, Any]:
    """A `block_actions` payload shaped like the one Slack sends when a button is clicked.

    `request_id` is put in the button value as is (a string like "abc" makes a malformed value);
    `team_id` defaults to the fake Slack's workspace (the bot token's team there); `team_id=None`
    leaves the team out entirely; `action_id` overrides the button's action id.
    """
    aid = action_id or (APPROVE_ACTION_ID if action == "approve" else REJECT_ACTION_ID)
    now = f"{time.time():.6f}"
    team = {"id": team_id, "domain": "aims-demo"} if team_id is not None else None
    user: dict[str, Any] = {"id": user_id, "username": user_id.lower(), "name": user_id.lower()}
    if team_id is not None:
        user["team_id"] = team_id
    return {
        "type": "block_actions",
        "user": user,
        "api_app_id": "A0AIMSAPP",
        "token": "deprecated-verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": f"1.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:16]}",
        "team": team,
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "aims-approvals"},
        "message": {
            "type": "message",
            "subtype": "bot_message",
            "text": f"Approval request #{request_id}",
            "ts": message_ts,
            "bot_id": "B0AIMSBOT",
            "blocks": [],
        },
        "state": {"values": {}},
        # Never contacted by the bridge: decisions are answered over the Web API (or not at all).
        "response_url": "https://hooks.slack.com/actions/T0AIMS/1/abcdef",
        "actions": [
            {
                "action_id": aid,
                "block_id": DECISION_BLOCK_ID,
                "text": {
                    "type": "plain_text",
                    "text": "Approve" if action == "approve" else "Reject",
                    "emoji": True,
                },
                "value": str(request_id),
                "style": "primary" if action == "approve" else "danger",
                "type": "button",
                "action_ts": now,
            }
        ],
    }
