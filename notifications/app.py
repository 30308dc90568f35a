"""The HTTP app of `aims bridge`: Slack interactions in, health out (later issues add intake).

`POST /slack/interactions` trusts nothing before the signature is checked on the raw bytes
(slack-sdk's SignatureVerifier: HMAC with the signing secret, 5-minute window), so a forged,
replayed or tampered click is refused before any of it is parsed. A verified click is decided and
committed before the 200 goes out (an acknowledged decision is never lost); updating Slack and
resuming the Prefect run happen afterwards, in a background task, so Slack gets its answer within
its 3 seconds even when Prefect is slow. A modal's submission (`view_submission`) and an external
select's options (`block_suggestion`) arrive at the same URL, signed and checked alike; their answer
is a JSON body Slack reads (`response_action`, `options`). Follow-ups run FOLLOW_UP_THREADS at a
time on threads of their own, never on the threads that answer clicks: under a burst of clicks they
would otherwise pile up (each waits for Prefect and Slack), take every worker thread and fight the
clicks for the database's write lock, and the acknowledgements would wait seconds behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import configure_mappers
from starlette.concurrency import run_in_threadpool

from aims_core.models import ApprovalRequest
from aims_core.ports import Runs
from aims_core.services import approvals, outbox
from aims_core.settings import Settings, get_settings
from aims_core.uow import UnitOfWork
from notifications.intake import intake_router
from notifications.interactions import (
    FollowUp,
    InteractionResult,
    ResumeFn,
    handle_interaction,
    resume_through_prefect,
)
from notifications.requests import read_capped, refusal

log = logging.getLogger(__name__)

# Slack's interaction payloads are a few KiB; anything far bigger is not from Slack.
MAX_BODY_BYTES = 64 * 1024
# Follow-ups (Slack updates, one delivery pass, the resume) running at once, in order of clicks.
FOLLOW_UP_THREADS = 2
# Seconds a caller is asked to wait before retrying while the database is unreachable.
DATABASE_RETRY_AFTER = 5


def create_app(
    settings: Settings | None = None,
    *,
    resume: ResumeFn = resume_through_prefect,
    slack_client: WebClient | None = None,
    runs: Runs | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The bridge's FastAPI app.

    `resume`, `slack_client` and `runs` are injectable so tests run without Prefect and against
    a local fake Slack; by default runs are resumed and started through Prefect and Slack is
    reached with the bot token from the settings.
    """
    settings = settings or get_settings()
    follow_up = FollowUp(settings=settings, resume=resume, slack_client=slack_client)
    follow_ups = ThreadPoolExecutor(FOLLOW_UP_THREADS, thread_name_prefix="aims-follow-up")
    if resume is resume_through_prefect:
        # Wired for real (not a test's fakes): do now, off the request path, what the first
        # clicks would otherwise do while every concurrent click waits on its lock: import
        # Prefect's client (the first resume), the database driver and dialect (~130 ms on
        # PostgreSQL) and configure the ORM's mappers (~80 ms, under SQLAlchemy's global lock).
        follow_ups.submit(_import_prefect_client)
        follow_ups.submit(_open_database, settings)

    async def run_follow_up(result: InteractionResult) -> None:
        await asyncio.get_running_loop().run_in_executor(follow_ups, follow_up, result)

    app = FastAPI(
        title="AIMS Flow bridge",
        summary="Slack interactions for AIMS approvals",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.follow_up = follow_up
    app.include_router(intake_router(settings, slack_client=slack_client, runs=runs))
    # The database down or unreachable (PostgreSQL stopped, a dropped connection, SQLite locked
    # past its busy timeout): a 503 the caller can retry, not a 500 with a traceback. The
    # transaction was rolled back; the pool's pre-ping reconnects once the database is back.
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """Liveness plus a database round trip: the bridge is useless without its database."""
        state = "unreachable"
        try:
            uow = UnitOfWork(settings)
            with uow.read():
                uow.session.execute(text("SELECT 1"))
                state = "not initialised (run `aims init`)"
                uow.session.execute(select(ApprovalRequest.id).limit(1))
        except Exception as exc:
            log.warning("health check: database %s: %s", state, exc)
            return JSONResponse({"ok": False, "database": state}, status_code=503)
        return JSONResponse({"ok": True, "database": "ok"})

    @app.post("/slack/interactions")
    async def slack_interactions(request: Request, background: BackgroundTasks) -> Response:
        if settings.slack_signing_secret is None:
            return refusal(
                503,
                "Slack interactions are not configured: set AIMS_SLACK_SIGNING_SECRET "
                "(the app's signing secret), or use Socket Mode with AIMS_SLACK_APP_TOKEN",
            )
        secret = settings.slack_signing_secret.get_secret_value()
        body = await read_capped(request, max_body_bytes)
        if body is None:
            return refusal(413, f"request body larger than {max_body_bytes} bytes")
        if not _signature_ok(secret, body, request):
            log.warning("slack interaction refused: bad or stale signature")
            return refusal(401, "invalid or expired Slack signature")

        payload = _payload(body)
        if payload is None:
            return refusal(400, "malformed interaction: expected a form field 'payload' (JSON)")
        result = await run_in_threadpool(handle_interaction, settings, payload)
        if result.status_code != 200:
            return refusal(result.status_code, result.message)
        if not result.ignored:
            background.add_task(run_follow_up, result)
        if result.body is None and not result.message:
            return Response(status_code=200)
        return JSONResponse(result.response_body(), status_code=200)

    return app


def _import_prefect_client() -> None:
    """Import Prefect's client now, off the request path, rather than in the first resume."""
    with contextlib.suppress(Exception):  # the resume itself will say what is wrong
        import prefect.client.orchestration  # noqa: F401


def _open_database(settings: Settings) -> None:
    """Configure the mappers, open a pooled connection and compile the statements a click's
    follow-up reads with (the request's message view and its lazy loads, the outbox's due
    rows) and a modal submission reads the ask's header with, reading only. Compiling them the first
    time takes ~150 ms of CPU holding the GIL: done amid a burst of clicks, it held four
    acknowledgements back by that much (py-spy on the decisions benchmark, PostgreSQL). If the
    database is down, the first click says so."""
    with contextlib.suppress(Exception):
        configure_mappers()
        uow = UnitOfWork(settings)
        with uow.read():
            last = uow.session.scalar(
                select(ApprovalRequest).order_by(ApprovalRequest.id.desc()).limit(1)
            )
            if last is not None:
                outbox.approval_view(uow.session, last)
        if last is not None:  # what a modal submission reads first
            approvals.ask_header(UnitOfWork(settings), last.id)
        outbox.due(UnitOfWork(settings), limit=1)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    # One line naming the driver's error: never the statement or its parameters.
    reason = (str(cause).strip().splitlines() or [""])[0][:300]
    log.error(
        "%s %s: database unavailable: %s: %s",
        request.method,
        request.url.path,
        type(cause).__name__,
        reason,
    )
    return JSONResponse(
        {
            "ok": False,
            "error": "the AIMS database is unavailable; retry the request in a few seconds",
        },
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
    )


def _signature_ok(secret: str, body: bytes, request: Request) -> bool:
    headers = {
        "x-slack-request-timestamp": request.headers.get("x-slack-request-timestamp", ""),
        "x-slack-signature": request.headers.get("x-slack-signature", ""),
    }
    if not all(headers.values()):
        return False
    try:
        return SignatureVerifier(secret).is_valid_request(body, headers)
    except (ValueError, UnicodeDecodeError):  # a non-numeric timestamp, a non-UTF-8 body
        return False


def _payload(body: bytes) -> dict | None:
    """The JSON in the form field `payload`, or None when there is no such well-formed field."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=20)
        values = form.get("payload", [])
        if len(values) != 1:
            return None
        payload = json.loads(values[0])
    except (UnicodeDecodeError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None
