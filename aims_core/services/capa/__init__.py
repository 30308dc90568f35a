"""Corrective action (ISO/IEC 42001 10.2): from a nonconformity to a verified, approved fix.

A CAPA walks the clause's steps, each recorded by one service call whatever the channel (the
`capa` flow applying the answers to its asks, `aims capa ...`, the incident flow):

    containment → root-cause → action-plan → tracking → verification → awaiting-closure → closed
                       ↑                                      │ ineffective: attempt + 1
                       └──────────────────────────────────────┘

- **containment**: react — control and correct, deal with the consequences (text).
- **root cause**: 5 whys, fishbone or a plain statement; the check for similar nonconformities
  (other open CAPAs on the same system or control) is recorded with it.
- **action plan**: actions with owners and due dates; the first one starts tracking, more may
  follow until verification is recorded. The run asks for them one at a time (`asking`).
- **tracking**: reminders before and on the due date, one escalation once overdue
  (`due_reminders`, run on a schedule with an injectable `now`).
- **verification**: due `verify_after_days` after the last action is done; a verifier (a role
  from the policy, not the owner) records evidence that the problem has not recurred. Ineffective
  sends the CAPA back to root cause with the next attempt, whose action plan starts empty.
- **closure**: approved through the shared approval service; a rejection asks for a new
  verification.

Every step writes an audit event and `capa-record` evidence (the analysis: `root-cause-analysis`)
on `capa:<id>`, so the records 10.2 asks for exist whatever the flow does. The policy (periods,
reminders, roles, quorum) is data (`aims_core.rules.capa`): `aims_core/data/capa_policy.yaml`,
overridable in the data dir. No Prefect here: waking a run goes through the `Runs` port the
caller passes.

The package: `schemas` (what callers give and get), `queries` (reading), `recording` (how a step
is recorded), `lifecycle` (the steps up to verification), `asking` (the asks of those steps, for
the run), `verification`, `closure`, `report`,
`tracking` (the scheduled pass). This module only re-exports them.
"""

from aims_core.rules.capa import (
    POLICY_FILE,
    CapaPolicy,
    CapaPolicyInvalid,
    ClosurePolicy,
    TrackingPolicy,
    VerificationPolicy,
    capa_policy,
    parse_capa_policy,
)
from aims_core.services.capa.asking import (
    answer_not_applied,
    apply_answer,
    completion_spec,
    containment_spec,
    plan_spec,
    root_cause_spec,
    step_spec,
)
from aims_core.services.capa.closure import closure_spec, record_closure
from aims_core.services.capa.lifecycle import (
    add_action,
    attach_run,
    complete_action,
    open_capa,
    record_containment,
    record_root_cause,
)
from aims_core.services.capa.queries import (
    capa_of_action,
    get_capa,
    list_capas,
    run_name,
    run_tags,
    similar_open,
    wait_step,
)
from aims_core.services.capa.report import report_markdown
from aims_core.services.capa.schemas import (
    DETAILS_MAX,
    EVIDENCE_KIND,
    FISHBONE,
    OPEN,
    RCA_KIND,
    TEXT_MAX,
    UNTIL_DUE,
    ActionIn,
    CapaActionOut,
    CapaIn,
    CapaOut,
    CapaResult,
    FishboneCategory,
    RootCauseIn,
    RootCauseOut,
    Source,
    VerificationOut,
    WaitStep,
    closure_key,
    subject,
)
from aims_core.services.capa.tracking import (
    TRACKER,
    TickReport,
    WakeFn,
    due_reminders,
    tick,
    wake_due_verifications,
    waking_through,
)
from aims_core.services.capa.verification import record_verification, verification_spec

__all__ = [
    "DETAILS_MAX",
    "EVIDENCE_KIND",
    "FISHBONE",
    "OPEN",
    "POLICY_FILE",
    "RCA_KIND",
    "TEXT_MAX",
    "TRACKER",
    "UNTIL_DUE",
    "ActionIn",
    "CapaActionOut",
    "CapaIn",
    "CapaOut",
    "CapaPolicy",
    "CapaPolicyInvalid",
    "CapaResult",
    "ClosurePolicy",
    "FishboneCategory",
    "RootCauseIn",
    "RootCauseOut",
    "Source",
    "TickReport",
    "TrackingPolicy",
    "VerificationOut",
    "VerificationPolicy",
    "WaitStep",
    "WakeFn",
    "add_action",
    "answer_not_applied",
    "apply_answer",
    "attach_run",
    "capa_of_action",
    "capa_policy",
    "closure_key",
    "closure_spec",
    "complete_action",
    "completion_spec",
    "containment_spec",
    "due_reminders",
    "get_capa",
    "list_capas",
    "open_capa",
    "parse_capa_policy",
    "plan_spec",
    "record_closure",
    "record_containment",
    "record_root_cause",
    "record_verification",
    "report_markdown",
    "root_cause_spec",
    "run_name",
    "run_tags",
    "similar_open",
    "step_spec",
    "subject",
    "tick",
    "verification_spec",
    "wait_step",
    "wake_due_verifications",
    "waking_through",
]
