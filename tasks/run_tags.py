"""Tags for the Prefect UI's filters on the running flow run, however it was started.

A run started from the UI or by a schedule has only its deployment's tags; a process adds its own
(system, tier, severity, period, ...) once it knows them, so operators can filter by them.
"""

from __future__ import annotations

from collections.abc import Iterable

from prefect.client.orchestration import get_client
from prefect.runtime import flow_run


def tag_this_run(wanted: Iterable[str]) -> None:
    """Add the `wanted` tags the current run does not have yet (its own tags are kept)."""
    with get_client(sync_client=True) as client:
        tags = client.read_flow_run(flow_run.id).tags
        missing = [t for t in dict.fromkeys(wanted) if t not in tags]
        if missing:
            client.update_flow_run(flow_run.id, tags=[*tags, *missing])
