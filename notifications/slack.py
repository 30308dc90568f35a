"""Slack delivery of the notification outbox, with slack-sdk's `WebClient`.

One pass (`deliver_due`) takes the due rows oldest first, one per thread at a time, and for each:
claims it (a short transaction), talks to Slack outside any transaction, and records the outcome
(another short one), so a slow Slack never holds a database lock.

Failures, and why each is handled so:
- 429: slack-sdk's rate-limit handler sleeps a short Retry-After (≤ 5 s) and retries; still 429
  after that, or a longer Retry-After, the row waits (at least Retry-After) and the pass stops:
  Slack asked us to slow down.
- 5xx, timeouts, dropped connections, Slack's own transient codes (`internal_error`, …): the row
  waits with exponential backoff; after a few in a row the pass stops (Slack is down: no point
  in timing out on every remaining row).
- anything else Slack refuses (`channel_not_found`, `not_in_channel`, `invalid_auth`,
  `user_not_found`, …): the row is failed, kept for an operator, never retried on its own;
  token errors also stop the pass (every row would fail alike).

Delivery is at least once. Slack's Web API has no idempotency key: a `chat.postMessage` whose
response never came (timeout or dropped connection after the request was sent) may have been
posted. It is retried and counted as a *possible duplicate*. So the connection retry handler
only retries errors raised before the request was sent (urllib wraps those in `URLError`);
errors while waiting for the answer come back to us to be counted.

Personal codes: a stored approval message holds a placeholder; the code is computed here from
the evidence key (outside the database) for a DM, and withheld when the message is only logged.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.client import HTTPException
from typing import Any, Final
from urllib.error import URLError

from pydantic import BaseModel
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from aims_core.messages import render_placeholder
from aims_core.ports import Delivery, DeliveryReport
from aims_core.services import outbox
from aims_core.services.approvals.codes import current_code
from aims_core.services.outbox import TARGET_DEFAULT, TARGET_DM, TARGET_LOG, NotificationOut
from aims_core.settings import Settings
from aims_core.uow import UnitOfWork

log = logging.getLogger("aims.notifications")
# slack-sdk logs every request and response body at DEBUG, and a DM's body holds the approver's
# personal code: our clients log through this logger, which never goes below INFO.
_sdk_log = logging.getLogger("aims.notifications.slack_sdk")
_sdk_log.setLevel(logging.INFO)

DEFAULT_TIMEOUT: Final = 10.0  # seconds per HTTP request: a hung Slack must not hold the loop
DEFAULT_RATE_LIMIT_RETRIES: Final = 2
DEFAULT_CONNECTION_RETRIES: Final = 2
RATE_LIMIT_MAX_SLEEP: Final = 5.0  # longer Retry-After: the row waits in the outbox instead
MAX_CONSECUTIVE_ERRORS: Final = 3

#: Slack error codes that say "try again later" (HTTP 200 with ok=false).
TRANSIENT_ERRORS: Final = frozenset(
    {
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)
#: Errors of the token or the app, not of one message: every other row would fail alike.
AUTH_ERRORS: Final = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "not_allowed_token_type",
        "team_access_not_granted",
        "ekm_access_denied",
    }
)
_SLACK_CODE: Final = re.compile(r"^[a-z0-9_]{1,80}$")
CODE_WITHHELD: Final = "(withheld from the log: decide in Slack or with `aims approve`)"
CODE_UNAVAILABLE: Final = "(unavailable: no evidence key configured)"


def make_client(
    settings: Settings,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    rate_limit_retries: int = DEFAULT_RATE_LIMIT_RETRIES,
    connection_retries: int = DEFAULT_CONNECTION_RETRIES,
) -> WebClient | None:
    """A WebClient for the bot token, or None without one (notifications are then logged).

    `slack_api_url` (a Slack-compatible gateway, or the fake in tests) replaces
    https://slack.com/api/; it must name the `/api/` prefix, and gets its trailing slash here.
    """
    if settings.slack_bot_token is None:
        return None
    token = settings.slack_bot_token.get_secret_value().strip()
    if not token:
        return None
    base_url = WebClient.BASE_URL
    if settings.slack_api_url:
        base_url = settings.slack_api_url.rstrip("/") + "/"
    return WebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,  # type: ignore[arg-type]  # urllib takes float seconds
        logger=_sdk_log,
        retry_handlers=[
            # Only errors raised before the request went out (URLError): a retry cannot
            # duplicate. Errors after it went out surface and are counted by deliver_due.
            ConnectionErrorRetryHandler(max_retry_count=connection_retries, error_types=[URLError]),
            BoundedRateLimitRetryHandler(max_retry_count=rate_limit_retries),
        ],
    )


#: Seconds per Slack call inside a request (incident intake): an alert sender must not wait out
#: the default 10 s.
INTAKE_TIMEOUT: Final = 5.0


def intake_client(settings: Settings) -> WebClient | None:
    """A Slack client for use inside a request: short timeout, no long rate-limit sleeps."""
    return make_client(settings, timeout=INTAKE_TIMEOUT, rate_limit_retries=0, connection_retries=1)


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack-sdk's 429 handler, but it sleeps only for a short Retry-After.

    The stock handler sleeps whatever Slack asks, which can hold the delivery loop for minutes;
    a longer wait is better spent with the row queued until then (deliver_due schedules it)."""

    def __init__(self, max_retry_count: int = 1, max_sleep: float = RATE_LIMIT_MAX_SLEEP) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_sleep = max_sleep

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        raw = _header(response.headers, "Retry-After")
        try:
            wait = float(raw) if raw is not None else 1.0
        except ValueError:
            return False
        return wait <= self.max_sleep


