"""Two OS processes append at once: the chain must not fork, and shared idempotency keys must
still give one record each (the head-row lock serialises appenders on both backends)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.models import Evidence
from aims_core.services import evidence as ev
from aims_core.settings import Settings

PER_PROCESS = 50
SHARED = 10

CHILD = """
import sys, time
from pathlib import Path
from aims_core.evidence_schemas import EvidenceIn
from aims_core.services.evidence import append
from aims_core.settings import get_settings
from aims_core.uow import Actor

name, n, shared, gate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
settings = get_settings()  # AIMS_DATA_DIR / AIMS_DATABASE_URL come from the test's environment
actor = Actor(who=f"proc-{name}", channel="test")
(gate.parent / f"ready-{name}").touch()
while not gate.exists():
    time.sleep(0.002)
for i in range(n):
    append(settings, EvidenceIn(subject=f"system:proc-{name}", kind="other",
                                title=f"{name} {i}", text=f"{name}-{i}"), actor)
    if i % (n // shared) == 0:  # the same content from both processes: one record per pair
        j = i // (n // shared)
        append(settings, EvidenceIn(subject="system:shared", kind="other",
                                    title=f"shared {j}", text=f"shared-{j}"), actor)
"""


def test_two_processes_append_without_forking_the_chain(settings: Settings, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, name, str(PER_PROCESS), str(SHARED), str(gate)],
            cwd=tmp_path,  # no developer .env is read
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{n}").exists() for n in ("a", "b")):
        assert time.monotonic() < deadline, "children did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    gate.touch()  # both start appending at the same moment
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err

    total = 2 * PER_PROCESS + SHARED
    with get_engine(settings.effective_database_url).connect() as conn:
        rows = conn.execute(select(Evidence.seq, Evidence.actor, Evidence.subject)).all()
    assert sorted(r.seq for r in rows) == list(range(1, total + 1))
    assert sum(r.subject == "system:shared" for r in rows) == SHARED
    by_actor = {a: sum(r.actor == a for r in rows) for a in ("proc-a", "proc-b")}
    assert by_actor["proc-a"] + by_actor["proc-b"] == total
    assert min(by_actor.values()) >= PER_PROCESS  # each wrote its own 50 plus some shared
    report = ev.verify(settings)
    assert report.intact and report.count == total, report
    anchor = ev.read_anchor(settings)
    assert anchor is not None and anchor.count == total  # the anchor ends at the true head
