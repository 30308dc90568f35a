"""The internal audit programme, audits, findings and reports (ISO/IEC 42001 9.2).

- **Programme** (9.2.2, `programme`): `plan_programme` allocates every clause 4-10 (sub-clauses
  included) and every Annex A control to the periods of a cycle (`settings.audit_cycle_years`),
  one audit per period, balancing the load. Requirements are grouped in areas (the policy,
  `aims_core.rules.audit`, data: `aims_core/data/audit_policy.yaml`); an area that touches
  high-risk AI systems, or had a nonconformity in the last months, is audited every year instead
  of once per cycle. Each allocation keeps its reason (`Audit.scope_reasons`).
- **Independence** (`independence`): an auditor holds the auditor role, is not Responsible or
  Accountable for an activity of an area in scope, and owns no sampled system (`conflicts`).
  Planning assigns an independent auditor when there is one; `assign_auditor` refuses naming the
  conflict.
- **Fieldwork asks** (`fieldwork_ask`): the run asks the auditor one entry at a time (a finding,
  "fieldwork complete", or both); people whose own work is audited are excluded, with why.
- **Audit** (`fieldwork`, `report`, `report_approval`): planned → in-progress (the
  `internal-audit` run, or `start_audit`) → reporting (fieldwork complete) → closed once the
  report's approval is granted (rejected: back to fieldwork). A major or minor nonconformity
  opens its CAPA when it is recorded, so it is never lost whatever happens to the run
  (`ensure_capas` repairs a crash in between).
- **Monthly planning pass** (`planning`): a programme covers the current cycle, areas with new
  nonconformities join the next planned audit, audits starting within a month get an auditor
  who is told, overdue audits are reported.

Evidence: `audit-programme` on `plan:<programme>`, `audit-finding` on `finding:<id>`,
`audit-report` (HTML and Markdown) and the report `decision` on `audit:<id>`.
No Prefect here. This module only re-exports what callers use.
"""

from aims_core.rules.audit import (
    POLICY_FILE,
    AuditArea,
    AuditPolicy,
    AuditPolicyInvalid,
    ReportApproval,
    Slug,
    Weighting,
    audit_policy,
    auditable,
    parse_audit_policy,
)
from aims_core.services.audits.demo import load_demo
from aims_core.services.audits.fieldwork import (
    check_startable,
    complete_fieldwork,
    ensure_capas,
    record_finding,
    start_audit,
)
from aims_core.services.audits.fieldwork_ask import (
    apply_fieldwork_answer,
    fieldwork_spec,
    open_fieldwork_ask,
)
from aims_core.services.audits.independence import (
    assign_auditor,
    conflicts,
    impartiality_exclusions,
    own_work,
)
from aims_core.services.audits.periods import (
    parse_period,
    period_bounds,
    period_of,
    periods_from,
)
from aims_core.services.audits.planning import OPEN, PLANNER, PlanningReport, planning_pass
from aims_core.services.audits.programme import plan_programme, yearly_areas
from aims_core.services.audits.queries import (
    get_audit,
    get_programme,
    list_audits,
    list_programmes,
    run_name,
    run_tags,
    subject,
)
from aims_core.services.audits.report import (
    current_report_round,
    record_report,
    render_report,
    report_context,
    report_round,
    reports_dir,
)
from aims_core.services.audits.report_approval import (
    link_request,
    record_report_decision,
    report_approval_spec,
)
from aims_core.services.audits.schemas import (
    NONCONFORMITIES,
    AuditOut,
    AuditRunResult,
    Coverage,
    FindingIn,
    FindingOut,
    PlanIn,
    PlanResult,
    ProgrammeOut,
)

__all__ = [
    "NONCONFORMITIES",
    "OPEN",
    "PLANNER",
    "POLICY_FILE",
    "AuditArea",
    "AuditOut",
    "AuditPolicy",
    "AuditPolicyInvalid",
    "AuditRunResult",
    "Coverage",
    "FindingIn",
    "FindingOut",
    "PlanIn",
    "PlanResult",
    "PlanningReport",
    "ProgrammeOut",
    "ReportApproval",
    "Slug",
    "Weighting",
    "apply_fieldwork_answer",
    "assign_auditor",
    "audit_policy",
    "auditable",
    "check_startable",
    "complete_fieldwork",
    "conflicts",
    "current_report_round",
    "ensure_capas",
    "fieldwork_spec",
    "get_audit",
    "get_programme",
    "impartiality_exclusions",
    "link_request",
    "list_audits",
    "list_programmes",
    "load_demo",
    "open_fieldwork_ask",
    "own_work",
    "parse_audit_policy",
    "parse_period",
    "period_bounds",
    "period_of",
    "periods_from",
    "plan_programme",
    "planning_pass",
    "record_finding",
    "record_report",
    "record_report_decision",
    "render_report",
    "report_approval_spec",
    "report_context",
    "report_round",
    "reports_dir",
    "run_name",
    "run_tags",
    "start_audit",
    "subject",
    "yearly_areas",
]
