"""AI risk assessment of one system (ISO/IEC 42001 6.1.2, 6.1.3, 8.2, 8.3).

Started by hand (`aims risks assess`), or by a reassessment trigger (`aims systems event`): it
re-scores the system's risks with the policy in force, publishes the register as a table,
records the assessment as evidence, and asks the policy's approvers to accept each risk that was
accepted above appetite. It waits suspended for each decision, so every step before a wait is a
persisted task with an idempotency key (a resumed run re-runs from the top and finds them cached).
"""

from __future__ import annotations

import re

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from aims_core.errors import AimsError
from aims_core.evidence_schemas import EvidenceIn
from aims_core.services import evidence, risks, system_events
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.risks import AssessmentOut, RiskAssessmentResult, Trigger
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.approval import (
    ApprovalOutcome,
    deliver_request,
    open_request,
    request_approval,
)
from tasks.run_names import run_name
from tasks.run_tags import tag_this_run

ACTOR = Actor(who="flow:risk-assessment", channel="flow")


def _run_id() -> str:
    return str(flow_run.id)


def _artifact_key(system: str, what: str = "risk-register") -> str:
    return f"{what}-" + re.sub(r"[^a-z0-9]+", "-", system.lower()).strip("-")


@task(name="assess risks", persist_result=True)
def assess(system: str, trigger: Trigger, event_id: int | None) -> AssessmentOut:
    """Re-score and settle what the database knows; link the triggering event to this run."""
    settings = get_settings()
    out = risks.assess_system(UnitOfWork(settings), system, trigger, event_id, ACTOR)
    if event_id is not None:
        system_events.attach_run(UnitOfWork(settings), event_id, _run_id(), ACTOR)
    return out


@task(name="publish risk table", persist_result=True)
def publish_table(assessment: AssessmentOut, stage: str) -> None:
    """The register as the operator sees it in the UI; `stage` says before or after decisions."""
    create_table_artifact(
        key=_artifact_key(assessment.system),
        table=assessment.rows()
        or [{"risk": "no open risks", "score": "", "treatment": "", "residual": "", "status": ""}],
        description=f"Risk register of {assessment.system} ({assessment.trigger}, {stage}); "
        f"appetite {assessment.appetite}",
    )


@task(name="record assessment evidence", persist_result=True)
def record_assessment(assessment: AssessmentOut) -> int:
    """One `risk-assessment` evidence record per run, whatever re-runs or retries happen."""
    record = evidence.append(
        UnitOfWork(get_settings()),
        EvidenceIn(
            subject=f"system:{assessment.system}",
            kind="risk-assessment",
            title=f"Risk assessment {assessment.system} ({assessment.trigger})",
            text=assessment.markdown(),
            media_type="text/markdown",
            idempotency_key=f"risk-assessment-{_run_id()}",
        ),
        ACTOR,
    )
    return record.id


@task(name="link acceptance request", persist_result=True)
def link_request(risk_id: int, request_id: int) -> None:
    risks.link_acceptance_request(UnitOfWork(get_settings()), risk_id, request_id, ACTOR)


@task(name="apply acceptance decision", persist_result=True)
def settle(risk_id: int, spec: ApprovalRequestIn, outcome: ApprovalOutcome) -> str:
    """Apply the decision the database holds and keep it as evidence on the risk."""
    settings = get_settings()
    risk = risks.settle_acceptance(UnitOfWork(settings), risk_id, outcome.request_id, ACTOR)
    evidence.append(
        UnitOfWork(settings),
        EvidenceIn(
            subject=spec.subject,
            kind="decision",
            title=f"{outcome.status}: {spec.title}",
            text=outcome.model_dump_json(indent=2),
            idempotency_key=f"decision-risk-acceptance-{outcome.request_id}",
        ),
        ACTOR,
    )
    return risk.status.value


@task(name="reload risks", persist_result=True)
def current_register(assessment: AssessmentOut, stage: str) -> AssessmentOut:
    """The register as it is now (`stage` keeps each reload's cached result apart)."""
    rows = risks.list_risks(UnitOfWork(get_settings()), system=assessment.system)
    return assessment.model_copy(update={"risks": [r for r in rows if r.status != "closed"]})


