"""Approval of a completed assessment, through the approval service.

On approval, one transaction: the maturity frozen on the assessment, the implementation plan
made (`aims_core.services.plan`) and the assessment's Markdown kept as evidence. A rejection sends
it back to the assessor. The database holds the decision; this module only applies it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from aims_core.errors import Conflict
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import (
    ApprovalRequest,
    ApprovalStatus,
    Decision,
    GapAssessment,
    GapStatus,
    Person,
)
from aims_core.rules.gap import maturity_rule, plan_policy
from aims_core.services import evidence, plan
from aims_core.services.approvals import ApprovalRequestIn, approved_by, rejection_reasons
from aims_core.services.gap.markdown import render_markdown
from aims_core.services.gap.maturity import compute_maturity
from aims_core.services.gap.queries import _load, _out, get
from aims_core.services.gap.schemas import (
    DETAILS_MAX,
    EVIDENCE_KIND,
    GapAssessmentOut,
    _now,
    approval_key,
    subject,
)
from aims_core.uow import Actor, UnitOfWork


def approval_spec(
    uow: UnitOfWork, assessment_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn:
    """The approval of a completed assessment: roles and quorum from `gap_plan.yaml`, the
    assessor as requester (so never an approver), the maturity and gaps as details."""
    out = get(uow, assessment_id)
    with uow.read():
        assessor_is_person = uow.session.scalar(
            select(Person.id).where(Person.email == out.assessor)
        )
    if out.status is GapStatus.draft:
        raise Conflict(
            f"gap assessment {out.id} is not complete: {len(out.missing)} requirement(s) not "
            "assessed",
            "assessment",
        )
    rule = plan_policy(uow.settings).approval
    return ApprovalRequestIn(
        idempotency_key=approval_key(out.id),
        subject=subject(out.id),
        activity=rule.activity,
        title=f"Approve gap assessment #{out.id} and its implementation plan",
        details=_summary(out),
        approver_roles=list(rule.approver_roles),
        quorum=rule.quorum,
        requester=out.assessor if assessor_is_person else None,
        flow_run_id=flow_run_id,
    )


def _summary(out: GapAssessmentOut) -> str:
    counts: dict[str, int] = {}
    for r in out.requirements:
        counts[r.shown_status] = counts.get(r.shown_status, 0) + 1
    lines = [
        f"Gap assessment **#{out.id}** against ISO/IEC 42001 by {out.assessor}: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
        "",
    ]
    if out.maturity:
        lines.append(
            f"- overall maturity: **{out.maturity.overall} ({out.maturity.overall_name})**"
        )
        lines.append(
            "- by clause: "
            + ", ".join(f"{a}: {lv}" for a, lv in out.maturity.levels("clause").items())
        )
    lines += ["", f"Full report: `aims gap report {out.id} --output DIR`"]
    text = "\n".join(lines)
    return text if len(text) <= DETAILS_MAX else text[: DETAILS_MAX - 1] + "…"


def _request(session: Session, row: GapAssessment) -> ApprovalRequest | None:
    return session.scalar(
        select(ApprovalRequest)
        .where(ApprovalRequest.idempotency_key == approval_key(row.id))
        .options(selectinload(ApprovalRequest.decisions).selectinload(Decision.person))
    )


def record_decision(
    uow: UnitOfWork, assessment_id: int, actor: Actor, *, now: datetime | None = None
) -> GapAssessmentOut:
    """Apply the decision the approval request holds (the database decides).

    Approved: maturity frozen, the implementation plan made, the report kept as evidence — one
    transaction. Rejected: back to draft so the assessor can revise and submit again (the
    reasons in the audit trail). Idempotent: a decided assessment comes back unchanged.
    """
    at = _now(now)
    with uow:
        s = uow.session
        row = _load(s, assessment_id, lock=True)
        if row.status in (GapStatus.approved, GapStatus.rejected):
            return _out(s, uow.settings, row)
        request = _request(s, row)
        if row.status is not GapStatus.answered or request is None:
            raise Conflict(
                f"gap assessment {row.id} has no approval request yet ({row.status.value})",
                "assessment",
            )
        if request.status is ApprovalStatus.open:
            raise Conflict(f"approval request {request.id} is still open", "request")
        row.request_id = request.id
        if request.status is ApprovalStatus.approved:
            statuses = {a.requirement_id: a.status for a in row.answers}
            maturity = compute_maturity(maturity_rule(uow.settings), statuses)
            row.maturity = maturity.model_dump(mode="json")
            row.status = GapStatus.approved
            row.approved_at = at
            s.flush()
            tasks = plan.make_plan(uow, row, at, actor)
            markdown = render_markdown(uow, _out(s, uow.settings, row))
            ev = evidence.append_in(
                uow,
                EvidenceIn(
                    subject=subject(row.id),
                    kind=EVIDENCE_KIND,
                    title=f"Gap assessment #{row.id}, approved: maturity {maturity.overall}",
                    text=markdown,
                    media_type="text/markdown; charset=utf-8",
                    idempotency_key=f"gap-assessment-{row.id}",
                ),
                actor,
            )
            row.evidence_id = ev.id
            s.flush()
            uow.audit(
                actor,
                "gap.approved",
                subject(row.id),
                request_id=request.id,
                approvals=approved_by(request),
                overall=maturity.overall,
                plan_tasks=len(tasks),
                evidence_id=ev.id,
            )
        else:
            row.status = GapStatus.rejected
            s.flush()
            uow.audit(
                actor,
                "gap.rejected",
                subject(row.id),
                request_id=request.id,
                request_status=request.status.value,
                reasons=rejection_reasons(request),
            )
        out = _out(s, uow.settings, row)
        uow.commit()
    if out.evidence_id is not None:
        evidence.sync_anchor(uow.settings)
    return out
