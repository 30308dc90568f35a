"""The approval reconciler: a scheduled flow that looks after runs waiting for people.

A suspended run has no process and cannot re-wait after its own timeout, so resuming runs whose
decision arrived while the Prefect API was down, reminding approvers and escalating overdue
requests happen here, every few minutes (deployments/serve.py). The policy is the service
(aims_core/services/reconcile.py); this flow only names the steps for the UI and publishes what
the pass did as an artifact.

Each step is idempotent (the request row is locked and the policy checked again before anything
is queued), so an overlapping or repeated run does no harm. No flow-level retries: the next
scheduled run is the retry. Results are not persisted nor cached: each run must look afresh.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from aims_core.ports import DeliveryReport
from aims_core.services import capa, reconcile, reviews
from aims_core.services.reconcile import ReconcileReport
from aims_core.settings import get_settings
from deployments.prefect_runs import PrefectRuns
from tasks.delivery import deliver_afresh
from tasks.run_names import scheduled_run_name

ARTIFACT_KEY = "approval-reconciler"


@task(name="resume decided runs", cache_policy=NO_CACHE, persist_result=False)
def resume_decided_runs(now: datetime) -> ReconcileReport:
    """Runs whose request was decided while the Prefect API was unreachable."""
    return reconcile.resume_decided(get_settings(), now=now, runs=PrefectRuns(check_health=False))


@task(name="remind approvers", cache_policy=NO_CACHE, persist_result=False)
def remind_approvers(now: datetime) -> ReconcileReport:
    return reconcile.remind_approvers(get_settings(), now=now)


@task(name="escalate overdue", cache_policy=NO_CACHE, persist_result=False)
def escalate_overdue(now: datetime) -> ReconcileReport:
    return reconcile.escalate_overdue(get_settings(), now=now)


@task(name="track CAPAs", cache_policy=NO_CACHE, persist_result=False)
def track_capas(now: datetime) -> capa.TickReport:
    """CAPA action reminders and escalations; verifications fallen due (their runs woken)."""
    return capa.tick(get_settings(), now, runs=PrefectRuns(check_health=False))


@task(name="track review actions", cache_policy=NO_CACHE, persist_result=False)
def track_review_actions(now: datetime) -> reviews.TickReport:
    """Management review decisions (9.3.3) due within a week or overdue: their owners told once."""
    return reviews.tick(get_settings(), now)


_run_name = scheduled_run_name(
    lambda at: f"reconcile approvals {at.astimezone(UTC):%Y-%m-%d %H:%M}"
)


@flow(name="approval-reconciler", flow_run_name=_run_name)
def approval_reconciler() -> ReconcileReport:
    """Resume decided runs, remind approvers, escalate overdue requests, deliver the messages."""
    logger = get_run_logger()
    now = datetime.now(UTC)  # one clock for the whole pass
    report = resume_decided_runs(now)
    report = report.merged(remind_approvers(now))
    report = report.merged(escalate_overdue(now))
    # Same cadence, same delivery pass: CAPA actions and verifications waiting on people.
    logger.info("CAPA tracking: %s", track_capas(now).summary())
    logger.info("review actions: %s", track_review_actions(now).summary())
    # Send what the steps above queued (and anything else due) now, not at the next pass.
    report.delivery = DeliveryReport.model_validate(deliver_afresh("approval-reconciler"))
    for failure in report.failures:
        logger.warning("%s #%d: %s", failure.step, failure.id, failure.error)
    logger.info("approval reconciler: %s", report.summary())
    create_markdown_artifact(
        key=ARTIFACT_KEY, markdown=report.markdown(), description=report.summary()
    )
    return report
