"""A private PostgreSQL cluster for a test that stops and starts the server under the product.

Never the shared test server (AIMS_TEST_POSTGRES_URL: other tests use it): a cluster of its own,
made with initdb in a temporary directory, on a port of its own on 127.0.0.1, run as the
`postgres` user when the tests run as root (initdb refuses root), as .ci/pg-cluster does.
`private_cluster()` removes it afterwards, stopping it first (immediate) even when the test
failed. Costs ~2.5 s (initdb ~2 s, start ~0.2 s, fsync off).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from prefect_harness import free_port

StopMode = Literal["smart", "fast", "immediate"]


def find_bindir() -> Path | None:
    """The PostgreSQL server binaries (Debian's layout first, then PATH)."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").is_file():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class PrivateCluster:
    bindir: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        as_postgres = (
            {"user": "postgres", "group": "postgres", "extra_groups": []}
            if os.geteuid() == 0
            else {}
        )
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            **as_postgres,  # type: ignore[arg-type]
        )

    def _check(self, *args: str) -> None:
        done = self._run(*args)
        if done.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stderr or done.stdout}\n{log[-2000:]}")

    def init(self) -> None:
        self._check("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=50"
        )
        log = str(self.root / "log")
        self._check(
            "pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "30", "start", "-o", options
        )

    def stop(self, mode: StopMode = "fast") -> None:
        self._check("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status").returncode == 0


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A started private cluster; stopped and deleted afterwards, whatever happened."""
    bindir = find_bindir()
    if bindir is None:
        message = "no PostgreSQL server binaries (initdb): install postgresql"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="aims-pg-private-"))  # /tmp: reachable by postgres
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = PrivateCluster(bindir=bindir, root=root, port=free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            if cluster.running():
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
