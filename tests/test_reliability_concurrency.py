"""Reliability promise 5 (issue 9), concurrency: 4 OS processes append evidence and decide
approvals at once for DURATION seconds, on SQLite and on PostgreSQL.

Every process walks the same sequence of stage-gate requests (created idempotently by whichever
process gets there first; 3 eligible approvers, quorum 3) and decides each for two of them,
picked in its own random order, mostly approving and now and then rejecting, so the processes keep
colliding: the same decision twice (a replay), a different decision for the same approver (a
conflict, refused), a decision on a request another process has just closed (refused). Between
decisions each appends evidence of its own, plus one record per request that all of them append
with the same content (one record in the end). Each process reports what it was told.

Then: the chain verifies, the anchor is at the head, and every append the processes were told
about is the record at its seq; each approver decided each request at most once, every decision
a process was told was recorded exists (with that process as its actor) and no decision exists
that nobody was told about, every refusal agrees with the database, and every request's status
follows from its decisions.

This file is also the worker: `python tests/test_reliability_concurrency.py work NAME ...`.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import (
    ApprovalRequest,
    ApprovalStatus,
    AuditEvent,
    Decision,
    Evidence,
    Outcome,
    Person,
)
from aims_core.services import approvals
from aims_core.services import evidence as ev
from aims_core.services.approvals import ApprovalRequestIn, DecisionIn, Refused
from aims_core.settings import Settings, get_settings
from aims_core.uow import Actor, UnitOfWork

PROCESSES: Final = 4
#: Seconds every process works, per database (CI runs the full 30; lower it while developing).
DURATION: Final = 30.0
MAX_REQUESTS: Final = 100_000  # a count bound besides the time bound
REJECT_SHARE: Final = 0.15  # of decisions; a rejection closes its request
#: Of a request's 3 approvers, how many each process decides: fewer than 3, so no process closes
#: a request alone (on SQLite the process holding the write lock tends to keep it).
DECIDES_PER_REQUEST: Final = 2
START_TIMEOUT: Final = 60.0  # for the workers to import and get ready
GATE_ROLES: Final = ["compliance-officer", "ethics-committee", "governance-lead"]
REQUESTER: Final = "ds.lead@northwind.example"
EXPECTED_REFUSALS: Final = {"already-decided", "closed"}


# --- the worker (its own process) --------------------------------------------------------------


def work(name: str, seconds: float, go: Path, out: Path) -> None:
    """Append and decide until `seconds` have passed; write what each call answered to `out`."""
    settings = get_settings()  # AIMS_DATA_DIR / AIMS_DATABASE_URL from the test's environment
    rng = random.Random(name)
    me = Actor(who=f"proc-{name}", channel="cli")
    appends: list[tuple[str, int, bool]] = []  # (idempotency key, seq, replayed)
    decisions: list[tuple[int, str, str, str]] = []  # (request, approver, outcome, answer)
    requests: list[tuple[int, int]] = []  # (k, request id)
    (go.parent / f"ready-{name}").touch()
    waited = time.monotonic() + START_TIMEOUT
    while not go.exists():
        if time.monotonic() > waited:
            raise SystemExit("never told to go")
        time.sleep(0.005)

    def append(subject: str, title: str, text: str) -> None:
        out_ = ev.append(
            settings, EvidenceIn(subject=subject, kind="other", title=title, text=text), me
        )
        appends.append((out_.idempotency_key, out_.seq, out_.replayed))

    deadline = time.monotonic() + seconds
    for k in range(MAX_REQUESTS):
        if time.monotonic() >= deadline:
            break
        subject = f"gate:credit-scoring:concurrent-{k}"
        request = approvals.create_request(
            UnitOfWork(settings),
            ApprovalRequestIn(
                idempotency_key=f"concurrent-gate-{k}",
                subject=subject,
                activity="stage-gate",
                system="credit-scoring",
                title=f"Concurrent gate {k}",
                approver_roles=GATE_ROLES,
                quorum=3,
                requester=REQUESTER,
            ),
            me,
        )
        requests.append((k, request.id))
        approvers = list(request.approvers)
        rng.shuffle(approvers)
        for who in approvers[:DECIDES_PER_REQUEST]:
            outcome = Outcome.reject if rng.random() < REJECT_SHARE else Outcome.approve
            comment = f"{name}: not convinced" if outcome is Outcome.reject else ""
            try:
                result = approvals.decide(
                    UnitOfWork(settings),
                    DecisionIn(request_id=request.id, person=who, outcome=outcome, comment=comment),
                    me,
                )
                answer = "recorded" if result.recorded else "replayed"
            except Refused as exc:
                answer = f"refused:{exc.reason}"
            decisions.append((request.id, who, outcome.value, answer))
            append(subject, f"{name} note on {who}", f"{name}-{k}-{who}")
        append(subject, f"gate {k} decided", f"shared record of gate {k}")  # all four do this
    out.write_text(json.dumps({"appends": appends, "decisions": decisions, "requests": requests}))


# --- the test ----------------------------------------------------------------------------------


def _run_workers(tmp_path: Path, seconds: float) -> dict[str, dict[str, Any]]:
    """Start the workers, let them go at the same moment, and collect their reports."""
    go = tmp_path / "go"
    names = [chr(ord("a") + i) for i in range(PROCESSES)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "work", n, str(seconds), str(go), str(tmp_path / n)],
            cwd=tmp_path,  # no developer .env is read
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in names
    ]
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not all((tmp_path / f"ready-{n}").exists() for n in names):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        go.touch()  # all start at the same moment
        for p in procs:
            _out, err = p.communicate(timeout=seconds + 120)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return {n: json.loads((tmp_path / n).read_text()) for n in names}


def test_four_processes_appending_and_deciding_keep_the_chain_and_every_decision(
    org: UnitOfWork, tmp_path: Path, reliability: Any
) -> None:
    settings: Settings = org.settings
    before = ev.count_evidence(settings)  # the demo organisation's records
    by_name = _run_workers(tmp_path, DURATION)
    reports = list(by_name.values())

    # The evidence chain: intact, anchored at its head, and every append where it was told.
    verify = ev.verify(settings)
    assert verify.intact, verify.reason
    anchor = ev.read_anchor(settings)
    assert anchor is not None and anchor.count == verify.count == verify.head_count
    with get_engine(settings.effective_database_url).connect() as conn:
        seq_of = dict(conn.execute(select(Evidence.idempotency_key, Evidence.seq)).tuples().all())
    appends = [tuple(a) for r in reports for a in r["appends"]]
    assert all(seq_of.get(key) == seq for key, seq, _ in appends)
    assert len(seq_of) == verify.count == before + len({key for key, _, _ in appends})
    gates = {k for r in reports for k, _ in r["requests"]}
    replayed = sum(1 for _, _, again in appends if again)
    assert replayed == sum(len(r["requests"]) for r in reports) - len(gates)  # shared: one each

    # The decisions (on this test's requests; the demo organisation may hold others).
    ours = {rid for r in reports for _, rid in r["requests"]}
    with UnitOfWork(settings).read() as uow:
        s = uow.session
        email = dict(s.execute(select(Person.id, Person.email)).tuples().all())
        stored = {
            (d.request_id, email[d.person_id]): (d.outcome.value, d.actor, d.id)
            for d in s.scalars(select(Decision).where(Decision.request_id.in_(ours)))
        }
        total_decisions = len(
            s.scalars(select(Decision.id).where(Decision.request_id.in_(ours))).all()
        )
        mine = select(ApprovalRequest.id, ApprovalRequest.status).where(
            ApprovalRequest.id.in_(ours)
        )
        status = dict(s.execute(mine).tuples().all())
        decided_events = sum(
            1
            for subject in s.scalars(
                select(AuditEvent.subject).where(AuditEvent.action == "approval.decided")
            )
            if int(subject.removeprefix("approval:")) in ours
        )
    assert total_decisions == len(stored)  # nobody decided any request twice
    told = Counter()
    recorded_by: Counter[tuple[int, str]] = Counter()
    for name, report in by_name.items():
        for rid, who, outcome, answer in report["decisions"]:
            told[answer] += 1
            kept = stored.get((rid, who))
            if answer == "recorded":
                recorded_by[(rid, who)] += 1
                assert kept is not None and kept[:2] == (outcome, f"proc-{name}"), (rid, who)
            elif answer == "replayed":
                assert kept is not None and kept[0] == outcome, (rid, who)
            elif answer == "refused:already-decided":
                assert kept is not None and kept[0] != outcome, (rid, who)
            else:
                assert answer.removeprefix("refused:") in EXPECTED_REFUSALS, answer
                assert status[rid] is not ApprovalStatus.open, (rid, answer)
    # Every stored decision was acknowledged to exactly one process: none lost, none phantom.
    assert set(recorded_by) == set(stored) and set(recorded_by.values()) == {1}
    assert decided_events == len(stored)
    # Each request's status follows from its decisions, none recorded after it closed.
    by_request: dict[int, list[tuple[int, str]]] = {}
    for (rid, _), (outcome, _, did) in stored.items():
        by_request.setdefault(rid, []).append((did, outcome))
    for rid, state in status.items():
        outcomes = [o for _, o in sorted(by_request.get(rid, []))]
        if "reject" in outcomes:
            assert (
                state is ApprovalStatus.rejected and outcomes.index("reject") == len(outcomes) - 1
            )
        elif len(outcomes) == 3:
            assert state is ApprovalStatus.approved
        else:
            assert state is ApprovalStatus.open and outcomes == ["approve"] * len(outcomes)

    attempted = sum(told.values())
    reliability.record(
        "concurrency",
        database=settings.effective_database_url.split(":", 1)[0].split("+")[0],
        processes=PROCESSES,
        seconds=DURATION,
        appends=len(appends),
        evidence_records=verify.count - before,
        appends_replayed=replayed,
        requests=len(gates),
        decisions_attempted=attempted,
        decisions_recorded=told["recorded"],
        decisions_replayed=told["replayed"],
        conflicts_refused=told["refused:already-decided"],
        closed_refused=told["refused:closed"],
        duplicate_decisions=0,
        lost_decisions=0,
        chain_intact=verify.intact,
    )


if __name__ == "__main__" and sys.argv[1:2] == ["work"]:
    work(sys.argv[2], float(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
