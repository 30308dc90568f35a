"""Outbox delivery every minute: whatever a step queued reaches Slack within a minute.

Most messages go out at once (the step that queues them delivers too); this pass is what carries
the rest — messages queued while Slack was down, rate-limited retries, notifications of services
that only queue (daily checks, CLI commands). Delivery is at least once; each pass is idempotent
and a pass that overruns makes the next one be dropped (CANCEL_NEW in deployments/serve.py).
"""

from __future__ import annotations

from datetime import UTC

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from aims_core.ports import DeliveryReport
from tasks.delivery import deliver_afresh
from tasks.run_names import scheduled_run_name

ARTIFACT_KEY = "notification-delivery"


_run_name = scheduled_run_name(
    lambda at: f"deliver notifications {at.astimezone(UTC):%Y-%m-%d %H:%M}"
)


def _markdown(report: DeliveryReport) -> str:
    rows = [
        ("sent", report.sent),
        ("updated in place", report.updated),
        ("logged (no Slack)", report.logged),
        ("to retry", report.retried),
        ("failed for good", report.failed),
        ("possible duplicates", report.possible_duplicates),
    ]
    lines = ["| outcome | count |", "|---|---:|", *[f"| {k} | {v} |" for k, v in rows]]
    if report.stopped:
        lines += ["", f"Pass stopped early: {report.stopped}"]
    lines += [f"- {e}" for e in report.errors]
    return "\n".join(lines)


@flow(name="notification-delivery", flow_run_name=_run_name)
def notification_delivery() -> DeliveryReport:
    """Deliver every queued notification that is due; publish what happened when anything did."""
    report = DeliveryReport.model_validate(deliver_afresh("notification-delivery"))
    get_run_logger().info(
        "delivery: %d sent, %d updated, %d logged, %d to retry, %d failed",
        report.sent,
        report.updated,
        report.logged,
        report.retried,
        report.failed,
    )
    if report.processed:  # a quiet minute publishes nothing (one artifact a minute is noise)
        create_markdown_artifact(
            key=ARTIFACT_KEY, markdown=_markdown(report), description="outbox delivery pass"
        )
    return report
