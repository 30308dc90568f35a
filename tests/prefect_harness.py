"""One real local Prefect API and one served runner per test session (the API's start costs ~22 s).

Started lazily by the first test that asks for them; tests without Prefect never pay for it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while waiting for {url}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s ({last})")


@dataclass
class Process:
    """A child process with its log file; stopped with SIGTERM, then SIGKILL."""

    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@dataclass
class PrefectServer:
    port: int
    home: Path
    process: Process = field(init=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def __post_init__(self) -> None:
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_API_URL": self.api_url,
        }
        self.process = Process(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env,
            self.home / "server.log",
        )

    def start(self, timeout: float = 120) -> None:
        self.process.start()
        try:
            wait_http(f"{self.api_url}/health", timeout, self.process.proc)
        except Exception as exc:
            raise RuntimeError(
                f"Prefect server did not start: {exc}\n{self.process.tail()}"
            ) from exc

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.process.stop(sig)


@dataclass
class ServedRunner:
    """`python -m deployments.serve` with the test's AIMS database and a 1 s poll."""

    server: PrefectServer
    env_extra: dict[str, str]
    workdir: Path
    process: Process = field(init=False)

    def __post_init__(self) -> None:
        env = {
            **os.environ,
            **self.env_extra,
            "PREFECT_API_URL": self.server.api_url,
            "PREFECT_HOME": str(self.server.home),
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            "PREFECT_LOCAL_STORAGE_PATH": str(self.workdir / "results"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PYTHONPATH": str(ROOT),
        }
        self.process = Process(
            [sys.executable, "-m", "deployments.serve"], env, self.workdir / "runner.log"
        )

    def start(self, deployments: list[str], timeout: float = 90) -> None:
        from prefect.client.orchestration import get_client

        self.process.start()
        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            for name in deployments:
                while True:
                    if self.process.proc and self.process.proc.poll() is not None:
                        raise RuntimeError(f"runner exited:\n{self.process.tail()}")
                    try:
                        client.read_deployment_by_name(name)
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise TimeoutError(
                                f"deployment {name} not served:\n{self.process.tail()}"
                            ) from None
                        time.sleep(0.5)
        time.sleep(1.5)  # the runner registers, then starts polling

    def stop(self) -> None:
        self.process.stop()


def processes_for_flow_run(flow_run_id: str) -> list[int]:
    """PIDs of live processes running this flow run (the runner passes its id in the env)."""
    needle = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids
