"""The incident clocks: a scheduled flow that reminds and escalates regulatory deadlines.

A clock (EU AI Act Art. 73, GDPR Art. 33, internal SLAs) has no process of its own: this flow
runs every few minutes (deployments/serve.py) and calls the clock service's pass (reminders at
the configured fractions, overdue escalation to the compliance role, one delivery pass), then
publishes the running clocks with their time left as an artifact for operators.

The pass is idempotent (each clock is locked and checked again before anything is queued), so
an overlapping or repeated run does no harm. No flow-level retries: the next scheduled run is the
retry. Results are neither persisted nor cached: each run must look afresh.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from aims_core.ports import DeliveryReport
from aims_core.services import clocks
from aims_core.services.clocks import ClockOut, ClockReport
from aims_core.settings import get_settings
from aims_core.uow import UnitOfWork
from tasks.delivery import deliver_afresh
from tasks.run_names import scheduled_run_name

ARTIFACT_KEY = "incident-clocks"


@task(name="tick clocks", cache_policy=NO_CACHE, persist_result=False)
def tick_clocks(now: datetime) -> ClockReport:
    """Remind, mark overdue, escalate (the flow delivers what this queued)."""
    return clocks.tick(get_settings(), now=now)


@task(name="read running clocks", cache_policy=NO_CACHE, persist_result=False)
def read_running_clocks(now: datetime) -> list[ClockOut]:
    return clocks.running_clocks(UnitOfWork(get_settings()), now=now)


_run_name = scheduled_run_name(lambda at: f"incident clocks {at.astimezone(UTC):%Y-%m-%d %H:%M}")


@flow(name="incident-clocks", flow_run_name=_run_name)
def incident_clocks() -> ClockReport:
    """One pass over the incident clocks, and the running clocks with time left."""
    logger = get_run_logger()
    now = datetime.now(UTC)  # one clock for the whole pass
    report = tick_clocks(now)
    report.delivery = DeliveryReport.model_validate(deliver_afresh("incident-clocks"))
    for failure in report.failures:
        logger.warning("%s clock %d: %s", failure.step, failure.id, failure.error)
    logger.info("incident clocks: %s", report.summary())
    running = read_running_clocks(now)
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=clocks.clocks_markdown(running, report),
        description=f"{len(running)} running clock(s); {report.summary()}",
    )
    return report
