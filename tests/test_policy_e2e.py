"""A new policy version end to end, on the real engine (Prefect API + served runner + fake Slack).

Must show: `aims policy propose` starts a `policy-approval` deployment run named after the
version; it waits suspended on the shared approval service; `aims approve REQ --as` (the CEO,
top management) resumes it; the run applies the decision: v2 approved and in force, v1
superseded, the approval counted as a review, the text kept as `policy` evidence with its hash.
Uses its own policy key (other flow tests share the session's database).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect_fixtures import engine_cli, wait_for_state
from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.models import ApprovalRequest, Evidence, PolicyVersionStatus
from aims_core.services import policies
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
GOV, CEO = f"governance{D}", f"ceo{D}"
KEY = "e2e-data-policy"


def test_a_new_policy_version_is_approved_through_the_approval_service(
    engine,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    settings, actor = engine.settings, Actor(who="e2e", channel="test")
    uow = UnitOfWork(settings)
    policies.add_policy(uow, {"key": KEY, "title": "Data policy", "owner": GOV}, actor)
    policies.import_approved_version(
        uow, KEY, "# Data policy\n\nv1\n", CEO, datetime.now(UTC) - timedelta(days=400), actor
    )
    assert policies.get_policy(uow, KEY).overdue
    body = "# Data policy\n\nv2: training data provenance is recorded for every model.\n"
    text = tmp_path / "v2.md"
    text.write_text(body)
    t0 = time.monotonic()
    started = engine_cli(
        engine, "policy", "propose", KEY, "--file", str(text), "--note", "Provenance", "--as", GOV
    )
    assert started.exit_code == 0, started.output
    assert f"started run policy {KEY} v2 approval" in started.output
    run_id = re.search(r"approval \(([0-9a-f-]{36})\)", started.output).group(1)  # type: ignore[union-attr]

    run = wait_for_state(run_id, {"Suspended"})
    assert run.name == f"policy {KEY} v2 approval"
    with get_engine(settings.effective_database_url).connect() as conn:
        req = conn.execute(
            select(ApprovalRequest.id, ApprovalRequest.activity).where(
                ApprovalRequest.idempotency_key == policies.approval_key(KEY, 2)
            )
        ).one()
    assert req.activity == "policy"
    assert policies.get_policy(uow, KEY).status == PolicyVersionStatus.in_approval

    approved = engine_cli(engine, "approve", str(req.id), "--as", CEO)
    assert approved.exit_code == 0, approved.output
    done = wait_for_state(run.id, {"Completed"})
    elapsed = time.monotonic() - t0

    result = done.state.result()
    assert (result.version, result.status) == (2, PolicyVersionStatus.approved)
    p = policies.get_policy(uow, KEY)
    assert [v.status for v in p.versions] == [PolicyVersionStatus.superseded, "approved"]
    assert p.version == 2 and not p.overdue and p.reviews[-1].outcome == "new-version"
    with get_engine(settings.effective_database_url).connect() as conn:
        kind, sha = conn.execute(
            select(Evidence.kind, Evidence.content_sha256).where(Evidence.id == result.evidence_id)
        ).one()
    assert (kind, sha) == ("policy", policies.sha256(body))
    assert elapsed < 120, f"propose → approved took {elapsed:.0f} s"


def test_the_daily_policy_pass_and_the_monthly_vendor_pass_publish_what_they_did(
    engine,  # type: ignore[no-untyped-def]
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    """Both scheduled flows, run in process on the session's Prefect API (their deployments'
    schedules are served paused): the demo's overdue AI policy and due Acme reassessment."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.policy_review import policy_review
    from flows.vendor_reassessment import vendor_reassessment

    monkeypatch.setenv("AIMS_DATA_DIR", str(engine.settings.data_dir))
    monkeypatch.setenv("AIMS_DATABASE_URL", engine.settings.effective_database_url)
    first = policy_review()
    assert "ai-policy" in first.reviews_due
    assert "ai-policy" not in policy_review().reviews_due  # once per due date
    opened = vendor_reassessment()
    assert "Acme LLM Ltd" in opened.opened and "TalentSort GmbH" not in opened.opened
    assert vendor_reassessment().opened == []
    with get_client(sync_client=True) as client:
        (table,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["vendor-reassessment"])),
            limit=1,
        )
    assert "Acme LLM Ltd" in str(table.data)
