"""Figure 3: orchestration overhead. An AIMS flow (a stage-gate check with its writes) against a
bare Prefect flow with the same number of tasks doing the same database writes, same run.

    .venv/bin/python -m bench.orchestration [--repeats N] [--postgres]      # N >= 12 rounds

The AIMS flow is the stage-gate flow (flows/stage_gate.py) up to the point where it would ask
for approval: a ready gate suspends there for people, and a suspend needs a served deployment, so
the check phase runs as a flow of its own composed from the stage-gate module's own tasks and
helpers, in the same order: run name from the database, `check evidence` (system, the YAML gate
policy, each evidence record verified: content hash, keyed chain link, link to the record
before), the run's tags, `open gate review` (the review with its checklist and its audit event, one
commit), `publish checklist` (the markdown artifact). The gate is cv-screening (high risk)
validation → deployment with its three evidence records present, so the review opens "waiting".

The bare flow has the same three tasks and the same transactions with plain SQLAlchemy Core and
no AIMS code: read the system and the same evidence rows (hash each, read the chain link before
it), insert a review row with the same checklist JSON and an audit row in one commit, and a third
task that returns a string. Both run in this process (the flow called directly) against the same
Prefect API and the same database, interleaved, 20 rounds after a warm-up; each run's review is
closed afterwards (untimed) so every run finds the same state.

Both are timed with Prefect's flow-run heartbeat thread off: with it on (Prefect's default) a sync
flow waits on exit for the thread's 1 s sleep, so every run shorter than ~0.9 s takes ~1.1-1.3 s
whatever it does, which hides the difference. The default-settings pair is kept in `detail`
(`*_deployed`, every 4th round, and `ratio_deployed`).

Context in `detail`: a flow of three no-op tasks (Prefect's floor), the bare flow's work as plain
Python (no Prefect), the AIMS flow's service calls without Prefect, and the counts of tasks,
transactions, commits and statements of one run of each.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Final

from bench.common import (
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

SYSTEM: Final = "cv-screening"
FROM_STAGE: Final = "validation"
TO_STAGE: Final = "deployment"
EVIDENCE_KINDS: Final = ("vv-report", "fairness-report", "deployment-plan")
REQUESTER: Final = "ds.lead@northwind.example"
MIN_REPEATS: Final = 12  # rounds of the heartbeat-off flows (~1 s a round)
DEPLOYED_EVERY: Final = 4  # the heartbeat-on pair (~2.5 s) in every 4th round
WARMUP: Final = 1
PG_REPEATS: Final = 6
TIME_LIMIT_S: Final = 50.0  # per database: the loop stops early (with what it has) past this
TARGET: Final = Target(on="ratio", op="<=", bound=1.25)


# --- the flows -------------------------------------------------------------------------------


def _flows() -> dict[str, Any]:
    """The three flows, built on first use (importing Prefect costs seconds)."""
    from prefect import flow, task

    from aims_core.services import gates
    from flows import stage_gate as sg

    @flow(name="stage-gate-check", flow_run_name=sg._run_name, log_prints=True)
    def aims_gate_check(system: str, to_stage: str, requester: str | None = None) -> Any:
        """stage_gate up to `request_approval`: the same tasks and helpers, in the same order."""
        checklist = sg.check_evidence(system, to_stage)
        sg._tag_run(checklist)
        review = sg.open_gate_review(checklist, requester)
        sg.publish_checklist(review)
        return gates.outcome_of(review)

    @task(name="read evidence")
    def bare_read(url: str, system: str) -> dict[str, Any]:
        return _bare_read(url, system)

    @task(name="insert review")
    def bare_insert(url: str, found: dict[str, Any]) -> int:
        return _bare_insert(url, found)

    @task(name="publish")
    def bare_publish(review_id: int) -> str:
        return f"review {review_id}"

    @flow(name="bare-gate-check")
    def bare_gate_check(url: str, system: str) -> str:
        found = bare_read(url, system)
        review_id = bare_insert(url, found)
        return bare_publish(review_id)

    @task(name="noop")
    def noop(x: int) -> int:
        return x

    @flow(name="noop-three-tasks")
    def noop_flow() -> int:
        return noop(noop(noop(1)))

    return {"aims": aims_gate_check, "bare": bare_gate_check, "noop": noop_flow}


# --- the bare flow's work: plain SQLAlchemy Core, no AIMS code ----------------------------------

_BARE: dict[str, Any] = {}
_BARE_KEY: Final = b"bench-orchestration-key-32-bytes"


def _bare_engine(url: str) -> Any:
    """Its own engine; on SQLite the same per-connection durability as AIMS's (WAL is a property
    of the file; synchronous=FULL is per connection) and the same BEGIN IMMEDIATE for writes."""
    if url in _BARE:
        return _BARE[url]
    from sqlalchemy import create_engine, event

    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA synchronous=FULL")
            dbapi_conn.execute("PRAGMA busy_timeout=30000")

        @event.listens_for(engine, "begin")
        def _begin(conn):  # type: ignore[no-untyped-def]
            write = conn.get_execution_options().get("bare_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
    else:
        engine = create_engine(url, pool_pre_ping=True)
    _BARE[url] = engine
    return engine


_DDL: Final = [
    """CREATE TABLE IF NOT EXISTS bench_orch_review (
        id INTEGER PRIMARY KEY, system_id INTEGER NOT NULL, from_stage VARCHAR(32),
        to_stage VARCHAR(32), status VARCHAR(32), checklist TEXT, missing TEXT, reasons TEXT,
        flow_run_id VARCHAR(64), requested_by VARCHAR(320), created_at TIMESTAMP,
        decided_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS bench_orch_audit (
        id INTEGER PRIMARY KEY, at TIMESTAMP, actor VARCHAR(320), channel VARCHAR(16),
        action VARCHAR(64), subject VARCHAR(200), details TEXT)""",
]


def _bare_setup(url: str) -> None:
    from sqlalchemy import text

    ddl = (
        _DDL
        if url.startswith("sqlite")
        else [d.replace("INTEGER PRIMARY KEY", "SERIAL PRIMARY KEY") for d in _DDL]
    )
    with _bare_engine(url).begin() as conn:
        for stmt in ddl:
            conn.execute(text(stmt))


def _bare_read(url: str, system: str) -> dict[str, Any]:
    """One read transaction: the system, its evidence of the gate's kinds (content hashed), and
    the chain value of the record before each (as the gate's verification reads it)."""
    from sqlalchemy import bindparam, text

    with _bare_engine(url).connect() as conn:
        sys_row = conn.execute(
            text(
                "SELECT s.id, s.name, s.risk_tier, s.lifecycle_stage, p.email FROM ai_system s "
                "JOIN person p ON p.id = s.owner_id WHERE s.name = :n"
            ),
            {"n": system},
        ).one()
        rows = conn.execute(
            text(
                "SELECT id, seq, kind, content, content_sha256, prev_chain, chain FROM evidence "
                "WHERE subject = :s AND kind IN :k ORDER BY seq"
            ).bindparams(bindparam("k", expanding=True)),
            {"s": f"system:{system}", "k": list(EVIDENCE_KINDS)},
        ).all()
        ids = []
        for r in rows:
            raw = (r.content or "").encode()
            ok = hashlib.sha256(raw).hexdigest() == r.content_sha256
            # The keyed chain link's HMAC, as the gate's verification computes one per record.
            hmac.new(_BARE_KEY, r.prev_chain.encode() + raw, "sha256").hexdigest()
            prev = conn.execute(
                text("SELECT chain FROM evidence WHERE seq = :q"), {"q": r.seq - 1}
            ).scalar()
            if ok and (r.seq == 1 or hmac.compare_digest(prev or "", r.prev_chain)):
                ids.append(r.id)
    checklist = _checklist_json(sys_row, ids)
    return {"system_id": sys_row.id, "checklist": checklist, "evidence_ids": ids}


def _checklist_json(sys_row: Any, ids: list[int]) -> str:
    """A checklist document of the same shape and size as the AIMS one."""
    items = [
        {
            "kind": k,
            "title": k.replace("-", " "),
            "control": "A.6.2.4",
            "control_title": "AI system verification and validation",
            "note": "",
            "evidence_ids": [i],
            "unverified": [],
            "present": True,
        }
        for k, i in zip(EVIDENCE_KINDS, ids, strict=False)
    ]
    return json.dumps(
        {
            "system": sys_row.name,
            "tier": sys_row.risk_tier,
            "owner": sys_row.email,
            "from_stage": FROM_STAGE,
            "to_stage": TO_STAGE,
            "reapproval": False,
            "policy": "packaged gate_policy.yaml",
            "items": items,
            "approver_roles": ["system-owner", "governance-lead", "compliance-officer"],
            "quorum": 2,
            "refused": None,
            "checked_at": datetime.now(UTC).isoformat(),
            "missing": [],
            "evidence_ids": ids,
            "status": "ready",
        }
    )


def _bare_insert(url: str, found: dict[str, Any]) -> int:
    """One write transaction, one commit: the review row and its audit row."""
    from sqlalchemy import text

    now = datetime.now(UTC)
    with _bare_engine(url).connect() as conn:
        conn = conn.execution_options(bare_write=True)
        with conn.begin():
            review_id = conn.execute(
                text(
                    "INSERT INTO bench_orch_review (system_id, from_stage, to_stage, status, "
                    "checklist, missing, reasons, flow_run_id, requested_by, created_at) VALUES "
                    "(:sid, :f, :t, 'waiting', :c, '[]', '', :run, :req, :now) RETURNING id"
                ),
                {
                    "sid": found["system_id"],
                    "f": FROM_STAGE,
                    "t": TO_STAGE,
                    "c": found["checklist"],
                    "run": str(uuid.uuid4()),
                    "req": REQUESTER,
                    "now": now,
                },
            ).scalar_one()
            details = {"system": SYSTEM, "evidence_ids": found["evidence_ids"], "missing": []}
            conn.execute(
                text(
                    "INSERT INTO bench_orch_audit (at, actor, channel, action, subject, details) "
                    "VALUES (:now, 'flow:bare', 'flow', 'gate.requested', :s, :d)"
                ),
                {"now": now, "s": f"gate:{review_id}", "d": json.dumps(details)},
            )
    return int(review_id)


# --- the organisation ------------------------------------------------------------------------


@contextlib.contextmanager
def _environment(data_dir: Any, url: str) -> Iterator[None]:
    """AIMS_DATA_DIR / AIMS_DATABASE_URL for the flow's `get_settings()`, restored afterwards."""
    keys = ("AIMS_DATA_DIR", "AIMS_DATABASE_URL")
    previous = {k: os.environ.get(k) for k in keys}
    os.environ["AIMS_DATA_DIR"] = str(data_dir)
    os.environ["AIMS_DATABASE_URL"] = url
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _prepare(settings: Any) -> list[int]:
    """Demo organisation, cv-screening at validation with the deployment gate's evidence."""
    from sqlalchemy import update

    from aims_core.database import initialise
    from aims_core.db import session_factory
    from aims_core.models import AISystem, LifecycleStage
    from aims_core.services import evidence
    from aims_core.services.demo import load_demo
    from aims_core.uow import Actor, UnitOfWork

    actor = Actor(who="bench", channel="test")
    initialise(settings, actor)
    load_demo(UnitOfWork(settings), actor)
    with session_factory(settings.effective_database_url)() as s:
        s.execute(
            update(AISystem)
            .where(AISystem.name == SYSTEM)
            .values(lifecycle_stage=LifecycleStage(FROM_STAGE))
        )
        s.commit()
    return [
        evidence.append(
            settings,
            {
                "subject": f"system:{SYSTEM}",
                "kind": k,
                "title": f"{k} for {SYSTEM}",
                "text": f"{k} for {SYSTEM}: " + "results and sign-off. " * 40,
            },
            actor,
        ).id
        for k in EVIDENCE_KINDS
    ]


def _service_only(settings: Any) -> Callable[[], Any]:
    """The AIMS flow's service calls without Prefect: run name, check, open review, markdown."""
    from aims_core.services import gates
    from aims_core.uow import UnitOfWork
    from flows.stage_gate import ACTOR

    def call() -> Any:
        gates.gate_run_name(UnitOfWork(settings), SYSTEM, TO_STAGE)
        checklist = gates.check_gate(UnitOfWork(settings), SYSTEM, TO_STAGE)
        review = gates.open_review(
            UnitOfWork(settings),
            checklist,
            ACTOR,
            requested_by=REQUESTER,
            flow_run_id=str(uuid.uuid4()),
        )
        review.markdown()
        return gates.outcome_of(review)

    return call


# --- counting --------------------------------------------------------------------------------


@contextlib.contextmanager
def _counting(engines: list[Any]) -> Iterator[dict[str, int]]:
    """Transactions, commits and SQL statements on `engines` while the block runs."""
    from sqlalchemy import event

    counts = {"transactions": 0, "commits": 0, "statements": 0}

    def on_begin(_conn: Any) -> None:
        counts["transactions"] += 1

    def on_commit(_conn: Any) -> None:
        counts["commits"] += 1

    def on_exec(*_a: Any) -> None:
        counts["statements"] += 1

    hooks = [("begin", on_begin), ("commit", on_commit), ("before_cursor_execute", on_exec)]
    for engine in engines:
        for name, fn in hooks:
            event.listen(engine, name, fn)
    try:
        yield counts
    finally:
        for engine in engines:
            for name, fn in hooks:
                event.remove(engine, name, fn)


def _task_runs(flow_run_id: Any) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted(t.name.rsplit("-", 1)[0] for t in runs)


# --- the measurement -------------------------------------------------------------------------


def _timer(
    fn: Callable[[], Any], heartbeat: bool, after: Callable[[], Any] | None = None
) -> Callable[[], float]:
    """Seconds of one call of `fn`; without `heartbeat`, with Prefect's flow-run heartbeat thread
    off (the settings switch is outside the timed part); `after` runs untimed afterwards."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    def call() -> float:
        cm = (
            contextlib.nullcontext()
            if heartbeat
            else temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
        )
        with cm:
            t0 = time.perf_counter()
            fn()
            seconds = time.perf_counter() - t0
        if after is not None:
            after()
        return seconds

    return call


def _close_reviews(url: str) -> Callable[[], None]:
    """Close the waiting reviews the last run opened (untimed), so every run finds the state the
    first one found: no review of the system waiting (a real system has at most one)."""
    from sqlalchemy import update

    from aims_core.db import session_factory
    from aims_core.models import GateReview, GateStatus

    def close() -> None:
        with session_factory(url)() as s:
            s.execute(
                update(GateReview)
                .where(GateReview.status == GateStatus.waiting)
                .values(status=GateStatus.refused)
            )
            s.commit()

    return close


def _measure(ctx: Context, database: str, repeats: int, deployed: bool) -> dict[str, Any]:
    """Interleaved timings of every subject on `database`, and one counted run of each."""
    from aims_core.settings import Settings

    with scratch_database(ctx, database, "orch") as (data_dir, url):
        settings = Settings(data_dir=data_dir, database_url=url)
        evidence_ids = _prepare(settings)
        _bare_setup(url)
        flows = _flows()
        with _environment(data_dir, url):
            aims = lambda: flows["aims"](SYSTEM, TO_STAGE, REQUESTER)  # noqa: E731
            bare = lambda: flows["bare"](url, SYSTEM)  # noqa: E731

            def plain() -> None:  # the bare flow's work as plain Python
                _bare_insert(url, _bare_read(url, SYSTEM))

            close = _close_reviews(url)
            subjects = {
                "aims": _timer(aims, heartbeat=False, after=close),
                "bare": _timer(bare, heartbeat=False),
                "noop": _timer(flows["noop"], heartbeat=False),
                "service": _timer(_service_only(settings), heartbeat=True, after=close),
                "plain": _timer(plain, heartbeat=True),
            }
            occasional: dict[str, Callable[[], float]] = {}
            if deployed:
                occasional["aims_deployed"] = _timer(aims, heartbeat=True, after=close)
                occasional["bare_deployed"] = _timer(bare, heartbeat=True)
            for _ in range(WARMUP):  # imports, connection pools, the API's first answers
                for call in [*subjects.values(), *occasional.values()]:
                    call()
            counts, task_names = _counted(flows, url, settings, close)
            times: dict[str, list[float]] = {k: [] for k in [*subjects, *occasional]}
            started = time.perf_counter()
            for i in range(repeats):
                # Rotate the order each round, so no subject always follows the same one.
                these = {**subjects, **(occasional if i % DEPLOYED_EVERY == 0 else {})}
                order = list(these)
                k = i % len(order)
                for name in order[k:] + order[:k]:
                    times[name].append(these[name]())
                if time.perf_counter() - started > TIME_LIMIT_S and i >= 4:
                    console.print(f"[yellow]orchestration: stopped after {i + 1} rounds (time)[/]")
                    break
    med = {k: median(v) for k, v in times.items()}
    return {
        "times": times,
        "median": med,
        "counts": counts,
        "task_names": task_names,
        "evidence_records": len(evidence_ids),
    }


def _counted(
    flows: dict[str, Any], url: str, settings: Any, close: Callable[[], None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One untimed run of each subject with its transactions, commits and statements counted,
    and the task runs of each flow read back from the API."""
    from aims_core.db import get_engine

    engines = [get_engine(url), _bare_engine(url)]
    counts: dict[str, Any] = {}
    with _counting(engines) as c:
        state = flows["aims"](SYSTEM, TO_STAGE, REQUESTER, return_state=True)
    counts["aims"] = dict(c)
    close()
    aims_tasks = _task_runs(state.state_details.flow_run_id)
    with _counting(engines) as c:
        state = flows["bare"](url, SYSTEM, return_state=True)
    counts["bare"] = dict(c)
    bare_tasks = _task_runs(state.state_details.flow_run_id)
    with _counting(engines) as c:
        _service_only(settings)()
    counts["service"] = dict(c)
    close()
    with _counting(engines) as c:
        _bare_insert(url, _bare_read(url, SYSTEM))
    counts["plain"] = dict(c)
    return counts, {"aims": aims_tasks, "bare": bare_tasks}


def _ms(x: float) -> float:
    return round(x * 1000, 1)


def run(ctx: Context) -> list[Figure]:
    repeats = max(MIN_REPEATS, ctx.repeats)
    with prefect_api(ctx):
        began = time.perf_counter()
        console.print("[bold]orchestration[/] on sqlite …")
        m = _measure(ctx, "sqlite", repeats, deployed=True)
        pg = None
        if ctx.postgres_url:
            console.print("[bold]orchestration[/] on postgresql (detail only) …")
            pg = _measure(ctx, "postgresql", PG_REPEATS, deployed=False)
        seconds = time.perf_counter() - began
    med, times = m["median"], m["times"]
    detail: dict[str, Any] = {
        "rounds": len(times["aims"]),
        "rounds_deployed": len(times.get("aims_deployed", [])),
        "warmup_rounds": WARMUP,
        "benchmark_seconds": round(seconds, 1),  # without the Prefect server's start
        "gate": f"{SYSTEM} (high) {FROM_STAGE}→{TO_STAGE}: {m['evidence_records']} evidence "
        "records, all verified; the review opens waiting for 2 approvers",
        "aims_flow": "stage-gate check phase: flows/stage_gate.py's run name, tasks and tags up "
        "to request_approval, composed as a flow of its own (a ready gate suspends there, "
        "which needs a served deployment)",
        "bare_flow": "3 tasks: read the same rows (SQLAlchemy Core), insert review + audit row "
        "(one commit), return a string",
        "heartbeat": "value, baseline and noop: Prefect's flow-run heartbeat thread off for both "
        "flows; *_deployed: Prefect's defaults, as served runs have them (the flow waits for the "
        "heartbeat thread's 1 s sleep on exit, so every sync flow run takes >= ~1 s)",
        "tasks": {"aims": len(m["task_names"]["aims"]), "bare": len(m["task_names"]["bare"])},
        "task_names": m["task_names"],
        "database_work_per_run": m["counts"],
        "aims_extra_prefect_work": "tags (read + update the run: 2 API calls), one markdown "
        "artifact (1 API call), 3 persisted task results (files under PREFECT_HOME/storage)",
        "median_ms": {k: _ms(v) for k, v in med.items()},
        "p95_ms": {k: _ms(p95(v)) for k, v in times.items()},
        "runs_ms": {k: [_ms(x) for x in v] for k, v in times.items()},
        "aims_over_its_services_ms": _ms(med["aims"] - med["service"]),
        "bare_over_plain_python_ms": _ms(med["bare"] - med["plain"]),
        "noop_flow_over_plain_python_ms": _ms(med["noop"]),
        "aims_minus_bare_ms": _ms(med["aims"] - med["bare"]),
        "ratio_deployed": round(med["aims_deployed"] / med["bare_deployed"], 3),
    }
    if pg is not None:
        pmed = pg["median"]
        detail["postgresql"] = {
            "rounds": len(pg["times"]["aims"]),
            "median_ms": {k: _ms(v) for k, v in pmed.items()},
            "ratio": round(pmed["aims"] / pmed["bare"], 3),
            "database_work_per_run": pg["counts"],
        }
    return [
        Figure.make(
            id="orchestration.sqlite",
            figure=3,
            title="Orchestration overhead: gate check flow vs bare Prefect flow",
            database="sqlite",
            value=med["aims"],
            unit="s",
            baseline=med["bare"],
            baseline_label="bare Prefect flow, same 3 tasks and writes",
            target=TARGET,
            runs=times["aims"],
            detail=detail,
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_context_args(parser)
    args = parser.parse_args(argv)
    return standalone("orchestration", run, context_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
