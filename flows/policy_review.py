"""Policies (ISO/IEC 42001 5.2, A.2): the daily review pass, and the approval of a new version.

`policy_review` runs every morning (deployments/serve.py): owners of policies whose review fell
due are told once per due date, exceptions are reminded before they expire and closed once
expired (owner told). The policy is the service (aims_core/services/policies/); this flow
names the steps for the UI and publishes what the pass did as a table artifact. Each step is
idempotent, so an overlapping or repeated run does no harm; no flow-level retries (the next day
is the retry) and nothing persisted or cached: each run must look afresh.

`policy_approval` follows one proposed version through the shared approval step: it waits
suspended for the decision, then applies it (approved: in force, the previous version
superseded, counted as a review, kept as evidence; rejected: the proposer told why). A resumed
run re-runs from the top, so every step before the wait is a persisted task.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from aims_core.errors import AimsError
from aims_core.services import policies
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.policies import TickReport, VersionOut
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.approval import open_request, request_approval
from tasks.delivery import deliver_afresh
from tasks.run_names import run_name, scheduled_run_name
from tasks.run_tags import tag_this_run

ACTOR = Actor(who="flow:policy-approval", channel="flow")
ARTIFACT_KEY = "policy-reviews"


# --- the daily pass ------------------------------------------------------------------------------


@task(name="check reviews and exceptions", cache_policy=NO_CACHE, persist_result=False)
def check_policies(now: datetime) -> TickReport:
    return policies.tick(get_settings(), now)


def _review_run_name(at: datetime) -> str:
    return f"policy reviews {at.astimezone(ZoneInfo(get_settings().timezone)):%Y-%m-%d}"


@flow(name="policy-review", flow_run_name=scheduled_run_name(_review_run_name))
def policy_review() -> TickReport:
    """Tell owners of policies due for review; remind and close expiring exceptions."""
    logger = get_run_logger()
    now = datetime.now(UTC)  # one clock for the whole pass
    report = check_policies(now)
    deliver_afresh("tell owners now")
    for failure in report.failures:
        logger.warning("%s %d: %s", failure.step, failure.id, failure.error)
    logger.info("policy reviews: %s", report.summary())
    create_table_artifact(
        key=ARTIFACT_KEY,
        table=policies.tick_rows(get_settings(), report)
        or [{"item": "no policies yet", "state": "", "due": "", "this pass": ""}],
        description=f"Policy reviews and exceptions: {report.summary()}",
    )
    return report


# --- the approval of one version ---------------------------------------------------------------


@task(name="put the version into approval", persist_result=True)
def begin_approval(version_id: int) -> ApprovalRequestIn:
    return policies.begin_approval(UnitOfWork(get_settings()), version_id, str(flow_run.id), ACTOR)


@task(name="apply the decision", persist_result=True)
def settle(version_id: int, request_id: int) -> VersionOut:
    return policies.settle_approval(UnitOfWork(get_settings()), version_id, request_id, ACTOR)


# An unknown version (or no database): the first step says so clearly.
_approval_run_name = run_name(
    lambda p: policies.get_version(UnitOfWork(get_settings()), int(p["version_id"])).run_name,
    lambda p: f"policy version {int(p['version_id'])} approval",
)


def _tag_run(version_id: int) -> None:
    """`policy` and the policy's key, as `aims policy approve` tags it, also from the UI."""
    tag_this_run(("policy", policies.get_version(UnitOfWork(get_settings()), version_id).policy))


@flow(name="policy-approval", flow_run_name=_approval_run_name, log_prints=True)
def policy_approval(version_id: int) -> VersionOut:
    """Ask the approvers of policy versions to approve this one; apply their decision."""
    spec = begin_approval(version_id)
    _tag_run(version_id)
    try:
        open_request(spec)
    except AimsError as exc:  # e.g. nobody eligible: back to draft, the run says why
        policies.approval_failed(UnitOfWork(get_settings()), version_id, str(exc), ACTOR)
        raise
    outcome = request_approval(spec)
    v = settle(version_id, outcome.request_id)
    create_markdown_artifact(
        key=f"policy-{v.policy}-v{v.version}",
        markdown=(
            f"## {spec.title}\n\n**{v.status.value.upper()}**\n\n"
            f"- sha256: `{v.content_sha256}`\n"
            f"- approvals: {', '.join(outcome.approvals) or '-'}\n"
            f"- rejections: {', '.join(outcome.rejections) or '-'}\n"
            + "".join(f"- reason: {r}\n" for r in v.reasons)
            + (f"- evidence record: #{v.evidence_id}\n" if v.evidence_id else "")
        ),
        description=f"Approval of {v.policy} v{v.version}",
    )
    return v
