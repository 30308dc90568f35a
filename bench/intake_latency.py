"""Benchmark (not a test), figure 5: incident intake → first Slack message, against Prefect's own
event trigger → run start measured in the same run.

    .venv/bin/python -m bench.intake_latency [--n 90] [--events 6] [--repeats 3] [--postgres]

Intake, for each database in the context: the bridge app runs under uvicorn on 127.0.0.1 with a
scratch AIMS database and the demo organisation; Slack is the fake Web API
(`notifications/fake_slack.py`) on 127.0.0.1. Alertmanager v4 payloads with distinct fingerprints
are posted one after another (each opens an incident: SEV2 tells 5 people and the channel, 6
posts); for each we measure

- intake → first message: the fake Slack's receive time of the incident's first chat.postMessage
  minus the moment the HTTP request was started (one process, one clock);
- HTTP round trip: the whole request, i.e. record + first messages + run start + answer.

The playbook run start is a stub: it comes after the first message, so the figure is unaffected;
the round trip then leaves out Prefect's API calls (deployment lookup, run creation).

Baseline, same run, interleaved with the alerts (alerts, bare posts, events; repeated): a
deployment with a `DeploymentEventTrigger` served by a runner (poll 1 s) in a child process; events
are emitted one after another, and each is timed from `emit_event` to the first line of the flow
run it starts (the flow writes `time.time()` there; same machine clock). The phases (emit → run
created by the automation → Running → first line) come from the API afterwards. Also in detail: a
bare slack-sdk `chat.postMessage` to the same fake, the one Slack call intake cannot avoid.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from prefect import flow

from aims_core.ports import RunStarted
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

#: Alerts per database in `make bench` (split over ctx.repeats rounds) and the cap of --n.
DEFAULT_ALERTS: Final = 90
MAX_ALERTS: Final = 2000
#: Trigger events for the Prefect baseline, over the whole run (all databases).
DEFAULT_EVENTS: Final = 6
MAX_EVENTS: Final = 200
WARMUP: Final = 5  # untimed alerts / bare posts per database
EVENT_TIMEOUT: Final = 30.0  # seconds from emit to the run's first line
RUN_END_TIMEOUT: Final = 30.0  # then until the run is final, before the next measurement
EVENT: Final = "bench.alert"
TOKEN: Final = "bench-intake-token-" + "b" * 24
CHANNEL: Final = "C0BENCHINC"
TITLE: Final = "Incident intake → first Slack message"
BASELINE_LABEL: Final = "Prefect event trigger → run start"


# --- the baseline's flow, served by a child process ------------------------------------------


@flow(name="bench-trigger-run-start", persist_result=False, log_prints=False)
def trigger_run_start(marker: str, out_dir: str) -> None:
    """The triggered run: its first line records when it began (wall clock, as the emitter)."""
    began = time.time()
    from prefect.runtime import flow_run

    path = Path(out_dir) / f"{marker}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"at": began, "flow_run_id": str(flow_run.id)}))
    tmp.replace(path)


def serve_trigger(token: str, out_dir: str) -> None:
    """In the runner child: serve `trigger_run_start` with an event trigger for this run's
    events only (their resource id carries `token`)."""
    from prefect import serve
    from prefect.events import DeploymentEventTrigger

    deployment = trigger_run_start.to_deployment(
        name=f"bench-{token}",
        triggers=[
            DeploymentEventTrigger(
                name=f"bench-intake-{token}",
                expect={EVENT},
                match={"prefect.resource.id": f"bench.intake.{token}.*"},
                parameters={"marker": "{{ event.resource.id }}", "out_dir": out_dir},
            )
        ],
    )
    serve(deployment, pause_on_shutdown=False, print_starting_message=False)


@dataclass
class Trigger:
    """The served trigger deployment and the events measured against it."""

    token: str
    out_dir: Path
    emitted: dict[str, float] = field(default_factory=dict)  # marker -> emit time
    first_line: dict[str, float] = field(default_factory=dict)  # marker -> flow's first line
    run_ids: dict[str, str] = field(default_factory=dict)
    section: dict[str, str] = field(default_factory=dict)  # marker -> database measured beside
    lost: list[str] = field(default_factory=list)
    end_waits: list[float] = field(default_factory=list)  # first line → run final
    count: int = 0

    def fire(self, timed: bool, section: str = "") -> float | None:
        """Emit one event and wait for its run's first line, then for the run to end (so the
        next measurement starts on a quiet machine). Seconds emit → first line, None if lost."""
        from prefect.events import emit_event

        self.count += 1
        marker = f"bench.intake.{self.token}.{self.count}"
        path = self.out_dir / f"{marker}.json"
        emitted = time.time()
        emit_event(event=EVENT, resource={"prefect.resource.id": marker})
        deadline = time.monotonic() + EVENT_TIMEOUT
        while not path.exists():
            if time.monotonic() > deadline:
                if timed:
                    self.lost.append(marker)
                return None
            time.sleep(0.01)
        seen = json.loads(path.read_text())
        ending = time.time()
        _wait_final(seen["flow_run_id"], RUN_END_TIMEOUT)
        self.end_waits.append(time.time() - ending)
        if not timed:
            return None
        self.emitted[marker] = emitted
        self.first_line[marker] = seen["at"]
        self.run_ids[marker] = seen["flow_run_id"]
        self.section[marker] = section
        return seen["at"] - emitted

    def phases(self) -> dict[str, Any]:
        """From the API, after the fact: emit → created (the automation) → Running start_time
        (runner poll, subprocess, engine) → the flow's first line."""
        from prefect.client.orchestration import get_client

        created: list[float] = []
        to_running: list[float] = []
        to_first_line: list[float] = []
        emit_to_running: list[float] = []
        with get_client(sync_client=True) as client:
            for marker, run_id in self.run_ids.items():
                run = client.read_flow_run(uuid.UUID(run_id))
                if run.created is None or run.start_time is None:
                    continue
                emitted = self.emitted[marker]
                created.append(run.created.timestamp() - emitted)
                to_running.append(run.start_time.timestamp() - run.created.timestamp())
                to_first_line.append(self.first_line[marker] - run.start_time.timestamp())
                emit_to_running.append(run.start_time.timestamp() - emitted)
        return {
            "emit_to_run_created": _stats(created),
            "created_to_running": _stats(to_running),
            "running_to_first_line": _stats(to_first_line),
            "emit_to_running_start_time": _stats(emit_to_running),
        }


