"""The implementation plan: one task per open gap of the latest approved gap assessment.

Made when an assessment is approved (`make_plan`, inside that transaction): phases, milestones,
priorities, due dates, dependencies and closing evidence come from `gap_plan.yaml`, owners from
RACI. A task closes when the evidence it names is recorded (`close_task`, or the daily `tick`,
which also finds it); the tick reminds owners before the due date and daily while overdue, and
escalates once — every message through the outbox, with keys that make a pass idempotent per
day. A newer approved assessment supersedes the open tasks of the previous plan. No Prefect here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import ClassVar, Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from aims_core import catalog
from aims_core.errors import AimsError, Conflict, InvalidInput, NotFound
from aims_core.models import (
    AISystem,
    Evidence,
    GapAssessment,
    GapStatus,
    Person,
    PlanTask,
    PlanTaskStatus,
    RaciActivity,
    RaciKind,
    RiskTier,
    as_utc,
)
from aims_core.rules.gap import GAPS, GapPlan, plan_policy
from aims_core.services import outbox
from aims_core.services.directory import escalation_contacts, role_holders
from aims_core.services.passes import PassReport, each
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork, locked

TRACKER: Final = Actor(who="aims-plan-tracker", channel="schedule")


def subject(task_id: int) -> str:
    return f"plan:{task_id}"


def _now(now: datetime | None) -> datetime:
    return as_utc(now) if now is not None else datetime.now(UTC)


def _day(at: datetime, settings: Settings) -> date:
    return as_utc(at).astimezone(ZoneInfo(settings.timezone)).date()


class TaskOut(BaseModel):
    id: int
    assessment_id: int
    requirement: str
    title: str
    phase: str
    milestone: str
    priority: str
    rank: int
    owner: str
    owner_name: str
    due_at: datetime
    depends_on: list[str]
    evidence_kind: str
    status: PlanTaskStatus
    evidence_id: int | None
    done_at: datetime | None
    overdue: bool

    @property
    def subject(self) -> str:
        return subject(self.id)


def _task_out(t: PlanTask, now: datetime) -> TaskOut:
    due = as_utc(t.due_at)
    return TaskOut(
        id=t.id,
        assessment_id=t.assessment_id,
        requirement=t.requirement_id,
        title=t.title,
        phase=t.phase,
        milestone=t.milestone,
        priority=t.priority,
        rank=t.rank,
        owner=t.owner.email,
        owner_name=t.owner.name,
        due_at=due,
        depends_on=list(t.depends_on or []),
        evidence_kind=t.evidence_kind,
        status=t.status,
        evidence_id=t.evidence_id,
        done_at=as_utc(t.done_at) if t.done_at else None,
        overdue=t.status is PlanTaskStatus.open and due < now,
    )


# --- making the plan ---------------------------------------------------------------------------


def _owner(session: Session, policy: GapPlan, requirement: str) -> Person:
    """Responsible (first), else Accountable, of the requirement's RACI activity; else a holder
    of the fallback role. Refuses (naming what to set) when nobody can own it."""
    for activity in dict.fromkeys([policy.activity_for(requirement), policy.default_activity]):
        raci = session.scalar(
            select(RaciActivity)
            .where(RaciActivity.activity == activity, RaciActivity.scope == "org")
            .options(selectinload(RaciActivity.members))
        )
        if raci is None:
            continue
        responsible = [
            m.person for m in raci.members if m.kind is RaciKind.responsible and m.person.active
        ]
        if responsible:
            return responsible[0]
        if raci.accountable.active:
            return raci.accountable
    holder = next(iter(role_holders(session, [policy.fallback_role])), None)
    if holder is None:
        raise Conflict(
            f"nobody can own the plan task for {requirement}: set a RACI for "
            f"{policy.activity_for(requirement)} (`aims raci set`) or give someone the role "
            f"{policy.fallback_role}",
            "owner",
        )
    return holder


def _due(policy: GapPlan, phase_id: str, priority: str, start: datetime, tz: str) -> datetime:
    """The end of the due day, in the organisation's time zone."""
    phase = next(p for p in policy.phases if p.id == phase_id)
    zone = ZoneInfo(tz)
    day = as_utc(start).astimezone(zone).date() + timedelta(days=phase.due_days[priority])  # type: ignore[index]
    return datetime.combine(day, time(23, 59, 59), zone).astimezone(UTC)


