"""The response's questions after containment, as asks (ISO/IEC 42001 10.2): the root cause, the
lessons learned, and what was changed after a refused closure.

Who may answer is data, the incident policy's `response_asks`: holders of its roles within the
RACI of its activity for the system (Responsible and Consulted, plus the Accountable), and the
system's owner (when active). Whoever refused the closure never writes its amendment: they check
it at the next request. One ask per incident and question (per closure attempt for the
amendment), so a re-run of the response meets the same ask, and the CLI finds the open one by
its key. The flow applies the answer with `record_root_cause` / `record_lessons` in the name of
whoever gave it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aims_core.ask_forms.incidents import (
    CLOSURE_AMENDMENT,
    FISHBONE_FIELDS,
    INCIDENT_LESSONS,
    INCIDENT_ROOT_CAUSE,
)
from aims_core.errors import InvalidInput
from aims_core.models import Outcome
from aims_core.rules.incident import Answerers, incident_policy
from aims_core.services.approvals import ApprovalRequestIn, get_request
from aims_core.services.incidents.queries import _get, _out
from aims_core.services.incidents.schemas import IncidentOut, RootCauseIn
from aims_core.uow import UnitOfWork

__all__ = [
    "amendment_ask",
    "amendment_key",
    "lessons_ask",
    "lessons_key",
    "root_cause_answer",
    "root_cause_ask",
    "root_cause_key",
    "root_cause_of",
]

#: How many whys the root-cause form has (`why_1` .. `why_5`).
WHYS: Final = 5


def root_cause_key(incident_id: int) -> str:
    return f"incident-{incident_id}-root-cause"


def lessons_key(incident_id: int) -> str:
    return f"incident-{incident_id}-lessons"


def amendment_key(incident_id: int, attempt: int) -> str:
    return f"incident-{incident_id}-closure-{attempt}-amendment"


def _ask(
    uow: UnitOfWork,
    incident_id: int,
    who: Answerers,
    *,
    key: str,
    kind: str,
    title: str,
    details: str,
    excluded: Mapping[str, str] | None = None,
) -> ApprovalRequestIn:
    with uow.read():
        row = _get(uow.session, incident_id)
        owner = row.system.owner
        people = [owner.email] if who.system_owner and owner.active else []
        incident = _out(uow.session, row)
    tag = "[DRILL] " if incident.is_drill else ""
    return ApprovalRequestIn(
        idempotency_key=key,
        kind=kind,
        subject=f"incident:{incident.id}",
        activity=who.activity,
        system=incident.system,
        title=f"{tag}{title} #{incident.id}: {incident.title}"[:300],
        details="\n".join([_head(incident), "", details]),
        approver_roles=list(who.roles),
        approver_people=people,
        quorum=who.quorum,
        excluded=dict(excluded or {}),
    )


def _head(incident: IncidentOut) -> str:
    lines = [
        f"{incident.severity} {incident.category} on **{incident.system}** "
        f"({incident.system_tier}-risk), status {incident.status.value}.",
    ]
    if incident.summary:
        lines.append(incident.summary[:2_000])
    return "\n".join(lines)


def root_cause_ask(uow: UnitOfWork, incident_id: int) -> ApprovalRequestIn:
    """Why did it happen: 5 whys and fishbone causes, from the people who ran the response."""
    who = incident_policy(uow.settings).classification.response_asks.root_cause
    return _ask(
        uow,
        incident_id,
        who,
        key=root_cause_key(incident_id),
        kind=INCIDENT_ROOT_CAUSE,
        title="Root cause of incident",
        details="Containment is done: record the **root cause**. The 5 whys in order (the first "
        "is needed), fishbone causes by category (one per line), and the root cause (default: "
        "the last why). The stakeholders, the CAPA and the lessons learned build on it. Or: "
        f"`aims incident rca {incident_id} --why ... --as EMAIL`.",
    )


def lessons_ask(uow: UnitOfWork, incident_id: int) -> ApprovalRequestIn:
    """What changes so it does not happen again; the risk assessment is reopened with it."""
    who = incident_policy(uow.settings).classification.response_asks.lessons
    with uow.read():
        root = dict(_get(uow.session, incident_id).root_cause or {}).get("root_cause", "-")
    return _ask(
        uow,
        incident_id,
        who,
        key=lessons_key(incident_id),
        kind=INCIDENT_LESSONS,
        title="Lessons learned from incident",
        details=f"Root cause: {root}\n\nRecord the **lessons learned**: what the organisation "
        "changes so it does not happen again. The system's risk assessment is then reopened. "
        f"Or: `aims incident lessons {incident_id} --text ... --as EMAIL`.",
    )


def amendment_ask(
    uow: UnitOfWork, incident_id: int, attempt: int, closure_request_id: int
) -> ApprovalRequestIn:
    """After closure request `closure_request_id` (attempt `attempt`) was refused: what was
    changed before asking again, from the responders and the owner, never from whoever refused
    it (they check the amendment at the next request)."""
    who = incident_policy(uow.settings).classification.response_asks.amendment
    closure = get_request(uow, closure_request_id)
    refusals = [d for d in closure.decisions if d.outcome is Outcome.reject]
    reasons = [f"- {d.person}: {d.comment or 'no reason given'}" for d in refusals]
    return _ask(
        uow,
        incident_id,
        who,
        key=amendment_key(incident_id, attempt),
        kind=CLOSURE_AMENDMENT,
        title="Closure refused: amend incident",
        details="\n".join(
            [
                f"Closure (request #{closure_request_id}) was **not approved**:",
                *(reasons or ["- no reason given"]),
                "",
                "Change what they asked (e.g. `aims incident rca|lessons ...`), then say what "
                "was changed: the closure is asked again, showing it.",
            ]
        ),
        excluded={
            d.person: f"refused closure request {closure_request_id}: checks the amendment at "
            "the next request"
            for d in refusals
        },
    )


def root_cause_of(answer: Mapping[str, Any]) -> RootCauseIn:
    """The incident's analysis from an answer of the root-cause form (the whys in order, the
    fishbone categories that have causes)."""
    whys = [str(answer.get(f"why_{n}") or "").strip() for n in range(1, WHYS + 1)]
    return RootCauseIn(
        whys=[w for w in whys if w],
        fishbone={k: list(answer.get(k) or []) for k in FISHBONE_FIELDS if answer.get(k)},
        root_cause=str(answer.get("root_cause") or ""),
    )


def root_cause_answer(
    whys: list[str], fishbone: Mapping[str, list[str]], root_cause: str = ""
) -> dict[str, Any]:
    """An answer of the root-cause form from the CLI's options (for the open ask)."""
    if len(whys) > WHYS:
        raise InvalidInput(f"at most {WHYS} whys (got {len(whys)})", "why")
    answer: dict[str, Any] = {f"why_{n}": w for n, w in enumerate(whys, 1)}
    return answer | {k: list(v) for k, v in fishbone.items() if v} | {"root_cause": root_cause}