def _wait_final(flow_run_id: str, timeout: float) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(uuid.UUID(flow_run_id)).state
            if state is not None and state.is_final():
                return
            time.sleep(0.2)


@contextlib.contextmanager
def served_trigger(ctx: Context, api_url: str) -> Iterator[Trigger]:
    """A runner child serving the trigger deployment (poll 1 s), ready once a warm-up event has
    started a run; on exit the runner is stopped and its deployment and automation deleted."""
    from prefect.client.orchestration import get_client

    from deployments.local_engine import Process, prefect_env

    token = uuid.uuid4().hex[:12]
    out_dir = ctx.work / f"trigger-{token}"
    out_dir.mkdir(parents=True)
    env = {
        **os.environ,
        **prefect_env(api_url, out_dir / "storage", 1.0),
        "PYTHONPATH": str(ROOT),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    code = (
        "from bench.intake_latency import serve_trigger; "
        f"serve_trigger({token!r}, {str(out_dir)!r})"
    )
    runner = Process([sys.executable, "-c", code], env, out_dir / "runner.log", "trigger runner")
    runner.start()
    trigger = Trigger(token, out_dir)
    name = f"{trigger_run_start.name}/bench-{token}"
    try:
        deadline = time.monotonic() + 90
        while True:  # the deployment and its automation registered, the triggers service aware
            if not runner.alive:
                raise RuntimeError(f"the trigger runner exited:\n{runner.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no run from the warm-up event after 90 s:\n{runner.tail()}")
            if _deployment_id(name) is not None:
                before = trigger.count
                trigger.fire(timed=False)
                if (out_dir / f"bench.intake.{token}.{before + 1}.json").exists():
                    break
            else:
                time.sleep(0.5)
        yield trigger
    finally:
        runner.stop()
        # Leave a shared server as found: no deployment, no automation reacting to bench events.
        with contextlib.suppress(Exception):
            deployment_id = _deployment_id(name)
            if deployment_id is not None:
                with get_client(sync_client=True) as client:
                    with contextlib.suppress(Exception):
                        owner = f"prefect.deployment.{deployment_id}"
                        client.delete_resource_owned_automations(owner)
                    client.delete_deployment(deployment_id)


def _deployment_id(name: str) -> uuid.UUID | None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name).id
        except ObjectNotFound:
            return None


# --- intake ----------------------------------------------------------------------------------


def payload(i: int, fingerprint: str) -> dict[str, Any]:
    from notifications.intake import firing_webhook

    labels = {
        "alertname": "FairnessDisparateImpactLow",
        "ai_system": "cv-screening",
        "severity": "high",
        "category": "bias",
        "segment": f"bench-{i}",
    }
    annotations = {
        "summary": f"cv-screening: disparate impact ratio 0.61 (segment {i})",
        "description": "Below the 0.8 four-fifths threshold for 30m.",
    }
    return firing_webhook(labels, annotations, fingerprint)


