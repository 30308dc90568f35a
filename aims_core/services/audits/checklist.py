"""What an audit looks at: the sampled systems and, per requirement, the checklist of
questions, evidence to look for and the records the engine holds."""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aims_core import catalog
from aims_core.models import AISystem, Capa, ControlKind, Evidence, LifecycleStage, SoaEntry
from aims_core.rules.audit import AuditPolicy
from aims_core.services.audits.queries import _areas_of

_TIER_ORDER: Final = {t: i for i, t in enumerate(("high", "prohibited", "limited", "gpai"))}
_CRIT_ORDER: Final = {c: i for i, c in enumerate(("critical", "high", "medium", "low"))}


def _sample_systems(session: Session, policy: AuditPolicy, index: int) -> list[str]:
    """High-risk systems first (most critical first); the other slots rotate across periods."""
    rows = list(
        session.execute(
            select(AISystem.name, AISystem.risk_tier, AISystem.criticality).where(
                AISystem.lifecycle_stage != LifecycleStage.decommission
            )
        )
    )

    def rank(r: Any) -> tuple[int, int, str]:
        return (
            _TIER_ORDER.get(r.risk_tier.value, 9),
            _CRIT_ORDER.get(r.criticality.value, 9),
            r.name,
        )

    rows.sort(key=rank)
    first = [r.name for r in rows if r.risk_tier in policy.weighting.high_risk_tiers]
    rest = [r.name for r in rows if r.risk_tier not in policy.weighting.high_risk_tiers]
    n = policy.systems_per_audit
    if rest:
        shift = index % len(rest)
        rest = rest[shift:] + rest[:shift]
    return (first + rest)[:n]


def _kinds_for(requirement: str) -> list[catalog.EvidenceKind]:
    """Evidence kinds the catalog maps to this requirement, its parents or its children."""

    def related(c: str) -> bool:
        return (
            c == requirement or c.startswith(requirement + ".") or requirement.startswith(c + ".")
        )

    return [k for k in catalog.evidence_kinds().values() if any(related(c) for c in k.controls)]


def _checklist(
    session: Session, policy: AuditPolicy, scope: list[str], systems: list[str]
) -> list[dict[str, Any]]:
    """Per requirement: the question, what evidence to look for, and the records the engine
    holds now (evidence of those kinds, the SoA decision, CAPAs on it)."""
    reqs = {r.id: r for r in catalog.requirements()}
    ev_counts = dict(
        session.execute(select(Evidence.kind, func.count()).group_by(Evidence.kind)).all()
    )
    subjects = [f"system:{s}" for s in systems]
    per_system: dict[tuple[str, str], int] = {}
    if subjects:
        per_system = {
            (k, s): n
            for k, s, n in session.execute(
                select(Evidence.kind, Evidence.subject, func.count())
                .where(Evidence.subject.in_(subjects))
                .group_by(Evidence.kind, Evidence.subject)
            )
        }
    soa = {
        e.control_id: e
        for e in session.scalars(select(SoaEntry).where(SoaEntry.control_id.in_(scope)))
    }
    capa_rows = list(
        session.execute(
            select(Capa.id, Capa.control_id, Capa.status).where(Capa.control_id.in_(scope))
        )
    )
    items = []
    for cid in scope:
        req = reqs[cid]
        area = policy.area_of(cid)
        if req.kind is ControlKind.annex_control:
            question = (
                f"Is control {cid} ({req.title}) implemented as the Statement of Applicability "
                "says, and effective on the sampled systems?"
            )
        else:
            question = (
                f"How does the organisation meet {cid} ({req.title})? Show the documented "
                "information and the records that it is done."
            )
        kinds = _kinds_for(cid)
        records = []
        for k in kinds:
            n = ev_counts.get(k.id, 0)
            mine = ", ".join(
                f"{s} {per_system[(k.id, f'system:{s}')]}"
                for s in systems
                if (k.id, f"system:{s}") in per_system
            )
            records.append(f"{k.id}: {n} record(s)" + (f" ({mine})" if mine else ""))
        if req.kind is ControlKind.annex_control:
            e = soa.get(cid)
            records.append(
                "SoA: not decided"
                if e is None
                else f"SoA: {'applicable' if e.applicable else 'not applicable'}"
                + (f" — {e.justification}" if e.justification else "")
            )
        mine_capas = [(i, st) for i, c, st in capa_rows if c == cid]
        if mine_capas:
            still = sum(1 for _, st in mine_capas if st.value != "closed")
            records.append(
                f"CAPAs on {cid}: {', '.join(str(i) for i, _ in mine_capas)} ({still} open)"
            )
        items.append(
            {
                "control": cid,
                "title": req.title,
                "area": area.id if area else None,
                "question": question,
                "look_for": [f"{k.title} ({k.id})" for k in kinds]
                or ["documented information showing the requirement is met"],
                "records": records,
            }
        )
    return items


def _title(policy: AuditPolicy, period: str, scope: list[str]) -> str:
    names = [policy.area(a).title for a in _areas_of(policy, scope)]
    return f"Internal audit {period}: {'; '.join(names)}"[:300]
