"""Every deployment, served by one process (`python -m deployments.serve`).

Runs that wait for people suspend (their process exits), so one small runner holds hundreds of
open approvals. `pause_on_shutdown=False`: stopping the engine must not pause the schedules.
`AIMS_SCHEDULES_PAUSED=true` serves the deployments with their schedules paused (tests, drills).
"""

from __future__ import annotations

import os
from datetime import timedelta

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment

# Runs started by the CLI or the bridge should begin within seconds, not the default ~10 s.
os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
# Suspended runs re-run from the top: the steps before the wait must come back cached.
os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")

APPROVAL = "approval/approval"
RECONCILER = "approval-reconciler/approval-reconciler"


def all_deployments() -> list[RunnerDeployment]:
    from flows.approval import approval
    from flows.approval_reconciler import approval_reconciler
    from flows.capa import capa
    from flows.impact_assessment import impact_assessment
    from flows.incident_clocks import incident_clocks
    from flows.incident_response import incident_response
    from flows.risk_assessment import risk_assessment
    from flows.stage_gate import stage_gate

    paused = os.environ.get("AIMS_SCHEDULES_PAUSED", "").lower() in ("1", "true", "yes")
    return [
        approval.to_deployment(name="approval", tags=["aims", "approval"]),
        stage_gate.to_deployment(name="stage-gate", tags=["aims", "gate"]),
        risk_assessment.to_deployment(name="risk-assessment", tags=["aims", "risk-assessment"]),
        capa.to_deployment(name="capa", tags=["aims", "capa"]),
        incident_response.to_deployment(name="incident-response", tags=["aims", "incident"]),
        impact_assessment.to_deployment(
            name="impact-assessment", tags=["aims", "impact-assessment"]
        ),
        approval_reconciler.to_deployment(
            name="approval-reconciler",
            tags=["aims", "approvals", "reconciler"],
            interval=timedelta(minutes=5),
            paused=paused,
            # A pass that overruns: the next one is dropped rather than queued behind it.
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
        ),
        incident_clocks.to_deployment(
            name="incident-clocks",
            tags=["aims", "incident", "clocks"],
            interval=timedelta(minutes=10),
            paused=paused,
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
        ),
    ]


def main(limit: int = 4) -> None:
    serve(*all_deployments(), limit=limit, pause_on_shutdown=False, print_starting_message=True)


if __name__ == "__main__":
    main(int(os.environ.get("AIMS_RUNNER_LIMIT", "4")))
