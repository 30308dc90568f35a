"""The reliability suite's results file and RELIABILITY.md, generated from it — never typed.

Each fault or attack test takes the `reliability` fixture and records what it saw, after its
assertions (a failing test records nothing new, and its outcome is recorded as failed):

    reliability.record("forged-slack", requests=1200, refused=1200, rows_written=0)

The suite merges every record into `.aims/reliability/latest.json`, keyed by test id, with the
test's outcome and duration. Publishing copies it to `docs/reliability-results.json` (committed:
the document's source) and rewrites RELIABILITY.md; `tests/test_reliability_doc.py` fails when the
document is not the one generated from the published results, or a promise has no passing test.

    .venv/bin/python tests/reliability.py publish    # (make reliability-doc) after a full run
    .venv/bin/python tests/reliability.py check      # RELIABILITY.md is the generated one?
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest

ROOT: Final = Path(__file__).resolve().parent.parent
LATEST: Final = ROOT / ".aims" / "reliability" / "latest.json"
PUBLISHED: Final = ROOT / "docs" / "reliability-results.json"
DOCUMENT: Final = ROOT / "RELIABILITY.md"


@dataclass(frozen=True)
class Promise:
    key: str
    number: int
    title: str
    promise: str
    #: Figures summed over the promise's passing tests for the headline (both databases).
    headline: tuple[str, ...] = ()


# The promises of issue 9, in its order; each is proved by one or more tests that record it.
PROMISES: Final = [
    Promise(
        "slack-outage",
        1,
        "Slack outage",
        "Notifications queued while Slack answers 500 / 429 or hangs are all delivered after "
        "recovery, none lost, in order per thread; duplicates are counted (0 when Slack answered "
        "errors, at most one per hung request).",
        headline=(
            "notifications",
            "delivered",
            "lost",
            "out_of_order",
            "hung_requests",
            "duplicates",
        ),
    ),
    Promise(
        "prefect-restart",
        2,
        "Prefect server restart",
        "Gate runs waiting suspended survive the Prefect server being killed and restarted; "
        "decisions that arrive during the outage are kept and every run completes with the "
        "right decision.",
        headline=("runs", "decided_during_outage", "completed_right", "lost"),
    ),
    Promise(
        "killed-mid-step",
        3,
        "Engine killed mid-step",
        "A process SIGKILLed inside the evidence transaction leaves no half record, the chain "
        "verifies, and a retry completes the step exactly once.",
        headline=("killed", "half_records", "records_written"),
    ),
    Promise(
        "database-unavailable",
        4,
        "Database unavailable",
        "With PostgreSQL stopped, intake answers a clear 503 the caller can retry, nothing is "
        "half-written, and the engine recovers without a restart when the database is back.",
        headline=("incidents_recorded", "half_written"),
    ),
    Promise(
        "concurrency",
        5,
        "Concurrency",
        "Several processes appending evidence and deciding approvals at once keep the chain "
        "intact, with no duplicate and no lost decision.",
        headline=(
            "appends",
            "decisions_attempted",
            "decisions_recorded",
            "duplicate_decisions",
            "lost_decisions",
        ),
    ),
    Promise(
        "forged-slack",
        6,
        "Forged Slack requests",
        "Forged interaction requests (bad signature, wrong secret, stale or future timestamp, "
        "tampered body, other team, oversized) are refused with 401/400 and write nothing; an "
        "identical signed re-delivery is answered 200 and writes nothing new.",
        headline=("requests", "refused", "rows_written"),
    ),
    Promise(
        "authorisation",
        7,
        "Authorisation",
        "Non-eligible approvers, self-approval, approvers with expired training, wrong or "
        "another approver's UI code, and intake without or with a wrong token are refused and "
        "audited.",
        headline=("attempts", "refused", "audited"),
    ),
    Promise(
        "fuzzing",
        8,
        "Fuzzing bad input",
        "Generated bad input to the CLI, CSV/Excel import, incident and Alertmanager webhooks, "
        "gate-policy and playbook YAML never crashes, never shows a traceback, gets a clear error "
        "and writes nothing.",
        headline=("inputs", "refused", "accepted", "crashes", "rows_written_by_refused"),
    ),
    Promise(
        "tampering",
        9,
        "Tampering",
        "Edited, deleted, inserted, reordered or re-hashed evidence rows, a deleted tail and a "
        "replaced evidence file all make `aims evidence verify` fail naming the first bad record "
        "(or the missing tail).",
        headline=("cases", "caught", "named_right_record"),
    ),
    Promise(
        "secrets",
        10,
        "Secrets",
        "No token, signing secret, evidence key or approval code appears in logs, artifacts, "
        "error messages or `aims config show`.",
        headline=("outputs_scanned", "log_records", "files_scanned", "leaks"),
    ),
]
BY_KEY: Final = {p.key: p for p in PROMISES}


# --- the results file -------------------------------------------------------------------------


@contextmanager
def _locked(path: Path) -> Iterator[dict[str, Any]]:
    """The results file, read and rewritten under an exclusive lock (tests in several
    processes may record at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data: dict[str, Any] = {"tests": {}}
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError:
                data = {"tests": {}}
        yield data
        data["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
        data["machine"] = machine()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "ci": os.environ.get("CI", "").lower() == "true",
        "postgresql": bool(os.environ.get("AIMS_TEST_POSTGRES_URL")),
    }


class Recorder:
    """What one test saw, for the promise it proves."""

    def __init__(self, nodeid: str, path: Path = LATEST) -> None:
        self.nodeid = nodeid
        self.path = path
        self.recorded = False

    def record(self, promise: str, **figures: Any) -> None:
        if promise not in BY_KEY:
            raise KeyError(f"unknown promise {promise!r}; known: {', '.join(BY_KEY)}")
        for name, value in figures.items():
            if not isinstance(value, int | float | str | bool):
                raise TypeError(f"figure {name!r} must be a number, text or bool")
        with _locked(self.path) as data:
            entry = data["tests"].get(self.nodeid, {})
            if entry.get("promise") not in (None, promise):
                raise ValueError(f"{self.nodeid} already records {entry['promise']!r}")
            entry.update(
                promise=promise,
                figures={**entry.get("figures", {}), **figures},
                recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
                outcome="running",
            )
            data["tests"][self.nodeid] = entry
        self.recorded = True


# --- pytest plugin (listed in conftest's pytest_plugins) ---------------------------------------


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Recorder:
    return Recorder(request.node.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Stamp the outcome and duration on the entry of a test that recorded something."""
    if report.when != "call" and not (report.when == "setup" and report.failed):
        return
    if not LATEST.exists():
        return
    with _locked(LATEST) as data:
        entry = data["tests"].get(report.nodeid)
        if entry is None:
            return
        entry["outcome"] = report.outcome
        entry["seconds"] = round(report.duration, 1)


# --- the document -----------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(data: dict[str, Any]) -> str:
    tests: dict[str, dict[str, Any]] = data.get("tests", {})
    m = data.get("machine", {})
    lines = [
        "# Reliability: the promises and the tests that prove them",
        "",
        "<!-- generated by `python tests/reliability.py publish` from "
        "docs/reliability-results.json; do not edit -->",
        "",
        "What a trusted workflow engine promises — a decision once acknowledged is never lost, a "
        "run survives its orchestrator restarting, a forged request changes nothing — each proved "
        "by a test that injects the fault and fails if the promise breaks. They run in `make test` "
        "(and so in CI) against SQLite and, where the fault is database-side, PostgreSQL. The "
        "figures below are what the suite itself recorded in its results file on its last "
        "published run; reproduce with:",
        "",
        "```bash",
        "make test                  # the whole suite; the reliability tests record their figures",
        "make reliability-doc       # publish .aims/reliability/latest.json as this page",
        "```",
        "",
        f"Last published run: {str(data.get('updated', '?'))[:10]} on {m.get('cpu', '?')}, "
        f"{m.get('cores', '?')} cores, Python {m.get('python', '?')}"
        f"{', with PostgreSQL' if m.get('postgresql') else ', SQLite only'}.",
        "",
        "| # | promise | tests | passed | headline (summed over its passing tests) |",
        "| --- | --- | --- | --- | --- |",
    ]
    details: list[str] = []
    for p in PROMISES:
        mine = sorted((k, v) for k, v in tests.items() if v.get("promise") == p.key)
        passed = sum(1 for _, v in mine if v.get("outcome") == "passed")
        summary = (
            _headline(p, [v for _, v in mine if v.get("outcome") == "passed"])
            if mine
            else "not recorded"
        )
        lines.append(
            f"| {p.number} | **{p.title}** | {len(mine)} | {passed}/{len(mine)} | {summary} |"
        )
        details += ["", f"## {p.number}. {p.title}", "", p.promise, ""]
        if not mine:
            details.append("_No test has recorded this promise yet._")
            continue
        details += ["| test | outcome | seconds | figures |", "| --- | --- | ---: | --- |"]
        for nodeid, v in mine:
            details.append(
                f"| `{nodeid}` | {v.get('outcome', '?')} | {_fmt(v.get('seconds', ''))} | "
                f"{_summary(v)} |"
            )
    return "\n".join(lines + details) + "\n"


def _headline(p: Promise, passed: list[dict[str, Any]]) -> str:
    """The promise's headline figures, summed over its passing tests (booleans count as 1)."""
    if not passed:
        return "**no passing test**"
    parts = []
    for name in p.headline:
        values = [v["figures"][name] for v in passed if name in v.get("figures", {})]
        if values:
            parts.append(f"{name.replace('_', ' ')} {_fmt(sum(int(x) for x in values))}")
    return ", ".join(parts) or "recorded (see below)"


def _summary(entry: dict[str, Any]) -> str:
    return ", ".join(
        f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in entry.get("figures", {}).items()
    )


def missing(data: dict[str, Any]) -> list[str]:
    """Promises without a passing test in these results."""
    ok = {v.get("promise") for v in data.get("tests", {}).values() if v.get("outcome") == "passed"}
    return [p.key for p in PROMISES if p.key not in ok]


def publish() -> int:
    if not LATEST.exists():
        print(f"no results at {LATEST}: run the suite first (make test)", file=sys.stderr)
        return 2
    data = json.loads(LATEST.read_text())
    known = {k: v for k, v in data.get("tests", {}).items() if v.get("promise") in BY_KEY}
    data["tests"] = known
    PUBLISHED.parent.mkdir(parents=True, exist_ok=True)
    PUBLISHED.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    DOCUMENT.write_text(render(data))
    gaps = missing(data)
    print(f"published {len(known)} tests to {PUBLISHED.relative_to(ROOT)} and RELIABILITY.md")
    if gaps:
        print(f"promises without a passing test: {', '.join(gaps)}", file=sys.stderr)
        return 1
    return 0


def check() -> int:
    data = json.loads(PUBLISHED.read_text())
    if DOCUMENT.read_text() != render(data):
        print("RELIABILITY.md is not the one generated from docs/reliability-results.json")
        return 1
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "publish"
    if command not in {"publish", "check"}:
        print("usage: tests/reliability.py publish|check", file=sys.stderr)
        sys.exit(2)
    sys.exit(publish() if command == "publish" else check())
