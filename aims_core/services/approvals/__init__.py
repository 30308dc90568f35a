"""Approval requests and decisions: who may decide, how often, and what the outcome is.

Every channel (Slack bridge, Prefect UI resume form, CLI, reconciler) calls this one service, so
the rules live once: the eligible approvers are fixed when the request is made (`requesting`:
roles, scoped by RACI, never the requester); each person decides once and the training check
always runs (`decisions`); a refusal is audited even though nothing else is written; the
decision is committed before any caller acknowledges it. No Prefect here: flows learn the
outcome by re-reading the request (`runs`: `resume_needed`, `pending_resumes`). Overdue
requests: `escalation`.

This module only re-exports what callers use.
"""

from aims_core.services.approvals.codes import current_code, hand_over_code
from aims_core.services.approvals.decisions import MAX_WRONG_CODES, competence_checks, decide
from aims_core.services.approvals.escalation import (
    GOVERNANCE_LEAD,
    escalate_within,
    escalation_contacts,
    record_escalation,
    record_reminder,
)
from aims_core.services.approvals.queries import (
    ORG_SCOPE,
    approved_by,
    ask_header,
    get_request,
    list_requests,
    open_requests,
    person_for_slack_user,
    rejected_by,
    rejection_reasons,
    request_by_key,
    request_out,
)
from aims_core.services.approvals.requesting import DECIDING_KINDS, create_request
from aims_core.services.approvals.runs import (
    FLOW_ACTOR,
    attach_flow_run,
    mark_resumed,
    next_round,
    pending_resumes,
)
from aims_core.services.approvals.schemas import (
    ApprovalRequestIn,
    ApprovalRequestOut,
    DecisionIn,
    DecisionOut,
    DecisionResult,
    RefusalReason,
    Refused,
)

__all__ = [
    "DECIDING_KINDS",
    "FLOW_ACTOR",
    "GOVERNANCE_LEAD",
    "MAX_WRONG_CODES",
    "ORG_SCOPE",
    "ApprovalRequestIn",
    "ApprovalRequestOut",
    "DecisionIn",
    "DecisionOut",
    "DecisionResult",
    "RefusalReason",
    "Refused",
    "approved_by",
    "ask_header",
    "attach_flow_run",
    "competence_checks",
    "create_request",
    "current_code",
    "decide",
    "escalate_within",
    "escalation_contacts",
    "get_request",
    "hand_over_code",
    "list_requests",
    "mark_resumed",
    "next_round",
    "open_requests",
    "pending_resumes",
    "person_for_slack_user",
    "record_escalation",
    "record_reminder",
    "rejected_by",
    "rejection_reasons",
    "request_by_key",
    "request_out",
]
