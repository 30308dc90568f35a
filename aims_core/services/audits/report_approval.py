"""The report's approval (9.2.2): asked of the policy's roles; approved closes the audit,
rejected reopens fieldwork."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select

from aims_core.errors import Conflict, NotFound
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import ApprovalRequest, ApprovalStatus, AuditStatus, Evidence, as_utc
from aims_core.rules.audit import audit_policy
from aims_core.services import evidence
from aims_core.services.approvals import ApprovalRequestIn, approved_by, rejection_reasons
from aims_core.services.audits.notify import _notify
from aims_core.services.audits.periods import _tz, _utc
from aims_core.services.audits.queries import _load, _out, subject
from aims_core.services.audits.report import report_round
from aims_core.services.audits.schemas import AuditOut
from aims_core.uow import Actor, UnitOfWork


def report_approval_spec(
    uow: UnitOfWork, audit_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn:
    """The report's approval: roles from the policy within the RACI of its activity, the
    auditor as requester (so never an approver), the report as evidence."""
    policy = audit_policy(uow.settings).report_approval
    with uow.read():
        s = uow.session
        row = _load(s, audit_id)
        if row.status is not AuditStatus.reporting or row.report_evidence_id is None:
            raise Conflict(f"audit {row.id} has no report awaiting approval", "audit")
        n = report_round(s, audit_id)
        ids = list(
            s.scalars(
                select(Evidence.id).where(
                    Evidence.idempotency_key.startswith(f"audit-{row.id}-report-r{n}-")
                )
            )
        )
        counts = Counter(f.kind.value for f in row.findings)
        found = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no findings"
        details = (
            f"Internal audit {row.id}, {row.period}: {len(row.scope)} requirements "
            f"({', '.join(row.scope)}), systems {', '.join(row.systems) or '-'}, auditor "
            f"{row.auditor.email if row.auditor else '-'}. Findings: {found}. "
            f"Report: evidence {', '.join(f'#{i}' for i in ids)}; "
            f"`aims audit report {row.id}` writes it out."
        )
        completed = as_utc(row.completed_at) if row.completed_at else _utc(None)
        return ApprovalRequestIn(
            idempotency_key=f"audit-{row.id}-report-{n}",
            subject=subject(row.id),
            activity=policy.activity,
            title=f"Approve the internal audit report {row.period} (audit {row.id})",
            details=details[:2800],
            approver_roles=list(policy.approver_roles),
            quorum=policy.quorum,
            requester=row.auditor.email if row.auditor else None,
            # From the fieldwork's end, not from now: a re-run asks with the same deadline.
            deadline=completed + timedelta(days=policy.deadline_days)
            if policy.deadline_days
            else None,
            evidence_ids=ids,
            flow_run_id=flow_run_id,
        )


def link_request(uow: UnitOfWork, audit_id: int, request_id: int, actor: Actor) -> None:
    with uow:
        row = _load(uow.session, audit_id, lock=True)
        if row.request_id != request_id:
            row.request_id = request_id
            uow.audit(actor, "audit.report-approval-asked", subject(row.id), request_id=request_id)
            uow.commit()


def record_report_decision(
    uow: UnitOfWork, audit_id: int, request_id: int, actor: Actor, *, now: datetime | None = None
) -> AuditOut:
    """Apply the decision the database holds. Approved: closed, the decision kept as evidence.
    Rejected: back to fieldwork, the auditor told the reasons. Idempotent."""
    policy, tz = audit_policy(uow.settings), _tz(uow.settings)
    with uow:
        s = uow.session
        row = _load(s, audit_id, lock=True)
        request = s.get(ApprovalRequest, request_id)
        if request is None:
            raise NotFound(f"no approval request {request_id}", "request")
        if row.status is AuditStatus.reporting and request.status is not ApprovalStatus.open:
            approvals, reasons = approved_by(request), rejection_reasons(request)
            if request.status is ApprovalStatus.approved:
                row.status = AuditStatus.closed
                ev = evidence.append_in(
                    uow,
                    EvidenceIn(
                        subject=subject(row.id),
                        kind="decision",
                        title=f"approved: internal audit report {row.period} (audit {row.id})",
                        text=f"Request {request.id} approved by {', '.join(approvals)}.\n",
                        idempotency_key=f"decision-audit-report-{request.id}",
                    ),
                    actor,
                )
                uow.audit(
                    actor,
                    "audit.closed",
                    subject(row.id),
                    request_id=request.id,
                    approvals=approvals,
                    evidence_id=ev.id,
                )
            else:
                row.status = AuditStatus.in_progress
                row.completed_at = None
                uow.audit(
                    actor,
                    "audit.report-rejected",
                    subject(row.id),
                    request_id=request.id,
                    reasons=reasons,
                )
                if row.auditor is not None:
                    _notify(
                        s,
                        f"audit-{row.id}-report-{request.id}-rejected",
                        "audit-report-rejected",
                        row,
                        row.auditor,
                        f"The report of audit {row.id} ({row.period}) was not approved: "
                        f"{'; '.join(reasons) or request.status.value}. Fieldwork is open again: "
                        "the audit's run asks you for it again (new findings, then fieldwork "
                        "complete).",
                    )
        s.flush()
        out = _out(s, row, policy, tz)
        uow.commit()
    evidence.sync_anchor(uow.settings)
    return out
