"""The engine on one machine (`aims up`): a Prefect server, the served runner and the HTTP app,
started in order, watched, restarted when one dies, and stopped together.

Each part is a child process in its own session, so Ctrl-C reaches only the supervisor, which then
stops the parts in reverse order (HTTP app, runner with its flow runs, server); a part that does
not stop on SIGTERM is killed. Should the supervisor itself be killed, the kernel sends its parts
SIGTERM (PR_SET_PDEATHSIG), so no orphan keeps serving. No Prefect import here: this module only
runs processes and asks their health over HTTP.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1
#: A part that dies is restarted this often within RESTART_WINDOW seconds, then the engine stops.
MAX_RESTARTS = 3
RESTART_WINDOW = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until `url` answers 200; fails early when `proc` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while waiting for {url}")
        if healthy(url):
            return
        time.sleep(0.3)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies, however it dies."""
    with contextlib.suppress(OSError):  # not Linux: the supervisor's own stop still applies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Process:
    """A child process in a session of its own, with its output in a log file."""

    args: list[str]
    env: dict[str, str]
    log: Path
    name: str = "process"
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=Path.cwd(),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """`sig` to the whole process group (the runner's flow runs too), then SIGKILL."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError):  # children that outlived their leader
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(5)

    def tail(self, n: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def prefect_env(api_url: str, storage: Path, poll_seconds: float) -> dict[str, str]:
    """What every part and every flow run needs to find the API and each other's results."""
    return {
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Runs started by the CLI, Slack or intake begin within seconds, not ~10 s.
        "PREFECT_RUNNER_POLL_FREQUENCY": f"{poll_seconds:g}",
        # A suspended run re-runs from the top: the steps before the wait come back cached.
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "PREFECT_LOCAL_STORAGE_PATH": os.environ.get("PREFECT_LOCAL_STORAGE_PATH", str(storage)),
        "NO_PROXY": ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"])),
    }


@dataclass
class PrefectServer:
    """`prefect server start` on 127.0.0.1; its database is SQLite under `home` unless
    PREFECT_SERVER_DATABASE_CONNECTION_URL says otherwise (the scale-out path)."""

    port: int
    home: Path
    ui: bool = False
    host: str = "127.0.0.1"
    env_extra: dict[str, str] = field(default_factory=dict)
    process: Process = field(init=False)

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __post_init__(self) -> None:
        env = {
            **os.environ,
            **self.env_extra,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": str(self.ui).lower(),
            # The UI asks the API here; its default is :4200 whatever the port.
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"),
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
                self.host,
                "--port",
                str(self.port),
            ],
            env,
            self.home / "server.log",
            "Prefect server",
        )

    def start(self, timeout: float = 180) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.process.start()
        try:
            wait_http(f"{self.api_url}/health", timeout, self.process.proc)
        except Exception as exc:
            self.process.stop()
            raise RuntimeError(
                f"Prefect server did not start: {exc}\n{self.process.tail()}"
            ) from exc

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.process.stop(sig)


