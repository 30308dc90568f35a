"""The incident record (clause 10, A.8.4): report, classify, timeline, serious-incident clocks.

Every channel (CLI, HTTP intake, Alertmanager, the incident-response flow, drills) records
incidents through `report` (`reporting`), so an incident is classified the same way wherever it
comes from: severity and category checked against `incident_classification.yaml`, the playbook
taken from the category, and the serious-incident rule run on the report's text, labels and harm
signals. The rule only *suggests*; a person confirms the kind (`confirm_serious`, `serious`),
which starts the Art. 73 clocks from `aware_at` (services/clocks.py).

`report` is one transaction: the incident (or, for a repeat of an alert already open, one line on
its timeline), the clocks that start at report (GDPR, internal SLAs), the audit event, and the
first notifications in the outbox (`messages`; so the caller can deliver them at once, before
handing over to a playbook run). It writes no evidence: the response flow does, step by step.

Repeats: an alert's `fingerprint` attaches every repeat to the open incident of the same system
with that fingerprint, serialised per fingerprint (PostgreSQL advisory lock; SQLite's write
transactions are serial anyway), so five concurrent repeats still open one incident.

This module only re-exports; the submodules import each other directly. Callers reach the
functions through it (`incidents.report(...)`), so a test patching `incidents.report` patches
what they call.
"""

from aims_core.services.incidents.investigation import record_lessons, record_root_cause
from aims_core.services.incidents.lifecycle import add_timeline, attach_run, set_status
from aims_core.services.incidents.messages import KIND_OPENED, KIND_SERIOUS, opened_message
from aims_core.services.incidents.queries import get_incident, list_incidents
from aims_core.services.incidents.reporting import report, resolve_alert
from aims_core.services.incidents.review import (
    amendment_ask,
    amendment_key,
    lessons_ask,
    lessons_key,
    root_cause_answer,
    root_cause_ask,
    root_cause_key,
    root_cause_of,
)
from aims_core.services.incidents.schemas import (
    FISHBONE,
    FUTURE_SKEW,
    IncidentIn,
    IncidentOut,
    ReportResult,
    RootCauseIn,
    Source,
    TimelineOut,
    not_in_future,
)
from aims_core.services.incidents.serious import confirm_serious, correct_aware_at

__all__ = [
    "FISHBONE",
    "FUTURE_SKEW",
    "KIND_OPENED",
    "KIND_SERIOUS",
    "IncidentIn",
    "IncidentOut",
    "ReportResult",
    "RootCauseIn",
    "Source",
    "TimelineOut",
    "add_timeline",
    "amendment_ask",
    "amendment_key",
    "attach_run",
    "confirm_serious",
    "correct_aware_at",
    "get_incident",
    "lessons_ask",
    "lessons_key",
    "list_incidents",
    "not_in_future",
    "opened_message",
    "record_lessons",
    "record_root_cause",
    "report",
    "resolve_alert",
    "root_cause_answer",
    "root_cause_ask",
    "root_cause_key",
    "root_cause_of",
    "set_status",
]
