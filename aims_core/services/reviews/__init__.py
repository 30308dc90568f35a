"""Management review (ISO/IEC 42001 9.3): the prepared pack, its minutes, the decisions taken.

- `gather` reads every 9.3.2 input for a period straight from the database (pandas over the
  session's connection): a) the actions of earlier reviews, b) changes in external and internal
  issues, c) changes in interested parties' needs, d) AIMS performance with trends (CAPAs,
  incidents, gates, approvals, risk posture, training, SoA, audits), e) opportunities for
  improvement. It reads other processes' tables directly (no import of their services), so the
  review depends on their data, not on their code.
- `prepare` renders the pack (HTML with charts, Markdown with PNGs beside it, an Excel workbook
  with one sheet per input), records the `ManagementReview` row with the figures as JSON and the
  three files as `management-review` evidence on `review:<period>`. Re-preparing replaces the pack
  until the minutes are approved.
- `decide` records a 9.3.3 decision as a tracked `ReviewAction`; the next review reports it
  under input a). `minutes_spec` is the run's ask on the minutes (approve with the meeting's
  attendees and conclusions, or reject saying why); `record_outcome` files what was answered.

A period is a calendar quarter in the configured time zone: "2026Q4" = [2026-10-01, 2027-01-01).

The package: `periods`, `schemas`, `queries`, `inputs` (gathering), `plots` and `workbook`
(rendering), `pack` (preparing), `actions` (decisions), `minutes`, `tracking` (reminders).
pandas, matplotlib, openpyxl and jinja2 are imported only by the functions that gather and
render, so importing the service (`aims status`, `aims --help`) stays cheap. This module only
re-exports.
"""

from aims_core.services.reviews.actions import action_done, decide
from aims_core.services.reviews.inputs import gather
from aims_core.services.reviews.minutes import (
    approval_spec,
    attach_request,
    minutes_spec,
    record_outcome,
    summary_markdown,
)
from aims_core.services.reviews.pack import prepare
from aims_core.services.reviews.periods import PERIOD_RE, default_period, period_bounds
from aims_core.services.reviews.plots import charts
from aims_core.services.reviews.queries import find_review, get_review, list_reviews
from aims_core.services.reviews.schemas import (
    ACTIVITY,
    APPROVER_ROLES,
    EVIDENCE_KIND,
    INPUT_TITLES,
    MEDIA,
    SHEETS,
    TREND_MONTHS,
    XLSX_TYPE,
    ActionOut,
    ActionRow,
    AuditRow,
    ContextRow,
    DecisionIn,
    ImprovementRow,
    MonthRow,
    Performance,
    ResidualRow,
    ReviewInputs,
    ReviewOut,
    RiskBandRow,
)
from aims_core.services.reviews.tracking import REMIND_DAYS, TRACKER, TickReport, tick
from aims_core.services.reviews.workbook import performance_rows, write_workbook

__all__ = [
    "ACTIVITY",
    "APPROVER_ROLES",
    "EVIDENCE_KIND",
    "INPUT_TITLES",
    "MEDIA",
    "PERIOD_RE",
    "REMIND_DAYS",
    "SHEETS",
    "TRACKER",
    "TREND_MONTHS",
    "XLSX_TYPE",
    "ActionOut",
    "ActionRow",
    "AuditRow",
    "ContextRow",
    "DecisionIn",
    "ImprovementRow",
    "MonthRow",
    "Performance",
    "ResidualRow",
    "ReviewInputs",
    "ReviewOut",
    "RiskBandRow",
    "TickReport",
    "action_done",
    "approval_spec",
    "attach_request",
    "charts",
    "decide",
    "default_period",
    "find_review",
    "gather",
    "get_review",
    "list_reviews",
    "minutes_spec",
    "performance_rows",
    "period_bounds",
    "prepare",
    "record_outcome",
    "summary_markdown",
    "tick",
    "write_workbook",
]