def make_plan(
    uow: UnitOfWork, assessment: GapAssessment, at: datetime, actor: Actor
) -> list[PlanTask]:
    """One task per gap of an approved assessment, inside the caller's transaction. Open tasks
    of earlier plans are superseded. Idempotent: an assessment's plan is made once."""
    s = uow.session
    existing = list(s.scalars(select(PlanTask).where(PlanTask.assessment_id == assessment.id)))
    if existing:
        return existing
    policy = plan_policy(uow.settings)
    high_risk = bool(
        s.scalar(select(AISystem.id).where(AISystem.risk_tier == RiskTier.high).limit(1))
    )
    titles = {r.id: r.title for r in catalog.requirements()}
    phases = [p.id for p in policy.phases]
    gaps = [a for a in assessment.answers if a.status in GAPS]
    planned = []
    for a in gaps:
        phase = policy.phase_of(a.requirement_id)
        assert phase is not None  # the policy's check makes every requirement fall in a phase
        points = policy.priority.points_for(a.requirement_id, a.status or "", high_risk)
        planned.append((phases.index(phase.id), -points, a.position, a, phase, points))
    planned.sort(key=lambda x: x[:3])
    gap_ids = {a.requirement_id for a in gaps}
    for old in s.scalars(
        select(PlanTask).where(
            PlanTask.status == PlanTaskStatus.open, PlanTask.assessment_id != assessment.id
        )
    ):
        old.status = PlanTaskStatus.superseded
        uow.audit(actor, "plan.task-superseded", subject(old.id), by_assessment=assessment.id)
    tasks = []
    for rank, (_, _, _, a, phase, points) in enumerate(planned, 1):
        priority = policy.priority.band(points)
        verb = "Close the gap" if a.status == "not-conforming" else "Complete"
        task = PlanTask(
            assessment_id=assessment.id,
            requirement_id=a.requirement_id,
            title=f"{verb}: {a.requirement_id} {titles[a.requirement_id]}"[:300],
            phase=phase.id,
            milestone=phase.milestone,
            priority=priority,
            rank=rank,
            owner=_owner(s, policy, a.requirement_id),
            due_at=_due(policy, phase.id, priority, at, uow.settings.timezone),
            depends_on=[d for d in policy.depends_on.get(a.requirement_id, []) if d in gap_ids],
            evidence_kind=policy.evidence_kind_for(a.requirement_id),
            status=PlanTaskStatus.open,
            created_at=at,
        )
        s.add(task)
        tasks.append(task)
    s.flush()
    for task in tasks:
        uow.audit(
            actor,
            "plan.task-created",
            subject(task.id),
            assessment_id=assessment.id,
            requirement=task.requirement_id,
            owner=task.owner.email,
            due=task.due_at.isoformat(),
            evidence_kind=task.evidence_kind,
        )
    return tasks


# --- reading -----------------------------------------------------------------------------------


def _query():  # type: ignore[no-untyped-def]
    return select(PlanTask).options(selectinload(PlanTask.owner)).order_by(PlanTask.rank)


def current_plan_id(session: Session) -> int | None:
    """The assessment whose plan is current: the latest approved one."""
    return session.scalar(
        select(GapAssessment.id)
        .where(GapAssessment.status == GapStatus.approved)
        .order_by(GapAssessment.approved_at.desc(), GapAssessment.id.desc())
        .limit(1)
    )


def list_tasks(
    uow: UnitOfWork,
    *,
    assessment_id: int | None = None,
    open_only: bool = False,
    now: datetime | None = None,
) -> list[TaskOut]:
    """The current plan's tasks (or the plan of `assessment_id`), in plan order."""
    at = _now(now)
    with uow.read():
        s = uow.session
        plan_of = assessment_id or current_plan_id(s)
        if plan_of is None:
            return []
        q = _query().where(PlanTask.assessment_id == plan_of)
        if open_only:
            q = q.where(PlanTask.status == PlanTaskStatus.open)
        return [_task_out(t, at) for t in s.scalars(q)]


def overdue(uow: UnitOfWork, now: datetime | None = None) -> list[TaskOut]:
    """Open tasks past their due date, most overdue first (any plan still open)."""
    at = _now(now)
    with uow.read():
        rows = uow.session.scalars(
            _query()
            .where(PlanTask.status == PlanTaskStatus.open, PlanTask.due_at < at)
            .order_by(None)
            .order_by(PlanTask.due_at, PlanTask.id)
        )
        return [_task_out(t, at) for t in rows]


def get_task(uow: UnitOfWork, task_id: int, now: datetime | None = None) -> TaskOut:
    with uow.read():
        return _task_out(_load(uow.session, task_id), _now(now))


