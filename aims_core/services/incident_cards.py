"""What an incident response shows people: Markdown for evidence, the run's timeline artifact and
approvers, and the Block Kit card of its messages.

Text built from the incident, its playbook and the facts the run fixed; the one read is the
evidence checklist (which records the playbook asks for exist). The incident-response flow
writes these as evidence and artifacts; nothing here sends or stores anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from aims_core.messages import escape
from aims_core.rules.playbooks import (
    HookResult,
    Playbook,
    ResponsePlan,
    Situation,
    Step,
    StepApproval,
)
from aims_core.services import evidence, hooks
from aims_core.services.clocks import card
from aims_core.services.incidents import IncidentOut
from aims_core.settings import Settings


class Decided(Protocol):
    """An approval's outcome as the flow holds it (`tasks.approval.ApprovalOutcome`)."""

    request_id: int
    status: str
    approvals: list[str]
    rejections: list[str]


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "/")


def _at(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"


def notice(
    r: ResponsePlan, header: str, body: str, extra: str = ""
) -> tuple[str, list[dict[str, Any]]]:
    """A message to responders: its plain text and its card (a drill's say [DRILL])."""
    text = f"{r.tag}{header}. {body}" + (f" {extra}" if extra else "")
    blocks = card(
        f"{r.tag}{header}",
        escape(body) + (f"\n\n*{escape(extra)}*" if extra else ""),
        f"Incident #{r.incident_id} · `aims incident show {r.incident_id}`",
    )
    return text, blocks


def report_markdown(incident: IncidentOut, playbook: Playbook, s: Situation) -> str:
    lines = [
        f"# Incident {incident.id}{' (drill)' if incident.is_drill else ''}: {incident.title}",
        "",
        f"- **system**: {incident.system} ({incident.system_tier}-risk, {s.stage})",
        f"- **severity**: {incident.severity}; **category**: {incident.category}",
        f"- **source**: {incident.source}; **aware at**: {_at(incident.aware_at)}; "
        f"**reported at**: {_at(incident.reported_at)}",
        f"- **playbook**: {playbook.id} — {playbook.title} ({playbook.source})",
    ]
    if incident.serious_suggested:
        lines.append(f"- **likely serious**: {', '.join(incident.serious_suggested)}")
    if incident.summary:
        lines += ["", incident.summary]
    return "\n".join(lines) + "\n"


def rca_markdown(incident: IncidentOut) -> str:
    rca = incident.root_cause
    lines = [f"# Root cause analysis of incident {incident.id}: {incident.title}", ""]
    lines += [f"{n}. Why? {why}" for n, why in enumerate(rca.get("whys", []), 1)]
    for category, causes in (rca.get("fishbone") or {}).items():
        lines.append(f"- **{category}**: {'; '.join(causes)}")
    lines += ["", f"**Root cause**: {rca.get('root_cause', '-')}"]
    return "\n".join(lines) + "\n"


def step_markdown(step: Step, status: str, hook: HookResult | None) -> str:
    lines = [f"# {step.title}", "", f"- **step**: {step.id} ({step.phase})"]
    lines.append(f"- **outcome**: {status}")
    if step.instructions:
        lines.append(f"- **instructions**: {' '.join(step.instructions.split())}")
    if hook is not None:
        lines += [
            f"- **hook**: {hook.kind} `{hook.target}`",
            f"- **started**: {_at(hook.started_at)}"
            + (f"; **finished**: {_at(hook.finished_at)}" if hook.finished_at else ""),
            "",
            "```",
            hook.output.strip() or "(no output)",
            "```",
        ]
    return "\n".join(lines) + "\n"


def decision_markdown(outcome: Decided, reasons: str = "") -> str:
    return (
        f"- **request**: {outcome.request_id}, {outcome.status}\n"
        f"- **approved by**: {', '.join(outcome.approvals) or '-'}\n"
        f"- **rejected by**: {', '.join(outcome.rejections) or '-'}\n"
        + (f"- **reasons**: {reasons}\n" if reasons else "")
    )


def serious_decision(incident: IncidentOut, dismissed: str) -> tuple[str, str]:
    """The title and text of the serious-or-not decision's evidence (`dismissed`: the timeline
    kind of a "not serious" answer)."""
    decided = next(
        (e for e in reversed(incident.timeline) if e.kind in ("serious-confirmed", dismissed)),
        None,
    )
    title = f"Incident {incident.id}: serious incident " + (
        f"confirmed ({incident.serious_kind})" if incident.serious_kind else "not confirmed"
    )
    text = (
        f"- **suggested**: {', '.join(incident.serious_suggested)}\n"
        f"- **decision**: {decided.text if decided else '-'}\n"
        f"- **by**: {decided.actor if decided else '-'}\n"
    )
    return title, text


def step_request_details(
    incident: IncidentOut, r: ResponsePlan, step: Step, approval: StepApproval
) -> str:
    """What the approvers of a step read: the incident, the step, and what it will call."""
    target = hooks.target_of(step.hook, r.situation.values(step.id)) if step.hook else "by hand"
    return (
        f"{incident.severity} {incident.category} on {incident.system}: {incident.title}\n\n"
        f"Step **{step.id}** ({step.phase}) needs approval here "
        f"({approval.when.describe()}): {step.title}.\n"
        f"It will call: `{target}`" + (" (drill: rehearsed only)" if r.drill else "")
    )


def evidence_checklist(
    settings: Settings, incident: IncidentOut, playbook: Playbook
) -> list[tuple[str, str, str]]:
    """(kind, what, collected records) for each piece of evidence the playbook asks for: on the
    incident, or on the system since the incident was reported."""
    out = []
    for item in playbook.evidence:
        found = [
            e
            for subject in (f"incident:{incident.id}", f"system:{incident.system}")
            for e in evidence.list_evidence(settings, subject=subject, kind=item.kind)
            if subject.startswith("incident:") or e.created_at >= incident.reported_at
        ]
        out.append((item.kind, item.title, ", ".join(f"#{e.id}" for e in found) or "missing"))
    return out


def closure_details(settings: Settings, incident: IncidentOut, playbook: Playbook) -> str:
    """What the closure approvers read: steps, root cause, lessons, who was told, evidence."""
    steps = [e for e in incident.timeline if e.kind in ("triage", "containment", "recovery")]
    told = [e for e in incident.timeline if e.kind == "stakeholders"]
    lines = [
        f"{incident.severity} {incident.category} on {incident.system}: {incident.title}",
        "",
        "**Playbook steps**",
        *(f"- {e.text}" for e in steps),
        "",
        f"**Root cause**: {incident.root_cause.get('root_cause', '-')}",
        f"**Lessons learned**: {incident.lessons or '-'}",
        f"**Serious incident**: {incident.serious_kind or 'no'}",
        "",
        "**Stakeholders**",
        *(f"- {e.text}" for e in told),
        "",
        "**Evidence the playbook asks for**",
        *(
            f"- {kind} ({what}): {found}"
            for kind, what, found in evidence_checklist(settings, incident, playbook)
        ),
    ]
    return "\n".join(lines)[:20_000]


def timeline_markdown(
    settings: Settings, incident: IncidentOut, playbook: Playbook, s: Situation
) -> str:
    """The run's artifact and the closing evidence: report, timeline, clocks, checklist."""
    lines = [
        report_markdown(incident, playbook, s),
        f"**Status**: {incident.status.value}"
        + (f" · **serious**: {incident.serious_kind}" if incident.serious_kind else ""),
        "",
        "| at | what | text | by |",
        "|---|---|---|---|",
        *(
            f"| {e.at:%Y-%m-%d %H:%M:%S} | {e.kind} | {_cell(e.text)} | {_cell(e.actor)} |"
            for e in incident.timeline
        ),
    ]
    if incident.clocks:
        lines += ["", "| clock | deadline | status |", "|---|---|---|"]
        lines += [
            f"| {_cell(c.label)} | {_at(c.deadline)} | {c.status.value} |" for c in incident.clocks
        ]
    checklist = evidence_checklist(settings, incident, playbook)
    if checklist:
        lines += ["", "| evidence asked for | kind | records |", "|---|---|---|"]
        lines += [f"| {_cell(what)} | {kind} | {found} |" for kind, what, found in checklist]
    return "\n".join(lines) + "\n"


def stakeholders_markdown(told: dict[str, Sequence[str]]) -> str:
    """Who each audience's message reached (the stakeholder notification's evidence)."""
    return "\n".join(f"- **{a}**: {', '.join(who)}" for a, who in told.items()) or "nobody to tell"
