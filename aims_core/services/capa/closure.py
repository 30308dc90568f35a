"""Closing a CAPA (ISO/IEC 42001 10.2): the closure approval asked of the policy's roles once
the actions proved effective, and the decision applied with the whole record kept as evidence.

The approval itself goes through the shared approval service; a rejection sends the CAPA back
for a new effectiveness verification.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from aims_core.errors import Conflict
from aims_core.models import ApprovalRequest, ApprovalStatus, Capa, CapaStatus, as_utc
from aims_core.rules.capa import capa_policy
from aims_core.services.approvals import ApprovalRequestIn, approved_by, rejection_reasons
from aims_core.services.capa.queries import (
    analyses_of,
    capa_out,
    current_analysis,
    load_capa,
    results_of,
)
from aims_core.services.capa.recording import (
    allowed,
    commit_and_anchor,
    head,
    nonconformity_md,
    notify,
    record_evidence,
)
from aims_core.services.capa.schemas import (
    DETAILS_MAX,
    CapaOut,
    at_or_now,
    closure_key,
    subject,
)
from aims_core.uow import Actor, UnitOfWork


def _closure_details(row: Capa) -> str:
    analysis = current_analysis(row)
    result = results_of(row)[-1]
    actions = [a for a in row.actions if a.attempt == row.attempt]
    lines = [
        f"**{head(row)}** (source {row.source}, owner {row.owner.email}, attempt {row.attempt})",
        "",
        f"- **root cause**: {analysis['root_cause'] if analysis else '-'}",
        "- **actions**: "
        + "; ".join(f"#{a.id} {a.title} ({a.owner.email}, done)" for a in actions),
        f"- **verification {result['number']}**: effective — {result['evidence']} "
        f"(by {result['verifier'] or result['recorded_by']})",
        "",
        f"Full record: `aims capa show {row.id}`",
    ]
    text = "\n".join(lines)
    return text if len(text) <= DETAILS_MAX else text[: DETAILS_MAX - 1] + "…"


def closure_spec(
    uow: UnitOfWork, capa_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn:
    """The closure approval of a CAPA verified effective: roles, quorum and deadline from the
    policy, the owner as requester (so never an approver), the records as evidence."""
    policy = capa_policy(uow.settings).closure
    with uow.read():
        row = load_capa(uow.session, capa_id)
        allowed(row, "a closure request", CapaStatus.awaiting_closure)
        results = results_of(row)
        analysis = current_analysis(row)
        evidence_ids = [
            *([analysis["evidence_id"]] if analysis and analysis["evidence_id"] else []),
            *(a.evidence_id for a in row.actions if a.attempt == row.attempt and a.evidence_id),
            *([results[-1]["evidence_id"]] if results[-1]["evidence_id"] else []),
        ]
        return ApprovalRequestIn(
            idempotency_key=closure_key(row.id, len(results)),
            subject=subject(row.id),
            activity=policy.activity,
            system=row.system.name if row.system else None,
            title=f"Close CAPA {row.id}: {row.title}"[:300],
            details=_closure_details(row),
            approver_roles=list(policy.approver_roles),
            quorum=policy.quorum,
            requester=row.owner.email,
            # From the verification, not from now: a re-run asks with the same deadline.
            deadline=as_utc(datetime.fromisoformat(results[-1]["at"]))
            + timedelta(days=policy.deadline_days)
            if policy.deadline_days
            else None,
            evidence_ids=evidence_ids,
            flow_run_id=flow_run_id,
        )


def record_closure(
    uow: UnitOfWork, capa_id: int, actor: Actor, *, now: datetime | None = None
) -> CapaOut:
    """Apply the closure decision the database holds. Approved: closed, with the whole 10.2
    record as evidence. Rejected: back to verification (due now), the reasons kept. Idempotent."""
    at = at_or_now(now)
    with uow:
        s = uow.session
        row = load_capa(s, capa_id, lock=True)
        if row.status is CapaStatus.closed:
            return capa_out(s, row)
        allowed(row, "a closure decision", CapaStatus.awaiting_closure)
        results = results_of(row)
        request = s.scalar(
            select(ApprovalRequest)
            .where(ApprovalRequest.idempotency_key == closure_key(row.id, len(results)))
            .options(selectinload(ApprovalRequest.decisions))
        )
        if request is None or request.status is ApprovalStatus.open:
            raise Conflict(f"CAPA {row.id}'s closure is not decided yet", "capa")
        approvals = approved_by(request)
        if request.status is ApprovalStatus.approved:
            row.status = CapaStatus.closed
            row.closed_at = at
            s.flush()
            ev = record_evidence(
                uow,
                row,
                f"capa-{row.id}-closed",
                f"CAPA record, closed: {head(row)}",
                _record_md(row, approvals, request.id),
                actor,
            )
            uow.audit(
                actor,
                "capa.closed",
                subject(row.id),
                request_id=request.id,
                approvals=approvals,
                attempts=row.attempt,
                evidence_id=ev,
            )
        else:
            reasons = rejection_reasons(request)
            results[-1] = {**results[-1], "closure": "rejected", "closure_reasons": reasons}
            row.verification = {**(row.verification or {}), "results": results}
            row.status = CapaStatus.verification
            row.verification_due_at = at
            s.flush()
            uow.audit(
                actor,
                "capa.closure-rejected",
                subject(row.id),
                request_id=request.id,
                request_status=request.status.value,
                reasons=reasons,
            )
            notify(
                s,
                f"capa-{row.id}-closure-{len(results)}-to-{row.owner_id}",
                "capa-closure",
                row,
                row.owner,
                f"Closing {head(row)} was not approved ({'; '.join(reasons) or 'no reason'}). "
                "It needs a new effectiveness verification.",
            )
        return commit_and_anchor(uow, row)


def _record_md(row: Capa, approvals: list[str], request_id: int) -> str:
    """The documented information 10.2 asks for: the nature of the nonconformity, the actions
    taken, and their results."""
    lines = [nonconformity_md(row), "## Containment and correction", "", row.containment or "-"]
    for a in analyses_of(row):
        lines += ["", f"## Root cause, attempt {a['attempt']}", "", a["root_cause"]]
    lines += ["", "## Actions", ""]
    for act in row.actions:
        done = f"done {as_utc(act.done_at):%Y-%m-%d}" if act.done_at else "not done"
        lines.append(
            f"- attempt {act.attempt}, #{act.id} {act.title} — {act.owner.email}, due "
            f"{as_utc(act.due_at):%Y-%m-%d}, {done}"
            + (f", evidence #{act.evidence_id}" if act.evidence_id else "")
        )
    lines += ["", "## Effectiveness verification", ""]
    for r in results_of(row):
        verdict = "effective" if r["effective"] else "not effective"
        extra = f"; closure {r['closure']}" if r.get("closure") else ""
        lines.append(
            f"- {r['number']} (attempt {r['attempt']}): {verdict}{extra} — {r['evidence']}"
        )
    lines += [
        "",
        f"## Closure: approved by {', '.join(approvals)} (request {request_id}), "
        f"{as_utc(row.closed_at or datetime.now(UTC)):%Y-%m-%d %H:%M} UTC",
    ]
    return "\n".join(lines) + "\n"
