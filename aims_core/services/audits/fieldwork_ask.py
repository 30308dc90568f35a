"""The fieldwork as asks (9.2.2): the audit's run asks its auditor one entry at a time — a
finding, "fieldwork complete", or both — and applies each answer in the name of who gave it.

Who answers is the record: the audit's auditor (`approver_people`). Who may not is the policy
(`fieldwork.impartiality`): people whose own work the audit looks at are `excluded`, with why, so
every channel refuses them the same way. Another finding is another entry (the next ask), so the
auditor always has one open form until they say fieldwork is complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from aims_core.ask_forms.audits import AUDIT_FIELDWORK
from aims_core.errors import Conflict
from aims_core.models import ApprovalRequest, ApprovalStatus, AuditStatus
from aims_core.rules.audit import audit_policy
from aims_core.services.approvals import ApprovalRequestIn, ApprovalRequestOut, get_request
from aims_core.services.audits.fieldwork import _startable, complete_fieldwork, record_finding
from aims_core.services.audits.independence import impartiality_exclusions
from aims_core.services.audits.queries import _load, subject
from aims_core.services.audits.report import report_round
from aims_core.services.audits.schemas import AuditOut
from aims_core.uow import Actor, UnitOfWork

__all__ = ["apply_fieldwork_answer", "fieldwork_spec", "open_fieldwork_ask"]


def fieldwork_spec(
    uow: UnitOfWork,
    audit_id: int,
    entry: int,
    *,
    refusal: str | None = None,
    flow_run_id: str | None = None,
) -> ApprovalRequestIn:
    """Fieldwork entry `entry` of the current report round, asked of the audit's auditor only,
    never of anyone whose own work is audited. Conflict if the auditor is no longer independent
    (RACI or ownership changed since the start): nobody could answer. The text depends only on
    the audit and the entry (not on later findings), so a re-run asks the same spec."""
    policy = audit_policy(uow.settings)
    with uow.read():
        s = uow.session
        row = _load(s, audit_id)
        if row.status is not AuditStatus.in_progress:
            raise Conflict(
                f"audit {row.id} is {row.status.value}: fieldwork is asked for while it is "
                "in-progress",
                "audit",
            )
        auditor = _startable(s, policy, row)
        n = report_round(s, audit_id)
        details = "\n".join(
            [
                f"Internal audit {row.id}, {row.period}: {len(row.scope)} requirements in scope "
                f"({', '.join(row.scope)}); systems sampled: {', '.join(row.systems) or '-'}. "
                f"`aims audit show {row.id}` lists the checklist and the findings so far.",
                "",
                "Record one finding (clause or control, type, description, evidence), say "
                "fieldwork is complete, or both with the last finding. After each finding the "
                "next entry is asked; a major or minor nonconformity opens its CAPA at once.",
                *(["", f"**Entry {entry - 1} was not recorded**: {refusal}"] if refusal else []),
            ]
        )
        return ApprovalRequestIn(
            idempotency_key=f"audit-{row.id}-r{n}-fieldwork-{entry}",
            kind=AUDIT_FIELDWORK,
            subject=subject(row.id),
            activity=policy.fieldwork.activity,
            title=f"Audit {row.id} ({row.period}) fieldwork, entry {entry}: a finding or complete"[
                :300
            ],
            details=details[:20_000],
            approver_people=[auditor.email],
            quorum=1,
            excluded=impartiality_exclusions(s, policy, row),
            flow_run_id=flow_run_id,
        )


def open_fieldwork_ask(uow: UnitOfWork, audit_id: int) -> ApprovalRequestOut | None:
    """The fieldwork entry the audit's run is asking now, if any (the CLI answers it)."""
    with uow.read():
        ask_id = uow.session.scalar(
            select(ApprovalRequest.id)
            .where(
                ApprovalRequest.subject == subject(audit_id),
                ApprovalRequest.kind == AUDIT_FIELDWORK,
                ApprovalRequest.status == ApprovalStatus.open,
            )
            .order_by(ApprovalRequest.id.desc())
            .limit(1)
        )
    return get_request(uow, ask_id) if ask_id is not None else None


def apply_fieldwork_answer(
    uow: UnitOfWork, audit_id: int, ask_id: int, answer: Mapping[str, Any], actor: Actor
) -> AuditOut | None:
    """The answer to fieldwork ask `ask_id`, recorded through the same services as ever, in the
    name of `actor` (who answered): the finding first, then completion. Once per ask, even from
    a later run (the finding's evidence is keyed by the ask). Returns the audit when the entry
    completed fieldwork."""
    finding = {k: answer.get(k) for k in ("control", "kind", "statement", "system")}
    if finding["control"]:
        finding["evidence_note"] = answer.get("evidence")
        record_finding(uow, audit_id, finding, actor, key=f"audit-{audit_id}-ask-{ask_id}")
    return complete_fieldwork(uow, audit_id, actor) if answer.get("complete") else None
