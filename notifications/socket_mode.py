"""Slack interactions over Socket Mode: no public URL needed, only an app token (`xapp-...`).

Slack delivers each envelope at least once and redelivers what is not acknowledged, so the
listener acknowledges an `interactive` envelope only after `handle_interaction` has committed the
decision; a redelivered envelope reaches the same idempotent service and writes nothing. When the
database fails the envelope is left unacknowledged on purpose: Slack sends it again. A modal's
submission is answered in its acknowledgement (`response_action`: errors inline, or the view
that replaces the modal), sent after the answer is committed, as over HTTP.
"""

from __future__ import annotations

import logging
import threading

from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web import WebClient

from aims_core.settings import Settings
from notifications.interactions import (
    FollowUp,
    ResumeFn,
    handle_interaction,
    resume_through_prefect,
)

log = logging.getLogger(__name__)

SLACK_API_URL = "https://slack.com/api/"


class SocketModeBridge:
    """A Socket Mode connection whose `interactive` envelopes become decisions."""

    def __init__(
        self,
        settings: Settings,
        *,
        api_base_url: str | None = None,
        resume: ResumeFn = resume_through_prefect,
        slack_client: WebClient | None = None,
    ) -> None:
        if settings.slack_app_token is None:
            raise ValueError("Socket Mode needs an app token: set AIMS_SLACK_APP_TOKEN (xapp-...)")
        self.settings = settings
        self.follow_up = FollowUp(settings=settings, resume=resume, slack_client=slack_client)
        bot = settings.slack_bot_token
        bot_token = bot.get_secret_value() if bot else None
        # This client only opens connections (apps.connections.open, with the app token).
        base_url = api_base_url or settings.slack_api_url or SLACK_API_URL
        web_client = WebClient(token=bot_token, base_url=base_url)
        self.client = SocketModeClient(
            app_token=settings.slack_app_token.get_secret_value(),
            web_client=web_client,
            logger=logging.getLogger("aims.socket_mode"),
        )
        self.client.socket_mode_request_listeners.append(self._on_request)
        self.handled = 0  # envelopes acknowledged (for logs and tests)

    def _on_request(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        """Runs on the client's worker threads, one call per envelope."""
        if req.type != "interactive":
            # Events or commands we did not subscribe to: acknowledge so they are not resent.
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        try:
            result = handle_interaction(self.settings, req.payload, channel="slack")
        except Exception:
            log.exception("envelope %s not handled; left for redelivery", req.envelope_id)
            return
        if result.status_code != 200:
            log.warning("socket mode envelope %s refused: %s", req.envelope_id, result.message)
        # Committed (or refused for good): now, and only now, Slack may forget the envelope.
        client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload=result.body)
        )
        self.handled += 1
        if not result.ignored:
            self.follow_up(result)

    def connect(self) -> None:
        """Open the connection (reconnects on its own afterwards) and return."""
        self.client.connect()

    def close(self) -> None:
        self.client.close()

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Connect and block until `stop` is set (or the process is interrupted)."""
        stop = stop or threading.Event()
        self.connect()
        log.info("Socket Mode connected: Slack interactions arrive over the websocket")
        try:
            stop.wait()
        finally:
            self.close()
