"""Every deployment, served by one process (`python -m deployments.serve`).

Runs that wait for people suspend (their process exits), so one small runner holds hundreds of
open approvals. `pause_on_shutdown=False`: stopping the engine must not pause the schedules.
"""

from __future__ import annotations

import os

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

# Runs started by the CLI or the bridge should begin within seconds, not the default ~10 s.
os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
# Suspended runs re-run from the top: the steps before the wait must come back cached.
os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")

APPROVAL = "approval/approval"


def all_deployments() -> list[RunnerDeployment]:
    from flows.approval import approval

    return [
        approval.to_deployment(name="approval", tags=["aims", "approval"]),
    ]


def main(limit: int = 4) -> None:
    serve(*all_deployments(), limit=limit, pause_on_shutdown=False, print_starting_message=True)


if __name__ == "__main__":
    main(int(os.environ.get("AIMS_RUNNER_LIMIT", "4")))
