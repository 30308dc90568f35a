"""Slack's user directory for `services.people`: who has this email, what is this user's email.

The domain asks through plain functions (`people.Lookup`) so it never sees the Slack SDK. Both
need the `users:read` and `users:read.email` scopes (notifications/slack_app_manifest.yaml).
"""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from aims_core.services.people import Lookup, LookupFailed, SlackUser

__all__ = ["lookup_by_email", "slack_user"]


def _user(raw: dict[str, Any]) -> SlackUser:
    profile = raw.get("profile") or {}
    return SlackUser(
        id=str(raw["id"]),
        email=profile.get("email") or None,
        deleted=bool(raw.get("deleted")),
        is_bot=bool(raw.get("is_bot")),
    )


def lookup_by_email(client: WebClient) -> Lookup:
    """`users.lookupByEmail` as a `people.Lookup`: None for `users_not_found`, LookupFailed for
    any other error (the person is reported, the others still looked up)."""

    def lookup(email: str) -> SlackUser | None:
        try:
            answer = client.users_lookupByEmail(email=email)
        except SlackApiError as exc:
            code = str(exc.response.get("error") or "error")
            if code == "users_not_found":
                return None
            raise LookupFailed(code) from None
        except (SlackClientError, OSError) as exc:  # unreachable, timed out
            raise LookupFailed(f"Slack not reachable: {exc}") from None
        return _user(answer["user"])

    return lookup


def slack_user(client: WebClient, user_id: str) -> SlackUser | None:
    """`users.info`: the user and their profile email; None when Slack does not know them."""
    try:
        answer = client.users_info(user=user_id)
    except SlackApiError as exc:
        if exc.response.get("error") == "user_not_found":
            return None
        raise
    return _user(answer["user"])
