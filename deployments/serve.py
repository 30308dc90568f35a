"""Every deployment, served by one process (`python -m deployments.serve`).

Runs that wait for people suspend (their process exits), so one small runner holds hundreds of
open approvals. `pause_on_shutdown=False`: stopping the engine must not pause the schedules.
`AIMS_SCHEDULES_PAUSED=true` serves the deployments with their schedules paused (tests, drills).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from prefect import Flow, serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment

# Runs started by the CLI or the bridge should begin within seconds, not the default ~10 s.
os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
# Suspended runs re-run from the top: the steps before the wait must come back cached.
os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")

APPROVAL = "approval/approval"
RECONCILER = "approval-reconciler/approval-reconciler"


def all_deployments() -> list[RunnerDeployment]:
    from prefect.schedules import Cron, Interval, Schedule

    from aims_core.settings import get_settings
    from flows.approval import approval
    from flows.approval_reconciler import approval_reconciler
    from flows.audit_planning import audit_planning
    from flows.capa import capa
    from flows.gap_assessment import gap_assessment
    from flows.impact_assessment import impact_assessment
    from flows.incident_clocks import incident_clocks
    from flows.incident_response import incident_response
    from flows.internal_audit import internal_audit
    from flows.management_review import management_review
    from flows.notification_delivery import notification_delivery
    from flows.plan_tracking import plan_tracking
    from flows.policy_review import policy_approval, policy_review
    from flows.risk_assessment import risk_assessment
    from flows.stage_gate import stage_gate
    from flows.training_renewal import training_renewal
    from flows.vendor_reassessment import vendor_reassessment

    paused = os.environ.get("AIMS_SCHEDULES_PAUSED", "").lower() in ("1", "true", "yes")
    tz = get_settings().timezone

    def scheduled_pass(
        flow: Flow[..., Any], name: str, tags: list[str], schedule: Schedule
    ) -> RunnerDeployment:
        """A pass that looks afresh each time: one at a time, an overrunning one drops the next."""
        return flow.to_deployment(
            name=name,
            tags=["aims", *tags],
            schedule=schedule,
            paused=paused,
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
        )

    return [
        # Processes started on demand (CLI, HTTP intake, Slack, other flows).
        approval.to_deployment(name="approval", tags=["aims", "approval"]),
        stage_gate.to_deployment(name="stage-gate", tags=["aims", "gate"]),
        risk_assessment.to_deployment(name="risk-assessment", tags=["aims", "risk-assessment"]),
        impact_assessment.to_deployment(
            name="impact-assessment", tags=["aims", "impact-assessment"]
        ),
        gap_assessment.to_deployment(name="gap-assessment", tags=["aims", "gap-assessment"]),
        incident_response.to_deployment(name="incident-response", tags=["aims", "incident"]),
        capa.to_deployment(name="capa", tags=["aims", "capa"]),
        internal_audit.to_deployment(name="internal-audit", tags=["aims", "audit"]),
        policy_approval.to_deployment(name="policy-approval", tags=["aims", "policy"]),
        # Quarterly at 06:00 on the 1st of Jan/Apr/Jul/Oct: reviews the quarter before. Not a
        # one-at-a-time pass: it waits suspended for the minutes, and a review of another period
        # (`aims review start`) must not be cancelled meanwhile.
        management_review.to_deployment(
            name="management-review",
            tags=["aims", "management-review"],
            schedule=Cron("0 6 1 1,4,7,10 *", timezone=tz),
            paused=paused,
        ),
        # Scheduled passes, in the organisation's time zone (AIMS_TIMEZONE).
        scheduled_pass(
            notification_delivery,
            "notification-delivery",
            ["notifications"],
            Interval(timedelta(minutes=1)),
        ),
        scheduled_pass(
            approval_reconciler,
            "approval-reconciler",
            ["approvals", "reconciler"],
            Interval(timedelta(minutes=5)),
        ),
        scheduled_pass(
            incident_clocks,
            "incident-clocks",
            ["incident", "clocks"],
            Interval(timedelta(minutes=10)),
        ),
        scheduled_pass(
            training_renewal, "training-renewal", ["training"], Cron("0 7 * * *", timezone=tz)
        ),
        scheduled_pass(policy_review, "policy-review", ["policy"], Cron("0 7 * * *", timezone=tz)),
        scheduled_pass(plan_tracking, "plan-tracking", ["plan"], Cron("0 7 * * *", timezone=tz)),
        scheduled_pass(
            audit_planning, "audit-planning", ["audit", "planning"], Cron("0 6 1 * *", timezone=tz)
        ),
        scheduled_pass(
            vendor_reassessment, "vendor-reassessment", ["vendor"], Cron("0 6 2 * *", timezone=tz)
        ),
    ]


def main(limit: int = 4) -> None:
    serve(*all_deployments(), limit=limit, pause_on_shutdown=False, print_starting_message=True)


if __name__ == "__main__":
    main(int(os.environ.get("AIMS_RUNNER_LIMIT", "4")))
