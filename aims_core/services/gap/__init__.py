"""Gap assessments against ISO/IEC 42001: pre-fill, answer, complete, approve, maturity.

An assessment covers every leaf clause (4.1 ... 10.2) and Annex A control. It starts pre-filled:
the rules of `gap_prefill.yaml` run probes over the engine's own records and suggest a status
with the records found (`prefill`); everything else is "not assessed". The flow asks one area
per ask (`asks`: to the assessor, its form from the catalog) and applies each answer through
`record` (`answers`), as `aims gap record` and an answers file do: each answer checked, all or
nothing. The completed assessment is
approved through the approval service (`approval`); on approval the maturity (`maturity`,
`gap_maturity.yaml`) is frozen on the assessment, the implementation plan is made
(`aims_core.services.plan`) and the assessment is kept as evidence (`markdown`), all in one
transaction. `certification` reads trends and readiness; `report` writes the report and the
workbook and is the only module that draws (import it as `gap.report`). No Prefect here.

This module only re-exports; the submodules import each other directly.
"""

from aims_core.services.gap.answers import (
    accept_suggestions,
    check_answers,
    complete,
    record,
    start,
)
from aims_core.services.gap.approval import approval_spec, record_decision
from aims_core.services.gap.asks import ANSWER_ROLES, area_answers, area_asks, record_area_answer
from aims_core.services.gap.certification import readiness, trends
from aims_core.services.gap.maturity import compute_maturity
from aims_core.services.gap.prefill import Finding, Suggestion, probe, suggestions
from aims_core.services.gap.queries import (
    get,
    latest_approved,
    list_assessments,
    open_assessment,
    resolve,
)
from aims_core.services.gap.schemas import (
    DETAILS_MAX,
    EVIDENCE_KIND,
    NOTE_MAX,
    OPEN,
    AnswerIn,
    AreaMaturity,
    GapAssessmentOut,
    GapResult,
    Maturity,
    Readiness,
    ReadinessRow,
    RequirementOut,
    TrendPoint,
    approval_key,
    run_name,
    subject,
)

__all__ = [
    "ANSWER_ROLES",
    "DETAILS_MAX",
    "EVIDENCE_KIND",
    "NOTE_MAX",
    "OPEN",
    "AnswerIn",
    "AreaMaturity",
    "Finding",
    "GapAssessmentOut",
    "GapResult",
    "Maturity",
    "Readiness",
    "ReadinessRow",
    "RequirementOut",
    "Suggestion",
    "TrendPoint",
    "accept_suggestions",
    "approval_key",
    "approval_spec",
    "area_answers",
    "area_asks",
    "check_answers",
    "complete",
    "compute_maturity",
    "get",
    "latest_approved",
    "list_assessments",
    "open_assessment",
    "probe",
    "readiness",
    "record",
    "record_area_answer",
    "record_decision",
    "resolve",
    "run_name",
    "start",
    "subject",
    "suggestions",
    "trends",
]
