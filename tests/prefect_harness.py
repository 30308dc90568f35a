"""One real local Prefect API and one served runner per test session (the API's start costs ~22 s).

Started lazily by the first test that asks for them; tests without Prefect never pay for it. The
parts are `aims up`'s own (deployments/local_engine.py), so the tests run what users run.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from deployments.local_engine import (
    ROOT,
    PrefectServer,
    Process,
    ServedRunner,
    free_port,
    wait_http,
)

__all__ = [
    "ROOT",
    "PrefectServer",
    "Process",
    "ServedRunner",
    "free_port",
    "processes_for_flow_run",
    "processes_with",
    "wait_for_log",
    "wait_http",
]


def processes_with(needle: str) -> list[int]:
    """PIDs of live processes (other than this one) whose environment contains `needle`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def processes_for_flow_run(flow_run_id: str) -> list[int]:
    """PIDs of live processes running this flow run (the runner passes its id in the env)."""
    return processes_with(f"PREFECT__FLOW_RUN_ID={flow_run_id}")


def wait_for_log(
    log: Path, proc: subprocess.Popen[bytes] | None, pattern: str, timeout: float
) -> str:
    """The log's text once `pattern` (a regular expression) is in it; fails with its tail when
    the process exits first or time runs out."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if re.search(pattern, text):
            return text
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {pattern!r}:\n{text[-4000:]}")
        time.sleep(0.5)
    raise AssertionError(f"{pattern!r} not in {log.name} after {timeout:.0f} s:\n{text[-4000:]}")
