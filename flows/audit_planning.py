"""The monthly audit planning pass (ISO/IEC 42001 9.2.2), on a schedule (deployments/serve.py).

A programme covers the current cycle (planned if none does); areas with nonconformities that no
audit of the next twelve months covers join the next planned audit; audits starting within a
month get an independent auditor, who is told; overdue audits are named. The policy is the
service (`aims_core.services.audits.planning_pass`, idempotent: each message has its key); this
flow names the step for the UI and publishes what the pass did as a table. No retries, no
cache: the next scheduled run is the retry, and each run looks afresh.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from aims_core.services import audits
from aims_core.services.audits import PlanningReport
from aims_core.settings import get_settings
from tasks.delivery import deliver_afresh
from tasks.run_names import scheduled_run_name

ARTIFACT_KEY = "audit-planning"


@task(name="plan audits", cache_policy=NO_CACHE, persist_result=False)
def plan_audits(now: datetime) -> PlanningReport:
    return audits.planning_pass(get_settings(), now)


@flow(
    name="audit-planning",
    flow_run_name=scheduled_run_name(lambda at: f"audit planning {at.astimezone(UTC):%Y-%m-%d}"),
)
def audit_planning() -> PlanningReport:
    """Keep the audit programme current: cycle covered, new nonconformities scheduled, auditors
    assigned and told, overdue audits reported."""
    now = datetime.now(UTC)  # one clock for the whole pass
    report = plan_audits(now)
    if report.told:
        deliver_afresh("tell the auditors now")
    get_run_logger().info("audit planning: %s", report.summary())
    create_table_artifact(key=ARTIFACT_KEY, table=report.rows(), description=report.summary())
    return report
