"""The monthly planning pass: a programme covers the current cycle, areas with new
nonconformities join the next planned audit, auditors are assigned and told, overdue audits are
named."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import ClassVar, Final
from zoneinfo import ZoneInfo

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core import catalog
from aims_core.models import Audit, AuditProgramme, AuditStatus, Notification, as_utc
from aims_core.rules.audit import AuditPolicy, audit_policy, auditable
from aims_core.services.audits.checklist import _checklist, _sample_systems, _title
from aims_core.services.audits.independence import _pick_auditor, conflicts
from aims_core.services.audits.notify import _notify
from aims_core.services.audits.periods import _tz, _utc, period_bounds
from aims_core.services.audits.programme import _nonconformities, plan_programme
from aims_core.services.audits.queries import _audit_query, subject
from aims_core.services.audits.schemas import PlanIn
from aims_core.services.passes import PassReport
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

PLANNER: Final = Actor(who="aims-audit-planner", channel="schedule")


OPEN: Final = (AuditStatus.planned, AuditStatus.in_progress, AuditStatus.reporting)


class PlanningReport(PassReport):
    """What one monthly planning pass did."""

    programme: str | None = None
    programme_created: bool = False
    scope_added: list[str] = Field(default_factory=list)
    assigned: list[str] = Field(default_factory=list)
    told: list[str] = Field(default_factory=list)
    unassigned: list[str] = Field(default_factory=list)
    overdue: list[str] = Field(default_factory=list)

    summary_parts: ClassVar[tuple[tuple[str, str], ...]] = (
        ("scope_added", "scope added"),
        ("assigned", "auditors assigned"),
        ("told", "told"),
        ("unassigned", "unassigned"),
        ("overdue", "overdue"),
    )

    def summary(self) -> str:
        created = " (created)" if self.programme_created else ""
        return f"programme {self.programme or '-'}{created}, {super().summary()}"

    def rows(self) -> list[dict[str, str]]:
        rows = [{"what": "programme created", "detail": self.programme or ""}] * (
            1 if self.programme_created else 0
        )
        for what, items in (
            ("scope added", self.scope_added),
            ("auditor assigned", self.assigned),
            ("auditor told", self.told),
            ("no independent auditor", self.unassigned),
            ("overdue", self.overdue),
        ):
            rows += [{"what": what, "detail": item} for item in items]
        return rows or [{"what": "nothing to do", "detail": self.programme or ""}]


def _current_programme(session: Session, at: datetime) -> AuditProgramme | None:
    return session.scalar(
        select(AuditProgramme)
        .where(AuditProgramme.starts_on <= at, AuditProgramme.ends_on > at)
        .order_by(AuditProgramme.created_at.desc())
    )


def _add_new_nonconformities(
    uow: UnitOfWork, policy: AuditPolicy, tz: ZoneInfo, programme_id: int, at: datetime
) -> list[str]:
    """Areas with nonconformities in the window that no audit of the next 12 months covers join
    the next planned audit's scope (its checklist regenerated; its auditor re-checked)."""
    added: list[str] = []
    since = at - timedelta(days=round(policy.weighting.nonconformity_months * 30.44))
    horizon = at + timedelta(days=366)
    with uow:
        s = uow.session
        ncs = _nonconformities(s, policy, since)
        audits = list(
            s.scalars(
                _audit_query()
                .where(Audit.programme_id == programme_id, Audit.status != AuditStatus.cancelled)
                .order_by(Audit.planned_start)
                .with_for_update(of=Audit)
            )
        )
        ppy = policy.periods_per_year
        live = [a for a in audits if period_bounds(a.period, ppy, tz)[1] > at]
        soon = [a for a in live if as_utc(a.planned_start) <= horizon]
        target = next(
            (a for a in live if a.status is AuditStatus.planned and as_utc(a.planned_start) > at),
            None,
        ) or next((a for a in live if a.status is AuditStatus.planned), None)
        if target is None:
            return added
        order = {r.id: r.position for r in catalog.requirements()}
        members: dict[str, list[str]] = defaultdict(list)
        for r in auditable():
            area = policy.area_of(r.id)
            if area is not None:
                members[area.id].append(r.id)
        for area_id, items in ncs.items():
            reqs = members.get(area_id, [])
            if all(any(c in a.scope for a in soon) for c in reqs):
                continue
            new = [c for c in reqs if c not in target.scope]
            if not new:
                continue
            why = (
                f"{policy.area(area_id).title}: added by the monthly planning pass, "
                f"nonconformities since planning ({'; '.join(items)})"
            )
            target.scope = sorted([*target.scope, *new], key=lambda c: order[c])
            target.scope_reasons = {**target.scope_reasons, **dict.fromkeys(new, why)}
            target.title = _title(policy, target.period, list(target.scope))
            if not target.systems and policy.area(area_id).system_facing:
                target.systems = _sample_systems(s, policy, 0)
            target.checklist = _checklist(s, policy, list(target.scope), list(target.systems))
            uow.audit(
                PLANNER,
                "audit.scope-added",
                subject(target.id),
                area=area_id,
                requirements=new,
                reason=why,
            )
            added.append(f"audit {target.id} ({target.period}): {area_id} ({', '.join(new)})")
            if target.auditor is not None and conflicts(s, policy, target, target.auditor):
                uow.audit(
                    PLANNER,
                    "audit.auditor-unassigned",
                    subject(target.id),
                    auditor=target.auditor.email,
                    reason="no longer independent",
                )
                target.auditor = None
        s.flush()
        uow.commit()
    return added


