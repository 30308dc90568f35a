"""Implementation plan tracking (ISO/IEC 42001 6.2, 10.1): a daily pass over open plan tasks.

Runs every morning (deployments/serve.py, 07:00 in the organisation's time zone) and calls the
plan service's pass — close the tasks whose named evidence was recorded, remind owners before the
due date and daily while overdue, escalate once — then publishes what it did as an artifact.
The messages go out with the next outbox delivery pass. The pass is idempotent per day (each
task is locked and re-checked, with keys per day), so an overlapping or repeated run does no
harm; no flow-level retries (the next scheduled run is the retry), no cached results.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from aims_core.services import plan
from aims_core.services.plan import TickReport
from aims_core.settings import get_settings
from tasks.run_names import scheduled_run_name

ARTIFACT_KEY = "plan-tracking"


@task(name="close, remind and escalate", cache_policy=NO_CACHE, persist_result=False)
def track(now: datetime) -> TickReport:
    return plan.tick(get_settings(), now)


@flow(
    name="plan-tracking",
    flow_run_name=scheduled_run_name(lambda at: f"plan tracking {at:%Y-%m-%d}"),
)
def plan_tracking() -> TickReport:
    """Close plan tasks on their evidence; remind owners; escalate overdue tasks."""
    logger = get_run_logger()
    report = track(datetime.now(UTC))  # one clock for the whole pass
    for f in report.failures:
        logger.warning("%s of plan task %d: %s", f.step, f.id, f.error)
    logger.info("plan tracking: %s", report.summary())
    lines = [f"# Plan tracking {report.at:%Y-%m-%d %H:%M} UTC", "", report.summary(), ""]
    for head, ids in (
        ("Closed", report.closed_ids),
        ("Reminded", report.reminded_ids),
        ("Escalated", report.escalated_ids),
    ):
        lines.append(f"- **{head}**: {', '.join(f'#{i}' for i in ids) or 'none'}")
    create_markdown_artifact(
        key=ARTIFACT_KEY, markdown="\n".join(lines), description=report.summary()
    )
    return report