def _load(session: Session, task_id: int, *, lock: bool = False) -> PlanTask:
    """The task with its owner; `lock`: locked until commit, so a pass and a person closing
    it at once act one after the other."""
    if lock:
        row = locked(session, PlanTask, task_id)
    else:
        row = session.scalar(_query().where(PlanTask.id == task_id))
    if row is None:
        raise NotFound(f"no plan task {task_id} (see `aims plan show`)", "task")
    return row


# --- closing -----------------------------------------------------------------------------------


def _closing_evidence(
    session: Session, task: PlanTask, evidence_id: int | None, generic_kind: str
) -> Evidence:
    """The record that closes the task: of the named kind, recorded since the task was made,
    on the task's subject or any other (a policy approval is on `policy:KEY`). The generic kind
    (`default_evidence`, e.g. `other`) says nothing about which gap it closes, so it counts only
    on the task's own subject: one `other` record must not close every task that names it."""
    since = as_utc(task.created_at)
    own_subject_only = task.evidence_kind == generic_kind
    if evidence_id is not None:
        ev = session.get(Evidence, evidence_id)
        if ev is None:
            raise NotFound(f"no evidence record {evidence_id}", "evidence")
        if ev.kind != task.evidence_kind:
            raise InvalidInput(
                f"evidence {ev.id} is a {ev.kind} record; task {task.id} needs "
                f"{task.evidence_kind}",
                "evidence",
            )
        if as_utc(ev.created_at) < since:
            raise InvalidInput(
                f"evidence {ev.id} predates task {task.id}: record new evidence", "evidence"
            )
        if own_subject_only and ev.subject != subject(task.id):
            raise InvalidInput(
                f"evidence {ev.id} is on {ev.subject}; {generic_kind} evidence closes task "
                f"{task.id} only when recorded on {subject(task.id)}",
                "evidence",
            )
        return ev
    query = select(Evidence).where(
        Evidence.kind == task.evidence_kind, Evidence.created_at >= since
    )
    if own_subject_only:
        query = query.where(Evidence.subject == subject(task.id))
    ev = session.scalar(
        query.order_by((Evidence.subject == subject(task.id)).desc(), Evidence.id.desc()).limit(1)
    )
    if ev is None:
        raise Conflict(
            f"task {task.id} closes with {task.evidence_kind} evidence recorded since "
            f"{since:%Y-%m-%d}: record it with `aims evidence add --subject {subject(task.id)} "
            f"--kind {task.evidence_kind} ...`",
            "evidence",
        )
    return ev


def close_task(
    uow: UnitOfWork,
    task_id: int,
    actor: Actor,
    *,
    evidence_id: int | None = None,
    now: datetime | None = None,
) -> TaskOut:
    """Close a task on the evidence it names (refused without it). Idempotent when done."""
    at = _now(now)
    with uow:
        s = uow.session
        task = _load(s, task_id, lock=True)
        if task.status is PlanTaskStatus.done:
            return _task_out(task, at)
        if task.status is PlanTaskStatus.superseded:
            raise Conflict(f"task {task.id} was superseded by a newer plan", "task")
        generic = plan_policy(uow.settings).default_evidence
        ev = _closing_evidence(s, task, evidence_id, generic)
        task.status, task.evidence_id, task.done_at = PlanTaskStatus.done, ev.id, at
        s.flush()
        uow.audit(
            actor,
            "plan.task-done",
            subject(task.id),
            requirement=task.requirement_id,
            evidence_id=ev.id,
            evidence_kind=ev.kind,
        )
        out = _task_out(task, at)
        uow.commit()
    return out


# --- tracking: the daily pass ------------------------------------------------------------------


class TickReport(PassReport):
    """What one tracking pass did (task ids). Defined here so a flow's result unpickles."""

    closed_ids: list[int] = Field(default_factory=list)
    reminded_ids: list[int] = Field(default_factory=list)
    escalated_ids: list[int] = Field(default_factory=list)

    summary_parts: ClassVar[tuple[tuple[str, str], ...]] = (
        ("closed_ids", "closed"),
        ("reminded_ids", "reminded"),
        ("escalated_ids", "escalated"),
    )


def _notify(session: Session, key: str, kind: str, task: PlanTask, to: Person, text: str) -> None:
    outbox.tell(
        session,
        to,
        key=key,
        kind=kind,
        subject=subject(task.id),
        thread_key=f"plan-task-{task.id}-to-{to.id}",
        text=text,
    )


def _hint(task: PlanTask) -> str:
    return (
        f"It closes with {task.evidence_kind} evidence: `aims evidence add --subject "
        f"{subject(task.id)} --kind {task.evidence_kind} ...`, then `aims plan done {task.id}`."
    )


