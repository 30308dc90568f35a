"""What is waiting on whom: the operators' snapshot behind `aims status`.

Every section reuses the listing of the service that owns it (approvals, incident clocks, CAPA,
training, management review, policies, vendors) and keeps what waits on a person now: a
request not decided yet, a clock not met, an action past its due date, a training expired or
expiring. Nothing is written. The sections are read one after another (each service opens its
own read transaction), so a change committed meanwhile may show in one section and not in an
earlier one; the next snapshot agrees again.

`now` is injectable (tests, "as of" views); every overdue / due flag is computed against it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Final

from pydantic import BaseModel, Field, computed_field
from sqlalchemy import select

from aims_core.models import AISystem, Incident, Person, RegulatoryClock, as_utc
from aims_core.rules.incident import incident_policy
from aims_core.services import approvals, clocks, plan, policies, reviews, training, vendors
from aims_core.services import capa as capas
from aims_core.services.directory import role_holders
from aims_core.services.training import Status as TrainingStatus
from aims_core.uow import UnitOfWork

__all__ = [
    "ApprovalItem",
    "CapaActionItem",
    "CapaVerificationItem",
    "ClockItem",
    "Counts",
    "PolicyExceptionItem",
    "PolicyReviewItem",
    "ReviewActionItem",
    "StatusReport",
    "TrainingItem",
    "VendorItem",
    "WaitingOn",
    "snapshot",
]

HOUR: Final = timedelta(hours=1)


# --- the report --------------------------------------------------------------------------------


class ApprovalItem(BaseModel):
    request_id: int
    title: str
    subject: str
    activity: str
    system: str | None
    requested_at: datetime
    deadline: datetime | None
    overdue: bool = Field(description="The deadline has passed and the request is still open.")
    quorum: int
    approvals: int
    decided: list[str] = Field(description="Who has answered (this request is still open).")
    waiting_for: list[str] = Field(description="Eligible approvers who have not decided yet.")
    round: int
    flow_run_id: str | None


class ClockItem(BaseModel):
    clock_id: int
    incident_id: int
    incident_title: str
    system: str
    system_name: str = Field("", description="The system's display name (`system` is its key).")
    clock: str
    rule: str
    due_at: datetime
    remaining_hours: float = Field(description="Until the deadline; negative once overdue.")
    overdue: bool
    is_drill: bool
    people: list[str] = Field(description="Who the clock's reminders go to.")


class CapaActionItem(BaseModel):
    capa_id: int
    capa_title: str
    action_id: int
    action: str
    owner: str
    due_at: datetime
    days_overdue: int


class CapaVerificationItem(BaseModel):
    capa_id: int
    title: str
    owner: str
    due_at: datetime
    verifiers: list[str] = Field(description="Who may record the effectiveness verification.")


class TrainingItem(BaseModel):
    person: str
    name: str
    training: str
    title: str
    expires_on: date | None
    days_left: int | None
    expired: bool


class ReviewActionItem(BaseModel):
    action_id: int
    review: str
    decision: str
    owner: str
    due: date


class PolicyReviewItem(BaseModel):
    policy: str
    title: str
    owner: str
    due_at: datetime


class PolicyExceptionItem(BaseModel):
    exception_id: int
    policy: str
    title: str
    owner: str
    expires_at: datetime
    expired: bool


class VendorItem(BaseModel):
    vendor: str
    criticality: str
    owner: str | None
    due_at: datetime


class PlanTaskItem(BaseModel):
    task_id: int
    requirement: str
    title: str
    owner: str
    due_at: datetime
    days_overdue: int


class Counts(BaseModel):
    approvals: int
    approvals_overdue: int
    clocks: int
    clocks_overdue: int
    capa_actions_overdue: int
    capa_verifications_due: int
    trainings_expiring: int
    trainings_expired: int
    review_actions_overdue: int
    policy_reviews_due: int
    policy_exceptions_due: int
    vendor_assessments_due: int
    plan_tasks_overdue: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        """Items waiting on someone (the `_overdue` / `_expired` counts are subsets)."""
        return (
            self.approvals
            + self.clocks
            + self.capa_actions_overdue
            + self.capa_verifications_due
            + self.trainings_expiring
            + self.review_actions_overdue
            + self.policy_reviews_due
            + self.policy_exceptions_due
            + self.vendor_assessments_due
            + self.plan_tasks_overdue
        )


class WaitingOn(BaseModel):
    """How many items wait on one person; any one of several eligible people can settle an
    approval, clock or verification, so each of them counts it."""

    approvals: int = 0
    clocks: int = 0
    capa_actions: int = 0
    capa_verifications: int = 0
    trainings: int = 0
    review_actions: int = 0
    policy_reviews: int = 0
    policy_exceptions: int = 0
    vendor_assessments: int = 0
    plan_tasks: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return sum(getattr(self, name) for name in type(self).model_fields)


class StatusReport(BaseModel):
    """Each list most urgent first (overdue first, then by deadline)."""

    generated_at: datetime
    approvals: list[ApprovalItem]
    clocks: list[ClockItem]
    capa_actions_overdue: list[CapaActionItem]
    capa_verifications_due: list[CapaVerificationItem]
    trainings_expiring: list[TrainingItem]
    review_actions_overdue: list[ReviewActionItem]
    policy_reviews_due: list[PolicyReviewItem]
    policy_exceptions_due: list[PolicyExceptionItem]
    vendor_assessments_due: list[VendorItem]
    plan_tasks_overdue: list[PlanTaskItem] = Field(default_factory=list)
    counts: Counts
    waiting_on: dict[str, WaitingOn] = Field(description="Per person email, most waited-on first.")


# --- the sections ------------------------------------------------------------------------------


def _approvals(uow: UnitOfWork, now: datetime) -> list[ApprovalItem]:
    items = []
    for r in approvals.open_requests(uow):
        decided = [d.person for d in r.decisions]
        items.append(
            ApprovalItem(
                request_id=r.id,
                title=r.title,
                subject=r.subject,
                activity=r.activity,
                system=r.system,
                requested_at=r.created_at,
                deadline=r.deadline,
                overdue=r.deadline is not None and r.deadline < now,
                quorum=r.quorum,
                approvals=len(r.approvals),
                decided=decided,
                waiting_for=[e for e in r.approvers if e not in decided],
                round=r.round,
                flow_run_id=r.flow_run_id,
            )
        )
    # Overdue first, then the nearest deadline, then the oldest request.
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(items, key=lambda a: (not a.overdue, a.deadline or far, a.request_id))


def _emails(people: Iterable[Person]) -> list[str]:
    return list(dict.fromkeys(p.email for p in people))


def _clocks(uow: UnitOfWork, now: datetime) -> list[ClockItem]:
    running = clocks.running_clocks(uow, now=now)  # soonest deadline first
    if not running:
        return []
    policy = incident_policy(uow.settings)
    with uow.read():
        s = uow.session
        about = {
            clock_id: (title, owner, system_name)
            for clock_id, title, owner, system_name in s.execute(
                select(RegulatoryClock.id, Incident.title, Person.email, AISystem.display_name)
                .join(Incident, Incident.id == RegulatoryClock.incident_id)
                .join(AISystem, AISystem.id == Incident.system_id)
                .join(Person, Person.id == AISystem.owner_id)
                .where(RegulatoryClock.id.in_([c.id for c in running]))
            )
        }
        items = []
        for c in running:
            rule = policy.clocks.rule(c.rule)
            title, owner, system_name = about[c.id]
            people = _emails(role_holders(s, policy.clocks.remind_roles(rule)))
            if policy.clocks.remind_system_owner(rule) and owner not in people:
                people.append(owner)
            left = (c.deadline - now) / HOUR
            items.append(
                ClockItem(
                    clock_id=c.id,
                    incident_id=c.incident_id,
                    incident_title=title,
                    system=c.system,
                    system_name=system_name,
                    clock=c.label,
                    rule=c.rule,
                    due_at=c.deadline,
                    remaining_hours=round(left, 1),
                    overdue=c.deadline <= now,  # as the clocks' pass counts it
                    is_drill=c.is_drill,
                    people=people,
                )
            )
    return items


def _capas(
    uow: UnitOfWork, now: datetime
) -> tuple[list[CapaActionItem], list[CapaVerificationItem]]:
    actions: list[CapaActionItem] = []
    verifications: list[CapaVerificationItem] = []
    open_capas = capas.list_capas(uow, open_only=True)
    for c in open_capas:
        for a in c.open_actions:
            if a.due_at < now:
                actions.append(
                    CapaActionItem(
                        capa_id=c.id,
                        capa_title=c.title,
                        action_id=a.id,
                        action=a.title,
                        owner=a.owner,
                        due_at=a.due_at,
                        days_overdue=(now - a.due_at).days,
                    )
                )
    verifying = [c for c in open_capas if c.verification_due(now)]
    if verifying:
        rules = capas.capa_policy(uow.settings).verification
        with uow.read():
            holders = _emails(role_holders(uow.session, rules.verifier_roles))
        for c in verifying:
            assert c.verification_due_at is not None
            verifications.append(
                CapaVerificationItem(
                    capa_id=c.id,
                    title=c.title,
                    owner=c.owner,
                    due_at=c.verification_due_at,
                    verifiers=[e for e in holders if e != c.owner or rules.owner_may_verify],
                )
            )
    actions.sort(key=lambda a: (a.due_at, a.action_id))
    verifications.sort(key=lambda v: (v.due_at, v.capa_id))
    return actions, verifications


def _trainings(uow: UnitOfWork, now: datetime) -> list[TrainingItem]:
    """Expired, or expiring within the first reminder (the matrix's own window)."""
    rows = [
        r
        for r in training.matrix(uow, now=now)
        if r.status in (TrainingStatus.expired, TrainingStatus.expiring)
    ]
    items = [
        TrainingItem(
            person=r.email,
            name=r.name,
            training=r.training,
            title=r.title,
            expires_on=r.expires_on,
            days_left=r.days_left,
            expired=r.status is TrainingStatus.expired,
        )
        for r in rows
    ]
    return sorted(items, key=lambda t: (t.days_left or 0, t.person, t.training))


def _review_actions(uow: UnitOfWork, now: datetime) -> list[ReviewActionItem]:
    items = [
        ReviewActionItem(
            action_id=a.id, review=r.period, decision=a.decision, owner=a.owner, due=a.due
        )
        for r in reviews.list_reviews(uow, now=now)
        for a in r.actions
        if a.status == "overdue"
    ]
    return sorted(items, key=lambda a: (a.due, a.action_id))


def _policies(
    uow: UnitOfWork, now: datetime
) -> tuple[list[PolicyReviewItem], list[PolicyExceptionItem]]:
    """Reviews fallen due (of policies in force) and open exceptions inside the first reminder
    window, or past expiry and not closed yet by the daily pass."""
    due = [
        PolicyReviewItem(policy=p.key, title=p.title, owner=p.owner, due_at=p.next_review_due)
        for p in policies.list_policies(uow, now=now)
        if p.overdue and p.version is not None
    ]
    window = timedelta(days=max(uow.settings.exception_reminder_days, default=0))
    exceptions = [
        PolicyExceptionItem(
            exception_id=e.id,
            policy=e.policy,
            title=e.title,
            owner=e.owner,
            expires_at=e.expires_at,
            expired=e.expires_at <= now,
        )
        for e in policies.list_exceptions(uow, open_only=True)
        if e.expires_at - now <= window
    ]
    due.sort(key=lambda p: (p.due_at, p.policy))
    exceptions.sort(key=lambda e: (e.expires_at, e.exception_id))
    return due, exceptions


def _vendors(uow: UnitOfWork, now: datetime) -> list[VendorItem]:
    items = [
        VendorItem(vendor=v.name, criticality=v.criticality.value, owner=v.owner, due_at=v.next_due)
        for v in vendors.list_vendors(uow, now=now)
        if v.overdue
    ]
    return sorted(items, key=lambda v: (v.due_at, v.vendor))


def _waiting_on(r: StatusReport) -> dict[str, WaitingOn]:
    out: dict[str, WaitingOn] = {}

    def add(emails: Iterable[str | None], field: str) -> None:
        for email in dict.fromkeys(emails):
            if email:
                w = out.setdefault(email, WaitingOn())
                setattr(w, field, getattr(w, field) + 1)

    for a in r.approvals:
        add(a.waiting_for, "approvals")
    for c in r.clocks:
        add(c.people, "clocks")
    for x in r.capa_actions_overdue:
        add([x.owner], "capa_actions")
    for v in r.capa_verifications_due:
        add(v.verifiers, "capa_verifications")
    for t in r.trainings_expiring:
        add([t.person], "trainings")
    for ra in r.review_actions_overdue:
        add([ra.owner], "review_actions")
    for p in r.policy_reviews_due:
        add([p.owner], "policy_reviews")
    for e in r.policy_exceptions_due:
        add([e.owner], "policy_exceptions")
    for vi in r.vendor_assessments_due:
        add([vi.owner], "vendor_assessments")
    for pt in r.plan_tasks_overdue:
        add([pt.owner], "plan_tasks")
    return dict(sorted(out.items(), key=lambda kv: (-kv[1].total, kv[0])))


def snapshot(uow: UnitOfWork, now: datetime | None = None) -> StatusReport:
    """Everything waiting on someone at `now` (default: the wall clock). Reads only."""
    at = as_utc(now) if now is not None else datetime.now(UTC)
    capa_actions, capa_verifications = _capas(uow, at)
    policy_reviews, policy_exceptions = _policies(uow, at)
    approvals_ = _approvals(uow, at)
    clocks_ = _clocks(uow, at)
    trainings = _trainings(uow, at)
    review_actions = _review_actions(uow, at)
    vendors_ = _vendors(uow, at)
    plan_tasks = [
        PlanTaskItem(
            task_id=t.id,
            requirement=t.requirement,
            title=t.title,
            owner=t.owner,
            due_at=t.due_at,
            days_overdue=(at - t.due_at).days,
        )
        for t in plan.overdue(uow, at)
    ]
    report = StatusReport(
        generated_at=at,
        approvals=approvals_,
        clocks=clocks_,
        capa_actions_overdue=capa_actions,
        capa_verifications_due=capa_verifications,
        trainings_expiring=trainings,
        review_actions_overdue=review_actions,
        policy_reviews_due=policy_reviews,
        policy_exceptions_due=policy_exceptions,
        vendor_assessments_due=vendors_,
        plan_tasks_overdue=plan_tasks,
        counts=Counts(
            approvals=len(approvals_),
            approvals_overdue=sum(a.overdue for a in approvals_),
            clocks=len(clocks_),
            clocks_overdue=sum(c.overdue for c in clocks_),
            capa_actions_overdue=len(capa_actions),
            capa_verifications_due=len(capa_verifications),
            trainings_expiring=len(trainings),
            trainings_expired=sum(t.expired for t in trainings),
            review_actions_overdue=len(review_actions),
            policy_reviews_due=len(policy_reviews),
            policy_exceptions_due=len(policy_exceptions),
            vendor_assessments_due=len(vendors_),
            plan_tasks_overdue=len(plan_tasks),
        ),
        waiting_on={},
    )
    report.waiting_on = _waiting_on(report)
    return report
