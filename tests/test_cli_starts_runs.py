"""Commands that start a run check their input first, and need an engine that answers.

Issue 20, point 5: an unknown (or deactivated) person, system or role exits 2 with one line
naming the option, before any call to Prefect; with no engine the command exits 1 within
seconds naming `aims up`, and never lets Prefect start its throw-away ephemeral server.
In process (`run_cli`), no engine: a small HTTP server stands in for the Prefect API where a
test must see whether anything called it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_ALLOW_EPHEMERAL_MODE,
    temporary_settings,
)
from prefect_harness import free_port
from records import count

from aims_core.cli import engine
from aims_core.models import ApprovalRequest, Incident
from aims_core.ports import ResumeOutcome
from aims_core.services.leavers import deactivate_person
from aims_core.services.people import DeactivationIn
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
REQUEST = [
    "approvals", "request", "--subject", "system:credit-scoring", "--title", "Retrain on Q3 data",
    "--role", "governance-lead", "--system", "credit-scoring", "--requester", f"ds.lead{D}",
]  # fmt: skip
#: The issue's limit for a command to say no engine runs.
NO_ENGINE_WITHIN_S = 5.0


def option(args: list[str], name: str, value: str) -> list[str]:
    """`args` with option `name` given `value` instead."""
    i = args.index(name)
    return [*args[: i + 1], value, *args[i + 2 :]]


class Calls(list[str]):
    """The paths a stand-in Prefect API was asked for, in order; it answers with `status`."""

    status = 200


@pytest.fixture
def prefect_api() -> Iterator[Calls]:
    """A server at PREFECT_API_URL that records every request and answers 200 (so an engine
    "answers" its health check; `status` changes it): any request it sees is a call to Prefect."""
    calls = Calls()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            calls.append(f"{self.command} {self.path}")
            self.send_response(calls.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"true")

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{server.server_port}/api"}):
            yield calls
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def closed_port() -> Iterator[str]:
    """PREFECT_API_URL at a 127.0.0.1 port nobody listens on."""
    url = f"http://127.0.0.1:{free_port()}/api"
    with temporary_settings({PREFECT_API_URL: url}):
        yield url


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No PREFECT_API_URL (environment and Prefect's settings), no engine.json in the data dir,
    and Prefect allowed to start its ephemeral server: the CLI must not let it."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
    with temporary_settings(
        updates={PREFECT_SERVER_ALLOW_EPHEMERAL_MODE: True}, restore_defaults={PREFECT_API_URL}
    ):
        yield


def error_line(result: Any) -> str:
    """The one line a refused command prints (stderr), checked to be one line."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_unknown_names_exit_2_naming_the_option_and_start_nothing(
    org: UnitOfWork, settings: Settings, run_cli: Any, prefect_api: Calls
) -> None:
    deactivate_person(
        org,
        f"contract.auditor{D}",
        DeactivationIn(reason="left the company"),
        Actor(who="tester@example.org", channel="test"),
    )
    for args, message in [
        (
            option(REQUEST, "--requester", "nobody@example.invalid"),
            "error: --requester: no person with email 'nobody@example.invalid'",
        ),
        (
            option(REQUEST, "--requester", f"contract.auditor{D}"),
            f"error: --requester: contract.auditor{D}: Hana Sato was deactivated on ",
        ),
        (
            option(REQUEST, "--system", "no-such-system"),
            "error: --system: no AI system named 'no-such-system'",
        ),
        (option(REQUEST, "--role", "astrologer"), "error: --role: unknown role 'astrologer'"),
        (
            ["gate", "request", "no-such-system", "--to", "design"],
            "error: system: no AI system named 'no-such-system'",
        ),
        (
            ["gate", "request", "fraud-detection", "--to", "design", "--requester", "x@y.z"],
            "error: --requester: no person with email 'x@y.z'",
        ),
        (
            ["impact", "start", "cv-screening", "--assessor", f"contract.auditor{D}"],
            f"error: --assessor: contract.auditor{D}: Hana Sato was deactivated on ",
        ),
        (
            ["gap", "start", "--assessor", "nobody@example.invalid"],
            "error: --assessor: no person with email 'nobody@example.invalid'",
        ),
    ]:
        result = run_cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert error_line(result).startswith(message), (args, result.output)
    # Nothing reached Prefect (the stand-in answers, so an engine check would have been seen),
    # and nothing was recorded.
    assert prefect_api == []
    assert count(settings, ApprovalRequest) == 0


