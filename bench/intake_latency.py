"""Benchmark (not a test): time from an Alertmanager alert to the first Slack message.

    .venv/bin/python -m bench.intake_latency [--n 200] [--database-url URL] [--engine]

The bridge app runs under uvicorn on 127.0.0.1 with a temporary SQLite database (or the given
one, e.g. a throw-away PostgreSQL database) and the demo organisation; Slack is the tests' fake
Web API on 127.0.0.1. N Alertmanager v4 payloads with distinct fingerprints are posted one after
another (each opens an incident); for each we measure

- intake → first message: the fake Slack's receive time of the incident's first chat.postMessage
  minus the moment the HTTP request was started (same clock: one process);
- HTTP round trip: the whole request, i.e. record + first messages + run start + answer.

Baseline, in the same run: a bare slack-sdk `chat.postMessage` to the same fake (request start →
fake receive), so `ratio` shows what intake adds over the one Slack call it cannot avoid.

By default the playbook run start is a stub (no Prefect server): it comes after the first
message, so intake → first message is unaffected; the round trip then excludes Prefect's API
calls. `--engine` uses the real `start_run` against PREFECT_API_URL (a running engine serving
incident-response). Results: bench/results/intake_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "intake_latency.json"
MAX_N = 2000
WARMUP = 5
TOKEN = "bench-intake-token-" + "b" * 24
CHANNEL = "C0BENCHINC"

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_var, None)


def stats(values: list[float]) -> dict[str, float]:
    """Milliseconds: median, p95 (nearest rank), mean, min, max."""
    ms = sorted(v * 1000 for v in values)
    p95 = ms[max(0, -(-len(ms) * 95 // 100) - 1)]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(p95, 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "min_ms": round(ms[0], 2),
        "max_ms": round(ms[-1], 2),
    }


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


def stub_start(
    deployment: str,
    parameters: dict[str, Any],
    *,
    name: str | None = None,
    tags: list[str] | None = None,
) -> tuple[str, str, str]:
    run_id = str(uuid.uuid4())
    return run_id, name or "run", f"http://127.0.0.1:4200/runs/flow-run/{run_id}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=200, help=f"alerts to post (1..{MAX_N})")
    parser.add_argument("--database-url", help="AIMS database (default: temporary SQLite)")
    parser.add_argument("--engine", action="store_true", help="real run start (PREFECT_API_URL)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not 1 <= args.n <= MAX_N:
        parser.error(f"--n must be between 1 and {MAX_N}")

    import httpx
    import uvicorn
    from pydantic import SecretStr
    from slack_sdk import WebClient

    from aims_core.database import initialise
    from aims_core.services.demo import load_demo
    from aims_core.settings import Settings
    from aims_core.uow import Actor, UnitOfWork
    from notifications.fake_slack import FakeSlack

    work = Path(tempfile.mkdtemp(prefix="aims-bench-"))
    fake = FakeSlack().start()
    fake.add_channel(CHANNEL)
    settings = Settings(
        data_dir=work / "data",
        database_url=args.database_url or f"sqlite:///{work / 'data' / 'aims.db'}",
        slack_bot_token=SecretStr(fake.token),
        slack_api_url=fake.base_url,
        slack_channel=CHANNEL,
        intake_token=SecretStr(TOKEN),
    )
    actor = Actor(who="bench", channel="test")
    initialise(settings, actor)
    load_demo(UnitOfWork(settings), actor)

    from aims_core.services import intake
    from notifications.app import create_app

    if not args.engine:  # the run start comes after the first message; stubbed, no Prefect
        intake.start_run = stub_start  # type: ignore[assignment]
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bridge", daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/alertmanager"
    headers = {"Authorization": f"Bearer {TOKEN}"}

    intake_posts = 0
    first_message: list[float] = []
    round_trip: list[float] = []
    statuses: dict[int, int] = {}
    try:
        with httpx.Client(timeout=30) as http:
            for i in range(-WARMUP, args.n):
                body = payload(i, uuid.uuid4().hex[:16])
                seen = len(fake.calls("chat.postMessage"))
                started = time.time()
                response = http.post(url, json=body, headers=headers)
                ended = time.time()
                if response.status_code not in (201, 202):
                    raise SystemExit(f"intake answered {response.status_code}: {response.text}")
                posts = fake.calls("chat.postMessage")[seen:]
                if not posts:
                    raise SystemExit(f"no Slack message for alert {i}: {response.text}")
                if i < 0:
                    continue
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                first_message.append(posts[0].at - started)
                round_trip.append(ended - started)

        intake_posts = len(fake.calls("chat.postMessage"))

        # Baseline: the one Slack call, bare.
        client = WebClient(token=fake.token, base_url=fake.base_url)
        baseline_receive: list[float] = []
        baseline_call: list[float] = []
        for i in range(-WARMUP, args.n):
            seen = len(fake.calls("chat.postMessage"))
            started = time.time()
            client.chat_postMessage(channel=CHANNEL, text=f"baseline {i}")
            ended = time.time()
            if i < 0:
                continue
            baseline_receive.append(fake.calls("chat.postMessage")[seen].at - started)
            baseline_call.append(ended - started)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        fake.stop()

    result = {
        "benchmark": "intake_latency",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "alerts": args.n,
        "warmup": WARMUP,
        "database": settings.effective_database_url.split("://", 1)[0],
        "run_start": "real start_run (PREFECT_API_URL)" if args.engine else "stubbed",
        "statuses": statuses,
        "slack_posts_per_incident": round(intake_posts / (args.n + WARMUP), 2),
        "intake_to_first_slack_message": stats(first_message),
        "intake_http_round_trip": stats(round_trip),
        "baseline_bare_post_to_receive": stats(baseline_receive),
        "baseline_bare_post_round_trip": stats(baseline_call),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
    }
    base = result["baseline_bare_post_to_receive"]["median_ms"]
    result["ratio_median_first_message_to_baseline"] = round(
        result["intake_to_first_slack_message"]["median_ms"] / base, 1
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    def line(label: str, s: dict[str, float]) -> str:
        return f"  {label:<38} median {s['median_ms']:8.2f} ms   p95 {s['p95_ms']:8.2f} ms"

    print(
        f"intake latency, {args.n} alerts ({result['database']}, run start {result['run_start']})"
    )
    print(line("intake -> first Slack message", result["intake_to_first_slack_message"]))
    print(line("intake HTTP round trip", result["intake_http_round_trip"]))
    print(line("baseline: bare chat.postMessage -> recv", result["baseline_bare_post_to_receive"]))
    print(line("baseline: bare chat.postMessage call", result["baseline_bare_post_round_trip"]))
    ratio = result["ratio_median_first_message_to_baseline"]
    print(f"  ratio (median first message / baseline receive): {ratio}x")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