@dataclass
class _Verdict:
    permanent: bool
    error: str
    retry_after: float = 0.0
    stop: str | None = None
    possible_duplicate: bool = False


class _Sent(BaseModel):
    outcome: str  # sent | updated | logged | failed | wait
    channel: str | None = None
    ts: str | None = None
    reason: str = ""


def _header(headers: Any, name: str) -> str | None:
    for k, v in dict(headers or {}).items():
        if k.lower() == name.lower():
            return str(v[0] if isinstance(v, list) else v)
    return None


def _classify(exc: BaseException, *, posting: bool) -> _Verdict:
    """Permanent or transient, and whether the message may have been posted anyway."""
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        data = exc.response.data
        code = str(data.get("error", "")) if isinstance(data, dict) else ""
        if status == 429:
            retry_after = 1.0
            raw = _header(exc.response.headers, "Retry-After")
            if raw is not None:
                with contextlib.suppress(ValueError):
                    retry_after = max(float(raw), 1.0)
            return _Verdict(
                permanent=False,
                error=f"HTTP 429 rate limited (Retry-After {retry_after:g} s)",
                retry_after=retry_after,
                stop=f"rate limited by Slack (Retry-After {retry_after:g} s)",
            )
        if not _SLACK_CODE.match(code):  # e.g. slack-sdk's "non-JSON format: <html>…"
            code = ""
        if status >= 500:
            return _Verdict(permanent=False, error=f"HTTP {status} {code}".strip())
        if code in TRANSIENT_ERRORS:
            return _Verdict(permanent=False, error=code)
        if status != 200:
            # Not Slack's JSON answer (a 404 from a wrong slack_api_url, a proxy page): the
            # configuration is wrong, not this message. Keep it queued and stop the pass.
            error = f"HTTP {status} {code}".strip()
            return _Verdict(permanent=False, error=error, stop=f"Slack API answered {error}")
        if code in AUTH_ERRORS:
            return _Verdict(
                permanent=True,
                error=code,
                stop=f"Slack refused the bot token ({code}): fix AIMS_SLACK_BOT_TOKEN, then "
                "`aims notifications requeue --all-failed`",
            )
        return _Verdict(permanent=True, error=code or "unknown Slack error")
    if isinstance(exc, URLError):  # never reached Slack: connection refused, DNS, TLS
        return _Verdict(permanent=False, error=f"connection error: {exc.reason}")
    if isinstance(exc, OSError | HTTPException):
        # Sent, but no answer (timeout, reset, disconnect): Slack may have posted it.
        kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        return _Verdict(
            permanent=False,
            error=f"{kind} waiting for Slack: {exc}".strip(),
            possible_duplicate=posting,
        )
    if isinstance(exc, SlackClientError):  # refused by the client before sending: configuration
        error = f"{type(exc).__name__}: {exc}"
        return _Verdict(permanent=False, error=error, stop=error)
    return _Verdict(permanent=False, error=f"{type(exc).__name__}: {exc}")


