"""The training-renewal deployment on the real engine: its daily schedule in the organisation's
time zone (served paused in tests), and a run that reminds the demo's one expiring training.

The session's demo organisation has every training current except Mei Chen's responsible AI
development, which expires in about 20 days: the pass queues its 30-day reminder, once.
"""

from __future__ import annotations

from typing import Any

from prefect_fixtures import wait_for_state
from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.models import Notification

DEPLOYMENT = "training-renewal/training-renewal"
DS = "ds.lead@northwind.example"


def test_training_renewal_runs_daily_and_reminds_once(engine: Any) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.deployments import run_deployment

    from flows.training_renewal import ARTIFACT_KEY

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
    (schedule,) = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 7 * * *", "UTC")
    assert deployment.paused  # AIMS_SCHEDULES_PAUSED: tests start it themselves
    assert {"aims", "training"} <= set(deployment.tags)

    def reminders() -> list[str]:
        with get_engine(engine.settings.effective_database_url).connect() as conn:
            return list(
                conn.scalars(
                    select(Notification.idempotency_key).where(
                        Notification.kind == "training-reminder",
                        Notification.subject == f"person:{DS}",
                    )
                )
            )

    runs = []
    for _ in range(2):  # a repeated pass queues nothing twice
        run = run_deployment(DEPLOYMENT, timeout=0)
        done = wait_for_state(run.id, {"Completed"}, timeout=90)
        assert done.name.startswith("training renewals 20")
        (key,) = reminders()
        assert key.endswith("-reminder-30")
        runs.append(run.id)

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])),
        )
    by_run = {a.flow_run_id: str(a.data) for a in artifacts}
    first, second = (by_run[r] for r in runs)
    assert "reminded 1, escalated 0, expired 0" in first and f"| {DS} |" in first
    assert "reminded 0, escalated 0, expired 0" in second
