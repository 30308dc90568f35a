"""Training renewals (ISO/IEC 42001 7.2, 7.3, A.4.6): a daily pass over required trainings.

Competence that expires has no process of its own: this flow runs every morning
(deployments/serve.py, 07:00 in the organisation's time zone) and calls the training service's
pass — reminders to the holder before expiry, one escalation to the manager after it — then
publishes what it did and who may not approve until they renew, as an artifact for operators.
The messages go out with the next outbox delivery pass (every minute).

The pass is idempotent (each record is locked and checked again before anything is queued, with
stable keys), so an overlapping or repeated run does no harm. No flow-level retries: the next
scheduled run is the retry. Results are neither persisted nor cached: each run must look afresh.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from aims_core.services import training
from aims_core.services.training import TickReport
from aims_core.settings import get_settings
from tasks.run_names import scheduled_run_name

ARTIFACT_KEY = "training-renewals"


@task(name="remind and escalate", cache_policy=NO_CACHE, persist_result=False)
def remind_and_escalate(now: datetime) -> TickReport:
    """Reminders at each threshold before expiry, one escalation after it, the expired list."""
    return training.tick(get_settings(), now)


@flow(
    name="training-renewal",
    flow_run_name=scheduled_run_name(lambda at: training.run_name(get_settings(), at)),
)
def training_renewal() -> TickReport:
    """Remind people whose required training expires soon; escalate those whose expired."""
    logger = get_run_logger()
    report = remind_and_escalate(datetime.now(UTC))  # one clock for the whole pass
    for failure in report.failures:
        logger.warning("%s of training record %d: %s", failure.step, failure.id, failure.error)
    logger.info("training renewals: %s", report.summary())
    create_markdown_artifact(
        key=ARTIFACT_KEY, markdown=report.markdown(), description=report.summary()
    )
    return report