class _Pass:
    """One delivery pass: the client, the per-pass DM channel cache, the report."""

    def __init__(self, settings: Settings, client: WebClient | None, now: datetime) -> None:
        self.settings = settings
        self.client = client
        self.now = now
        self.uow = UnitOfWork(settings)
        self.key = settings.evidence_key_bytes()
        self.dm_channels: dict[str, str] = {}
        self.report = DeliveryReport()
        self.consecutive_errors = 0
        self.posting = False

    # -- the message -----------------------------------------------------------------------

    def _blocks(self, n: NotificationOut, *, for_log: bool) -> list[dict[str, Any]] | None:
        if n.blocks is None:
            return None
        if for_log:
            code = CODE_WITHHELD
        elif self.key is None or n.request_id is None or n.recipient_id is None:
            code = CODE_UNAVAILABLE
        else:
            code = current_code(self.uow, n.request_id, n.recipient_id) or CODE_UNAVAILABLE
        return render_placeholder(n.blocks, code)

    def _log(self, n: NotificationOut, reason: str) -> _Sent:
        who = n.recipient or (self.settings.slack_channel if n.target == TARGET_DEFAULT else None)
        log.info(
            "notification %s (%s) to %s [%s, not sent to Slack]: %s",
            n.idempotency_key,
            n.kind,
            who or n.target,
            reason,
            n.text,
        )
        return _Sent(outcome="logged", reason=reason)

    def _dm_channel(self, user_id: str) -> str:
        if user_id not in self.dm_channels:
            assert self.client is not None
            resp = self.client.conversations_open(users=user_id)
            self.dm_channels[user_id] = str(resp["channel"]["id"])
        return self.dm_channels[user_id]

    def _send(self, n: NotificationOut) -> _Sent:
        self.posting = False
        if n.original is not None:
            return self._send_update(n)
        if n.target == TARGET_LOG:
            return self._log(n, "recipient has no Slack user id")
        if self.client is None:
            return self._log(n, "no Slack bot token")
        if n.target == TARGET_DM:
            if not n.recipient_slack_id:
                return self._log(n, "recipient has no Slack user id")
            channel = self._dm_channel(n.recipient_slack_id)
        elif n.target == TARGET_DEFAULT:
            if not self.settings.slack_channel:
                return self._log(n, "no default channel (AIMS_SLACK_CHANNEL)")
            channel = self.settings.slack_channel
        else:
            channel = n.target
        self.posting = True
        resp = self.client.chat_postMessage(
            channel=channel,
            text=n.text,
            blocks=self._blocks(n, for_log=False),
            unfurl_links=False,
            unfurl_media=False,
        )
        return _Sent(outcome="sent", channel=str(resp["channel"]), ts=str(resp["ts"]))

    def _send_update(self, n: NotificationOut) -> _Sent:
        original = n.original
        assert original is not None
        if original.status == outbox.NotificationStatus.logged:
            return self._log(n, "the original was logged")
        if original.status == outbox.NotificationStatus.failed:
            return _Sent(outcome="failed", reason=f"original {original.idempotency_key} failed")
        if original.status == outbox.NotificationStatus.queued:
            return _Sent(outcome="wait", reason="original not sent yet")
        if self.client is None:
            return self._log(n, "no Slack bot token")
        if not original.slack_channel or not original.slack_ts:
            return _Sent(outcome="failed", reason="original has no Slack channel/ts")
        resp = self.client.chat_update(
            channel=original.slack_channel,
            ts=original.slack_ts,
            text=n.text,
            # [] rather than None: chat.update keeps the old blocks (buttons!) when omitted.
            blocks=self._blocks(n, for_log=False) or [],
        )
        return _Sent(outcome="updated", channel=str(resp["channel"]), ts=str(resp["ts"]))

    # -- bookkeeping -----------------------------------------------------------------------

    def handle(self, n: NotificationOut) -> None:
        try:
            result = self._send(n)
        except Exception as exc:  # classified below; a bug must not stop the whole outbox
            self._failure(n, exc)
            return
        self.consecutive_errors = 0
        if result.outcome in ("sent", "updated"):
            assert result.channel is not None and result.ts is not None
            outbox.mark_sent(self.uow, n.id, result.channel, result.ts)
            if result.outcome == "sent":
                self.report.sent += 1
            else:
                self.report.updated += 1
        elif result.outcome == "logged":
            outbox.mark_logged(self.uow, n.id, result.reason)
            self.report.logged += 1
        elif result.outcome == "failed":
            outbox.mark_failed(self.uow, n.id, result.reason)
            self.report.failed += 1
            self.report.note(f"{n.idempotency_key}: {result.reason}")
        else:  # wait: give the claim back; the next pass looks again
            outbox.mark_retry(self.uow, n.id, result.reason, self.now + timedelta(seconds=1))

    def _failure(self, n: NotificationOut, exc: Exception) -> None:
        verdict = _classify(exc, posting=self.posting)
        if not isinstance(exc, SlackClientError | OSError | HTTPException):
            log.exception("unexpected error delivering notification %s", n.idempotency_key)
        self.report.note(f"{n.idempotency_key}: {verdict.error}")
        if verdict.permanent:
            log.warning("notification %s failed: %s", n.idempotency_key, verdict.error)
            outbox.mark_failed(self.uow, n.id, verdict.error)
            self.report.failed += 1
        else:
            wait = max(outbox.backoff(n.attempts), timedelta(seconds=verdict.retry_after))
            error = verdict.error
            if verdict.possible_duplicate:
                self.report.possible_duplicates += 1
                error = f"{error} (possible duplicate: the post may have reached Slack)"
                log.warning("notification %s: possible duplicate: %s", n.idempotency_key, error)
            else:
                log.info("notification %s: retry in %s: %s", n.idempotency_key, wait, error)
            outbox.mark_retry(self.uow, n.id, error, self.now + wait)
            self.report.retried += 1
            self.consecutive_errors += 1
            if verdict.stop is None and self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                verdict.stop = f"Slack unavailable ({self.consecutive_errors} errors in a row)"
        if verdict.stop and self.report.stopped is None:
            self.report.stopped = verdict.stop