def _remind(settings: Settings, policy: GapPlan, task_id: int, at: datetime) -> bool:
    """One reminder per day at most: before the due date on the policy's days, daily after."""
    with UnitOfWork(settings) as uow:
        s = uow.session
        task = _load(s, task_id, lock=True)
        today = _day(at, settings)
        if task.status is not PlanTaskStatus.open or task.reminded_on == today.isoformat():
            return False
        days_left = (_day(task.due_at, settings) - today).days
        if days_left >= 0 and days_left not in policy.tracking.remind_days_before:
            return False
        when = f"is due in {days_left} day(s)" if days_left > 0 else "is due today"
        if days_left < 0:
            when = f"is {-days_left} day(s) overdue (due {_day(task.due_at, settings)})"
        _notify(
            s,
            f"plan-task-{task.id}-reminder-{today.isoformat()}",
            "plan-reminder",
            task,
            task.owner,
            f"Plan task {task.id} ({task.title}) {when}. {_hint(task)}",
        )
        task.reminded_on = today.isoformat()
        uow.audit(TRACKER, "plan.reminded", subject(task.id), days_left=days_left)
        uow.commit()
    return True


def _escalate(settings: Settings, policy: GapPlan, task_id: int, at: datetime) -> bool:
    with UnitOfWork(settings) as uow:
        s = uow.session
        task = _load(s, task_id, lock=True)
        if task.status is not PlanTaskStatus.open or task.escalated_at is not None:
            return False
        overdue_days = (_day(at, settings) - _day(task.due_at, settings)).days
        if overdue_days < max(policy.tracking.escalate_days_after, 1):
            return False
        contacts = escalation_contacts(
            s, task.owner, [policy.tracking.escalation_role], skip_person=True
        )
        if not contacts:
            raise AimsError(
                f"nobody to escalate plan task {task.id} to: {task.owner.email} has no manager "
                f"and nobody holds {policy.tracking.escalation_role}"
            )
        for c in contacts:
            _notify(
                s,
                f"plan-task-{task.id}-escalation-to-{c.id}",
                "plan-escalation",
                task,
                c,
                f"Overdue plan task: {task.title} (task {task.id}, owner {task.owner.name} "
                f"<{task.owner.email}>) is {overdue_days} day(s) past its due date "
                f"{_day(task.due_at, settings)}. {_hint(task)}",
            )
        task.escalated_at = at
        uow.audit(
            TRACKER,
            "plan.escalated",
            subject(task.id),
            overdue_days=overdue_days,
            contacts=[c.email for c in contacts],
        )
        uow.commit()
    return True


def _auto_close(settings: Settings, task_id: int, at: datetime) -> bool:
    try:
        close_task(UnitOfWork(settings), task_id, TRACKER, now=at)
    except Conflict:
        return False  # no closing evidence yet
    return True


def tick(settings: Settings, now: datetime | None = None) -> TickReport:
    """One daily pass over open tasks: close those whose evidence was recorded, remind, and
    escalate the overdue. Each task is locked and re-checked first, so a repeated pass on the
    same day queues nothing twice; one bad task never holds up the rest."""
    at = _now(now)
    policy = plan_policy(settings)
    report = TickReport(at=at)
    with UnitOfWork(settings).read() as uow:
        ids = list(
            uow.session.scalars(
                select(PlanTask.id)
                .where(PlanTask.status == PlanTaskStatus.open)
                .order_by(PlanTask.id)
            )
        )
    # A task its evidence closes this pass is neither reminded nor escalated.
    closing = each(report, "close", ids, lambda i: _auto_close(settings, i, at))
    closed = {i for i, done in closing if done}
    report.closed_ids = [i for i in ids if i in closed]
    still_open = [i for i in ids if i not in closed]
    steps = (
        ("remind", lambda i: _remind(settings, policy, i, at), report.reminded_ids),
        ("escalate", lambda i: _escalate(settings, policy, i, at), report.escalated_ids),
    )
    for step, act, acted in steps:
        acted.extend(i for i, done in each(report, step, still_open, act) if done)
    return report


def export_path_check(path: Path) -> None:
    """Refuse a workbook path before anything is computed (the CLI's bad input)."""
    if path.suffix.lower() != ".xlsx":
        raise InvalidInput(f"{path} must end in .xlsx", "xlsx")
    if not path.parent.is_dir():
        raise InvalidInput(f"directory {path.parent} does not exist", "xlsx")
