"""Figure 4: decisions at load. N stage-gate runs wait suspended for approval; N signed Slack
clicks go to the bridge; every run resumes and completes.

    .venv/bin/python -m bench.decisions_load [--decisions 200] [--postgres]

Per AIMS database (SQLite, and PostgreSQL when given), on one Prefect API (the shared one in
`make bench`):

1. A scratch AIMS database with the demo organisation and N minimal-risk systems at concept, each
   with its requirements spec: the design gate of each needs one approval (system owner or
   governance lead; the governance lead clicks).
2. The engine's parts as `aims up` runs them, each a process of its own: the served runner
   (`python -m deployments.serve`, poll 1 s, limit RUNNER_LIMIT, schedules paused) and the HTTP
   app (`aims bridge`, with the signing secret); Slack is the local fake Web API.
3. N `stage-gate` runs started the way `aims gate request` starts them; wait until all N are
   Suspended and their processes have exited. Memory now: RSS of the runner's process tree, the
   bridge's and the Prefect server's (found by its listening port).
4. N real, signed `block_actions` clicks (HMAC-SHA256 of `v0:{ts}:{body}` with the signing secret,
   the payload Slack sends) posted to `/slack/interactions` by CLICK_CONCURRENCY clients at once;
   every REDELIVER_EVERY-th click is posted a second time, as Slack re-delivers (it must write
   nothing). Acknowledgement = the HTTP round trip of each first delivery.
5. Until all N runs are Completed: resume throughput = N / (last run's Completed timestamp - first
   click). Then count, in the AIMS database (decisions per request, `approval.decided` and
   `system.stage-changed` audit events) and in Prefect (each run's final state), what was lost or
   written twice.

Baseline (once per run: the Prefect server is the same for every AIMS database): N runs of a
trivial flow that calls `suspend_flow_run(wait_for_input=...)`, served by `prefect.serve` with the
same limit and poll on the same server, resumed with `resume_flow_run` one after another; its
throughput the same way (first resume → last Completed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from prefect import flow
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput

from aims_core import processes
from bench.common import (
    ROOT,
    Context,
    Figure,
    Target,
    add_context_args,
    console,
    context_from_args,
    median,
    p95,
    prefect_api,
    scratch_database,
    standalone,
)

SIGNING_SECRET: Final = "bench-decisions-signing-secret"
REQUESTER: Final = "ds.lead@northwind.example"
OWNER: Final = "ops.owner@northwind.example"
CLICKER: Final = "governance@northwind.example"  # governance lead: eligible on every design gate
SYSTEM_PREFIX: Final = "bench-gate"
GATE: Final = "design"  # concept → design; minimal tier: requirements spec, quorum 1
RUNNER_LIMIT: Final = 8  # concurrent flow-run processes; suspended runs hold no slot
POLL_SECONDS: Final = 1.0
CLICK_CONCURRENCY: Final = 4  # people clicking at the same moment
REDELIVER_EVERY: Final = 5  # every 5th click arrives twice (Slack re-delivers)
MODALS: Final = 50  # answers submitted in Slack modals (issue 20's figure: N=50)
MODAL_ACK_TARGET_MS: Final = 100.0
BARE_FLOW: Final = "bench-bare-suspend"
BARE_DEPLOYMENT: Final = f"{BARE_FLOW}/{BARE_FLOW}"
ACK_TARGET_MS: Final = 100.0


# --- the baseline's flow (module level: the runner's subprocess imports it from here) ----------


class BareInput(RunInput):
    approver: str
    decision: str


@flow(name=BARE_FLOW)
def bare_suspend(i: int) -> str:
    """Prefect's floor: suspend for input, return it."""
    answer = suspend_flow_run(wait_for_input=BareInput, key="bare-wait", timeout=None)
    return f"{i}: {answer.decision} by {answer.approver}"


def serve_bare(limit: int) -> None:
    """`python -c 'from bench.decisions_load import serve_bare; serve_bare(8)'`: the baseline's
    runner, the same `serve` as deployments/serve.py."""
    from prefect import serve

    serve(
        bare_suspend.to_deployment(name=BARE_FLOW, tags=["bench"]),
        limit=limit,
        pause_on_shutdown=False,
    )


# --- processes and their memory ---------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid → (parent pid, RSS in MB) for every process we may read."""
    out: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            rss = 0.0
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                    break
        except (OSError, ValueError, IndexError):
            continue
        out[int(entry.name)] = (ppid, rss)
    return out