_run_name = run_name(lambda p: risks.run_name(p["system"], p.get("trigger") or "manual"))


def _tag_run(a: AssessmentOut) -> None:
    """The same tags the CLI and intake start the run with, also on runs started from the UI."""
    tag_this_run(risks.assessment_run(a.system, a.risk_tier, a.trigger, a.event_id).tags)


@flow(name="risk-assessment", flow_run_name=_run_name, log_prints=True)
def risk_assessment(
    system: str, trigger: Trigger = "manual", event_id: int | None = None
) -> RiskAssessmentResult:
    """Assess one system's AI risks; ask for acceptance of those accepted above appetite."""
    logger = get_run_logger()
    assessment = assess(system, trigger, event_id)
    _tag_run(assessment)
    publish_table(assessment, "assessed")
    evidence_id = record_assessment(assessment)
    for risk_id, request_id in assessment.pending.items():
        logger.info("risk %s: acceptance already asked in request %s", risk_id, request_id)

    # Ask for every acceptance at once, then wait for each decision in turn.
    blocked: list[str] = []
    asked: list[tuple[int, ApprovalRequestIn]] = []
    for risk_id in assessment.to_ask:
        spec = risks.acceptance_request(assessment, risk_id, _run_id(), [evidence_id])
        try:
            request_id = open_request(spec)
        except AimsError as exc:  # e.g. nobody eligible but the owner: say so, go on
            blocked.append(f"risk {risk_id}: {exc}")
            continue
        link_request(risk_id, request_id)
        deliver_request(request_id)
        asked.append((risk_id, spec))
    if asked:
        publish_table(current_register(assessment, "asked"), "acceptance asked")

    accepted: list[int] = []
    rejected: list[int] = []
    for risk_id, spec in asked:
        outcome = request_approval(spec)
        (accepted if settle(risk_id, spec, outcome) == "treated" else rejected).append(risk_id)
    if asked:
        publish_table(current_register(assessment, "decided"), "after decisions")
    result = RiskAssessmentResult(
        system=assessment.system,
        trigger=trigger,
        evidence_id=evidence_id,
        risks=len(assessment.risks),
        above_appetite=sum(r.above_appetite for r in assessment.risks),
        accepted=accepted,
        rejected=rejected,
        pending_elsewhere=assessment.pending,
    )
    publish_outcome(assessment, result, blocked)
    if blocked:
        raise AimsError("cannot ask for acceptance: " + "; ".join(blocked))
    return result


def publish_outcome(a: AssessmentOut, result: RiskAssessmentResult, blocked: list[str]) -> None:
    """What the run decided and kept, in words: the operator's answer to "what happened?"."""

    def ids(xs: list[int]) -> str:
        return ", ".join(f"#{x}" for x in xs) or "-"

    lines = [
        f"## Risk assessment of {a.system} ({a.trigger})",
        "",
        f"- **risk tier**: {a.risk_tier.value} · **stage**: {a.lifecycle_stage.value} · "
        f"**appetite**: {a.appetite}",
        f"- **open risks**: {result.risks}, above appetite {result.above_appetite}",
        f"- **acceptance** accepted: {ids(result.accepted)}; rejected: {ids(result.rejected)}; "
        "waited on by another run: "
        + (", ".join(f"#{r} (request {q})" for r, q in a.pending.items()) or "-"),
        f"- **evidence**: record #{result.evidence_id} (`risk-assessment` on `system:{a.system}`)",
        *(f"- **changed**: {c}" for c in a.changes),
        *(f"- **could not ask**: {b}" for b in blocked),
    ]
    if a.reapproval_stage is not None:
        lines.append(f"- **gate needing re-approval**: {a.reapproval_stage.value}")
    create_markdown_artifact(
        key=_artifact_key(a.system, "risk-assessment"),
        markdown="\n".join(lines),
        description=f"Risk assessment of {a.system}: outcome",
    )
