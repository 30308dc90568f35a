"""Management review end to end: `aims review start` starts a `management-review` deployment run,
which writes the pack and asks top management for their word on the minutes (an ask, waiting
suspended; the governance lead is not asked); a UI answer without the CEO's code is refused and
the run waits again, the CEO approves with `aims review minutes --as`, the run resumes and files
the minutes in the CEO's name, with the meeting's conclusions.

Real Prefect API and served runner (the session's `engine`). Uses period 2025Q2, which no other
test prepares, in the shared demo database.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefect_fixtures import (
    engine_cli,
    resume_with,
    run_artifacts,
    task_states,
    wait_for_pause,
    wait_for_state,
)
from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.models import ApprovalRequest, AuditEvent, Evidence, ReviewStatus
from aims_core.services import reviews
from aims_core.uow import UnitOfWork

PERIOD = "2025Q2"
CEO = "ceo@northwind.example"
GOV = "governance@northwind.example"


def test_the_review_run_waits_for_the_ceo_to_approve_the_minutes(engine) -> None:
    started_at = time.monotonic()
    result = engine_cli(engine, "review", "start", "--period", PERIOD)
    assert result.exit_code == 0, result.output
    assert f"started run management review {PERIOD}" in result.stdout
    run_id = result.stdout.split("(", 1)[1].split(")", 1)[0]

    run = wait_for_state(run_id, {"Suspended"})
    assert run.name == f"management review {PERIOD}"
    assert {"management-review", PERIOD} <= set(run.tags)
    review = reviews.get_review(UnitOfWork(engine.settings), PERIOD)
    assert review.status is ReviewStatus.prepared and review.flow_run_id == run_id
    for path in review.files().values():
        assert path.is_file() and path.stat().st_size > 1000, path
    with get_engine(engine.settings.effective_database_url).connect() as conn:
        req = conn.execute(
            select(ApprovalRequest).where(ApprovalRequest.id == review.request_id)
        ).one()
    assert (req.kind, req.subject, req.activity, req.flow_run_id) == (
        "review-minutes",
        f"review:{PERIOD}",
        "management-review",
        run_id,
    )
    wait_for_pause(run_id, f"approval-{req.id}-round-1")
    assert "Record decisions before approving: `aims review decide" in req.details
    shown = json.loads(engine_cli(engine, "approvals", "show", str(req.id), "--json").stdout)
    assert CEO in shown["approvers"] and GOV not in shown["approvers"]
    arts = run_artifacts(run_id)
    assert f"management-review-{PERIOD.lower()}" in arts
    inputs_table = arts[f"management-review-{PERIOD.lower()}-inputs"]
    rows = json.loads(inputs_table) if isinstance(inputs_table, str) else inputs_table
    assert {r["input"][:2] for r in rows} == {"a)", "b)", "c)", "d)", "e)"}

    # A decision taken in the meeting, then the CEO approves the minutes.
    decided = engine_cli(
        engine,
        "review",
        "decide",
        PERIOD,
        "--decision",
        "Staff the AI office",
        "--kind",
        "resources",
        "--owner",
        GOV,
        "--due",
        "2099-06-30",
    )
    assert decided.exit_code == 0, decided.output
    # The UI form without the CEO's code: refused, the run waits again. The CEO approves from
    # the CLI with the meeting's conclusions.
    resume_with(run_id, person=CEO, code="", outcome="approve")
    wait_for_pause(run_id, f"approval-{req.id}-round-2")
    answer = ("review", "minutes", PERIOD, "--approve", "--notes", "Budget agreed for 2026")
    approved = engine_cli(engine, *answer, "--as", CEO, "--attendees", "CEO, governance lead")
    assert approved.exit_code == 0, approved.output
    assert f"flow run {run_id}: resumed" in approved.output

    done = wait_for_state(run_id, {"Completed"})
    out = done.state.result()
    assert out.status is ReviewStatus.approved
    review = reviews.get_review(UnitOfWork(engine.settings), PERIOD)
    assert review.status is ReviewStatus.approved and review.approved_at is not None
    assert "Staff the AI office" in review.minutes
    assert "Budget agreed for 2026" in review.minutes and "CEO, governance lead" in review.minutes
    with get_engine(engine.settings.effective_database_url).connect() as conn:
        minutes = conn.execute(
            select(Evidence.kind, Evidence.subject).where(
                Evidence.idempotency_key == f"review-{PERIOD}-minutes-{req.id}"
            )
        ).one()
        filed_by = conn.scalar(
            select(AuditEvent.actor).where(
                AuditEvent.action == "review.approved", AuditEvent.subject == f"review:{PERIOD}"
            )
        )
    assert tuple(minutes) == ("management-review", f"review:{PERIOD}")
    assert filed_by == CEO  # filed in the name of who answered
    # The resumed run re-ran from the top: the pack came back cached, not rewritten.
    assert "Cached" in task_states(run_id)["prepare review pack"]
    assert Path(review.pack_dir or "").is_dir()
    print(f"management review start → suspended → approved: {time.monotonic() - started_at:.1f} s")