def tree(pid: int, table: dict[int, tuple[int, float]] | None = None) -> list[int]:
    """`pid` and all its descendants that are alive."""
    table = table if table is not None else _proc_table()
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in table:
            found.append(p)
            todo.extend(c for c, (pp, _) in table.items() if pp == p)
    return found


def tree_rss(pid: int | None) -> tuple[float, int]:
    """(MB, processes) of the process tree under `pid`."""
    if pid is None:
        return 0.0, 0
    table = _proc_table()
    pids = tree(pid, table)
    return round(sum(table[p][1] for p in pids), 1), len(pids)


def cpu_seconds(pid: int) -> float:
    """CPU time of `pid` plus that of its children it has reaped (flow runs that ended)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after the comm: state(0) ppid ... utime(11) stime(12) cutime(13) cstime(14)
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:`port` (the Prefect server, started by whoever)."""
    inodes = set()
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return int(entry.name)
    return None


def server_root(pid: int | None) -> int | None:
    """The `prefect server start` process above the listening one (its tree is the server)."""
    if pid is None:
        return None
    table = _proc_table()
    parent = table.get(pid, (0, 0))[0]
    with contextlib.suppress(OSError):
        if b"prefect" in Path(f"/proc/{parent}/cmdline").read_bytes():
            return parent
    return pid


# --- Prefect: starting, waiting, reading ------------------------------------------------------


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def read_runs(ids: list[Any]) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    out = []
    with _client() as client:
        for i in range(0, len(ids), 200):
            chunk = ids[i : i + 200]
            out += client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
            )
    return out


def wait_runs(
    ids: list[Any],
    done: Callable[[Any], bool],
    what: str,
    timeout: float,
    on_stall: Callable[[], None] | None = None,
    stall_s: float = 30,
) -> list[Any]:
    """Poll until `done(run)` holds for every run; fail clearly (never hang) after `timeout`.

    `on_stall` is called when no run has got there for `stall_s` seconds (and again after each
    further `stall_s`): what the engine's schedule would do for runs left behind."""
    deadline = time.monotonic() + timeout
    progress, last_progress = -1, time.monotonic()
    while True:
        runs = read_runs(ids)
        finished = sum(1 for r in runs if done(r))
        if len(runs) == len(ids) and finished == len(ids):
            return runs
        if finished != progress:
            progress, last_progress = finished, time.monotonic()
        elif on_stall is not None and time.monotonic() - last_progress > stall_s:
            on_stall()
            last_progress = time.monotonic()
        failed = [r for r in runs if r.state and r.state.is_final() and not done(r)]
        if failed:
            r = failed[0]
            raise RuntimeError(
                f"{len(failed)} run(s) ended before {what}: {r.name} {r.state.name}: "
                f"{r.state.message}"
            )
        if time.monotonic() > deadline:
            states: dict[str, int] = {}
            for r in runs:
                name = r.state.name if r.state else "?"
                states[name] = states.get(name, 0) + 1
            raise RuntimeError(f"not all {len(ids)} runs {what} after {timeout:.0f} s: {states}")
        time.sleep(0.5)


def suspended(run: Any) -> bool:
    return bool(run.state and run.state.is_paused() and run.state.name == "Suspended")


def completed(run: Any) -> bool:
    return bool(run.state and run.state.is_completed())


def wait_no_children(pid: int, timeout: float) -> float:
    """Until the runner has no flow-run processes left (suspended runs' processes exit)."""
    started = time.monotonic()
    while len(tree(pid)) > 1:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"runner still has flow-run processes after {timeout:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - started


def throughput(runs: list[Any], started: float) -> tuple[float, float]:
    """(runs/s, seconds) from `started` (epoch) to the last run's Completed timestamp."""
    last = max(r.state.timestamp.timestamp() for r in runs)
    seconds = max(last - started, 1e-9)
    return len(runs) / seconds, seconds


# --- the baseline: bare suspend/resume ---------------------------------------------------------


@dataclass
class Bare:
    runs_per_s: float
    seconds: float
    start_to_suspended_s: float
    runner_rss_mb: float
    cpu_s: dict[str, float]  # runner + its flow runs, per run: start → suspended, resume → end


