"""One real local Prefect API and one served runner per test session (the API's start costs ~22 s).

Started lazily by the first test that asks for them; tests without Prefect never pay for it. The
parts are `aims up`'s own (deployments/local_engine.py), so the tests run what users run.
"""

from __future__ import annotations

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
    "wait_http",
]


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
