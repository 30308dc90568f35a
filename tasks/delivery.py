"""`deliver_now`: the one "send what was just queued" step of every flow.

Flows queue messages through the services (the transactional outbox), then deliver at once so
people hear now rather than at the next delivery pass (flows/notification_delivery.py, every
minute); whatever Slack does not take now stays queued for that pass. Slack is imported only
inside the task, so importing a flow does not load the Slack SDK.

Two ways to call it, one task:
- `deliver_now(key)`, persisted: before a wait, in a run that re-runs from the top when resumed,
  the re-run gets the pass back cached instead of delivering again. The cache key is `key` and
  the run (Prefect's default policy), so `key` must differ between the call sites of one run.
- `deliver_afresh(key)`: loops and scheduled passes that must deliver every time they get there;
  never cached, nothing persisted (`key` only says why).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from aims_core.settings import get_settings


@task(name="deliver notifications", persist_result=True)
def deliver_now(key: str) -> dict[str, object]:
    """One delivery pass now (the `DeliveryReport` as a dict); once per `key` in a run."""
    from notifications.slack import SlackDelivery

    return SlackDelivery(get_settings()).deliver_due().model_dump()


#: The same pass, never cached: for a step that must deliver each time it is reached.
deliver_afresh = deliver_now.with_options(cache_policy=NO_CACHE, persist_result=False)