def planning_pass(settings: Settings, now: datetime | None = None) -> PlanningReport:
    """One monthly pass: a programme covers the current cycle (planned if none does), areas with
    new nonconformities join the next planned audit, audits starting within a month get an
    independent auditor who is told (once per audit and auditor), overdue audits are named."""
    at = _utc(now)
    report = PlanningReport(at=at)
    policy, tz = audit_policy(settings), _tz(settings)
    uow = UnitOfWork(settings)
    with uow.read():
        current = _current_programme(uow.session, at)
        programme_id = current.id if current else None
    if programme_id is None:
        result = plan_programme(uow, PlanIn(), PLANNER, now=at)
        programme_id = result.programme.id
        report.programme_created = result.created
        report.unassigned += result.unassigned
    report.scope_added = _add_new_nonconformities(uow, policy, tz, programme_id, at)
    month = at + timedelta(days=31)
    with uow:
        s = uow.session
        programme = s.get(AuditProgramme, programme_id)
        assert programme is not None
        report.programme = programme.name
        due = list(
            s.scalars(
                _audit_query()
                .where(
                    Audit.programme_id == programme_id,
                    Audit.status == AuditStatus.planned,
                    Audit.planned_start <= month,
                )
                .order_by(Audit.planned_start)
                .with_for_update(of=Audit)
            )
        )
        for a in due:
            if a.auditor is None:
                who, why = _pick_auditor(s, policy, a, programme_id)
                if who is None:
                    report.unassigned.append(f"audit {a.id} ({a.period}): {why}")
                    continue
                a.auditor = who
                s.flush()
                uow.audit(PLANNER, "audit.auditor-assigned", subject(a.id), auditor=who.email)
                report.assigned.append(f"audit {a.id} ({a.period}): {who.email}")
            assert a.auditor is not None
            key = f"audit-{a.id}-assigned-to-{a.auditor.id}"
            if s.scalar(select(Notification.id).where(Notification.idempotency_key == key)) is None:
                _notify(
                    s,
                    key,
                    "audit-assigned",
                    a,
                    a.auditor,
                    f"You audit {a.title} from {as_utc(a.planned_start).astimezone(tz):%Y-%m-%d}: "
                    f"{len(a.scope)} requirements, systems {', '.join(a.systems) or '-'}. "
                    f"Checklist: `aims audit show {a.id}`; to begin: `aims audit start {a.id}`.",
                )
                uow.audit(PLANNER, "audit.auditor-told", subject(a.id), auditor=a.auditor.email)
                report.told.append(f"audit {a.id} ({a.period}): {a.auditor.email}")
        overdue = s.scalars(
            _audit_query().where(Audit.status.in_(OPEN)).order_by(Audit.planned_start)
        )
        for a in overdue:
            _, end = period_bounds(a.period, policy.periods_per_year, tz)
            if end <= at:
                report.overdue.append(
                    f"audit {a.id} ({a.period}, {a.programme.name}): {a.status.value}, period "
                    f"ended {end.astimezone(tz):%Y-%m-%d}"
                )
        uow.commit()
    return report
