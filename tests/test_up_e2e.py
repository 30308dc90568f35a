"""`aims demo run` (that is `aims up` plus the scripted day) with both databases on PostgreSQL:
the AIMS database and the Prefect server's own. It stays up after the day, the Prefect API lists
the day's runs, and Ctrl-C leaves no process behind.

The engine runs as a user runs it, a subprocess of the `aims` command with its own Prefect
server; only the ports and databases are the test's own. (`make demo DEMO_EXIT=1` on SQLite, the
embedded default, is run by `.ci/run` on every clean clone.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import _pg_url, scratch_database
from demo_org import figures_counted, figures_of
from prefect_harness import ROOT, free_port, processes_with, wait_for_log
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from aims_core.cli import app
from aims_core.db import dispose_engine
from aims_core.services import reviews
from aims_core.settings import Settings
from aims_core.uow import UnitOfWork

READY = "The engine stays up; Ctrl-C stops it."


@pytest.fixture
def databases() -> Iterator[dict[str, str]]:
    admin_url = _pg_url()
    assert admin_url
    with (
        scratch_database(admin_url, "aims_up", "psycopg") as aims_url,
        scratch_database(admin_url, "prefect_up", "asyncpg") as prefect_url,
    ):
        yield {"aims": aims_url, "prefect": prefect_url}


def test_demo_on_postgresql_stays_up_lists_its_runs_and_ctrl_c_leaves_nothing(
    databases: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / f"engine-{uuid.uuid4().hex[:8]}"
    port, bridge_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIMS_", "PREFECT_"))}
    env |= {
        "AIMS_DATA_DIR": str(data),
        "AIMS_DATABASE_URL": databases["aims"],
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": databases["prefect"],
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(ROOT),
    }
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aims_core.cli",
                "demo",
                "run",
                "--fake-slack",
                "--port",
                str(port),
                "--bridge-port",
                str(bridge_port),
            ],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        output = wait_for_log(log, proc, re.escape(READY), timeout=300)
        assert "Prefect data  postgresql+asyncpg (PREFECT_SERVER_DATABASE_CONNECTION_URL)" in output
        assert output.count("\n  ok ") == 3, output  # every step of the day showed in Prefect
        assert "  slack → " in output  # the fake Slack printed what the engine sent

        # The Prefect API lists the day's runs (and other shells find it through engine.json).
        info = json.loads((data / "engine.json").read_text())
        assert info["api_url"] == f"http://127.0.0.1:{port}/api"
        runs = httpx.post(f"{info['api_url']}/flow_runs/filter", json={}, timeout=10).json()
        states = {r["name"]: r["state"]["name"] for r in runs}
        assert states["gate credit-scoring: concept→design"] == "Suspended", states
        assert states["management review " + _period(output)] == "Suspended", states
        # The day's incident follows the year of history's seven (closed, run by no flow).
        incident = [n for n in states if n.startswith("incident ")]
        assert len(incident) == 1 and states[incident[0]] not in ("Failed", "Crashed"), states

        # Both databases are PostgreSQL: the runs are rows in the Prefect server's database,
        # the gate and its approval request rows in the AIMS database.
        prefect_db = create_engine(databases["prefect"].replace("+asyncpg", "+psycopg"))
        with prefect_db.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM flow_run")).scalar_one() >= 3
        prefect_db.dispose()
        status = CliRunner().invoke(
            app,
            ["status", "--json"],
            env={"AIMS_DATA_DIR": str(data), "AIMS_DATABASE_URL": databases["aims"]},
        )
        assert status.exit_code == 0, status.output
        waiting = json.loads(status.output)["approvals"]
        assert {a["subject"].split(":")[0] for a in waiting} >= {"gate", "review"}

        # The review pack was written where the demo said, and its key figures are the year of
        # history's: non-zero, each equal to this test's own count over the tables.
        pack = next(line.split()[-1] for line in output.splitlines() if "review pack:" in line)
        assert Path(pack).is_file() and Path(pack).stat().st_size > 10_000
        uow = UnitOfWork(Settings(data_dir=data, database_url=databases["aims"]))
        review = reviews.find_review(uow, _period(output))
        assert review is not None
        figures = figures_of(review.inputs["performance"])
        assert figures == figures_counted(uow, review.period)
        assert min(figures["incidents"], figures["capas_opened"], figures["findings"]) > 0
        assert figures["soa_decided"] == figures["soa_controls"] == 38
        dispose_engine(databases["aims"])

        # Ctrl-C: everything stops, in order, and nothing of this engine is left running.
        assert proc.poll() is None, "the demo must stay up until Ctrl-C"
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(90) == 0
        tail = log.read_text()
        assert "stopping Prefect server ..." in tail and "engine stopped" in tail
        deadline = time.monotonic() + 10
        while processes_with(str(data)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert processes_with(str(data)) == []
        assert not (data / "engine.json").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for pid in processes_with(str(data)):
            os.kill(pid, signal.SIGKILL)


def _period(output: str) -> str:
    """The quarter the demo reviewed, as it printed it."""
    line = next(x for x in output.splitlines() if "the management review of" in x)
    return line.split("the management review of ")[1].split()[0]