class StubRuns:
    """Runs that start instantly: the run start comes after the first message, so the figure
    is unaffected by it."""

    def start(
        self, deployment: str, parameters: Any, *, name: str | None = None, **_: Any
    ) -> RunStarted:
        run_id = str(uuid.uuid4())
        return RunStarted(
            id=run_id, name=name or "run", url=f"http://127.0.0.1:4200/runs/flow-run/{run_id}"
        )


@dataclass
class Intake:
    """The bridge on a scratch database plus the fake Slack, and what was measured on them."""

    url: str
    fake: Any
    first_message: list[float] = field(default_factory=list)
    round_trip: list[float] = field(default_factory=list)
    bare_receive: list[float] = field(default_factory=list)
    bare_call: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    alerts_posted: int = 0

    def alerts(self, http: Any, n: int, timed: bool = True) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for _ in range(n):
            self.alerts_posted += 1
            body = payload(self.alerts_posted, uuid.uuid4().hex[:16])
            seen = len(self.fake.calls("chat.postMessage"))
            started = time.time()
            response = http.post(self.url, json=body, headers=headers)
            ended = time.time()
            if response.status_code not in (201, 202):
                raise RuntimeError(f"intake answered {response.status_code}: {response.text}")
            posts = self.fake.calls("chat.postMessage")[seen:]
            if not posts:
                raise RuntimeError(f"no Slack message for an alert: {response.text}")
            if timed:
                self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
                self.first_message.append(posts[0].at - started)
                self.round_trip.append(ended - started)

    def bare_posts(self, client: Any, n: int, timed: bool = True) -> None:
        for i in range(n):
            seen = len(self.fake.calls("chat.postMessage"))
            started = time.time()
            client.chat_postMessage(channel=CHANNEL, text=f"baseline {i}")
            ended = time.time()
            if timed:
                self.bare_receive.append(self.fake.calls("chat.postMessage")[seen].at - started)
                self.bare_call.append(ended - started)


@contextlib.contextmanager
def bridge(ctx: Context, database: str) -> Iterator[Intake]:
    """The bridge app under uvicorn (run start stubbed) on a scratch database with the demo
    organisation, talking to a fake Slack; all on 127.0.0.1."""
    import uvicorn
    from pydantic import SecretStr

    from aims_core.database import initialise
    from aims_core.services.demo import load_demo
    from aims_core.settings import Settings
    from aims_core.uow import Actor, UnitOfWork
    from notifications.app import create_app
    from notifications.fake_slack import FakeSlack

    fake = FakeSlack().start()
    server: Any = None
    thread: threading.Thread | None = None
    try:
        with scratch_database(ctx, database, "intake") as (data_dir, url):
            fake.add_channel(CHANNEL)
            settings = Settings(
                data_dir=data_dir,
                database_url=url,
                slack_bot_token=SecretStr(fake.token),
                slack_api_url=fake.base_url,
                slack_channel=CHANNEL,
                intake_token=SecretStr(TOKEN),
            )
            actor = Actor(who="bench", channel="test")
            initialise(settings, actor)
            load_demo(UnitOfWork(settings), actor)
            config = uvicorn.Config(
                create_app(settings, runs=StubRuns()),  # type: ignore[arg-type]
                host="127.0.0.1",
                port=0,
                log_level="warning",
                access_log=False,
            )
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, name="bench-bridge", daemon=True)
            thread.start()
            deadline = time.monotonic() + 30
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the bridge app did not start")
                time.sleep(0.02)
            port = server.servers[0].sockets[0].getsockname()[1]
            try:
                yield Intake(f"http://127.0.0.1:{port}/alertmanager", fake)
            finally:
                server.should_exit = True
                thread.join(timeout=10)
    finally:
        fake.stop()


# --- the benchmark ---------------------------------------------------------------------------


def _ms(values: list[float]) -> list[float]:
    return [round(v * 1000, 2) for v in values]


def _stats(values: list[float]) -> dict[str, float | int | None]:
    """Milliseconds: n, median, p95 (nearest rank), min, max."""
    if not values:
        return {"n": 0, "median_ms": None, "p95_ms": None}
    ms = _ms(values)
    return {
        "n": len(ms),
        "median_ms": round(median(ms), 2),
        "p95_ms": round(p95(ms), 2),
        "min_ms": min(ms),
        "max_ms": max(ms),
    }