def test_a_bad_requester_exits_2_even_with_the_engine_down(
    org: UnitOfWork, settings: Settings, run_cli: Any, closed_port: str
) -> None:
    result = run_cli(*option(REQUEST, "--requester", "nobody@example.invalid"))
    assert result.exit_code == 2, result.output
    assert "--requester: no person with email 'nobody@example.invalid'" in error_line(result)
    assert count(settings, ApprovalRequest) == 0


def test_valid_input_reaches_the_engine_only_through_its_health_check(
    org: UnitOfWork, run_cli: Any, prefect_api: Calls
) -> None:
    """A valid request passes the checks; the start then asks the API if it answers first.
    Something else at that address (a proxy's 404) is no engine; the stand-in answering 200
    is, but serves no deployment: the start itself fails, after the health check."""
    prefect_api.status = 404
    result = run_cli(*option(REQUEST, "--requester", f"DS.Lead{D}"))
    assert result.exit_code == 1, result.output
    assert "answers its health check with HTTP 404" in error_line(result)
    assert "start it with `aims up`" in error_line(result)
    assert prefect_api == ["GET /api/health"]

    prefect_api.status = 200
    result = run_cli(*option(REQUEST, "--requester", f"DS.Lead{D}"))
    assert prefect_api[1] == "GET /api/health", prefect_api
    assert len(prefect_api) > 2  # then Prefect's client, for the deployment
    assert result.exit_code != 0 and "approval/approval" in result.output


def test_without_an_engine_a_run_start_names_aims_up_within_seconds(
    org: UnitOfWork, settings: Settings, run_cli: Any, no_engine: None
) -> None:
    started = time.monotonic()
    result = run_cli(*REQUEST)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert "start it with `aims up`" in line
    assert f"for data dir {settings.data_dir.resolve()}" in line
    assert "PREFECT_API_URL not set" in line
    assert elapsed < NO_ENGINE_WITHIN_S
    assert count(settings, ApprovalRequest) == 0

    # A drill checks for the engine before it records its incident.
    drill = run_cli("incident", "drill", "--playbook", "bias")
    assert drill.exit_code == 1 and "start it with `aims up`" in error_line(drill)
    assert count(settings, Incident) == 0

    # The CLI's other doors to runs call no Prefect either: nothing to resume or read now.
    runs = engine.runs()
    assert runs.resume("00000000-0000-0000-0000-000000000001", {}) is ResumeOutcome.deferred
    assert runs.state("00000000-0000-0000-0000-000000000001") is None
    assert engine.run_ended("00000000-0000-0000-0000-000000000001") is None

    # An incident is still recorded (and told) without the engine; its run is not started (3).
    started = time.monotonic()
    reported = run_cli(
        "incident", "report", "--system", "credit-scoring", "--severity", "SEV3",
        "--category", "model-failure", "--summary", "Scores drift",
    )  # fmt: skip
    assert reported.exit_code == 3, reported.output
    assert "start it with `aims up`" in reported.stderr
    assert time.monotonic() - started < NO_ENGINE_WITHIN_S
    assert count(settings, Incident) == 1


def test_with_the_api_at_a_closed_port_a_run_start_names_aims_up_within_seconds(
    org: UnitOfWork, settings: Settings, run_cli: Any, closed_port: str
) -> None:
    for args in (REQUEST, ["gate", "request", "fraud-detection", "--to", "design"]):
        started = time.monotonic()
        result = run_cli(*args)
        elapsed = time.monotonic() - started
        assert result.exit_code == 1, (args, result.output)
        line = error_line(result)
        assert f"no answer from the Prefect API at {closed_port}: " in line
        assert "start it with `aims up`" in line
        assert elapsed < NO_ENGINE_WITHIN_S

    # A port that takes the connection and never answers: the health check gives up in time.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # never accepted: the kernel completes the connection, nobody reads
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/api"
        with temporary_settings({PREFECT_API_URL: url}):
            started = time.monotonic()
            result = run_cli(*REQUEST)
            elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert f"no answer from the Prefect API at {url} within " in error_line(result)
    assert elapsed < NO_ENGINE_WITHIN_S
    assert count(settings, ApprovalRequest) == 0
