"""What one person owns or may decide: `aims people show` lists it, deactivation moves it.

One list, so what `show` prints is exactly what a deactivation asks to reassign. Only open
work counts: a closed CAPA, a done task or a completed assessment keeps its owner as history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.models import (
    AISystem,
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStatus,
    Audit,
    AuditStatus,
    Capa,
    CapaAction,
    CapaStatus,
    ExceptionStatus,
    Person,
    PlanTask,
    PlanTaskStatus,
    Policy,
    PolicyException,
    RaciActivity,
    ReviewAction,
    Risk,
    RiskStatus,
    Vendor,
    VendorAssessment,
    VendorAssessmentStatus,
)
from aims_core.services.people.schemas import Holding, HoldingKind

__all__ = ["Held", "held_by"]


@dataclass(frozen=True)
class Held:
    """A holding with the row behind it: `attr` is the relationship naming the person, and
    `subject` the audit subject the row's own service uses."""

    kind: HoldingKind
    label: str
    subject: str
    row: Any
    attr: str
    must_reassign: bool

    def out(self) -> Holding:
        return Holding(kind=self.kind, label=self.label, must_reassign=self.must_reassign)


def _system(row: Any) -> str:
    return row.system.name if row.system is not None else "organisation"


def held_by(session: Session, person: Person) -> list[Held]:
    """Everything `person` owns (open work), is Accountable for, audits, or may still decide."""
    pid = person.id
    out: list[Held] = [
        Held("system", f"system {s.name}", f"system:{s.name}", s, "owner", True)
        for s in session.scalars(
            select(AISystem).where(AISystem.owner_id == pid).order_by(AISystem.name)
        )
    ]
    out += [
        Held(
            "raci",
            f"RACI {r.activity} ({_system(r)}) accountable",
            _raci(r),
            r,
            "accountable",
            True,
        )
        for r in session.scalars(
            select(RaciActivity)
            .where(RaciActivity.accountable_id == pid)
            .order_by(RaciActivity.activity, RaciActivity.scope)
        )
    ]
    out += [
        Held("capa", f"CAPA-{c.id} '{c.title}'", f"capa:{c.id}", c, "owner", True)
        for c in session.scalars(
            select(Capa)
            .where(Capa.owner_id == pid, Capa.status != CapaStatus.closed)
            .order_by(Capa.id)
        )
    ]
    out += [
        Held(
            "capa-action",
            f"CAPA-{a.capa_id} action {a.id} '{a.title}'",
            f"capa:{a.capa_id}",
            a,
            "owner",
            True,
        )
        for a in session.scalars(
            select(CapaAction)
            .join(Capa, Capa.id == CapaAction.capa_id)
            .where(
                CapaAction.owner_id == pid,
                CapaAction.done_at.is_(None),
                CapaAction.attempt == Capa.attempt,
                Capa.status != CapaStatus.closed,
            )
            .order_by(CapaAction.id)
        )
    ]
    out += [
        Held(
            "plan-task",
            f"plan task {t.id} '{t.title}' ({t.requirement_id})",
            f"plan:{t.id}",
            t,
            "owner",
            True,
        )
        for t in session.scalars(
            select(PlanTask)
            .where(PlanTask.owner_id == pid, PlanTask.status == PlanTaskStatus.open)
            .order_by(PlanTask.id)
        )
    ]
    out += [
        Held("risk", f"risk {r.id} '{r.title}' ({r.system.name})", f"risk:{r.id}", r, "owner", True)
        for r in session.scalars(
            select(Risk)
            .where(Risk.owner_id == pid, Risk.status != RiskStatus.closed)
            .order_by(Risk.id)
        )
    ]
    out += [
        Held("policy", f"policy {p.key}", f"policy:{p.key}", p, "owner", True)
        for p in session.scalars(select(Policy).where(Policy.owner_id == pid).order_by(Policy.key))
    ]
    out += [
        Held(
            "policy-exception",
            f"policy exception {e.id} '{e.title}'",
            f"policy:{e.policy.key}",
            e,
            "owner",
            True,
        )
        for e in session.scalars(
            select(PolicyException)
            .where(PolicyException.owner_id == pid, PolicyException.status == ExceptionStatus.open)
            .order_by(PolicyException.id)
        )
    ]
    out += [
        Held(
            "review-action",
            f"review action {a.id} '{_short(a.decision)}'",
            f"review-action:{a.id}",
            a,
            "owner",
            True,
        )
        for a in session.scalars(
            select(ReviewAction)
            .where(ReviewAction.owner_id == pid, ReviewAction.status == "open")
            .order_by(ReviewAction.id)
        )
    ]
    out += [
        Held("vendor", f"vendor {v.name}", f"vendor:{v.name}", v, "owner", True)
        for v in session.scalars(select(Vendor).where(Vendor.owner_id == pid).order_by(Vendor.name))
    ]
    out += [
        Held(
            "vendor-assessment",
            f"vendor assessment {a.id} ({_vendor_name(session, a)})",
            f"vendor:{_vendor_name(session, a)}",
            a,
            "assessor",
            True,
        )
        for a in session.scalars(
            select(VendorAssessment)
            .where(
                VendorAssessment.assessor_id == pid,
                VendorAssessment.status == VendorAssessmentStatus.open,
            )
            .order_by(VendorAssessment.id)
        )
    ]
    # A planned audit loses its auditor (the planner picks an independent one again); one under
    # way needs someone to finish it.
    out += [
        Held(
            "audit",
            f"audit {a.id} ({a.period}, {a.status.value}) auditor",
            f"audit:{a.id}",
            a,
            "auditor",
            a.status is not AuditStatus.planned,
        )
        for a in session.scalars(
            select(Audit)
            .where(
                Audit.auditor_id == pid,
                Audit.status.in_(
                    (AuditStatus.planned, AuditStatus.in_progress, AuditStatus.reporting)
                ),
            )
            .order_by(Audit.id)
        )
    ]
    out += [
        Held(
            "approval", f"approval {r.id} '{r.title}' (eligible)", f"approval:{r.id}", r, "", False
        )
        for r in session.scalars(
            select(ApprovalRequest)
            .join(ApprovalApprover, ApprovalApprover.request_id == ApprovalRequest.id)
            .where(ApprovalApprover.person_id == pid, ApprovalRequest.status == ApprovalStatus.open)
            .order_by(ApprovalRequest.id)
        )
    ]
    return out


def _raci(r: RaciActivity) -> str:
    """The RACI service's subject: `raci:<activity>@<system or org>`."""
    return f"raci:{r.activity}@{r.system.name if r.system is not None else 'org'}"


def _vendor_name(session: Session, a: VendorAssessment) -> str:
    vendor = session.get(Vendor, a.vendor_id)
    return vendor.name if vendor is not None else str(a.vendor_id)


def _short(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
