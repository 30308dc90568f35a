"""A fake Slack Web API on 127.0.0.1, for the real slack-sdk `WebClient` to talk to.

It ships with the package because `aims demo --fake-slack` runs it too: the demo then shows every
message the engine sends without a Slack workspace (`on_message` prints them).

It answers the methods AIMS Flow uses the way Slack shapes them (`{"ok": true, ...}`, HTTP 200
with `ok: false` and an error code for refusals), accepts form- and JSON-encoded bodies, checks
the bearer token, records every request, and keeps the current state of every posted message
(after updates). Failures are switched on per test: HTTP 5xx, 429 with Retry-After, hangs (the
request is still carried out after the hang, as Slack would: that is how duplicates happen), and
Slack error codes.

    fake = FakeSlack().start()
    client = WebClient(token=fake.token, base_url=fake.base_url)   # base_url ends with /api/
    fake.fail_with(500, times=3); fake.rate_limit(retry_after=1, times=2)
    fake.error("expired_trigger_id", methods=["views.open"])   # a modal that cannot open
    ...
    fake.stop()

Tests use the `fake_slack` fixture and `slack_settings(settings, fake)` (tests/fakes/slack_api.py).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

DEFAULT_TOKEN = "xoxb-fake-aims-token"
BOT_USER_ID = "U0AIMSBOT"
BOT_ID = "B0AIMSBOT"
TEAM_ID = "T0FAKE"


@dataclass
class RecordedRequest:
    """One call as the fake saw it; `outcome` is "ok", "error:<code>", "http-<status>", or
    "hang+..." for a call answered only after a hang."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int = 200
    outcome: str = "ok"


@dataclass
class FakeMessage:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    user: str = BOT_USER_ID
    updates: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier versions

    def as_slack(self) -> dict[str, Any]:
        return {
            "type": "message",
            "user": self.user,
            "bot_id": BOT_ID,
            "text": self.text,
            "blocks": self.blocks,
            "ts": self.ts,
            **({"edited": {"user": self.user, "ts": self.ts}} if self.updates else {}),
        }

    def actions(self) -> list[dict[str, Any]]:
        """The interactive elements (buttons) still on the message."""
        return [el for b in self.blocks if b.get("type") == "actions" for el in b["elements"]]


@dataclass
class FakeView:
    """A modal opened with `views.open` (and its `views.update`s), as the fake holds it."""

    id: str
    trigger_id: str
    user: str | None
    view: dict[str, Any]
    updates: int = 0


