"""Vendor reassessment (ISO/IEC 42001 A.10.3): a monthly pass over the third-party AI vendors.

Every vendor past the interval of its criticality (vendor_policy.yaml; never assessed: at once)
and without an open reassessment gets one, and its owner and the Responsible of the
`vendor-assessment` RACI are told; `aims vendor assess` completes it. The policy is the service
(aims_core/services/vendors.py); this flow names the steps for the UI and publishes the vendors
with what the pass did as a table artifact. Idempotent (one reassessment per vendor and due
date), no flow-level retries, nothing persisted or cached: each run must look afresh.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from aims_core.services import vendors
from aims_core.services.vendors import TickReport
from aims_core.settings import get_settings
from tasks.delivery import deliver_afresh
from tasks.run_names import scheduled_run_name

ARTIFACT_KEY = "vendor-reassessment"


@task(name="open due reassessments", cache_policy=NO_CACHE, persist_result=False)
def open_due_reassessments(now: datetime) -> TickReport:
    return vendors.tick(get_settings(), now)


def _run_name(at: datetime) -> str:
    return f"vendor reassessment {at.astimezone(ZoneInfo(get_settings().timezone)):%Y-%m}"


@flow(name="vendor-reassessment", flow_run_name=scheduled_run_name(_run_name))
def vendor_reassessment() -> TickReport:
    """Open the reassessments that fell due and tell the vendors' people."""
    logger = get_run_logger()
    now = datetime.now(UTC)
    report = open_due_reassessments(now)
    deliver_afresh("tell the vendors' people")
    for failure in report.failures:
        logger.warning("vendor %d: %s", failure.id, failure.error)
    logger.info("vendor reassessment: %s", report.summary())
    create_table_artifact(
        key=ARTIFACT_KEY,
        table=vendors.tick_rows(get_settings(), report)
        or [{"vendor": "no vendors yet", "this pass": ""}],
        description=f"Vendor reassessment: {report.summary()}",
    )
    return report
