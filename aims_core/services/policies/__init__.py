"""Policies, versions, periodic reviews and exceptions (ISO/IEC 42001 5.2, A.2.2-A.2.4).

A policy is a governed document with an owner and a review interval. Its text lives in versions:
a proposed version goes through the shared approval service (the `policy-approval` run asks the
roles of `policy_governance.yaml`); once approved it supersedes the previous one, counts as a
review, and is kept as `policy` evidence with its SHA-256. A review that keeps the text records
`policy-review` evidence. When the next review is due is computed, never typed in: the last
review (else the first approval, else the creation) plus the interval.

An exception is a granted deviation with an owner and an expiry date: its owner is reminded
`exception_reminder_days` before, and the daily pass (`tick`) closes it once it has expired and
tells the owner (`policy-exception` evidence). Each reminder is sent once per due date or
threshold, whatever number of passes run.

Documents are rendered from the Jinja2 templates `aims_core/templates/policy_<name>.md.j2` with
the organisation's data (roles, RACI, the incident classification, clocks and playbooks), so the
AI incident management policy says what the incident flow does. No Prefect here.

The package: `schemas` (boundary models, names), `due` (when reviews fall due), `queries`,
`lifecycle` (policies and versions), `exceptions`, `tracking` (the daily pass), `documents`
(rendering), `demo` (the demo section); the governance rules are `aims_core.rules.policy`.
This module only re-exports them.
"""

from aims_core.rules.loading import DataFileInvalid
from aims_core.rules.policy import (
    GOVERNANCE_FILE,
    ApprovalPolicy,
    PolicyGovernance,
    governance,
)
from aims_core.services.policies.documents import (
    document_context,
    render_document,
    template_file,
    templates,
)
from aims_core.services.policies.due import (
    end_of_day,
    local_date,
    next_review_due,
    review_base,
)
from aims_core.services.policies.exceptions import add_exception, close_exception
from aims_core.services.policies.lifecycle import (
    add_policy,
    approval_failed,
    begin_approval,
    draft_version,
    import_approved_version,
    propose_version,
    record_review,
    settle_approval,
)
from aims_core.services.policies.queries import (
    get_policy,
    get_version,
    list_exceptions,
    list_policies,
    version_body,
)
from aims_core.services.policies.schemas import (
    BODY_MAX,
    DEPLOYMENT,
    DETAILS_MAX,
    PENDING,
    ExceptionIn,
    ExceptionOut,
    PolicyDetail,
    PolicyIn,
    PolicyOut,
    ProposalIn,
    ReviewIn,
    ReviewOut,
    VersionOut,
    approval_key,
    run_name,
    sha256,
    subject,
)
from aims_core.services.policies.tracking import TRACKER, TickReport, tick, tick_rows

__all__ = [
    "BODY_MAX",
    "DEPLOYMENT",
    "DETAILS_MAX",
    "GOVERNANCE_FILE",
    "PENDING",
    "TRACKER",
    "ApprovalPolicy",
    "DataFileInvalid",
    "ExceptionIn",
    "ExceptionOut",
    "PolicyDetail",
    "PolicyGovernance",
    "PolicyIn",
    "PolicyOut",
    "ProposalIn",
    "ReviewIn",
    "ReviewOut",
    "TickReport",
    "VersionOut",
    "add_exception",
    "add_policy",
    "approval_failed",
    "approval_key",
    "begin_approval",
    "close_exception",
    "document_context",
    "draft_version",
    "end_of_day",
    "get_policy",
    "get_version",
    "governance",
    "import_approved_version",
    "list_exceptions",
    "list_policies",
    "local_date",
    "next_review_due",
    "propose_version",
    "record_review",
    "render_document",
    "review_base",
    "run_name",
    "settle_approval",
    "sha256",
    "subject",
    "template_file",
    "templates",
    "tick",
    "tick_rows",
    "version_body",
]