@dataclass
class _Rule:
    kind: Literal["status", "rate_limit", "hang", "error"]
    remaining: int | None  # None: until cleared
    methods: frozenset[str] | None
    after: int = 0  # matching calls let through before the rule starts
    status: int = 500
    retry_after: int = 1
    seconds: float = 0.0
    error: str = ""

    def take(self, method: str) -> bool:
        """Whether this call fails by this rule (counting it down)."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.after > 0:
            self.after -= 1
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True


class _Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class FakeSlack:
    """The fake Web API server. Thread-safe; start() binds a random port on 127.0.0.1."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        strict_users: bool = False,
        on_message: Callable[[FakeMessage, bool], None] | None = None,
    ) -> None:
        self.token = token
        #: Called after each post (False) or update (True), outside the lock.
        self.on_message = on_message
        #: With strict_users, conversations.open refuses users not added with add_user().
        self.strict_users = strict_users
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._rules: list[_Rule] = []
        self._messages: dict[tuple[str, str], FakeMessage] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._channels: set[str] = set()
        self._dms: dict[str, str] = {}
        #: chat.postEphemeral calls: what each clicker was told privately.
        self.ephemerals: list[dict[str, str]] = []
        #: Modals opened (views.open), in order; views.update edits them in place.
        self.views: list[FakeView] = []
        self._seq = itertools.count(1)
        self._ts_base = int(time.time())
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() returns within 50 ms
            name="fake-slack",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """For `WebClient(base_url=...)`: slack-sdk appends the method name to it."""
        return f"http://127.0.0.1:{self.port}/api/"

    # --- state set-up -------------------------------------------------------------------------

    def add_user(self, user_id: str, email: str | None = None, name: str | None = None) -> None:
        with self._lock:
            self._users[user_id] = _user(user_id, email, name)

    def add_channel(self, channel_id: str) -> None:
        with self._lock:
            self._channels.add(channel_id)

    # --- failures -----------------------------------------------------------------------------

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    @staticmethod
    def _methods(methods: Iterable[str] | None) -> frozenset[str] | None:
        return frozenset(methods) if methods is not None else None

    # Rules are consulted in the order they were added; the first that fires answers the call
    # (later ones do not see it). A rule counts the calls it sees that match `methods` (None:
    # all): it lets `after` of them through, then fails `times` (None: until clear_failures()).

    def fail_with(
        self,
        status: int = 500,
        times: int | None = 1,
        methods: Iterable[str] | None = None,
        after: int = 0,
    ) -> None:
        """Matching calls answer HTTP `status` with an HTML body, as an unwell Slack does."""
        self._add(_Rule("status", times, self._methods(methods), after, status=status))

    def rate_limit(
        self,
        retry_after: int = 1,
        times: int | None = 1,
        methods: Iterable[str] | None = None,
        after: int = 0,
    ) -> None:
        """Matching calls answer 429 with `Retry-After: retry_after` (seconds)."""
        self._add(
            _Rule("rate_limit", times, self._methods(methods), after, retry_after=retry_after)
        )

    def hang(
        self,
        seconds: float,
        times: int | None = 1,
        methods: Iterable[str] | None = None,
        after: int = 0,
    ) -> None:
        """Matching calls wait `seconds`, then are carried out and answered (to a client that
        may have given up: the message exists anyway, as with Slack)."""
        self._add(_Rule("hang", times, self._methods(methods), after, seconds=seconds))

    def error(
        self,
        code: str,
        times: int | None = 1,
        methods: Iterable[str] | None = None,
        after: int = 0,
    ) -> None:
        """Matching calls answer HTTP 200 `{"ok": false, "error": code}`."""
        self._add(_Rule("error", times, self._methods(methods), after, error=code))

    def clear_failures(self) -> None:
        with self._lock:
            self._rules.clear()

    # --- what happened ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def calls(self, method: str, *, ok_only: bool = False) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if r.method == method and (not ok_only or r.outcome in ("ok", "hang+ok"))
        ]

    @property
    def messages(self) -> list[FakeMessage]:
        """Every posted message in its current state, in posting order."""
        with self._lock:
            return sorted(self._messages.values(), key=lambda m: m.ts)

    def message(self, channel: str, ts: str) -> FakeMessage:
        with self._lock:
            return self._messages[(channel, ts)]

    def dm_channel(self, user_id: str) -> str | None:
        with self._lock:
            return self._dms.get(user_id)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Until no request is being handled (e.g. a hang has finished)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("fake Slack still busy")
                self._lock.wait(left)

    # --- request handling (called from the server's threads) ----------------------------------

    def _take_rule(self, method: str) -> _Rule | None:
        with self._lock:
            return next((rule for rule in self._rules if rule.take(method)), None)

    def _enter(self, rec: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(rec)
            self._in_flight += 1

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    def _authorised(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else params.get("token")
        if not token:
            raise _Refused("not_authed")
        if token != self.token:
            raise _Refused("invalid_auth")

    def _call(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        handler = {
            "api.test": lambda: {"ok": True, "args": p},
            "auth.test": self._auth_test,
            "conversations.open": lambda: self._conversations_open(p),
            "chat.postMessage": lambda: self._post(p),
            "chat.update": lambda: self._update(p),
            "chat.postEphemeral": lambda: self._ephemeral(p),
            "users.info": lambda: self._users_info(p),
            "users.lookupByEmail": lambda: self._lookup(p),
            "views.open": lambda: self._views_open(p),
            "views.update": lambda: self._views_update(p),
        }.get(method)
        if handler is None:
            raise _Refused("unknown_method")
        return handler()

    def _auth_test(self) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake-aims.slack.com/",
            "team": "Fake AIMS",
            "user": "aims",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _open_dm(self, user_id: str) -> tuple[str, bool]:
        with self._lock:
            if user_id not in self._users:
                if self.strict_users or user_id[:1] not in ("U", "W"):
                    raise _Refused("user_not_found")
                self._users[user_id] = _user(user_id, None, None)
            if user_id in self._dms:
                return self._dms[user_id], True
            channel = f"D{len(self._dms) + 1:08d}"
            self._dms[user_id] = channel
            return channel, False

    def _conversations_open(self, p: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(p.get("users", "")).split(",") if u]
        if not users and p.get("channel"):
            return {"ok": True, "channel": {"id": p["channel"]}, "already_open": True}
        if len(users) != 1:
            raise _Refused("users_list_not_supplied" if not users else "not_enough_users")
        channel, already = self._open_dm(users[0])
        return {"ok": True, "no_op": already, "already_open": already, "channel": {"id": channel}}

    def _channel(self, channel: str | None) -> str:
        if not channel:
            raise _Refused("channel_not_found")
        if channel[:1] in ("U", "W"):  # posting to a user id lands in their DM
            return self._open_dm(channel)[0]
        with self._lock:
            if channel not in self._channels and channel not in self._dms.values():
                raise _Refused("channel_not_found")
        return channel

    def _post(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(p.get("channel"))
        blocks = _blocks(p.get("blocks"))
        text = str(p.get("text") or "")
        if not text and not blocks:
            raise _Refused("no_text")
        with self._lock:
            ts = f"{self._ts_base}.{next(self._seq):06d}"
            msg = FakeMessage(channel=channel, ts=ts, text=text, blocks=blocks)
            self._messages[(channel, ts)] = msg
            answer = {"ok": True, "channel": channel, "ts": ts, "message": msg.as_slack()}
        if self.on_message is not None:
            self.on_message(msg, False)
        return answer

    def _ephemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        """Seen only by `user`; kept in `ephemerals`, never among the channel's messages."""
        if not p.get("channel"):
            raise _Refused("channel_not_found")
        if not p.get("user"):
            raise _Refused("user_not_in_channel")
        with self._lock:
            ts = f"{self._ts_base}.{next(self._seq):06d}"
            self.ephemerals.append(
                {
                    "channel": p["channel"],
                    "user": p["user"],
                    "text": str(p.get("text") or ""),
                    "ts": ts,
                }
            )
        return {"ok": True, "message_ts": ts}

    def _update(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(p.get("channel"))
        ts = str(p.get("ts") or "")
        with self._lock:
            msg = self._messages.get((channel, ts))
            if msg is None:
                raise _Refused("message_not_found")
            msg.history.append({"text": msg.text, "blocks": msg.blocks})
            if "text" in p:
                msg.text = str(p["text"])
            if "blocks" in p:  # as Slack: omitted blocks are kept, [] removes them
                msg.blocks = _blocks(p["blocks"])
            msg.updates += 1
            answer = {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "text": msg.text,
                "message": msg.as_slack(),
            }
        if self.on_message is not None:
            self.on_message(msg, True)
        return answer

    def _views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        """A modal for the trigger of a click. Slack refuses a missing or used trigger id
        (`invalid_trigger_id`; an expired one is `expired_trigger_id`, see `error()`)."""
        trigger = str(p.get("trigger_id") or "")
        view = _modal(p.get("view"))
        with self._lock:
            if not trigger or any(v.trigger_id == trigger for v in self.views):
                raise _Refused("invalid_trigger_id")
            opened = FakeView(
                id=f"V{len(self.views) + 1:08d}",
                trigger_id=trigger,
                user=p.get("user_id"),
                view=view,
            )
            self.views.append(opened)
        return {"ok": True, "view": {"id": opened.id, **view}}

    def _views_update(self, p: dict[str, Any]) -> dict[str, Any]:
        view = _modal(p.get("view"))
        with self._lock:
            found = next((v for v in self.views if v.id == p.get("view_id")), None)
            if found is None:
                raise _Refused("not_found")
            found.view = view
            found.updates += 1
        return {"ok": True, "view": {"id": found.id, **view}}

    def _users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            user = self._users.get(str(p.get("user", "")))
        if user is None:
            raise _Refused("user_not_found")
        return {"ok": True, "user": user}

    def _lookup(self, p: dict[str, Any]) -> dict[str, Any]:
        email = str(p.get("email", "")).lower()
        with self._lock:
            for user in self._users.values():
                if user["profile"].get("email", "").lower() == email and email:
                    return {"ok": True, "user": user}
        raise _Refused("users_not_found")


def _user(user_id: str, email: str | None, name: str | None) -> dict[str, Any]:
    name = name or user_id.lower()
    profile: dict[str, Any] = {"real_name": name, "display_name": name}
    if email:
        profile["email"] = email
    return {
        "id": user_id,
        "team_id": TEAM_ID,
        "name": name,
        "real_name": name,
        "deleted": False,
        "is_bot": False,
        "profile": profile,
    }


def _blocks(raw: Any) -> list[dict[str, Any]]:
    """Blocks arrive as a list (JSON body) or a JSON string (form body); checked loosely."""
    if raw in (None, ""):
        return []
    blocks = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(blocks, list) or len(blocks) > 50:
        raise _Refused("invalid_blocks")
    for b in blocks:
        if not isinstance(b, dict) or "type" not in b:
            raise _Refused("invalid_blocks")
        if b["type"] == "header" and len(b["text"]["text"]) > 150:
            raise _Refused("invalid_blocks")
        for el in b.get("elements", []) if b["type"] == "actions" else []:
            if len(str(el.get("value", ""))) > 2000:
                raise _Refused("invalid_blocks")
    return blocks


def _text_ok(obj: Any, limit: int) -> bool:
    return isinstance(obj, dict) and 0 < len(str(obj.get("text", ""))) <= limit


def _modal(raw: Any) -> dict[str, Any]:
    """A modal view (JSON string or dict), checked against Slack's limits as Slack refuses them
    (`invalid_arguments`): type modal, title and buttons ≤ 24 characters, ≤ 100 blocks, section
    texts ≤ 3,000, input labels and hints ≤ 2,000, private_metadata ≤ 3,000, unique block ids."""
    view = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(view, dict) or view.get("type") != "modal":
        raise _Refused("invalid_arguments")
    blocks = view.get("blocks")
    ok = (
        _text_ok(view.get("title"), 24)
        and all(_text_ok(view[k], 24) for k in ("submit", "close") if k in view)
        and isinstance(blocks, list)
        and 0 < len(blocks) <= 100
        and len(str(view.get("private_metadata", ""))) <= 3000
        and len(str(view.get("callback_id", ""))) <= 255
    )
    if not ok:
        raise _Refused("invalid_arguments")
    ids = [b.get("block_id") for b in blocks if isinstance(b, dict) and b.get("block_id")]
    if len(ids) != len(set(ids)):
        raise _Refused("invalid_arguments")
    for b in blocks:
        if not isinstance(b, dict) or "type" not in b:
            raise _Refused("invalid_arguments")
        if b["type"] == "section" and not _text_ok(b.get("text"), 3000):
            raise _Refused("invalid_arguments")
        if b["type"] == "input" and not (
            _text_ok(b.get("label"), 2000)
            and ("hint" not in b or _text_ok(b["hint"], 2000))
            and isinstance(b.get("element"), dict)
        ):
            raise _Refused("invalid_arguments")
    return view


class _Handler(BaseHTTPRequestHandler):
    owner: FakeSlack
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _params(self) -> dict[str, Any]:
        url = urlsplit(self.path)
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = (self.headers.get("Content-Type") or "").lower()
        if raw and ctype.startswith("application/json"):
            body = json.loads(raw)
            if isinstance(body, dict):
                params.update(body)
        elif raw:
            params.update({k: v[-1] for k, v in parse_qs(raw.decode()).items()})
        return params

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake = self.owner
        path = urlsplit(self.path).path
        method = path.removeprefix("/api/") if path.startswith("/api/") else ""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            params = self._params()
        except (ValueError, UnicodeDecodeError):
            self._send(200, {"ok": False, "error": "invalid_json"})
            return
        rec = RecordedRequest(method=method, params=params, headers=headers, at=time.time())
        fake._enter(rec)
        try:
            if not method:
                rec.status, rec.outcome = 404, "http-404"
                self._send(404, b"Not Found", "text/plain")
                return
            rule = fake._take_rule(method)
            prefix = ""
            if rule is not None and rule.kind == "status":
                rec.status, rec.outcome = rule.status, f"http-{rule.status}"
                self._send(rule.status, b"<html>Slack is having trouble</html>", "text/html")
                return
            if rule is not None and rule.kind == "rate_limit":
                rec.status, rec.outcome = 429, "http-429"
                body = {"ok": False, "error": "ratelimited"}
                self._send(429, body, extra={"Retry-After": str(rule.retry_after)})
                return
            if rule is not None and rule.kind == "hang":
                time.sleep(rule.seconds)
                prefix = "hang+"
            try:
                if rule is not None and rule.kind == "error":
                    raise _Refused(rule.error)
                fake._authorised(headers, params)
                result = fake._call(method, params)
                rec.outcome = prefix + "ok"
            except _Refused as refused:
                result = {"ok": False, "error": refused.code}
                rec.outcome = f"{prefix}error:{refused.code}"
            self._send(200, result)
        finally:
            fake._leave()

    def _send(
        self,
        status: int,
        body: dict[str, Any] | bytes,
        ctype: str = "application/json; charset=utf-8",
        extra: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a hang)
            pass
