"""`aims bridge`: the long-running HTTP app (Slack interactions, health) and, with an app token,
the Socket Mode connection. FastAPI, uvicorn and slack-sdk are imported when the command runs, so
`aims --help` stays fast."""

from __future__ import annotations

import logging

import typer

from aims_core.cli._base import fail
from aims_core.settings import get_settings

log = logging.getLogger(__name__)


def bridge(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(3000, "--port", min=1, max=65535, help="Port to listen on."),
) -> None:
    """Receive Slack button clicks (POST /slack/interactions, and Socket Mode when
    AIMS_SLACK_APP_TOKEN is set) and turn them into decisions."""
    import uvicorn

    from notifications.app import create_app

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    socket_bridge = None
    if settings.slack_app_token is not None:
        from slack_sdk.errors import SlackApiError

        from notifications.socket_mode import SocketModeBridge

        socket_bridge = SocketModeBridge(settings)
        try:
            socket_bridge.connect()
        except SlackApiError as exc:
            socket_bridge.close()
            fail(
                f"Socket Mode: Slack refused the app token ({exc.response.get('error')}): "
                "AIMS_SLACK_APP_TOKEN must be an app-level token (xapp-...) with "
                "connections:write"
            )
        except OSError as exc:
            socket_bridge.close()
            fail(f"Socket Mode: cannot reach Slack to open a connection: {exc}")
        typer.echo("Socket Mode: connected (interactions arrive over the websocket)")
    if settings.slack_signing_secret is None:
        typer.echo(
            "note: AIMS_SLACK_SIGNING_SECRET is not set: POST /slack/interactions answers 503"
            + ("" if socket_bridge else " and no app token is set for Socket Mode either"),
            err=True,
        )
    if settings.intake_token is None:
        typer.echo(
            "note: AIMS_INTAKE_TOKEN is not set: POST /incidents and /alertmanager answer 503",
            err=True,
        )
    typer.echo(
        f"bridge listening on http://{host}:{port} (POST /slack/interactions, POST /incidents, "
        "POST /alertmanager, GET /healthz)"
    )
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    finally:
        if socket_bridge is not None:
            socket_bridge.close()
