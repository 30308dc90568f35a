"""The CAPA report: the run's artifact and `aims capa show --markdown`.

The 10.2 checklist, the actions, the effectiveness verifications, the similar open CAPAs and the
timeline from the audit trail, in one Markdown page.
"""

from __future__ import annotations

from sqlalchemy import select

from aims_core.models import AuditEvent, CapaStatus, as_utc
from aims_core.services.capa.queries import capa_out, load_capa, similar_rows
from aims_core.services.capa.schemas import subject
from aims_core.uow import UnitOfWork


def report_markdown(uow: UnitOfWork, capa_id: int) -> str:
    """The 10.2 checklist, actions, verifications, similar open CAPAs and the timeline."""
    with uow.read():
        s = uow.session
        row = load_capa(s, capa_id)
        c = capa_out(s, row)
        similar = [(x.id, x.title, x.status.value) for x in similar_rows(s, row)]
        events = list(
            s.execute(
                select(AuditEvent.at, AuditEvent.action, AuditEvent.actor, AuditEvent.channel)
                .where(
                    AuditEvent.subject == subject(capa_id), AuditEvent.action.startswith("capa.")
                )
                .order_by(AuditEvent.id)
            )
        )
    order = list(CapaStatus)
    reached = order.index(c.status)

    def box(step: CapaStatus, text: str) -> str:
        return f"- [{'x' if reached > order.index(step) else ' '}] {text}"

    rc = c.root_cause
    lines = [
        f"## CAPA {c.id}: {c.title} — {c.status.value.upper()}",
        "",
        f"- **source**: {c.source}" + (f" (incident {c.incident_id})" if c.incident_id else ""),
        f"- **system**: {c.system or '-'} · **control**: {c.control_id or '-'} · "
        f"**owner**: {c.owner} · **attempt**: {c.attempt}",
        f"- **next**: {c.next_step}",
        "",
        "### ISO/IEC 42001 10.2 checklist",
        "",
        box(CapaStatus.containment, "react: contain and correct, deal with the consequences"),
        box(
            CapaStatus.root_cause,
            f"determine the cause (attempt {c.attempt})" + (f": {rc.root_cause}" if rc else ""),
        ),
        box(CapaStatus.root_cause, "check for similar nonconformities")
        + (f": {', '.join(f'CAPA {i}' for i in rc.similar) or 'none'}" if rc else ""),
        box(CapaStatus.action_plan, f"plan actions ({len(c.current_actions)})"),
        box(
            CapaStatus.tracking,
            f"implement actions ({len(c.current_actions) - len(c.open_actions)} of "
            f"{len(c.current_actions)} done)",
        ),
        box(CapaStatus.verification, "review the effectiveness of the actions"),
        box(CapaStatus.awaiting_closure, "closure approved, records kept"),
    ]
    if c.actions:
        lines += ["", "### Actions", "", "| # | attempt | action | owner | due | done |"]
        lines.append("|---|---|---|---|---|---|")
        for a in c.actions:
            done = f"{a.done_at:%Y-%m-%d}" if a.done_at else "-"
            lines.append(
                f"| {a.id} | {a.attempt} | {_cell(a.title)} | {a.owner} | {a.due} | {done} |"
            )
    if c.verifications:
        lines += ["", "### Effectiveness verifications", ""]
        for v in c.verifications:
            verdict = "effective" if v.effective else "**not effective**"
            lines.append(
                f"- {v.number} (attempt {v.attempt}, {v.at:%Y-%m-%d}): {verdict} by "
                f"{v.verifier or v.recorded_by} — {_cell(v.evidence)}"
                + (f" · closure {v.closure}" if v.closure else "")
            )
    lines += ["", "### Similar open CAPAs (same system or control)", ""]
    lines += [f"- CAPA {i}: {_cell(t)} ({st})" for i, t, st in similar] or ["- none"]
    lines += ["", "### Timeline", "", "| when (UTC) | what | who | via |", "|---|---|---|---|"]
    lines += [
        f"| {as_utc(e.at):%Y-%m-%d %H:%M} | {e.action.removeprefix('capa.')} | {e.actor} | "
        f"{e.channel} |"
        for e in events
    ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:200]
