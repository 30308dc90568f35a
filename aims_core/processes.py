"""The processes the engine runs: one row per Prefect deployment, the one table of them.

`deployments/serve.py` serves exactly these rows (`aims up`), `deployments/prefect.yaml` is
checked against them (tests/test_prefect_yaml.py), and every place that starts a run names its
deployment through a row here (`processes.CAPA.id`), never as a string of its own.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict


class Process(BaseModel):
    """A deployment: `flow`/`name` in Prefect, the flow function at `entrypoint`.

    `cron` runs in the organisation's time zone (AIMS_TIMEZONE); `every_s` is an interval.
    `one_at_a_time`: a pass that looks afresh each time; an overrunning one drops the next."""

    model_config = ConfigDict(frozen=True)

    flow: str
    name: str
    entrypoint: str
    tags: tuple[str, ...]
    cron: str | None = None
    every_s: int | None = None
    one_at_a_time: bool = False

    @property
    def id(self) -> str:
        """What `run_deployment` and `prefect deployment run` take: `flow/deployment`."""
        return f"{self.flow}/{self.name}"

    @property
    def module(self) -> str:
        return self.entrypoint.split(":", 1)[0].removesuffix(".py").replace("/", ".")

    @property
    def function(self) -> str:
        return self.entrypoint.split(":", 1)[1]


def _on_demand(flow: str, module: str, *tags: str, function: str | None = None) -> Process:
    return Process(
        flow=flow,
        name=flow,
        entrypoint=f"flows/{module}.py:{function or flow.replace('-', '_')}",
        tags=("aims", *tags),
    )


def _pass(
    flow: str, module: str, *tags: str, cron: str | None = None, every_s: int | None = None
) -> Process:
    return Process(
        flow=flow,
        name=flow,
        entrypoint=f"flows/{module}.py:{flow.replace('-', '_')}",
        tags=("aims", *tags),
        cron=cron,
        every_s=every_s,
        one_at_a_time=True,
    )


# Processes started on demand (CLI, HTTP intake, Slack, other flows).
APPROVAL: Final = _on_demand("approval", "approval", "approval")
STAGE_GATE: Final = _on_demand("stage-gate", "stage_gate", "gate")
RISK_ASSESSMENT: Final = _on_demand("risk-assessment", "risk_assessment", "risk-assessment")
IMPACT_ASSESSMENT: Final = _on_demand("impact-assessment", "impact_assessment", "impact-assessment")
GAP_ASSESSMENT: Final = _on_demand("gap-assessment", "gap_assessment", "gap-assessment")
INCIDENT_RESPONSE: Final = _on_demand("incident-response", "incident_response", "incident")
CAPA: Final = _on_demand("capa", "capa", "capa")
INTERNAL_AUDIT: Final = _on_demand("internal-audit", "internal_audit", "audit")
POLICY_APPROVAL: Final = _on_demand("policy-approval", "policy_review", "policy")
# Quarterly at 06:00 on the 1st of Jan/Apr/Jul/Oct: reviews the quarter before. Not one at a
# time: it waits suspended for the minutes, and a review of another period (`aims review
# start`) must not be cancelled meanwhile.
MANAGEMENT_REVIEW: Final = Process(
    flow="management-review",
    name="management-review",
    entrypoint="flows/management_review.py:management_review",
    tags=("aims", "management-review"),
    cron="0 6 1 1,4,7,10 *",
)
# Scheduled passes.
NOTIFICATION_DELIVERY: Final = _pass(
    "notification-delivery", "notification_delivery", "notifications", every_s=60
)
APPROVAL_RECONCILER: Final = _pass(
    "approval-reconciler", "approval_reconciler", "approvals", "reconciler", every_s=300
)
INCIDENT_CLOCKS: Final = _pass(
    "incident-clocks", "incident_clocks", "incident", "clocks", every_s=600
)
TRAINING_RENEWAL: Final = _pass(
    "training-renewal", "training_renewal", "training", cron="0 7 * * *"
)
POLICY_REVIEW: Final = _pass("policy-review", "policy_review", "policy", cron="0 7 * * *")
PLAN_TRACKING: Final = _pass("plan-tracking", "plan_tracking", "plan", cron="0 7 * * *")
AUDIT_PLANNING: Final = _pass(
    "audit-planning", "audit_planning", "audit", "planning", cron="0 6 1 * *"
)
VENDOR_REASSESSMENT: Final = _pass(
    "vendor-reassessment", "vendor_reassessment", "vendor", cron="0 6 2 * *"
)

ALL: Final[tuple[Process, ...]] = (
    APPROVAL,
    STAGE_GATE,
    RISK_ASSESSMENT,
    IMPACT_ASSESSMENT,
    GAP_ASSESSMENT,
    INCIDENT_RESPONSE,
    CAPA,
    INTERNAL_AUDIT,
    POLICY_APPROVAL,
    MANAGEMENT_REVIEW,
    NOTIFICATION_DELIVERY,
    APPROVAL_RECONCILER,
    INCIDENT_CLOCKS,
    TRAINING_RENEWAL,
    POLICY_REVIEW,
    PLAN_TRACKING,
    AUDIT_PLANNING,
    VENDOR_REASSESSMENT,
)


def by_id(deployment: str) -> Process | None:
    return next((p for p in ALL if p.id == deployment), None)
