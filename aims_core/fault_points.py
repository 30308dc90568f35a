"""Test-only fault points: where the reliability suite kills a process at an exact moment.

Never set outside the test suite. `AIMS_TEST_FAULT=<point>[,<point>...]` arms points; a process
that reaches an armed point is SIGKILLed there: no rollback, no `finally`, no atexit, as after an
OOM kill or a pulled plug. With `AIMS_TEST_FAULT_READY=<file>` as well, it first writes that file
and waits (at most `WAIT_SECONDS`, then kills itself) so the test can look at the database while
the transaction is still open and send the SIGKILL itself.

The environment is read once, at import: unset (always, in production) a point costs one test of
an empty frozenset, and does nothing.

Points (tests/test_reliability_faults.py):
- `evidence-before-commit`: an evidence record and its audit event are written and the chain head
  moved, inside the transaction, not yet committed (aims_core/services/evidence.py).
- `evidence-before-anchor`: committed, the anchor file outside the database not yet moved.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Final

POINTS: Final = frozenset({"evidence-before-commit", "evidence-before-anchor"})
WAIT_SECONDS: Final = 60.0

ARMED: Final = frozenset(
    p.strip() for p in os.environ.get("AIMS_TEST_FAULT", "").split(",") if p.strip()
)


def reached(point: str) -> None:
    """Die here if `point` is armed (callers test `ARMED` first, to cost nothing when unset)."""
    assert point in POINTS, point
    if point not in ARMED:
        return
    ready = os.environ.get("AIMS_TEST_FAULT_READY")
    if ready:
        Path(ready).write_text(f"{os.getpid()} {point}\n")
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:  # the test kills us here
            time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)