def deployment_registered(api_url: str, name: str) -> bool:
    try:
        return httpx.get(f"{api_url}/deployments/name/{name}", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class ServedRunner:
    """`python -m deployments.serve`: every deployment, its schedules, and the runs it starts."""

    api_url: str
    env_extra: dict[str, str]
    workdir: Path
    poll_seconds: float = 2.0
    process: Process = field(init=False)

    def __post_init__(self) -> None:
        env = {
            **os.environ,
            **prefect_env(self.api_url, self.workdir / "results", self.poll_seconds),
            **self.env_extra,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.process = Process(
            [sys.executable, "-m", "deployments.serve"], env, self.workdir / "runner.log", "runner"
        )

    def start(self, deployments: list[str], timeout: float = 120) -> None:
        """Until every one of `deployments` is registered, then one poll more."""
        self.process.start()
        deadline = time.monotonic() + timeout
        for name in deployments:
            while not deployment_registered(self.api_url, name):
                if not self.process.alive:
                    raise RuntimeError(f"runner exited:\n{self.process.tail()}")
                if time.monotonic() > deadline:
                    self.process.stop()
                    raise TimeoutError(f"deployment {name} not served:\n{self.process.tail()}")
                time.sleep(0.5)
        time.sleep(self.poll_seconds + 0.5)  # the runner registers, then starts polling

    def stop(self) -> None:
        self.process.stop()


@dataclass
class HttpApp:
    """`aims bridge`: Slack interactions, Socket Mode, incident intake, health."""

    port: int
    env: dict[str, str]
    log: Path
    host: str = "127.0.0.1"
    process: Process = field(init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __post_init__(self) -> None:
        self.process = Process(
            [
                sys.executable,
                "-m",
                "aims_core.cli",
                "bridge",
                "--host",
                self.host,
                "--port",
                str(self.port),
            ],
            self.env,
            self.log,
            "HTTP app",
        )

    def start(self, timeout: float = 60) -> None:
        self.process.start()
        try:
            wait_http(f"{self.url}/healthz", timeout, self.process.proc)
        except Exception as exc:
            self.process.stop()
            raise RuntimeError(f"HTTP app did not start: {exc}\n{self.process.tail()}") from exc

    def stop(self) -> None:
        self.process.stop()


@dataclass
class EngineInfo:
    """What `aims up` writes to <data dir>/engine.json, so other shells find the running engine."""

    api_url: str
    ui_url: str | None
    http_url: str
    pid: int
    started_at: float

    @staticmethod
    def path(data_dir: Path) -> Path:
        return data_dir / "engine.json"

    def write(self, data_dir: Path) -> None:
        tmp = self.path(data_dir).with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2) + "\n")
        tmp.replace(self.path(data_dir))

    @classmethod
    def read(cls, data_dir: Path) -> EngineInfo | None:
        """The running engine's addresses; None when none runs (a stale file is ignored)."""
        try:
            info = cls(**json.loads(cls.path(data_dir).read_text()))
            os.kill(info.pid, 0)
        except (OSError, ValueError, TypeError):
            return None
        return info


Say = Callable[[str], None]


@dataclass
class LocalEngine:
    """Everything the engine needs on one machine, as `aims up` runs it."""

    data_dir: Path
    aims_env: dict[str, str]
    deployments: list[str]
    port: int = 4200
    bridge_port: int = 3000
    external_api_url: str | None = None
    poll_seconds: float = 2.0
    runner_limit: int = 4
    say: Say = print
    server: PrefectServer | None = field(init=False, default=None)
    runner: ServedRunner = field(init=False)
    http: HttpApp = field(init=False)
    _restarts: dict[str, list[float]] = field(init=False, default_factory=dict)
    _waiting: set[str] = field(init=False, default_factory=set)  # parts waiting for the API
    _stopping: threading.Event = field(init=False, default_factory=threading.Event)
    _started: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        home = self.data_dir / "prefect"
        if self.external_api_url is None:
            self.server = PrefectServer(self.port, home, ui=True)
        env = {
            **self.aims_env,
            "AIMS_RUNNER_LIMIT": str(self.runner_limit),
            "PREFECT_HOME": str(home),
        }
        self.runner = ServedRunner(self.api_url, env, home, self.poll_seconds)
        http_env = {**os.environ, **prefect_env(self.api_url, home / "results", 2), **env}
        self.http = HttpApp(self.bridge_port, http_env, home / "http.log")

    @property
    def api_url(self) -> str:
        return self.external_api_url or (self.server.api_url if self.server else "")

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/api")

    def parts(self) -> list[tuple[str, Callable[[], None], Process]]:
        """(name, start, process) in start order."""
        out: list[tuple[str, Callable[[], None], Process]] = []
        if self.server is not None:
            out.append(("Prefect server", self.server.start, self.server.process))
        out.append(("runner", lambda: self.runner.start(self.deployments), self.runner.process))
        out.append(("HTTP app", self.http.start, self.http.process))
        return out

    def check_ports(self) -> None:
        taken = [
            f"{what} port {port}"
            for what, port, mine in (
                ("Prefect", self.port, self.server is not None),
                ("HTTP app", self.bridge_port, True),
            )
            if mine and port_in_use("127.0.0.1", port)
        ]
        if taken:
            raise RuntimeError(
                f"{' and '.join(taken)} already in use on 127.0.0.1: is an engine already up? "
                "Choose others with --port / --bridge-port"
            )

    def up(self) -> None:
        """Start every part in order, each waited for; on a failure stop what started."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.server is None and not healthy(f"{self.api_url}/health"):
            raise RuntimeError(
                f"PREFECT_API_URL={self.api_url} does not answer: start that server, or unset "
                "PREFECT_API_URL and `aims up` starts its own"
            )
        self.check_ports()
        try:
            for name, start, _ in self.parts():
                began = time.monotonic()
                self.say(f"starting {name} ...")
                start()
                self.say(f"  {name} ready in {time.monotonic() - began:.1f} s")
        except BaseException:
            self.down()
            raise
        EngineInfo(
            self.api_url,
            self.ui_url if self.server else None,
            self.http.url,
            os.getpid(),
            time.time(),
        ).write(self.data_dir)

    def supervise(self, check_every: float = 1.0) -> int:
        """Until stop(): restart a part that died (bounded); 0 on a clean stop, 1 on giving up."""
        while not self._stopping.wait(check_every):
            for name, start, proc in self.parts():
                if proc.alive or self._stopping.is_set():
                    continue
                code = proc.proc.returncode if proc.proc else None
                if name == "runner" and not healthy(f"{self.api_url}/health"):
                    # Prefect's runner gives up after ~4 min without its API; started again
                    # now it would only fail and use up the restarts, and the engine would stop,
                    # HTTP app and all (which keeps committing decisions meanwhile: the
                    # reconciler resumes their runs). So: once the API answers again.
                    if name not in self._waiting:
                        self._waiting.add(name)
                        self.say(
                            f"{name} exited ({code}); restarting it once the Prefect API at "
                            f"{self.api_url} answers (log: {proc.log})"
                        )
                    continue
                self._waiting.discard(name)
                recent = [
                    t for t in self._restarts.get(name, []) if time.monotonic() - t < RESTART_WINDOW
                ]
                if len(recent) >= MAX_RESTARTS:
                    self.say(
                        f"{name} exited ({code}) {len(recent) + 1} times in "
                        f"{RESTART_WINDOW / 60:.0f} min; stopping the engine. Log: {proc.log}\n"
                        f"{proc.tail(15)}"
                    )
                    return 1
                self._restarts[name] = [*recent, time.monotonic()]
                self.say(f"{name} exited ({code}); restarting it (log: {proc.log})")
                try:
                    start()
                    self.say(f"  {name} ready again")
                except Exception as exc:
                    self.say(f"  {name} did not come back: {exc}")
        return 0

    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """From a signal handler or another thread: supervise() returns, then call down()."""
        self._stopping.set()

    def down(self) -> None:
        """Stop every part, newest first; remove engine.json. Safe to call twice."""
        self._stopping.set()
        for name, _, proc in reversed(self.parts()):
            if proc.proc is not None and proc.proc.poll() is None:
                self.say(f"stopping {name} ...")
            proc.stop()
        info = EngineInfo.read(self.data_dir)
        if info is not None and info.pid == os.getpid():
            EngineInfo.path(self.data_dir).unlink(missing_ok=True)

    def run_until_stopped(self, on_ready: Callable[[], Any] | None = None) -> int:
        """up, `on_ready`, supervise until SIGINT/SIGTERM, down. The exit code."""

        def on_signal(signum: int, frame: object) -> None:
            self.stop()
            if not self._started:  # still starting: leave the waits at once
                raise KeyboardInterrupt

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.up()
            self._started = True
            if on_ready is not None and not self._stopping.is_set():
                on_ready()
            return self.supervise()
        finally:
            self.down()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