def measure_bare(ctx: Context, api_url: str, n: int) -> Bare:
    from prefect.deployments import run_deployment

    from deployments.local_engine import Process, deployment_registered, prefect_env

    work = Path(tempfile.mkdtemp(prefix="bare-", dir=ctx.work))
    env = {
        **os.environ,
        **prefect_env(api_url, work / "results", POLL_SECONDS),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    runner = Process(
        [
            sys.executable,
            "-c",
            f"from bench.decisions_load import serve_bare; serve_bare({RUNNER_LIMIT})",
        ],
        env,
        work / "runner.log",
        "bare runner",
    )
    runner.start()
    try:
        deadline = time.monotonic() + 60
        # Registered by this runner (a stale registration from an earlier run may exist): the
        # runner logs once it serves.
        while not (
            deployment_registered(api_url, BARE_DEPLOYMENT)
            and "being served" in runner.log.read_text(errors="replace")
        ):
            if not runner.alive or time.monotonic() > deadline:
                raise RuntimeError(f"bare runner did not start:\n{runner.tail()}")
            time.sleep(0.3)
        time.sleep(POLL_SECONDS + 0.5)
        assert runner.proc is not None
        began = time.monotonic()
        cpu0 = cpu_seconds(runner.proc.pid)
        ids = [run_deployment(BARE_DEPLOYMENT, parameters={"i": i}, timeout=0).id for i in range(n)]
        wait_runs(ids, suspended, "Suspended", 60 + 3 * n)
        wait_no_children(runner.proc.pid, 60)
        start_to_suspended = time.monotonic() - began
        cpu1 = cpu_seconds(runner.proc.pid)
        rss, _ = tree_rss(runner.proc.pid)
        first = time.time()
        with _client() as client:
            for run_id in ids:
                _resume(client, run_id, {"approver": "bench", "decision": "approve"})
        runs = wait_runs(ids, completed, "Completed", 60 + 3 * n)
        rate, seconds = throughput(runs, first)
        wait_no_children(runner.proc.pid, 60)
        cpu2 = cpu_seconds(runner.proc.pid)
        cpu = {"start_per_run": (cpu1 - cpu0) / n, "resume_per_run": (cpu2 - cpu1) / n}
        return Bare(rate, seconds, start_to_suspended, rss, cpu)
    finally:
        runner.stop()


def _resume(client: Any, run_id: Any, run_input: dict[str, str], timeout: float = 30) -> None:
    """`resume_flow_run`, retried in the moment the input schema is not saved yet."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.resume_flow_run(run_id, run_input=run_input)
        if response.status.value == "ACCEPT":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"resume of {run_id} refused: {response.details}")
        time.sleep(0.2)


# --- the AIMS side ----------------------------------------------------------------------------


@dataclass
class Click:
    request_id: int
    started: float  # epoch seconds
    ms: float
    status: int
    text: str
    redelivery: bool = False


@dataclass
class AimsRun:
    database: str
    n: int
    acks: list[Click] = field(default_factory=list)
    redeliveries: list[Click] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    reconciler_resumed: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)
    runs_per_s: float = 0.0
    modal_acks: list[Click] = field(default_factory=list)
    modal_redeliveries: list[Click] = field(default_factory=list)
    modal_counts: dict[str, int] = field(default_factory=dict)


def prepare_gate_systems(settings: Any, n: int, prefix: str = SYSTEM_PREFIX) -> list[str]:
    """The demo organisation plus N minimal-risk systems whose design gate is ready (also used
    by tests/test_reliability_prefect_restart.py)."""
    from aims_core.database import initialise
    from aims_core.schemas import SystemIn
    from aims_core.services import evidence
    from aims_core.services.demo import load_demo
    from aims_core.services.systems import add_system
    from aims_core.uow import Actor, UnitOfWork

    actor = Actor(who="bench", channel="test")
    initialise(settings, actor)
    load_demo(UnitOfWork(settings), actor)
    names = [f"{prefix}-{i:04d}" for i in range(n)]
    for name in names:
        add_system(
            UnitOfWork(settings),
            SystemIn(
                name=name,
                owner=OWNER,
                purpose="Synthetic system for the decisions-at-load benchmark",
                risk_tier="minimal",
                criticality="low",
            ),
            actor,
        )
        evidence.append(
            settings,
            {
                "subject": f"system:{name}",
                "kind": "requirements-spec",
                "title": f"Requirements of {name}",
                "text": f"What {name} must do, and for whom.",
            },
            actor,
        )
    return names


@contextlib.contextmanager
def _engine(settings: Any, api_url: str, work: Path, fake: Any) -> Iterator[tuple[Any, Any]]:
    """The served runner and the HTTP app, as `aims up` runs them, on this database."""
    from deployments.local_engine import HttpApp, ServedRunner, free_port, prefect_env

    aims_env = {
        "AIMS_DATA_DIR": str(settings.data_dir),
        "AIMS_DATABASE_URL": settings.effective_database_url,
        "AIMS_SLACK_BOT_TOKEN": fake.token,
        "AIMS_SLACK_API_URL": fake.base_url,
        "AIMS_SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "AIMS_SCHEDULES_PAUSED": "true",
        "AIMS_RUNNER_LIMIT": str(RUNNER_LIMIT),
    }
    runner = ServedRunner(api_url, aims_env, work, poll_seconds=POLL_SECONDS)
    http_env = {**os.environ, **prefect_env(api_url, work / "results", POLL_SECONDS), **aims_env}
    http = HttpApp(free_port(), http_env, work / "http.log")
    runner.start(["stage-gate/stage-gate"])
    try:
        http.start()
        try:
            yield runner, http
        finally:
            http.stop()
    finally:
        runner.stop()


def start_gate_runs(systems: list[str], tag: str = "bench") -> list[str]:
    """One `stage-gate` run into the design gate per system, started the way `aims gate request`
    starts them (through the Prefect API given by this process's settings); their run ids."""
    from aims_core.cli.engine import start_run

    return [
        start_run(
            processes.STAGE_GATE.id,
            {"system": name, "to_stage": GATE, "requester": REQUESTER},
            tags=["gate", name, "tier:minimal", tag],
        )[0]
        for name in systems
    ]


def gate_requests(
    settings: Any, run_ids: list[str]
) -> dict[str, tuple[int, str, tuple[str, str] | None]]:
    """run id → (approval request id, clicker's Slack id, the message's channel and ts)."""
    from sqlalchemy import select

    from aims_core.models import ApprovalRequest, Notification, Person
    from aims_core.uow import UnitOfWork

    uow = UnitOfWork(settings)
    with uow.read():
        s = uow.session
        slack_id = s.scalar(select(Person.slack_user_id).where(Person.email == CLICKER))
        rows = s.execute(
            select(ApprovalRequest.id, ApprovalRequest.flow_run_id).where(
                ApprovalRequest.flow_run_id.in_(run_ids)
            )
        ).all()
        sent = {
            rid: (ch, ts)
            for rid, ch, ts in s.execute(
                select(Notification.request_id, Notification.slack_channel, Notification.slack_ts)
                .where(Notification.slack_ts.is_not(None))
                .where(Notification.request_id.in_([r.id for r in rows]))
            )
        }
    if not slack_id:
        raise RuntimeError(f"{CLICKER} has no Slack id in the demo organisation")
    return {fr: (rid, slack_id, sent.get(rid)) for rid, fr in rows}  # type: ignore[misc]


def signed_click(
    http_url: str,
    request_id: int,
    slack_id: str,
    where: tuple[str, str] | None,
    redelivery: bool,
    action: Literal["approve", "reject"] = "approve",
    secret: str = SIGNING_SECRET,
) -> Click:
    """One real, signed `block_actions` click (Slack's payload) posted to the bridge at
    `http_url`; `where` is the message's channel and ts, when it reached Slack."""
    from tests.fakes.slack_signing import block_actions_payload, signed_interaction

    kw = {"channel_id": where[0], "message_ts": where[1]} if where else {}
    body, headers = signed_interaction(
        secret, block_actions_payload(slack_id, request_id, action, **kw)
    )
    if redelivery:  # what Slack adds when it sends a click again
        headers = {**headers, "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    client = _http_client()
    started = time.time()
    t0 = time.perf_counter()
    response = client.post(f"{http_url}/slack/interactions", content=body, headers=headers)
    ms = (time.perf_counter() - t0) * 1000
    try:
        data = response.json()
        text = str(data.get("text") or data.get("error") or "")
    except ValueError:
        text = ""
    return Click(request_id, started, ms, response.status_code, text, redelivery)


def prepare_modal_asks(settings: Any, n: int) -> list[int]:
    """N open asks of a typed kind (CAPA effectiveness verifications) put to the clicker: what a
    modal answers. No run waits on them: the figure is the bridge's acknowledgement (signature,
    person, validation by the form, decision committed); resumes are the click figures'."""
    from aims_core.ask_forms import CAPA_VERIFICATION
    from aims_core.services import approvals
    from aims_core.uow import Actor, UnitOfWork

    actor = Actor(who="bench", channel="test")
    return [
        approvals.create_request(
            UnitOfWork(settings),
            approvals.ApprovalRequestIn(
                idempotency_key=f"bench-modal-{i}",
                kind=CAPA_VERIFICATION,
                subject=f"capa:{i + 1}",
                activity="capa-verification",
                title=f"Verify bench CAPA {i + 1}",
                approver_people=[CLICKER],
            ),
            actor,
        ).id
        for i in range(n)
    ]


def signed_submission(
    settings: Any, http_url: str, request_id: int, slack_id: str, redelivery: bool
) -> Click:
    """One real, signed `view_submission` of the ask's modal (built as the bridge builds it),
    filled with an effective verification, posted to the bridge at `http_url`."""
    from aims_core.ask_forms import answer_model
    from aims_core.ask_modals import answer_modal
    from aims_core.services import approvals
    from aims_core.uow import UnitOfWork
    from tests.fakes.slack_signing import signed_interaction
    from tests.fakes.slack_views import view_submission_payload

    ask = approvals.get_request(UnitOfWork(settings), request_id)
    view = answer_modal(ask, answer_model(settings, ask.kind, ask.subject))
    answers = {"result": "effective", "evidence": f"No recurrence since CAPA {request_id}"}
    body, headers = signed_interaction(
        SIGNING_SECRET, view_submission_payload(slack_id, view, answers)
    )
    if redelivery:
        headers = {**headers, "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    started = time.time()
    t0 = time.perf_counter()
    response = _http_client().post(f"{http_url}/slack/interactions", content=body, headers=headers)
    ms = (time.perf_counter() - t0) * 1000
    text = response.text[:200]
    return Click(request_id, started, ms, response.status_code, text, redelivery)


def _count_answers(settings: Any, ask_ids: list[int]) -> dict[str, int]:
    from sqlalchemy import func, select

    from aims_core.models import Decision
    from aims_core.uow import UnitOfWork

    uow = UnitOfWork(settings)
    with uow.read():
        per_ask = dict(
            uow.session.execute(
                select(Decision.request_id, func.count())
                .where(Decision.request_id.in_(ask_ids))
                .group_by(Decision.request_id)
            ).all()
        )
    answered = sum(1 for i in ask_ids if per_ask.get(i))
    extra = sum(c - 1 for c in per_ask.values() if c > 1)
    return {
        "asks": len(ask_ids),
        "answered": answered,
        "lost": len(ask_ids) - answered,
        "duplicated": extra,
    }


def measure_modals(settings: Any, http_url: str, slack_id: str, out: AimsRun) -> None:
    """The clicker answers MODALS asks in Slack modals, four at a time; every 5th submission is
    delivered twice (Slack retries). Ask building and payload signing happen before the clock."""
    ask_ids = prepare_modal_asks(settings, MODALS)
    with ThreadPoolExecutor(CLICK_CONCURRENCY) as pool:
        out.modal_acks = list(
            pool.map(lambda i: signed_submission(settings, http_url, i, slack_id, False), ask_ids)
        )
        again = ask_ids[REDELIVER_EVERY - 1 :: REDELIVER_EVERY]
        out.modal_redeliveries = list(
            pool.map(lambda i: signed_submission(settings, http_url, i, slack_id, True), again)
        )
    bad = [c for c in out.modal_acks + out.modal_redeliveries if c.status != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} modal submissions not acknowledged: {bad[0]}")
    out.modal_counts = _count_answers(settings, ask_ids)


_local = threading.local()


def _http_client() -> Any:
    """One keep-alive connection per clicking thread (Slack keeps its connections open too)."""
    import httpx

    if getattr(_local, "client", None) is None:
        _local.client = httpx.Client(timeout=30)
    return _local.client


def _count(settings: Any, request_ids: list[int], systems: list[str]) -> dict[str, int]:
    """What the AIMS database holds for these requests: decided, decisions, audit events."""
    from sqlalchemy import func, select

    from aims_core.models import AISystem, ApprovalRequest, AuditEvent, Decision, LifecycleStage
    from aims_core.uow import UnitOfWork

    uow = UnitOfWork(settings)
    with uow.read():
        s = uow.session
        per_request = dict(
            s.execute(
                select(Decision.request_id, func.count())
                .where(Decision.request_id.in_(request_ids))
                .group_by(Decision.request_id)
            ).all()
        )
        approved = s.scalar(
            select(func.count())
            .select_from(ApprovalRequest)
            .where(ApprovalRequest.id.in_(request_ids), ApprovalRequest.status == "approved")
        )
        subjects = [f"approval:{r}" for r in request_ids]
        decided_events = dict(
            s.execute(
                select(AuditEvent.subject, func.count())
                .where(AuditEvent.subject.in_(subjects), AuditEvent.action == "approval.decided")
                .group_by(AuditEvent.subject)
            ).all()
        )
        stage_events = dict(
            s.execute(
                select(AuditEvent.subject, func.count())
                .where(
                    AuditEvent.subject.in_([f"system:{n}" for n in systems]),
                    AuditEvent.action == "system.stage-changed",
                )
                .group_by(AuditEvent.subject)
            ).all()
        )
        moved = s.scalar(
            select(func.count())
            .select_from(AISystem)
            .where(AISystem.name.in_(systems), AISystem.lifecycle_stage == LifecycleStage(GATE))
        )
    return {
        "requests_with_decision": len(per_request),
        "extra_decisions": sum(c - 1 for c in per_request.values() if c > 1),
        "requests_approved": int(approved or 0),
        "extra_decided_events": sum(c - 1 for c in decided_events.values() if c > 1),
        "requests_with_decided_event": len(decided_events),
        "systems_moved": int(moved or 0),
        "extra_stage_changes": sum(c - 1 for c in stage_events.values() if c > 1),
    }


def measure_aims(ctx: Context, api_url: str, database: str, n: int) -> AimsRun:
    from pydantic import SecretStr

    from aims_core.settings import Settings
    from notifications.fake_slack import FakeSlack

    out = AimsRun(database, n)
    fake = FakeSlack().start()
    try:
        with scratch_database(ctx, database, "decisions") as (data_dir, url):
            settings = Settings(
                data_dir=data_dir,
                database_url=url,
                slack_bot_token=SecretStr(fake.token),
                slack_api_url=fake.base_url,
                slack_signing_secret=SecretStr(SIGNING_SECRET),
            )
            t = time.monotonic()
            systems = prepare_gate_systems(settings, n)
            out.phases["prepare_s"] = time.monotonic() - t
            t = time.monotonic()
            logs = ctx.work / f"engine-{database}"
            with _engine(settings, api_url, logs, fake) as (runner, http):
                out.phases["engine_start_s"] = time.monotonic() - t
                assert runner.process.proc is not None and http.process.proc is not None
                runner_pid, http_pid = runner.process.proc.pid, http.process.proc.pid
                cpu0 = cpu_seconds(runner_pid)
                t = time.monotonic()
                run_ids = start_gate_runs(systems)
                out.phases["start_calls_s"] = time.monotonic() - t
                wait_runs(run_ids, suspended, "Suspended", 60 + 4 * n)
                wait_no_children(runner.process.proc.pid, 60)
                out.phases["start_to_all_suspended_s"] = time.monotonic() - t
                cpu1, http0 = cpu_seconds(runner_pid), cpu_seconds(http_pid)
                out.memory = _memory(runner_pid, http_pid, api_url, n)

                targets = gate_requests(settings, run_ids)
                if len(targets) != n:
                    raise RuntimeError(f"{len(targets)} approval requests for {n} runs")
                order = [targets[r] for r in run_ids]
                t = time.monotonic()
                with ThreadPoolExecutor(CLICK_CONCURRENCY) as pool:
                    out.acks = list(
                        pool.map(lambda x: signed_click(http.url, x[0], x[1], x[2], False), order)
                    )
                    again = order[REDELIVER_EVERY - 1 :: REDELIVER_EVERY]
                    out.redeliveries = list(
                        pool.map(lambda x: signed_click(http.url, x[0], x[1], x[2], True), again)
                    )
                out.phases["clicks_s"] = time.monotonic() - t
                bad = [c for c in out.acks + out.redeliveries if c.status != 200]
                if bad:
                    raise RuntimeError(f"{len(bad)} clicks not acknowledged: {bad[0]}")
                first = min(c.started for c in out.acks)

                def reconciler_pass() -> None:
                    """A resume the bridge gave up on (Prefect answering 503 for longer than
                    its retries) is left `resume_pending` for the approval reconciler, a
                    deployment every 5 minutes; schedules are paused here, so run its pass."""
                    from aims_core.services.reconcile import resume_decided
                    from deployments.prefect_runs import PrefectRuns

                    report = resume_decided(settings, runs=PrefectRuns())
                    out.reconciler_resumed += len(report.resumed_ids)
                    console.print(
                        f"[yellow]decisions: runs stalled; reconciler pass resumed "
                        f"{len(report.resumed_ids)}[/]"
                    )

                try:
                    runs = wait_runs(
                        run_ids, completed, "Completed", 60 + 4 * n, on_stall=reconciler_pass
                    )
                except RuntimeError as exc:
                    raise RuntimeError(f"{exc}\nbridge log:\n{http.process.tail(20)}") from exc
                out.runs_per_s, seconds = throughput(runs, first)
                wait_no_children(runner_pid, 60)
                out.cpu_s = {
                    "start_per_run": (cpu1 - cpu0) / n,
                    "resume_per_run": (cpu_seconds(runner_pid) - cpu1) / n,
                    "bridge_per_click": (cpu_seconds(http_pid) - http0) / n,
                }
                out.phases["first_click_to_all_completed_s"] = seconds
                request_ids = [targets[r][0] for r in run_ids]
                measure_modals(settings, http.url, order[0][1], out)
                db = _count(settings, request_ids, systems)
                approved_runs = sum(1 for r in runs if r.state.name == "Approved")
                lost_db = n - min(db["requests_with_decision"], db["systems_moved"])
                lost_prefect = n - approved_runs
                duplicated = db["extra_decisions"] + db["extra_decided_events"]
                duplicated += db["extra_stage_changes"]
                out.counts = {
                    **db,
                    "runs": n,
                    "runs_completed_approved": approved_runs,
                    "lost_in_database": lost_db,
                    "lost_in_prefect": lost_prefect,
                    "lost": max(lost_db, lost_prefect),
                    "duplicated": duplicated,
                    "resumed_by_reconciler_pass": out.reconciler_resumed,
                    "redelivered_clicks": len(out.redeliveries),
                    "redeliveries_answered_already_recorded": sum(
                        1 for c in out.redeliveries if "already recorded" in c.text
                    ),
                }
    finally:
        fake.stop()
    return out


def _memory(runner_pid: int, http_pid: int, api_url: str, n: int) -> dict[str, Any]:
    runner_mb, runner_procs = tree_rss(runner_pid)
    http_mb, _ = tree_rss(http_pid)
    port = urlsplit(api_url).port or 80
    server_mb, server_procs = tree_rss(server_root(listening_pid(port)))
    total = runner_mb + http_mb + server_mb
    return {
        "total_mb": round(total, 1),
        "runner_mb": runner_mb,
        "runner_processes": runner_procs,
        "bridge_mb": http_mb,
        "prefect_server_mb": server_mb,
        "prefect_server_processes": server_procs,
        "runs_waiting": n,
    }


# --- figures ----------------------------------------------------------------------------------


def run(ctx: Context) -> list[Figure]:
    n = ctx.decisions
    if not 1 <= n <= 1000:
        raise ValueError(f"decisions must be between 1 and 1000 (got {n})")
    figures: list[Figure] = []
    with prefect_api(ctx) as api_url:
        console.print(f"[dim]decisions: bare suspend/resume of {n} runs (baseline) …[/]")
        bare = measure_bare(ctx, api_url, n)
        for database in ctx.databases:
            console.print(f"[dim]decisions: {n} gate runs on {database} …[/]")
            aims = measure_aims(ctx, api_url, database, n)
            figures += _figures(aims, bare)
    return figures


def _figures(a: AimsRun, bare: Bare) -> list[Figure]:
    db = a.database
    acks = [c.ms for c in a.acks]
    again = [c.ms for c in a.redeliveries]
    common = {"figure": 4, "database": db, "size": None}
    setup = {
        "runs": a.n,
        "runner_limit": RUNNER_LIMIT,
        "poll_s": POLL_SECONDS,
        "click_concurrency": CLICK_CONCURRENCY,
        "phases_s": {k: round(v, 2) for k, v in a.phases.items()},
    }
    ack = Figure.make(
        id=f"decisions-ack.{db}",
        title=f"Bridge acknowledgement of a signed click, p95 ({a.n} clicks)",
        value=round(p95(acks), 1),
        unit="ms",
        target=Target(on="value", op="<=", bound=ACK_TARGET_MS),
        runs=[round(x, 2) for x in acks],
        detail={
            **setup,
            "median_ms": round(median(acks), 1),
            "max_ms": round(max(acks), 1),
            "redelivered": len(again),
            "redelivery_median_ms": round(median(again), 1) if again else None,
            "redelivery_max_ms": round(max(again), 1) if again else None,
            "slack_limit_ms": 3000,
        },
        **common,
    )
    c = a.counts
    recorded = Figure.make(
        id=f"decisions-recorded.{db}",
        title=f"Decisions lost or duplicated ({a.n} clicks)",
        value=float(c["lost"] + c["duplicated"]),
        unit="decisions",
        target=Target(on="value", op="<=", bound=0),
        runs=[float(c["lost"] + c["duplicated"])],
        detail={"recorded": c["requests_with_decision"], **c},
        **common,
    )
    resume = Figure.make(
        id=f"decisions-resume.{db}",
        title=f"Resume to completion of {a.n} gate runs after their clicks",
        value=round(a.runs_per_s, 3),
        unit="runs/s",
        baseline=round(bare.runs_per_s, 3),
        baseline_label="bare Prefect suspend/resume",
        target=Target(on="ratio", op=">=", bound=1.0),
        runs=[round(a.runs_per_s, 3)],
        detail={
            **setup,
            "seconds": round(a.phases["first_click_to_all_completed_s"], 2),
            "baseline_seconds": round(bare.seconds, 2),
            "baseline_start_to_suspended_s": round(bare.start_to_suspended_s, 2),
            "cpu_s_per_run": {k: round(v, 2) for k, v in a.cpu_s.items()},
            "baseline_cpu_s_per_run": {k: round(v, 2) for k, v in bare.cpu_s.items()},
            "note": "baseline measured once per run, on the same Prefect server; CPU = the "
            "runner and its flow-run processes (and the bridge's for its clicks and follow-ups)",
        },
        **common,
    )
    memory = Figure.make(
        id=f"decisions-memory.{db}",
        title=f"Engine memory while {a.n} gate runs wait",
        value=a.memory["total_mb"],
        unit="MB",
        runs=[a.memory["total_mb"]],
        detail={**a.memory, "bare_runner_mb_while_waiting": bare.runner_rss_mb},
        **common,
    )
    modal_acks = [c.ms for c in a.modal_acks]
    mc = a.modal_counts
    modal = Figure.make(
        id=f"decisions-modal-ack.{db}",
        title=f"Bridge acknowledgement of a signed modal submission, p95 ({len(modal_acks)})",
        value=round(p95(modal_acks), 1),
        unit="ms",
        target=Target(on="value", op="<=", bound=MODAL_ACK_TARGET_MS),
        runs=[round(x, 2) for x in modal_acks],
        detail={
            "submissions": len(modal_acks),
            "concurrency": CLICK_CONCURRENCY,
            "median_ms": round(median(modal_acks), 1),
            "max_ms": round(max(modal_acks), 1),
            "redelivered": len(a.modal_redeliveries),
            **mc,
            "note": "CAPA verification asks without a waiting run: signature, person, the "
            "form's validation, the answer committed, then the answer (the follow-up runs "
            "after the acknowledgement)",
        },
        **common,
    )
    modal_recorded = Figure.make(
        id=f"decisions-modal-recorded.{db}",
        title=f"Modal answers lost or duplicated ({len(modal_acks)} submissions)",
        value=float(mc["lost"] + mc["duplicated"]),
        unit="answers",
        target=Target(on="value", op="<=", bound=0),
        runs=[float(mc["lost"] + mc["duplicated"])],
        detail=mc,
        **common,
    )
    return [ack, recorded, resume, memory, modal, modal_recorded]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_context_args(parser)
    args = parser.parse_args(argv)
    return standalone("decisions_load", run, context_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
