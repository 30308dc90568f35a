"""A local stand-in for Slack's Socket Mode endpoint, so Socket Mode is tested offline.

Two small servers on 127.0.0.1, both in daemon threads:

- a minimal Web API answering `apps.connections.open` (the call a `SocketModeClient` makes with
  its app token to get a websocket URL). Point any `WebClient(base_url=server.api_base_url)` at
  it; or, when another fake Web API already runs, have it return `server.ws_url`.
- a websocket server that, like Slack, greets each connection with a `hello` message, then sends
  whatever envelopes the test pushes (`send_interactive`) and records every message the client
  sends back, so a test can wait for the ack of one envelope id.

Nothing here reaches slack.com.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

APP_ID = "A0AIMSAPP"


class FakeSocketModeServer:
    """Slack's Socket Mode endpoint, played locally. Use as a context manager."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._ws_server: Server | None = None
        self._http_server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Condition()
        self._connections: list[ServerConnection] = []
        self._send_lock = threading.Lock()
        self.received: list[dict[str, Any]] = []  # every JSON message the client sent
        self.sent: list[dict[str, Any]] = []  # every message this server sent
        self.connections_opened = 0  # apps.connections.open calls
        self.connections_accepted = 0  # websocket connections accepted
        self.api_requests: list[dict[str, Any]] = []  # path and Authorization of each API call
        # Called on the server's thread with each client message as it arrives, before it is
        # recorded: a test can look at the world at the very moment an ack comes in.
        self.on_client_message: Callable[[dict[str, Any]], None] | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeSocketModeServer:
        self._ws_server = serve(self._handle, self.host, 0, compression=None)
        ws_port = self._ws_server.socket.getsockname()[1]
        self.ws_url = f"ws://{self.host}:{ws_port}/link/?ticket=fake-ticket&app_id={APP_ID}"
        self._http_server = ThreadingHTTPServer((self.host, 0), _api_handler(self))
        http_port = self._http_server.server_address[1]
        self.api_base_url = f"http://{self.host}:{http_port}/api/"
        for target in (self._ws_server.serve_forever, self._http_server.serve_forever):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def drop_connections(self) -> None:
        """Close every websocket from the server's side (Slack does this on a refresh)."""
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(Exception):  # already gone
                conn.close()

    def stop(self) -> None:
        self.drop_connections()
        if self._ws_server is not None:
            self._ws_server.shutdown()
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeSocketModeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- websocket side --------------------------------------------------------------------

    def _handle(self, conn: ServerConnection) -> None:
        with self._lock:
            self._connections.append(conn)
            self.connections_accepted += 1
            self._lock.notify_all()
        self._send(
            conn,
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {
                    "host": "applink-fake-1",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": APP_ID},
            },
        )
        try:
            for raw in conn:
                try:
                    message = json.loads(raw)
                except (TypeError, ValueError):
                    message = {"_raw": raw}
                if self.on_client_message is not None:
                    self.on_client_message(message)
                with self._lock:
                    self.received.append(message)
                    self._lock.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)
                self._lock.notify_all()

    def _send(self, conn: ServerConnection, message: dict[str, Any]) -> None:
        with self._send_lock:
            conn.send(json.dumps(message))
        with self._lock:
            self.sent.append(message)

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Block until a client holds an open websocket (after its `hello`)."""
        with self._lock:
            if not self._lock.wait_for(lambda: bool(self._connections), timeout=timeout):
                raise TimeoutError("no Socket Mode client connected")

    def send_envelope(self, message: dict[str, Any]) -> None:
        """Send a raw message to the most recent connection."""
        self.wait_connected()
        with self._lock:
            conn = self._connections[-1]
        self._send(conn, message)

    def send_interactive(self, payload: dict[str, Any], envelope_id: str | None = None) -> str:
        """Send an `interactive` envelope carrying `payload`; returns its envelope id.

        Reusing an envelope id plays Slack's at-least-once redelivery of the same envelope.
        """
        eid = envelope_id or str(uuid.uuid4())
        self.send_envelope(
            {
                "envelope_id": eid,
                "payload": payload,
                "type": "interactive",
                "accepts_response_payload": False,
            }
        )
        return eid

    def acks_for(self, envelope_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.received if m.get("envelope_id") == envelope_id]

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0, count: int = 1) -> dict:
        """The client's ack of `envelope_id` (waits until `count` acks of it arrived)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                acks = [m for m in self.received if m.get("envelope_id") == envelope_id]
                if len(acks) >= count:
                    return acks[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no ack for envelope {envelope_id}")
                self._lock.wait(timeout=left)


def _api_handler(server: FakeSocketModeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            auth = self.headers.get("Authorization", "")
            server.api_requests.append({"path": self.path, "authorization": auth})
            if self.path.rstrip("/").endswith("apps.connections.open"):
                if not auth.startswith("Bearer xapp-"):
                    body: dict[str, Any] = {"ok": False, "error": "not_allowed_token_type"}
                else:
                    server.connections_opened += 1
                    body = {"ok": True, "url": server.ws_url}
            else:
                body = {"ok": False, "error": "unknown_method"}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler


@contextmanager
def socket_mode_server() -> Iterator[FakeSocketModeServer]:
    """A started fake Socket Mode endpoint, stopped afterwards (use from a pytest fixture)."""
    server = FakeSocketModeServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
