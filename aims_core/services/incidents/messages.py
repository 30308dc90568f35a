"""What responders are told: the first message when an incident opens, and the message when a
person confirms it serious. Queued in the outbox inside the caller's transaction."""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy.orm import Session

from aims_core.messages import escape, fmt_utc, mention
from aims_core.models import Incident, RegulatoryClock
from aims_core.rules.incident import (
    Classification,
    IncidentPolicy,
    ResolvedCategory,
    Severity,
    Suggestion,
)
from aims_core.services import outbox
from aims_core.services.clocks import card, notify_people
from aims_core.services.directory import role_holders
from aims_core.services.outbox import TARGET_DEFAULT, NotificationIn

KIND_OPENED: Final = "incident-opened"
KIND_SERIOUS: Final = "incident-serious"


def _confirm_hint(incident_id: int, kinds: list[str]) -> str:
    return f"`aims incident confirm-serious {incident_id} --kind {'|'.join(kinds)}`"


def opened_message(
    incident: Incident,
    sev: Severity,
    cat: ResolvedCategory,
    suggestions: list[Suggestion],
) -> tuple[str, list[dict[str, Any]]]:
    """The first message to responders: what, where, how bad, since when, and whether it is
    likely a serious incident someone must confirm (the Art. 73 clock waits for them)."""
    drill = "[DRILL] " if incident.is_drill else ""
    system = incident.system
    owner = mention(system.owner.slack_user_id, system.owner.name)
    what = incident.summary.strip() or incident.title
    hint = _confirm_hint(incident.id, [x.kind for x in suggestions]) if suggestions else ""
    text = (
        f"{drill}{sev.id} {cat.stored} incident #{incident.id} on {system.name}: {what} "
        f"(aware at {fmt_utc(incident.aware_at)})"
    )
    if suggestions:
        text += f". Likely serious: confirm with {hint}"
    lines = [
        f"*System:* {escape(system.name)} ({system.risk_tier.value}-risk), owner {owner}",
        f"*Severity:* {sev.id} {escape(sev.title)}: {sev.response_line()}",
        f"*Category:* {escape(cat.stored)}, playbook `{escape(cat.playbook)}`",
        f"*Aware at:* {fmt_utc(incident.aware_at)}, reported via {escape(incident.source)}",
    ]
    if incident.summary.strip():
        lines.append(escape(incident.summary.strip()))
    if suggestions:
        reasons = "; ".join(f"{x.kind}: {escape(x.reason)}" for x in suggestions)
        lines.append(
            f":warning: *Likely serious incident* ({reasons}). Confirm with {hint}: "
            "the EU AI Act reporting clock counts from the aware-at time."
        )
    header = f"{drill}{sev.id} {cat.stored}: {incident.title}"
    context = f"Incident #{incident.id} · `aims incident show {incident.id}`"
    return text, card(header, "\n".join(lines), context)


def _queue_opened(
    session: Session,
    incident: Incident,
    sev: Severity,
    cat: ResolvedCategory,
    suggestions: list[Suggestion],
    cls: Classification,
) -> None:
    text_, blocks = opened_message(incident, sev, cat, suggestions)
    roles = list(dict.fromkeys([*sev.notify_roles, *cat.category.also_notify]))
    people = [*role_holders(session, roles), incident.system.owner]
    subject = f"incident:{incident.id}"
    notify_people(
        session,
        people,
        key=f"incident-{incident.id}-opened",
        kind=KIND_OPENED,
        subject=subject,
        text=text_,
        blocks=blocks,
    )
    if sev.notify_channel:
        outbox.queue(
            session,
            NotificationIn(
                idempotency_key=f"incident-{incident.id}-opened-channel",
                kind=KIND_OPENED,
                subject=subject,
                target=TARGET_DEFAULT,
                thread_key=f"{subject}-channel",
                text=text_[:3000],
                blocks=blocks,
            ),
        )


def _queue_serious(
    session: Session,
    incident: Incident,
    title: str,
    clocks: list[RegulatoryClock],
    policy: IncidentPolicy,
) -> None:
    """Tell whoever files the report (reminder and escalation roles) and the system owner."""
    roles = list(
        dict.fromkeys(
            [*policy.clocks.defaults.remind_roles, *policy.clocks.defaults.escalate_to_roles]
        )
    )
    people = [*role_holders(session, roles), incident.system.owner]
    drill = "[DRILL] " if incident.is_drill else ""
    due = "; ".join(f"{c.label}: due {fmt_utc(c.deadline)}" for c in clocks) or "no clock applies"
    text_ = (
        f"{drill}Serious incident confirmed: #{incident.id} on {incident.system.name} "
        f"({title}). {due}"
    )
    body = (
        f":rotating_light: *{escape(title)}*: incident #{incident.id} on "
        f"*{escape(incident.system.name)}*: {escape(incident.title)}\n"
        f"Aware at {fmt_utc(incident.aware_at)}.\n"
        + "\n".join(f"• {escape(c.label)}: due *{fmt_utc(c.deadline)}*" for c in clocks)
    )
    notify_people(
        session,
        people,
        key=f"incident-{incident.id}-serious-{incident.serious_kind}",
        kind=KIND_SERIOUS,
        subject=f"incident:{incident.id}",
        text=text_,
        blocks=card(
            f"{drill}Serious incident #{incident.id} confirmed", body, "`aims incidents clocks`"
        ),
    )