def run(ctx: Context, alerts: int = DEFAULT_ALERTS, events: int = DEFAULT_EVENTS) -> list[Figure]:
    """Figure 5 on every database: `alerts` per database and `events` trigger events over the
    whole run, in ctx.repeats interleaved rounds."""
    import httpx
    from slack_sdk import WebClient

    rounds = max(1, ctx.repeats)
    per_round = math.ceil(alerts / rounds)
    # The events spread evenly over every (database, round), the odd ones alternating databases.
    slots = rounds * len(ctx.databases)
    share = {
        (database, r): events // slots + (1 if r * len(ctx.databases) + d < events % slots else 0)
        for d, database in enumerate(ctx.databases)
        for r in range(rounds)
    }
    measured: dict[str, Intake] = {}
    baseline: list[float] = []
    with prefect_api(ctx) as api_url:
        started = time.perf_counter()  # the shared server's start is not ours
        with served_trigger(ctx, api_url) as trigger:
            trigger_setup = time.perf_counter() - started
            for database in ctx.databases:
                console.print(f"[dim]intake latency on {database} …[/]")
                with bridge(ctx, database) as bench, httpx.Client(timeout=30) as http:
                    client = WebClient(token=bench.fake.token, base_url=bench.fake.base_url)
                    bench.alerts(http, WARMUP, timed=False)
                    bench.bare_posts(client, WARMUP, timed=False)
                    for r in range(rounds):  # A, A', B; A, A', B ...
                        bench.alerts(http, per_round)
                        bench.bare_posts(client, per_round)
                        for _ in range(share[database, r]):
                            took = trigger.fire(timed=True, section=database)
                            if took is not None:
                                baseline.append(took)
                    measured[database] = bench
            phases = trigger.phases()
        seconds = time.perf_counter() - started

    base_median = round(median(_ms(baseline)), 2) if baseline else None
    base_p95 = round(p95(_ms(baseline)), 2) if baseline else None
    baseline_detail = {
        "what": (
            "emit_event → the triggered flow run's first line (time.time() written by the flow; "
            "same machine clock). A deployment with a DeploymentEventTrigger, served by a runner "
            "(poll 1 s) in a child process; events one after another, each run awaited to its "
            "end before the next measurement; pooled over all databases' rounds"
        ),
        "events": len(baseline),
        "lost": len(trigger.lost),
        "emit_to_first_line": _stats(baseline),
        "by_section": {
            db: _stats(
                [
                    trigger.first_line[m] - trigger.emitted[m]
                    for m, s in trigger.section.items()
                    if s == db
                ]
            )
            for db in ctx.databases
        },
        "phases": phases,
        "first_line_to_run_final": _stats(trigger.end_waits),
        "runs_ms": _ms(baseline),
        "trigger_setup_seconds": round(trigger_setup, 1),
    }
    figures: list[Figure] = []
    for database, bench in measured.items():
        first = _ms(bench.first_message)
        bare = _stats(bench.bare_receive)
        detail = {
            "alerts": len(first),
            "warmup": WARMUP,
            "rounds": rounds,
            "run_start": (
                "stubbed: the playbook run is started after the first message, so this figure "
                "does not change; the round trip leaves out Prefect's API calls"
            ),
            "statuses": bench.statuses,
            "slack_posts_per_incident": round(
                (len(bench.fake.calls("chat.postMessage")) - len(bench.bare_receive) - WARMUP)
                / bench.alerts_posted,
                2,
            ),
            "intake_to_first_message": _stats(bench.first_message),
            "intake_http_round_trip": _stats(bench.round_trip),
            "bare_post_to_receive": bare,
            "bare_post_call": _stats(bench.bare_call),
            "first_message_over_bare_post": (
                round(median(first) / bare["median_ms"], 1) if bare["median_ms"] else None
            ),
            "baseline": baseline_detail,
            "seconds_without_server_start": round(seconds, 1),
        }
        for stat, value, base, bound in (
            ("median", median(first), base_median, 2000.0),
            ("p95", p95(first), base_p95, 4000.0),
        ):
            figures.append(
                Figure.make(
                    id=f"intake-first-message.{stat}.{database}",
                    figure=5,
                    title=f"{TITLE} ({stat})",
                    database=database,
                    value=round(value, 2),
                    unit="ms",
                    baseline=base,
                    baseline_label=BASELINE_LABEL,
                    target=Target(on="value", op="<=", bound=bound),
                    runs=first,
                    detail=detail,
                )
            )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    add_context_args(parser)
    parser.add_argument(
        "--n", type=int, default=DEFAULT_ALERTS, help=f"alerts per database (1..{MAX_ALERTS})"
    )
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        help=f"trigger events for the Prefect baseline, whole run (1..{MAX_EVENTS})",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.n <= MAX_ALERTS:
        parser.error(f"--n must be between 1 and {MAX_ALERTS}")
    if not 1 <= args.events <= MAX_EVENTS:
        parser.error(f"--events must be between 1 and {MAX_EVENTS}")
    ctx = context_from_args(args)
    return standalone(
        "intake_latency", functools.partial(run, alerts=args.n, events=args.events), ctx
    )


if __name__ == "__main__":
    sys.exit(main())
