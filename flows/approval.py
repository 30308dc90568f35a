"""An approval on its own: ask the eligible people, wait, record the decision as evidence.

Used directly for sign-offs that are not a gate (a policy version, review minutes, a risk
acceptance), and as the smallest whole process that exercises the decision path end to end.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from aims_core.services import approvals
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.approval import ApprovalOutcome, request_approval
from tasks.run_names import run_name
from tasks.run_tags import approval_tags, tag_this_run


@task(name="record decision evidence", persist_result=True)
def record_decision(spec: approvals.ApprovalRequestIn, outcome: ApprovalOutcome) -> int:
    """The decision as evidence on the request's subject, once (keyed by the request)."""
    from aims_core.evidence_schemas import EvidenceIn
    from aims_core.services import evidence

    record = evidence.append(
        UnitOfWork(get_settings()),
        EvidenceIn(
            subject=spec.subject,
            kind="decision",
            title=f"{outcome.status}: {spec.title}",
            text=outcome.model_dump_json(indent=2),
            idempotency_key=f"decision-approval-{outcome.request_id}",
        ),
        Actor(who="flow", channel="flow"),
    )
    return record.id


def _name(parameters: dict[str, Any]) -> str:
    spec = parameters["spec"]
    spec = spec if isinstance(spec, dict) else spec.model_dump()
    return f"approval {spec['subject']}: {spec['title']}"


@flow(name="approval", flow_run_name=run_name(_name), log_prints=True)
def approval(spec: approvals.ApprovalRequestIn) -> ApprovalOutcome:
    """Ask for `spec`'s decision, wait for it (suspended), keep it as evidence."""
    tag_this_run(approval_tags(spec))
    outcome = request_approval(spec)
    evidence_id = record_decision(spec, outcome)
    create_markdown_artifact(
        key=f"approval-{outcome.request_id}",
        markdown=(
            f"## {spec.title}\n\n**{outcome.status.upper()}**\n\n"
            f"- approvals: {', '.join(outcome.approvals) or '-'}\n"
            f"- rejections: {', '.join(outcome.rejections) or '-'}\n"
            f"- evidence record: #{evidence_id}\n"
        ),
        description=f"Decision on {spec.subject}",
    )
    return outcome