def deliver_due(
    settings: Settings,
    client: WebClient | None = None,
    *,
    limit: int = 100,
    now: datetime | None = None,
) -> DeliveryReport:
    """Send up to `limit` due notifications, oldest first, never one before an earlier queued
    row of its thread. `client` defaults to `make_client(settings)`; with no token at all, every
    row is logged. `now` is the pass's clock for due times and backoff (tests move it)."""
    if client is None:
        client = make_client(settings)
    now = outbox.utc(now or datetime.now(UTC))
    run = _Pass(settings, client, now)
    processed = 0
    while processed < limit and run.report.stopped is None:
        batch = outbox.due(run.uow, now, min(limit - processed, 100))
        claimed = 0
        for item in batch:
            if processed >= limit or run.report.stopped is not None:
                break
            n = outbox.claim(run.uow, item.id, now)
            if n is None:  # another pass took it
                continue
            claimed += 1
            processed += 1
            run.handle(n)
        if claimed == 0:
            break
    report = run.report
    if report.processed or report.stopped:
        log.info("delivery pass: %s", report.model_dump_json(exclude={"errors"}))
    return report


class SlackDelivery(Delivery):
    """The `Delivery` port over Slack's Web API: what the domain's queued messages become.

    `client` defaults to `make_client(settings)`; with no bot token every message is logged."""

    def __init__(self, settings: Settings, client: WebClient | None = None) -> None:
        self.settings = settings
        self.client = client if client is not None else make_client(settings)

    def deliver_due(
        self, *, now: datetime | None = None, limit: int | None = None
    ) -> DeliveryReport:
        return deliver_due(self.settings, self.client, now=now, limit=limit or 100)

    def deliver_subject(self, subject: str, *, limit: int) -> DeliveryReport:
        """Only this subject's rows: a backlog of other messages must not stand between an alert
        and its first message (a `deliver_due` pass sends the oldest rows first). Each row is
        claimed as any pass claims it, so a concurrent pass never sends it twice; the first
        transient error stops it (an outage: no point timing out on each row)."""
        run = _Pass(self.settings, self.client, datetime.now(UTC))
        for nid in outbox.queued_ids(run.uow, subject, limit):
            n = outbox.claim(run.uow, nid, run.now)
            if n is None:  # another pass took it, or an earlier row of its thread is pending
                continue
            run.handle(n)
            report = run.report
            if report.retried or report.possible_duplicates or report.stopped:
                break
        return run.report
