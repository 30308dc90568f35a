"""Session fixtures for flow tests: one Prefect API, one served runner, one AIMS database.

The runner's flow runs are subprocesses: they reach the AIMS database, the evidence key and the
fake Slack through AIMS_* variables fixed for the session, so flow tests share one database (each
test uses its own subjects and idempotency keys).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fakes.slack_api import FakeSlack
from prefect_harness import PrefectServer, ServedRunner
from pydantic import SecretStr

from aims_core import processes
from aims_core.database import initialise
from aims_core.services.demo import load_demo
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

if TYPE_CHECKING:
    from typer.testing import Result

SIGNING_SECRET = "e2e-signing-secret"
#: What the flow tests wait for the runner to serve (the scheduled passes they run by hand too).
SERVED = [
    p.id
    for p in (
        processes.APPROVAL,
        processes.APPROVAL_RECONCILER,
        processes.STAGE_GATE,
        processes.RISK_ASSESSMENT,
        processes.IMPACT_ASSESSMENT,
        processes.GAP_ASSESSMENT,
        processes.CAPA,
        processes.INTERNAL_AUDIT,
        processes.AUDIT_PLANNING,
        processes.INCIDENT_RESPONSE,
        processes.NOTIFICATION_DELIVERY,
        processes.TRAINING_RENEWAL,
        processes.MANAGEMENT_REVIEW,
        processes.POLICY_APPROVAL,
    )
]


@dataclass
class Engine:
    settings: Settings
    slack: FakeSlack
    server: PrefectServer
    runner: ServedRunner


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The engine as `aims up` runs it, minus the HTTP app: Prefect API and UI, served runner,
    fake Slack."""
    work = tmp_path_factory.mktemp("engine")
    slack = FakeSlack().start()
    data = work / "data"
    settings = Settings(
        data_dir=data,
        database_url=f"sqlite:///{data / 'aims.db'}",
        slack_bot_token=SecretStr(slack.token),
        slack_api_url=slack.base_url,
        slack_signing_secret=SecretStr(SIGNING_SECRET),
    )
    actor = Actor(who="e2e", channel="test")
    initialise(settings, actor)
    load_demo(UnitOfWork(settings), actor)
    server = PrefectServer(
        int(os.environ["AIMS_TEST_PREFECT_PORT"]), Path(os.environ["PREFECT_HOME"]), ui=True
    )
    server.start()
    runner = ServedRunner(
        server.api_url,
        {
            "PREFECT_HOME": str(server.home),
            "AIMS_DATA_DIR": str(data),
            "AIMS_DATABASE_URL": settings.effective_database_url,
            "AIMS_SLACK_BOT_TOKEN": slack.token,
            "AIMS_SLACK_API_URL": slack.base_url,
            # Tests run the reconciler themselves, when they mean to.
            "AIMS_SCHEDULES_PAUSED": "true",
            # Incident tests write their playbooks here (hooks with observable side effects).
            "AIMS_PLAYBOOKS_DIR": str(work / "playbooks"),
        },
        work,
        poll_seconds=1,
    )
    runner.start(SERVED)
    try:
        yield Engine(settings, slack, server, runner)
    finally:
        runner.stop()
        server.stop()
        slack.stop()


def wait_for_state(flow_run_id, names: set[str], timeout: float = 90):  # type: ignore[no-untyped-def]
    """Poll the run until its state name is one of `names`; fail with the last state seen."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.name in names:
                return run
            if run.state and run.state.is_final() and run.state.name not in names:
                raise AssertionError(f"run ended {run.state.name}: {run.state.message}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run still {run.state.name if run.state else None} after {timeout} s"
                )
            time.sleep(0.5)


def engine_cli(engine: Engine, *args: str) -> Result:
    """`aims ...` in process, against the engine's database (as an operator beside it would)."""
    from typer.testing import CliRunner

    from aims_core.cli import app

    env = {  # the operator's shell has the engine's configuration, Slack included
        "AIMS_DATA_DIR": str(engine.settings.data_dir),
        "AIMS_DATABASE_URL": engine.settings.effective_database_url,
        "AIMS_SLACK_BOT_TOKEN": engine.slack.token,
        "AIMS_SLACK_API_URL": engine.slack.base_url,
        "AIMS_PLAYBOOKS_DIR": engine.runner.env_extra["AIMS_PLAYBOOKS_DIR"],
    }
    return CliRunner().invoke(app, list(args), env=env)


def wait_for_pause(flow_run_id: str, key: str, timeout: float = 90):  # type: ignore[no-untyped-def]
    """Poll until the run is suspended under `key` (each wait has its own); returns the run."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            state = run.state
            if state and state.is_paused() and state.state_details.pause_key == key:
                return run
            if state and state.is_final():
                raise AssertionError(f"run ended {state.name}: {state.message}")
            if time.monotonic() > deadline:
                seen = state.state_details.pause_key if state else None
                raise AssertionError(f"run {state.name if state else None} ({seen}), not {key}")
            time.sleep(0.5)


def resume_with(flow_run_id: str, **run_input: Any) -> None:
    """What the UI's Resume button sends; retried while the input schema is not saved yet
    ("Run input schema not found" in the moment after Suspended)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            response = client.resume_flow_run(flow_run_id, run_input=run_input)
            if response.status.value == "ACCEPT":
                return
            assert time.monotonic() < deadline, response.details
            time.sleep(0.5)


def read_run(run_id: str):  # type: ignore[no-untyped-def]
    """The flow run and its deployment, read back through the Prefect API."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        deployment = client.read_deployment(run.deployment_id)
    return run, deployment


def run_artifacts(run_id: str) -> dict[str, object]:
    """The run's artifacts' data by key (the newest wins for a key written twice)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    return {a.key: a.data for a in sorted(arts, key=lambda a: a.created)}


def task_states(run_id: str) -> dict[str, list[str]]:
    """The run's task runs' state names, by task name (without the run-count suffix)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    out: dict[str, list[str]] = {}
    for t in runs:
        out.setdefault(t.name.rsplit("-", 1)[0], []).append(t.state.name if t.state else "")
    return out


def ask_of(settings, idempotency_key: str, timeout: float = 60) -> int:  # type: ignore[no-untyped-def]
    """The id of the ask a run opens under `idempotency_key`, once it exists."""
    from sqlalchemy import select

    from aims_core.db import get_engine
    from aims_core.models import ApprovalRequest

    deadline = time.monotonic() + timeout
    with get_engine(settings.effective_database_url).connect() as conn:
        while True:
            found = conn.scalar(
                select(ApprovalRequest.id).where(ApprovalRequest.idempotency_key == idempotency_key)
            )
            if found is not None:
                return int(found)
            assert time.monotonic() < deadline, f"no ask {idempotency_key}"
            time.sleep(0.5)
            conn.rollback()


def ui_code(settings, request_id: int, email: str) -> str:  # type: ignore[no-untyped-def]
    """The person's personal code for the ask as it stands now (what their last DM carried)."""
    from sqlalchemy import select

    from aims_core.db import get_engine
    from aims_core.models import Person
    from aims_core.services import approvals
    from aims_core.uow import UnitOfWork

    with get_engine(settings.effective_database_url).connect() as conn:
        person_id = conn.scalar(select(Person.id).where(Person.email == email))
    code = approvals.current_code(UnitOfWork(settings), request_id, int(person_id))
    assert code, (request_id, email)
    return code
