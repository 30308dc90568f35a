"""Scale-out end to end: Prefect server and AIMS database on PostgreSQL, deployments from
deployments/prefect.yaml on a `process` work pool, two workers sharing one result storage.

A stage gate suspended under worker A resumes, after A is gone, on worker B, and completes there:
the steps before the wait come back Cached from the shared storage.

This module starts its OWN Prefect server (the session engine serves deployments of the same
names) and drives it the way an operator would: the `prefect` and `aims` commands, as
subprocesses, with the commands docs/DEPLOYING.md gives.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import _pg_url, scratch_database
from prefect_fixtures import wait_for_state
from prefect_harness import (
    ROOT,
    PrefectServer,
    Process,
    free_port,
    processes_for_flow_run,
    wait_for_log,
)
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from aims_core.database import initialise
from aims_core.db import session_factory
from aims_core.models import AISystem, ApprovalRequest, GateReview, LifecycleStage
from aims_core.services import evidence
from aims_core.services.demo import load_demo
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

pytestmark = pytest.mark.postgres

ACTOR = Actor(who="e2e-workers", channel="test")
POOL = "aims"
SYSTEM = "marketing-recommender"  # minimal risk: concept → design, one approver
OWNER = "ops.owner@northwind.example"
APPROVER = "governance@northwind.example"


@dataclass
class ScaleOut:
    server: PrefectServer
    settings: Settings
    prefect_db_url: str  # the Prefect server's own database (PostgreSQL)
    results: Path  # the result storage every worker reaches
    work: Path

    def env(self, **extra: str) -> dict[str, str]:
        """An operator's shell on this installation: Prefect's API and the AIMS settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIMS_", "PREFECT_"))}
        env.update(
            PREFECT_API_URL=self.server.api_url,
            PREFECT_HOME=str(self.work / "operator-home"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            AIMS_DATABASE_URL=self.settings.effective_database_url,
            AIMS_DATA_DIR=str(self.settings.data_dir),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 120, **extra: str) -> str:
        out = subprocess.run(
            args, env=self.env(**extra), cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        assert out.returncode == 0, (
            f"{' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
        )
        return out.stdout + out.stderr

    def worker(self, name: str) -> Process:
        """`prefect worker start` as on its own machine: its own PREFECT_HOME, the checkout's
        path in AIMS_CHECKOUT, polling every second."""
        home = self.work / name
        home.mkdir()
        return Process(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--name", name],
            self.env(
                PREFECT_HOME=str(home),
                PREFECT_WORKER_QUERY_SECONDS="1",
                PREFECT_WORKER_PREFETCH_SECONDS="5",
                AIMS_CHECKOUT=str(ROOT),
            ),
            self.work / f"{name}.log",
        )


@pytest.fixture(scope="module")
def scale_out(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleOut]:
    admin_url = _pg_url()
    assert admin_url
    work = tmp_path_factory.mktemp("scale-out")
    with (
        scratch_database(admin_url, "prefect_w", "asyncpg") as prefect_db_url,
        scratch_database(admin_url, "aims_w", "psycopg") as aims_url,
    ):
        server = PrefectServer(free_port(), work / "server-home")
        server.home.mkdir()
        server.process.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = prefect_db_url
        settings = Settings(data_dir=work / "aims-data", database_url=aims_url)
        try:
            initialise(settings, ACTOR)
            load_demo(UnitOfWork(settings), ACTOR)
            server.start(timeout=180)
            yield ScaleOut(server, settings, prefect_db_url, work / "results", work)
        finally:
            server.stop()


def _wait_until_gone(flow_run_id: str, timeout: float = 30) -> None:
    """Until no process runs this flow run any more (a suspended run keeps none)."""
    deadline = time.monotonic() + timeout
    while processes_for_flow_run(flow_run_id):
        assert time.monotonic() < deadline, f"flow run {flow_run_id} still has a process"
        time.sleep(0.5)


def _first(settings: Settings, stmt):  # type: ignore[no-untyped-def]
    with session_factory(settings.effective_database_url)() as session:
        row = session.scalars(stmt).first()
        if row is not None:
            session.expunge(row)
        return row


def test_a_gate_suspended_on_one_worker_resumes_and_completes_on_another(
    scale_out: ScaleOut,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.filesystems import LocalFileSystem
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.serve import all_deployments

    s = scale_out
    # The installation, as docs/DEPLOYING.md sets it up: a work pool, the shared result storage
    # block the deployments name, and every deployment of prefect.yaml. Schedules inactive: the
    # passes (delivery every minute, the reconciler, which resumes decided runs itself) would
    # otherwise run on these two workers beside the gate and make "who resumed it" a race.
    s.run(sys.executable, "-m", "prefect", "work-pool", "create", POOL, "--type", "process")
    with temporary_settings(updates={PREFECT_API_URL: s.server.api_url}):
        LocalFileSystem(basepath=str(s.results)).save("aims-results")
    deployed = s.run(
        sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all",
        "--prefect-file", "deployments/prefect.yaml",
        timeout=240, AIMS_WORK_POOL=POOL, AIMS_SCHEDULES_PAUSED="true",
    )  # fmt: skip
    assert "Deployment 'stage-gate/stage-gate' successfully created" in deployed

    with temporary_settings(updates={PREFECT_API_URL: s.server.api_url}):
        with get_client(sync_client=True) as client:
            deployments = client.read_deployments()
            client_flow_names = {f.id: f.name for f in client.read_flows()}
            gate_deployment = client.read_deployment_by_name("stage-gate/stage-gate")
        assert {f"{d.flow_name}/{d.name}" for d in all_deployments()} == {
            f"{client_flow_names[d.flow_id]}/{d.name}" for d in deployments
        }
        assert {d.work_pool_name for d in deployments} == {POOL}
        assert all(not sch.active for d in deployments for sch in d.schedules)
        # AIMS_CHECKOUT was not set when deploying: each worker resolves its own at run time.
        assert gate_deployment.pull_steps == [
            {
                "prefect.deployments.steps.set_working_directory": {
                    "directory": "{{ $AIMS_CHECKOUT }}"
                }
            }
        ]

        evidence.append(
            s.settings,
            {"subject": f"system:{SYSTEM}", "kind": "requirements-spec",
             "title": "requirements", "text": f"spec {uuid.uuid4()}"},
            ACTOR,
        )  # fmt: skip
        worker_a, worker_b = s.worker("worker-a"), s.worker("worker-b")
        try:
            worker_a.start()
            wait_for_log(worker_a.log, worker_a.proc, r"Worker .* started", 60)

            # Worker A takes the gate, which asks for the approval and suspends.
            out = s.run(
                sys.executable, "-m", "aims_core.cli", "gate", "request", SYSTEM,
                "--to", "design", "--requester", OWNER,
            )  # fmt: skip
            run_id = out.split("(", 1)[1].split(")", 1)[0]
            wait_for_state(run_id, {"Suspended"}, timeout=120)
            wait_for_log(
                worker_a.log, worker_a.proc, rf"Execution of flow run '{run_id}' is paused", 60
            )
            _wait_until_gone(run_id)  # suspended: its process exits, nothing is kept
            review = _first(s.settings, select(GateReview).where(GateReview.flow_run_id == run_id))
            assert review is not None and review.status == "waiting"
            request = _first(
                s.settings,
                select(ApprovalRequest).where(ApprovalRequest.subject == f"gate:{review.id}"),
            )
            assert request is not None and request.quorum == 1
            assert any(s.results.iterdir()), "nothing persisted to the shared result storage"

            # A goes away; B (same storage block, its own home) is the only worker left.
            worker_a.stop()
            worker_b.start()
            wait_for_log(worker_b.log, worker_b.proc, r"Worker .* started", 60)
            approved = s.run(
                sys.executable, "-m", "aims_core.cli", "approve", str(request.id), "--as", APPROVER
            )
            assert "resumed" in approved, approved

            done = wait_for_state(run_id, {"Approved"}, timeout=120)
            assert done.state.is_completed()
            assert done.state.result().approvals == [APPROVER]
            _wait_until_gone(run_id)
        finally:
            worker_a.stop()
            worker_b.stop()

        # A ran it up to the wait (and was gone before the decision), B after it.
        submitted = f"submitting flow run '{run_id}'"
        log_a = worker_a.log.read_text(errors="replace")
        log_b = worker_b.log.read_text(errors="replace")
        assert f"Worker 'worker-a' {submitted}" in log_a, log_a
        assert f"Worker 'worker-b' {submitted}" in log_b, log_b
        assert "Finished in state Suspended" in log_a and "Finished in state Approved" in log_b
        with get_client(sync_client=True) as client:
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(run_id)]))
            )
            states = [st.name for st in client.read_flow_run_states(uuid.UUID(run_id))]
        cached = {
            t.name.rsplit("-", 1)[0] for t in task_runs if t.state and t.state.name == "Cached"
        }
        # B read what A persisted: the steps before the wait were not run again.
        assert cached >= {"check evidence", "open gate review", "publish checklist"}, cached
        assert states.index("Suspended") < len(states) - 1 and states[-1] == "Approved", states

    # The records: the gate passed, the system moved; the Prefect server kept it in PostgreSQL.
    review = _first(s.settings, select(GateReview).where(GateReview.flow_run_id == run_id))
    assert review is not None and review.status == "approved"
    system = _first(s.settings, select(AISystem).where(AISystem.name == SYSTEM))
    assert system is not None and system.lifecycle_stage is LifecycleStage.design
    prefect_db = create_engine(make_url(s.prefect_db_url).set(drivername="postgresql+psycopg"))
    try:
        with prefect_db.connect() as conn:
            state_name = conn.execute(
                text("SELECT state_name FROM flow_run WHERE id = :id"), {"id": run_id}
            ).scalar_one()
        assert state_name == "Approved"
    finally:
        prefect_db.dispose()
