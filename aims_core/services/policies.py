"""Policies, versions, periodic reviews and exceptions (ISO/IEC 42001 5.2, A.2.2-A.2.4).

A policy is a governed document with an owner and a review interval. Its text lives in versions:
a proposed version goes through the shared approval service (the `policy-approval` run asks the
roles of `policy_governance.yaml`); once approved it supersedes the previous one, counts as a
review, and is kept as `policy` evidence with its SHA-256. A review that keeps the text records
`policy-review` evidence. When the next review is due is computed, never typed in: the last
review (else the first approval, else the creation) plus the interval.

An exception is a granted deviation with an owner and an expiry date: its owner is reminded
`exception_reminder_days` before, and the daily pass (`tick`) closes it once it has expired and
tells the owner (`policy-exception` evidence). Each reminder is sent once per due date or
threshold, whatever number of passes run.

Documents are rendered from the Jinja2 templates `aims_core/templates/policy_<name>.md.j2` with
the organisation's data (roles, RACI, the incident classification, clocks and playbooks), so the
AI incident management policy says what the incident flow does. No Prefect here.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from aims_core import catalog
from aims_core.data_files import DataFileInvalid, Strict, load_data_file, unknown_roles
from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import (
    AISystem,
    ApprovalRequest,
    ApprovalStatus,
    ExceptionStatus,
    Outcome,
    Person,
    Policy,
    PolicyException,
    PolicyReview,
    PolicyVersion,
    PolicyVersionStatus,
    as_utc,
)
from aims_core.schemas import Email, SystemName
from aims_core.services import evidence, outbox
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.people import get_person
from aims_core.services.systems import get_system
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

log = logging.getLogger("aims.policies")

GOVERNANCE_FILE: Final = "policy_governance.yaml"
#: Who the audit trail names for the daily pass's reminders and closures.
TRACKER: Final = Actor(who="aims-policy-tracker", channel="schedule")
DEPLOYMENT: Final = "policy-approval/policy-approval"
PENDING: Final = (PolicyVersionStatus.draft, PolicyVersionStatus.in_approval)
DETAILS_MAX: Final = 2800  # approval details also go into a Slack section (3,000 characters)
BODY_MAX: Final = 500_000

Key = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$"
    ),
]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


# --- data files (this one and vendor_policy.yaml) ---------------------------------------------


class ApprovalPolicy(Strict):
    activity: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=120)]
    approver_roles: list[Label] = Field(min_length=1)
    quorum: int = Field(default=1, ge=1)
    deadline_days: int | None = Field(default=None, ge=1, le=365)


class PolicyGovernance(Strict):
    approval: ApprovalPolicy

    def problems(self) -> list[str]:
        return unknown_roles("approval.approver_roles", self.approval.approver_roles)


def governance(settings: Settings) -> PolicyGovernance:
    return load_data_file(settings, PolicyGovernance, GOVERNANCE_FILE)


# --- boundary models ---------------------------------------------------------------------------


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    key: Key
    title: Title
    owner: Email
    review_interval_months: int = Field(default=12, ge=1, le=60)
    template: Annotated[Label | None, BeforeValidator(_blank_to_none)] = None


class ProposalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Annotated[str, StringConstraints(min_length=1, max_length=BODY_MAX)]
    change_note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""
    requester: Annotated[Email | None, BeforeValidator(_blank_to_none)] = None


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    outcome: Literal["unchanged", "new-version"] = "unchanged"
    notes: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    reviewer: Annotated[Email | None, BeforeValidator(_blank_to_none)] = None


class ExceptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Title
    reason: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    owner: Email
    expires: date
    system: Annotated[SystemName | None, BeforeValidator(_blank_to_none)] = None


class VersionOut(BaseModel):
    id: int
    policy: str
    version: int
    status: PolicyVersionStatus
    content_sha256: str
    change_note: str
    request_id: int | None
    evidence_id: int | None
    flow_run_id: str | None
    created_by: str
    created_at: datetime
    approved_at: datetime | None
    reasons: list[str] = Field(default_factory=list)  # why it was rejected

    @property
    def run_name(self) -> str:
        return run_name(self.policy, self.version)


class ReviewOut(BaseModel):
    reviewed_at: datetime
    reviewer: str
    outcome: str
    notes: str
    evidence_id: int | None


class ExceptionOut(BaseModel):
    id: int
    policy: str
    title: str
    reason: str
    system: str | None
    owner: str
    granted_by: str
    expires_at: datetime
    status: ExceptionStatus
    reminders_sent: list[int]
    closed_at: datetime | None


class PolicyOut(BaseModel):
    id: int
    key: str
    title: str
    owner: str
    owner_name: str
    review_interval_months: int
    template: str | None
    version: int | None  # the approved version in force
    status: str  # of the newest version: draft, in-approval, approved, rejected; or "no version"
    pending_version: int | None
    last_reviewed_at: datetime | None
    next_review_due: datetime
    overdue: bool
    open_exceptions: int


class PolicyDetail(PolicyOut):
    versions: list[VersionOut]
    reviews: list[ReviewOut]
    exceptions: list[ExceptionOut]


class Failure(BaseModel):
    step: str
    id: int
    error: str


class TickReport(BaseModel):
    """What one daily pass did: policy keys whose review fell due (owner told), exception ids
    reminded and closed."""

    at: datetime
    reviews_due: list[str] = Field(default_factory=list)
    exceptions_reminded: list[int] = Field(default_factory=list)
    exceptions_closed: list[int] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"reviews due {len(self.reviews_due)}",
            f"exceptions reminded {len(self.exceptions_reminded)}",
            f"exceptions closed {len(self.exceptions_closed)}",
        ]
        if self.failures:
            parts.append(f"failed {len(self.failures)}")
        return ", ".join(parts)


# --- keys, subjects, clocks --------------------------------------------------------------------


def subject(key: str) -> str:
    return f"policy:{key}"


def run_name(key: str, version: int) -> str:
    """The approval run's name in the Prefect UI: `policy ai-policy v3 approval`."""
    return f"policy {key} v{version} approval"


def approval_key(key: str, version: int) -> str:
    return f"policy-{key}-v{version}-approval"


def sha256(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _utc(value: datetime | None) -> datetime:
    return as_utc(value) if value is not None else datetime.now(UTC)


def end_of_day(day: date, settings: Settings) -> datetime:
    """A calendar date as a deadline: its last second in the configured time zone, in UTC."""
    zone = ZoneInfo(settings.timezone)
    return datetime.combine(day, time(23, 59, 59), zone).astimezone(UTC)


def local_date(value: datetime, settings: Settings) -> date:
    return as_utc(value).astimezone(ZoneInfo(settings.timezone)).date()


def _first_approval(row: Policy) -> datetime | None:
    approved = [v.approved_at for v in row.versions if v.approved_at is not None]
    return min(as_utc(a) for a in approved) if approved else None


def review_base(row: Policy) -> datetime:
    """What the next review counts from: the last review, else the first approval, else the
    creation of the policy."""
    if row.last_reviewed_at is not None:
        return as_utc(row.last_reviewed_at)
    return _first_approval(row) or as_utc(row.created_at)


def next_review_due(row: Policy) -> datetime:
    return review_base(row) + relativedelta(months=row.review_interval_months)


# --- reading -----------------------------------------------------------------------------------


def _load(session: Session, key: str, *, lock: bool = False) -> Policy:
    q = (
        select(Policy)
        .where(Policy.key == key.strip().lower())
        .options(selectinload(Policy.owner), selectinload(Policy.versions))
    )
    if lock:
        q = q.with_for_update(of=Policy)
    row = session.scalar(q)
    if row is None:
        raise NotFound(f"no policy '{key}' (see `aims policy list`)", "policy")
    return row


def _reasons(session: Session, request_id: int | None) -> list[str]:
    if request_id is None:
        return []
    req = session.get(ApprovalRequest, request_id)
    if req is None:
        return []
    return [
        f"{d.person.email}: {d.comment}" if d.comment else d.person.email
        for d in req.decisions
        if d.outcome is Outcome.reject
    ]


def _version_out(session: Session, row: Policy, v: PolicyVersion) -> VersionOut:
    return VersionOut(
        id=v.id,
        policy=row.key,
        version=v.version,
        status=v.status,
        content_sha256=v.content_sha256,
        change_note=v.change_note,
        request_id=v.request_id,
        evidence_id=v.evidence_id,
        flow_run_id=v.flow_run_id,
        created_by=v.created_by,
        created_at=as_utc(v.created_at),
        approved_at=as_utc(v.approved_at) if v.approved_at else None,
        reasons=_reasons(session, v.request_id) if v.status is PolicyVersionStatus.rejected else [],
    )


def _current(row: Policy) -> PolicyVersion | None:
    approved = [v for v in row.versions if v.status is PolicyVersionStatus.approved]
    return approved[-1] if approved else None


def _pending(row: Policy) -> PolicyVersion | None:
    return next((v for v in row.versions if v.status in PENDING), None)


def _out(session: Session, row: Policy, now: datetime) -> PolicyOut:
    current, pending = _current(row), _pending(row)
    due = next_review_due(row)
    open_exceptions = session.scalar(
        select(func.count())
        .select_from(PolicyException)
        .where(
            PolicyException.policy_id == row.id,
            PolicyException.status == ExceptionStatus.open,
        )
    )
    return PolicyOut(
        id=row.id,
        key=row.key,
        title=row.title,
        owner=row.owner.email,
        owner_name=row.owner.name,
        review_interval_months=row.review_interval_months,
        template=row.template,
        version=current.version if current else None,
        status=row.versions[-1].status.value if row.versions else "no version",
        pending_version=pending.version if pending else None,
        last_reviewed_at=as_utc(row.last_reviewed_at) if row.last_reviewed_at else None,
        next_review_due=due,
        overdue=due <= now,
        open_exceptions=open_exceptions or 0,
    )


def _exception_out(session: Session, e: PolicyException) -> ExceptionOut:
    system = session.get(AISystem, e.system_id) if e.system_id else None
    return ExceptionOut(
        id=e.id,
        policy=e.policy.key,
        title=e.title,
        reason=e.reason,
        system=system.name if system else None,
        owner=e.owner.email,
        granted_by=e.granted_by,
        expires_at=as_utc(e.expires_at),
        status=e.status,
        reminders_sent=list(e.reminders_sent or []),
        closed_at=as_utc(e.closed_at) if e.closed_at else None,
    )


def list_policies(uow: UnitOfWork, *, now: datetime | None = None) -> list[PolicyOut]:
    """Every policy with its version in force, last review and computed next review."""
    at = _utc(now)
    with uow.read():
        s = uow.session
        rows = s.scalars(
            select(Policy)
            .options(selectinload(Policy.owner), selectinload(Policy.versions))
            .order_by(Policy.key)
        )
        return [_out(s, r, at) for r in rows]


def get_policy(uow: UnitOfWork, key: str, *, now: datetime | None = None) -> PolicyDetail:
    at = _utc(now)
    with uow.read():
        s = uow.session
        row = _load(s, key)
        reviews = s.scalars(
            select(PolicyReview)
            .where(PolicyReview.policy_id == row.id)
            .order_by(PolicyReview.reviewed_at)
        )
        return PolicyDetail(
            **_out(s, row, at).model_dump(),
            versions=[_version_out(s, row, v) for v in row.versions],
            reviews=[
                ReviewOut(
                    reviewed_at=as_utc(r.reviewed_at),
                    reviewer=r.reviewer,
                    outcome=r.outcome,
                    notes=r.notes,
                    evidence_id=r.evidence_id,
                )
                for r in reviews
            ],
            exceptions=[_exception_out(s, e) for e in _exceptions(s, policy_id=row.id)],
        )


def version_body(uow: UnitOfWork, key: str, version: int | None = None) -> tuple[int, str]:
    """The text of `version` (default: the approved version in force)."""
    with uow.read():
        row = _load(uow.session, key)
        if version is None:
            v = _current(row)
            if v is None:
                raise NotFound(f"policy '{row.key}' has no approved version yet", "version")
        else:
            v = next((x for x in row.versions if x.version == version), None)
            if v is None:
                raise NotFound(f"policy '{row.key}' has no version {version}", "version")
        return v.version, v.body


def get_version(uow: UnitOfWork, version_id: int) -> VersionOut:
    with uow.read():
        s = uow.session
        v = s.get(PolicyVersion, version_id)
        if v is None:
            raise NotFound(f"no policy version {version_id}", "version")
        return _version_out(s, s.get_one(Policy, v.policy_id), v)


# --- writing: helpers --------------------------------------------------------------------------


def _active_person(session: Session, email: str, field: str) -> Person:
    person = get_person(session, email, field)
    if not person.active:
        raise InvalidInput(f"{person.email} is not active", field)
    return person


def _evidence(
    uow: UnitOfWork, key: str, kind: str, idem: str, title: str, text: str, actor: Actor
) -> int:
    """One record on `policy:<key>` inside the caller's transaction (anchored after commit)."""
    return evidence.append_in(
        uow,
        EvidenceIn(
            subject=subject(key),
            kind=kind,
            title=title[:300],
            text=text,
            media_type="text/markdown; charset=utf-8",
            idempotency_key=idem,
        ),
        actor,
    ).id


def _notify(session: Session, idem: str, kind: str, key: str, person: Person, text: str) -> None:
    """A message to one person, queued in the caller's transaction (Slack DM, else the log)."""
    outbox.queue(
        session,
        outbox.NotificationIn(
            idempotency_key=idem,
            kind=kind,
            subject=subject(key),
            recipient=person.email,
            target=outbox.TARGET_DM if person.slack_user_id else outbox.TARGET_LOG,
            thread_key=f"policy-{key}-to-{person.id}",
            text=text,
        ),
    )


def _commit_and_anchor(uow: UnitOfWork) -> None:
    uow.commit()
    evidence.sync_anchor(uow.settings)


# --- policies and versions ---------------------------------------------------------------------


def add_policy(
    uow: UnitOfWork,
    data: PolicyIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
) -> PolicyOut:
    """Register a governed policy (its text comes with its first proposed version)."""
    if not isinstance(data, PolicyIn):
        data = PolicyIn.model_validate(data)
    if data.template is not None:
        template_file(data.template)  # a typo is caught now, not at the first render
    with uow:
        s = uow.session
        if s.scalar(select(Policy.id).where(Policy.key == data.key)) is not None:
            raise Conflict(f"a policy '{data.key}' already exists", "key")
        row = Policy(
            key=data.key,
            title=data.title,
            owner=_active_person(s, data.owner, "owner"),
            review_interval_months=data.review_interval_months,
            template=data.template,
            created_by=actor.who,
            created_at=_utc(now),
        )
        s.add(row)
        s.flush()
        uow.audit(actor, "policy.added", subject(row.key), **data.model_dump(mode="json"))
        out = _out(s, row, _utc(now))
        uow.commit()
    return out


def _new_version(
    s: Session, row: Policy, body: str, note: str, created_by: str, now: datetime
) -> PolicyVersion:
    v = PolicyVersion(
        policy_id=row.id,
        version=max((x.version for x in row.versions), default=0) + 1,
        status=PolicyVersionStatus.draft,
        body=body,
        content_sha256=sha256(body),
        change_note=note,
        created_by=created_by,
        created_at=now,
    )
    s.add(v)
    s.flush()
    row.versions.append(v)
    return v


def propose_version(
    uow: UnitOfWork,
    key: str,
    data: ProposalIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
) -> VersionOut:
    """A new draft version; its approval run (`policy-approval`) asks the approvers. One
    proposal at a time per policy; the same text as the version in force is refused."""
    if not isinstance(data, ProposalIn):
        data = ProposalIn.model_validate(data)
    if not data.body.strip():
        raise InvalidInput("the policy text is empty", "body")
    with uow:
        s = uow.session
        row = _load(s, key, lock=True)
        pending = _pending(row)
        if pending is not None:
            hint = (
                f"`aims policy submit {row.key}` starts its approval"
                if pending.status is PolicyVersionStatus.draft
                else f"its approval is open (request {pending.request_id or '-'})"
            )
            raise Conflict(f"v{pending.version} of '{row.key}' is {pending.status}: {hint}", "key")
        current = _current(row)
        if current is not None and current.content_sha256 == sha256(data.body):
            raise InvalidInput(
                f"the same text as v{current.version} in force: a review that keeps it is "
                f"`aims policy review {row.key} --outcome unchanged --notes ...`",
                "body",
            )
        requester = _active_person(s, data.requester or row.owner.email, "requester")
        v = _new_version(s, row, data.body, data.change_note, requester.email, _utc(now))
        uow.audit(
            actor,
            "policy.version-proposed",
            subject(row.key),
            version=v.version,
            sha256=v.content_sha256,
            change_note=v.change_note,
            requester=requester.email,
        )
        out = _version_out(s, row, v)
        uow.commit()
    return out


def draft_version(uow: UnitOfWork, key: str) -> VersionOut:
    """The draft waiting for its approval run to start (Conflict if there is none)."""
    with uow.read():
        s = uow.session
        row = _load(s, key)
        pending = _pending(row)
        if pending is None or pending.status is not PolicyVersionStatus.draft:
            what = f"v{pending.version} is in approval" if pending else "no draft version"
            raise Conflict(f"policy '{row.key}': {what}", "key")
        return _version_out(s, row, pending)


def _details(row: Policy, v: PolicyVersion) -> str:
    """What approvers see: the change, its fingerprint, and the diff from the version in force."""
    current = _current(row)
    lines = [
        f"{row.title} ({row.key}) v{v.version}, owner {row.owner.name} <{row.owner.email}>",
        f"proposed by {v.created_by}; sha256 {v.content_sha256}",
    ]
    if v.change_note:
        lines.append(f"change: {v.change_note}")
    if current is not None:
        diff = difflib.unified_diff(
            current.body.splitlines(),
            v.body.splitlines(),
            f"v{current.version}",
            f"v{v.version}",
            lineterm="",
            n=1,
        )
        lines += ["", *diff]
    else:
        lines += ["", "First version:", *v.body.splitlines()]
    text = "\n".join(lines)
    return text if len(text) <= DETAILS_MAX else text[: DETAILS_MAX - 1] + "…"


def begin_approval(
    uow: UnitOfWork, version_id: int, flow_run_id: str | None, actor: Actor
) -> ApprovalRequestIn:
    """The version goes into approval (followed by `flow_run_id`); returns the approval request
    to ask. Idempotent: a re-run gets the same request spec."""
    policy = governance(uow.settings).approval
    with uow:
        s = uow.session
        v = s.scalar(select(PolicyVersion).where(PolicyVersion.id == version_id).with_for_update())
        if v is None:
            raise NotFound(f"no policy version {version_id}", "version")
        row = _load(s, s.get_one(Policy, v.policy_id).key)
        if v.status is PolicyVersionStatus.draft:
            v.status = PolicyVersionStatus.in_approval
        if flow_run_id and v.flow_run_id != flow_run_id:
            v.flow_run_id = flow_run_id
        if s.is_modified(v):
            uow.audit(
                actor,
                "policy.approval-started",
                subject(row.key),
                version=v.version,
                flow_run_id=flow_run_id,
            )
        deadline = (
            _utc(v.created_at) + timedelta(days=policy.deadline_days)
            if policy.deadline_days
            else None
        )
        spec = ApprovalRequestIn(
            idempotency_key=approval_key(row.key, v.version),
            subject=subject(row.key),
            activity=policy.activity,
            title=f"Approve {row.title} v{v.version}",
            details=_details(row, v),
            approver_roles=list(policy.approver_roles),
            quorum=policy.quorum,
            requester=v.created_by if "@" in v.created_by else None,
            deadline=deadline,
            flow_run_id=flow_run_id,
        )
        uow.commit()
    return spec


def approval_failed(uow: UnitOfWork, version_id: int, reason: str, actor: Actor) -> VersionOut:
    """The approval could not be asked (e.g. nobody eligible): the version is a draft again, to
    be submitted once the cause is fixed."""
    with uow:
        s = uow.session
        v = s.get_one(PolicyVersion, version_id)
        row = s.get_one(Policy, v.policy_id)
        if v.status is PolicyVersionStatus.in_approval and v.request_id is None:
            v.status = PolicyVersionStatus.draft
            uow.audit(
                actor, "policy.approval-failed", subject(row.key), version=v.version, reason=reason
            )
        out = _version_out(s, row, v)
        uow.commit()
    return out


def settle_approval(
    uow: UnitOfWork,
    version_id: int,
    request_id: int,
    actor: Actor,
    *,
    now: datetime | None = None,
) -> VersionOut:
    """Apply the decision the database holds. Approved: in force, the previous version
    superseded, counted as a review, kept as `policy` evidence (the text; its SHA-256 is the
    record's). Rejected: marked so, the proposer told the reasons. Idempotent."""
    at = _utc(now)
    with uow:
        s = uow.session
        v = s.scalar(select(PolicyVersion).where(PolicyVersion.id == version_id).with_for_update())
        if v is None:
            raise NotFound(f"no policy version {version_id}", "version")
        row = _load(s, s.get_one(Policy, v.policy_id).key, lock=True)
        v = next(x for x in row.versions if x.id == version_id)
        if v.status in (PolicyVersionStatus.approved, PolicyVersionStatus.rejected):
            return _version_out(s, row, v)
        req = s.get(ApprovalRequest, request_id)
        if req is None or req.status is ApprovalStatus.open:
            raise Conflict(f"approval request {request_id} is not decided yet", "request")
        v.request_id = req.id
        if req.status is ApprovalStatus.approved:
            approvers = [d.person.email for d in req.decisions if d.outcome is Outcome.approve]
            _approve(uow, row, v, at, ", ".join(approvers) or "approval service", actor)
        else:
            v.status = PolicyVersionStatus.rejected
            s.flush()
            reasons = _reasons(s, req.id)
            uow.audit(
                actor,
                "policy.version-rejected",
                subject(row.key),
                version=v.version,
                request_id=req.id,
                reasons=reasons,
            )
            proposer = s.scalar(select(Person).where(Person.email == v.created_by))
            if proposer is not None:
                _notify(
                    s,
                    f"policy-{row.key}-v{v.version}-rejected-to-{proposer.id}",
                    "policy-rejected",
                    row.key,
                    proposer,
                    f"{row.title} v{v.version} was not approved: "
                    + ("; ".join(reasons) or req.status.value)
                    + f". Propose a revised text: `aims policy propose {row.key} --file ...`",
                )
        out = _version_out(s, row, v)
        _commit_and_anchor(uow)
    return out


def _approve(
    uow: UnitOfWork,
    row: Policy,
    v: PolicyVersion,
    at: datetime,
    approved_by: str,
    actor: Actor,
    *,
    notify: bool = True,
) -> None:
    s = uow.session
    for old in row.versions:
        if old.status is PolicyVersionStatus.approved:
            old.status = PolicyVersionStatus.superseded
    v.status = PolicyVersionStatus.approved
    v.approved_at = at
    v.evidence_id = _evidence(
        uow,
        row.key,
        "policy",
        f"policy-{row.key}-v{v.version}-approved",
        f"{row.title} v{v.version} (approved; sha256 {v.content_sha256[:12]})",
        v.body,
        actor,
    )
    row.last_reviewed_at = at
    row.review_notified_for = None
    s.add(
        PolicyReview(
            policy_id=row.id,
            reviewed_at=at,
            reviewer=approved_by[:320],
            outcome="new-version",
            notes=v.change_note or f"v{v.version} approved",
            evidence_id=v.evidence_id,
        )
    )
    s.flush()
    uow.audit(
        actor,
        "policy.version-approved",
        subject(row.key),
        version=v.version,
        sha256=v.content_sha256,
        request_id=v.request_id,
        approved_by=approved_by,
        evidence_id=v.evidence_id,
    )
    if not notify:
        return
    _notify(
        s,
        f"policy-{row.key}-v{v.version}-approved-to-{row.owner.id}",
        "policy-approved",
        row.key,
        row.owner,
        f"{row.title} v{v.version} is approved and in force (approved by {approved_by}); "
        f"next review due {next_review_due(row):%Y-%m-%d}.",
    )


def import_approved_version(
    uow: UnitOfWork,
    key: str,
    body: str,
    approved_by: str,
    approved_at: datetime,
    actor: Actor,
    *,
    note: str = "",
) -> VersionOut:
    """Bring in a version approved before the AIMS kept records (e.g. the policy an organisation
    already has): in force as approved at `approved_at`, kept as evidence; audited as imported
    so nobody mistakes it for a decision taken here."""
    with uow:
        s = uow.session
        row = _load(s, key, lock=True)
        if _pending(row) is not None:
            raise Conflict(f"policy '{row.key}' has a version in approval", "key")
        v = _new_version(s, row, body, note or "imported", actor.who, as_utc(approved_at))
        uow.audit(actor, "policy.version-imported", subject(row.key), version=v.version)
        # Not news: an imported version was in force before the AIMS knew of it.
        _approve(uow, row, v, as_utc(approved_at), approved_by, actor, notify=False)
        out = _version_out(s, row, v)
        _commit_and_anchor(uow)
    return out


def record_review(
    uow: UnitOfWork,
    key: str,
    data: ReviewIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
) -> PolicyOut:
    """A periodic review that keeps the version in force (5.2, A.2.4): `policy-review` evidence,
    and the next review counts from now. A changed text is a new version instead."""
    if not isinstance(data, ReviewIn):
        data = ReviewIn.model_validate(data)
    at = _utc(now)
    if data.outcome == "new-version":
        raise InvalidInput(
            f"propose the new text with `aims policy propose {key} --file ...`: its approval "
            "counts as the review",
            "outcome",
        )
    with uow:
        s = uow.session
        row = _load(s, key, lock=True)
        current = _current(row)
        if current is None:
            raise Conflict(
                f"policy '{row.key}' has no approved version to review: propose one first", "key"
            )
        reviewer = _active_person(s, data.reviewer or row.owner.email, "reviewer")
        was_due = next_review_due(row)
        text = (
            f"# Review of {row.title} v{current.version}\n\n"
            f"- **outcome**: kept unchanged\n- **reviewer**: {reviewer.name} <{reviewer.email}>\n"
            f"- **reviewed**: {at:%Y-%m-%d %H:%M} UTC (was due {was_due:%Y-%m-%d})\n"
            f"- **version in force**: v{current.version}, sha256 {current.content_sha256}\n\n"
            f"{data.notes}\n"
        )
        ev = _evidence(
            uow,
            row.key,
            "policy-review",
            f"policy-{row.key}-review-{at:%Y%m%dT%H%M%S}",
            f"Review of {row.title}: unchanged (v{current.version})",
            text,
            actor,
        )
        s.add(
            PolicyReview(
                policy_id=row.id,
                reviewed_at=at,
                reviewer=reviewer.email,
                outcome="unchanged",
                notes=data.notes,
                evidence_id=ev,
            )
        )
        row.last_reviewed_at = at
        row.review_notified_for = None
        s.flush()
        uow.audit(
            actor,
            "policy.reviewed",
            subject(row.key),
            outcome="unchanged",
            version=current.version,
            reviewer=reviewer.email,
            was_due=was_due.isoformat(),
            evidence_id=ev,
        )
        out = _out(s, row, at)
        _commit_and_anchor(uow)
    return out


# --- exceptions --------------------------------------------------------------------------------


def _exceptions(
    session: Session, *, policy_id: int | None = None, open_only: bool = False
) -> list[PolicyException]:
    q = select(PolicyException).options(
        selectinload(PolicyException.policy),
        selectinload(PolicyException.owner),
    )
    if policy_id is not None:
        q = q.where(PolicyException.policy_id == policy_id)
    if open_only:
        q = q.where(PolicyException.status == ExceptionStatus.open)
    return list(session.scalars(q.order_by(PolicyException.expires_at, PolicyException.id)))


def add_exception(
    uow: UnitOfWork,
    key: str,
    data: ExceptionIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
    notify: bool = True,
) -> ExceptionOut:
    """Grant a deviation from a policy until the end of `expires` (configured time zone); the
    owner is told unless `notify` is off (an exception brought in with existing records)."""
    if not isinstance(data, ExceptionIn):
        data = ExceptionIn.model_validate(data)
    at = _utc(now)
    expires_at = end_of_day(data.expires, uow.settings)
    if expires_at <= at:
        raise InvalidInput(
            f"{data.expires} is in the past: an exception must expire later", "expires"
        )
    with uow:
        s = uow.session
        row = _load(s, key)
        owner = _active_person(s, data.owner, "owner")
        system = get_system(s, data.system) if data.system else None
        e = PolicyException(
            policy_id=row.id,
            title=data.title,
            reason=data.reason,
            system_id=system.id if system else None,
            owner_id=owner.id,
            granted_by=actor.who,
            expires_at=expires_at,
            status=ExceptionStatus.open,
            reminders_sent=[],
            created_at=at,
        )
        s.add(e)
        s.flush()
        _evidence(
            uow,
            row.key,
            "policy-exception",
            f"policy-exception-{e.id}-granted",
            f"Exception {e.id} to {row.title} granted: {e.title}",
            f"# Exception {e.id} to {row.title}: {e.title}\n\n"
            f"- **granted by**: {actor.who} ({actor.channel})\n- **owner**: {owner.email}\n"
            f"- **system**: {system.name if system else '-'}\n"
            f"- **expires**: {data.expires} (end of day, {uow.settings.timezone})\n\n"
            f"{data.reason}\n",
            actor,
        )
        uow.audit(
            actor,
            "policy.exception-granted",
            subject(row.key),
            exception_id=e.id,
            title=e.title,
            owner=owner.email,
            system=system.name if system else None,
            expires=data.expires.isoformat(),
        )
        if notify:
            _notify(
                s,
                f"policy-exception-{e.id}-granted",
                "policy-exception",
                row.key,
                owner,
                f"You own exception {e.id} to {row.title}: {e.title}. It expires on "
                f"{data.expires}; you will be reminded before.",
            )
        s.refresh(e)
        out = _exception_out(uow.session, e)
        _commit_and_anchor(uow)
    return out


def list_exceptions(uow: UnitOfWork, *, open_only: bool = False) -> list[ExceptionOut]:
    with uow.read():
        s = uow.session
        return [_exception_out(s, e) for e in _exceptions(s, open_only=open_only)]


def _close(uow: UnitOfWork, e: PolicyException, at: datetime, why: str, actor: Actor) -> None:
    s = uow.session
    e.status = ExceptionStatus.closed
    e.closed_at = at
    expired = why == "expired"
    _evidence(
        uow,
        e.policy.key,
        "policy-exception",
        f"policy-exception-{e.id}-closed",
        f"Exception {e.id} to {e.policy.title} closed ({why}): {e.title}",
        f"# Exception {e.id} to {e.policy.title} closed: {e.title}\n\n"
        f"- **closed**: {at:%Y-%m-%d %H:%M} UTC by {actor.who} ({why})\n"
        f"- **expired**: {as_utc(e.expires_at):%Y-%m-%d %H:%M} UTC\n"
        f"- **owner**: {e.owner.email}\n",
        actor,
    )
    s.flush()
    uow.audit(actor, "policy.exception-closed", subject(e.policy.key), exception_id=e.id, why=why)
    _notify(
        s,
        f"policy-exception-{e.id}-closed",
        "policy-exception",
        e.policy.key,
        e.owner,
        f"Exception {e.id} to {e.policy.title} ({e.title}) "
        + (
            f"expired on {as_utc(e.expires_at):%Y-%m-%d} and is closed: the policy applies "
            "in full again. Ask for a new exception if the deviation must continue."
            if expired
            else "is closed."
        ),
    )


def close_exception(
    uow: UnitOfWork, exception_id: int, actor: Actor, *, now: datetime | None = None
) -> ExceptionOut:
    """Close an exception before it expires (the deviation ended). Closing twice is a no-op."""
    with uow:
        s = uow.session
        e = _lock_exception(s, exception_id)
        if e is None:
            raise NotFound(f"no policy exception {exception_id}", "exception")
        if e.status is ExceptionStatus.open:
            _close(uow, e, _utc(now), "closed by hand", actor)
        out = _exception_out(uow.session, e)
        _commit_and_anchor(uow)
    return out


def _lock_exception(session: Session, exception_id: int) -> PolicyException | None:
    return session.scalar(
        select(PolicyException)
        .where(PolicyException.id == exception_id)
        .options(selectinload(PolicyException.policy), selectinload(PolicyException.owner))
        .with_for_update(of=PolicyException)
    )


# --- the daily pass ----------------------------------------------------------------------------


def _review_due(settings: Settings, policy_id: int, at: datetime) -> str | None:
    """Tell the owner once per due date that the review is due; the key if told now."""
    uow = UnitOfWork(settings)
    with uow:
        s = uow.session
        row = s.scalar(
            select(Policy)
            .where(Policy.id == policy_id)
            .options(selectinload(Policy.owner), selectinload(Policy.versions))
            .with_for_update(of=Policy)
        )
        if row is None or _current(row) is None:
            return None
        due = next_review_due(row)
        notified = as_utc(row.review_notified_for) if row.review_notified_for else None
        if due > at or notified == due:
            return None
        row.review_notified_for = due
        current = _current(row)
        assert current is not None
        _notify(
            s,
            f"policy-{row.key}-review-due-{due:%Y%m%d}",
            "policy-review-due",
            row.key,
            row.owner,
            f"The review of {row.title} (v{current.version}) was due on {due:%Y-%m-%d}. Keep it: "
            f"`aims policy review {row.key} --outcome unchanged --notes ...`; change it: "
            f"`aims policy propose {row.key} --file ...`.",
        )
        uow.audit(
            TRACKER,
            "policy.review-due",
            subject(row.key),
            due=due.isoformat(),
            owner=row.owner.email,
        )
        uow.commit()
        return row.key


def _exception_step(settings: Settings, exception_id: int, at: datetime) -> str | None:
    """Close an expired exception, or send the latest reminder due; what was done, if any."""
    uow = UnitOfWork(settings)
    with uow:
        e = _lock_exception(uow.session, exception_id)
        if e is None or e.status is not ExceptionStatus.open:
            return None
        if as_utc(e.expires_at) <= at:
            _close(uow, e, at, "expired", TRACKER)
            _commit_and_anchor(uow)
            return "closed"
        days_left = (local_date(e.expires_at, settings) - local_date(at, settings)).days
        sent = set(e.reminders_sent or [])
        due = [d for d in settings.exception_reminder_days if days_left <= d and d not in sent]
        if not due:
            return None
        threshold = min(due)  # a late first pass sends the nearest reminder, not every missed one
        _notify(
            uow.session,
            f"policy-exception-{e.id}-reminder-{threshold}",
            "policy-exception-reminder",
            e.policy.key,
            e.owner,
            f"Reminder: exception {e.id} to {e.policy.title} ({e.title}) expires on "
            f"{local_date(e.expires_at, settings)} ({days_left} day(s)); then the policy applies "
            "in full. End the deviation, or ask for a new exception.",
        )
        e.reminders_sent = sorted(
            sent | {d for d in settings.exception_reminder_days if d >= threshold}
        )
        uow.audit(
            TRACKER,
            "policy.exception-reminded",
            subject(e.policy.key),
            exception_id=e.id,
            days_left=days_left,
        )
        uow.commit()
        return "reminded"


def tick(settings: Settings, now: datetime | None = None) -> TickReport:
    """The daily pass: owners of policies whose review fell due are told (once per due date);
    exceptions are reminded before expiry and closed once expired (owner told). Each record in
    its own transaction, checked again under a lock: a repeat at the same `now` does nothing,
    and one bad record does not hold the others up."""
    at = _utc(now)
    report = TickReport(at=at)
    with UnitOfWork(settings).read() as uow:
        policy_ids = list(uow.session.scalars(select(Policy.id).order_by(Policy.id)))
        exception_ids = [e.id for e in _exceptions(uow.session, open_only=True)]
    for pid in policy_ids:
        try:
            if (key := _review_due(settings, pid, at)) is not None:
                report.reviews_due.append(key)
        except Exception as exc:
            log.exception("review reminder of policy %d failed", pid)
            report.failures.append(Failure(step="review-due", id=pid, error=_error(exc)))
    for eid in exception_ids:
        try:
            done = _exception_step(settings, eid, at)
        except Exception as exc:
            log.exception("policy exception %d failed", eid)
            report.failures.append(Failure(step="exception", id=eid, error=_error(exc)))
            continue
        if done == "closed":
            report.exceptions_closed.append(eid)
        elif done == "reminded":
            report.exceptions_reminded.append(eid)
    return report


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def tick_rows(settings: Settings, report: TickReport) -> list[dict[str, str]]:
    """The pass as a table for the run's artifact: every policy and open exception, and what
    this pass did with it."""
    uow = UnitOfWork(settings)
    rows = [
        {
            "item": f"policy {p.key}",
            "state": f"v{p.version or '-'} {p.status}",
            "due": f"{p.next_review_due:%Y-%m-%d}" + (" (overdue)" if p.overdue else ""),
            "this pass": "owner told: review due" if p.key in report.reviews_due else "",
        }
        for p in list_policies(uow, now=report.at)
    ]
    done = {**dict.fromkeys(report.exceptions_reminded, "owner reminded")}
    done.update(dict.fromkeys(report.exceptions_closed, "closed (expired), owner told"))
    for e in list_exceptions(uow):
        if e.status is ExceptionStatus.open or e.id in done:
            rows.append(
                {
                    "item": f"exception {e.id} ({e.policy})",
                    "state": e.status.value,
                    "due": f"{e.expires_at:%Y-%m-%d}",
                    "this pass": done.get(e.id, ""),
                }
            )
    return rows


# --- documents ---------------------------------------------------------------------------------


def templates() -> list[str]:
    """The policy document templates shipped: `policy_<name>.md.j2` → name (dashes)."""
    from aims_core.reports import environment

    names = environment().list_templates(
        filter_func=lambda n: n.startswith("policy_") and n.endswith(".md.j2")
    )
    return sorted(n.removeprefix("policy_").removesuffix(".md.j2").replace("_", "-") for n in names)


def template_file(name: str) -> str:
    name = name.strip().lower()
    if name not in templates():
        raise NotFound(
            f"no policy template '{name}' (templates: {', '.join(templates())})", "template"
        )
    return f"policy_{name.replace('-', '_')}.md.j2"


def render_document(
    uow: UnitOfWork,
    template_or_key: str,
    *,
    organisation: str = "the organisation",
    now: datetime | None = None,
) -> str:
    """A policy document as Markdown from its template and the organisation's data: a template
    name, or the key of a policy that names its template."""
    from aims_core.reports import render

    name = template_or_key.strip().lower()
    policy: PolicyOut | None = None
    if name not in templates():
        with uow.read():
            exists = uow.session.scalar(select(Policy.id).where(Policy.key == name))
        if exists is None:
            raise NotFound(
                f"'{template_or_key}' is neither a policy template ({', '.join(templates())}) "
                "nor a policy key (see `aims policy list`)",
                "template",
            )
        policy = get_policy(uow, name, now=now)
        if policy.template is None:
            raise InvalidInput(
                f"policy '{name}' has no template: its text is its approved version "
                f"(`aims policy show {name} --text`)",
                "template",
            )
        name = policy.template
    context = document_context(uow, organisation=organisation, now=_utc(now))
    return render(template_file(name), policy=policy, **context)


def _people(session: Session, emails: list[str]) -> list[str]:
    found = {p.email: p for p in session.scalars(select(Person).where(Person.email.in_(emails)))}
    return [f"{found[e].name} <{e}>" if e in found else e for e in emails]


def _as_written(d: Any) -> str:
    """A duration as the rule says it (`72 h` stays 72 h, as GDPR Art. 33 puts it)."""
    parts = [
        f"{n} {unit}"
        for n, unit in (
            (d.days, "days" if d.days != 1 else "day"),
            (d.hours, "h"),
            (d.minutes, "min"),
        )
        if n
    ]
    return " ".join(parts)


def document_context(uow: UnitOfWork, *, organisation: str, now: datetime) -> dict[str, Any]:
    """What every policy template may use: the organisation, its roles with their holders, the
    RACI per activity, the inventory by risk tier, the governance data (approval of policies,
    CAPA), and the incident classification, clocks and playbooks the incident flow runs on."""
    from aims_core import playbooks as playbook_data
    from aims_core.incident_policy import incident_policy
    from aims_core.models import PersonRole
    from aims_core.services import raci
    from aims_core.services.capa import capa_policy

    settings = uow.settings
    raci_rows = [r for r in raci.show_raci(uow) if r.system is None]
    with uow.read():
        s = uow.session
        holders: dict[str, list[str]] = {}
        for role_id, name, email in s.execute(
            select(PersonRole.role_id, Person.name, Person.email)
            .join(Person, Person.id == PersonRole.person_id)
            .where(Person.active.is_(True))
            .order_by(Person.name)
        ):
            holders.setdefault(role_id, []).append(f"{name} <{email}>")
        tiers = dict(
            s.execute(select(AISystem.risk_tier, func.count()).group_by(AISystem.risk_tier)).all()
        )
        named_raci = {
            r.activity: {
                "responsible": _people(s, r.responsible),
                "accountable": _people(s, [r.accountable])[0],
                "consulted": _people(s, r.consulted),
                "informed": _people(s, r.informed),
            }
            for r in raci_rows
        }
    policy = incident_policy(settings)
    books = {}
    for category in policy.classification.categories:
        for playbook_id in dict.fromkeys(
            [category.playbook, *(x.playbook for x in category.subcategories if x.playbook)]
        ):
            books[playbook_id] = playbook_data.load_playbook(settings, playbook_id)
    severities = {s.id: s for s in policy.classification.severities}
    clocks = []
    for rule in policy.clocks.rules:
        if rule.duration is not None:
            span = _as_written(rule.duration)
        else:
            spans = [
                f"{sid} {_as_written(d)}"
                for sid, sev in severities.items()
                if (d := sev.target(rule.duration_from_severity)) is not None  # type: ignore[arg-type]
            ]
            span = f"the severity's {rule.duration_from_severity} target ({', '.join(spans)})"
        clocks.append({"rule": rule, "span": span})
    return {
        "organisation": organisation,
        "generated_at": now,
        "timezone": settings.timezone,
        "roles": [
            {
                "id": r.id,
                "title": r.title,
                "description": r.description,
                "holders": holders.get(r.id, []),
            }
            for r in catalog.roles()
        ],
        "raci": named_raci,
        "tiers": {t.value: n for t, n in tiers.items()},
        "approval": governance(settings).approval,
        "capa": capa_policy(settings),
        "classification": policy.classification,
        "clocks": clocks,
        "clock_defaults": policy.clocks.defaults,
        "playbooks": books,
        "severity_map": settings.alertmanager_severity_map,
    }


# --- demo --------------------------------------------------------------------------------------


class _DemoPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    title: str
    owner: str
    review_months: int = 12
    template: str | None = None
    approved_by: str
    approved_days_ago: int
    reviewed_days_ago: int | None = None  # a review that kept it, after the approval
    body: str | None = None  # else rendered from the template


class _DemoException(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str
    title: str
    reason: str
    owner: str
    system: str | None = None
    expires_in_days: int


class _DemoSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation: str = "the organisation"
    policies: list[_DemoPolicy] = Field(default_factory=list)
    exceptions: list[_DemoException] = Field(default_factory=list)


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The demo organisation's `policies` section (aims_core/data/demo_org.yaml); idempotent.
    Dates are relative to now: the AI policy's review is overdue, one exception runs out soon."""
    data = _DemoSection.model_validate(section)
    now = datetime.now(UTC)
    with uow.read():
        have = set(uow.session.scalars(select(Policy.key)))
        have_exceptions = set(uow.session.scalars(select(PolicyException.title)))
    added = {"policies": 0, "policy exceptions": 0}
    for p in data.policies:
        if p.key in have:
            continue
        approved_at = now - timedelta(days=p.approved_days_ago)
        add_policy(
            uow,
            PolicyIn(
                key=p.key,
                title=p.title,
                owner=p.owner,
                review_interval_months=p.review_months,
                template=p.template,
            ),
            actor,
            now=approved_at - timedelta(days=7),
        )
        body = p.body or render_document(
            uow, p.key, organisation=data.organisation, now=approved_at
        )
        import_approved_version(uow, p.key, body, p.approved_by, approved_at, actor, note="v1")
        if p.reviewed_days_ago is not None:
            record_review(
                uow,
                p.key,
                ReviewIn(notes="Annual review: still fits our AI use.", reviewer=p.owner),
                actor,
                now=now - timedelta(days=p.reviewed_days_ago),
            )
        added["policies"] += 1
    for e in data.exceptions:
        if e.title in have_exceptions:
            continue
        add_exception(
            uow,
            e.policy,
            ExceptionIn(
                title=e.title,
                reason=e.reason,
                owner=e.owner,
                system=e.system,
                expires=local_date(now + timedelta(days=e.expires_in_days), uow.settings),
            ),
            actor,
            now=now,
            notify=False,  # demo data, not news: the reminders before expiry still come
        )
        added["policy exceptions"] += 1
    return added


__all__ = [
    "DataFileInvalid",
    "ExceptionIn",
    "ExceptionOut",
    "PolicyDetail",
    "PolicyIn",
    "PolicyOut",
    "ProposalIn",
    "ReviewIn",
    "TickReport",
    "VersionOut",
    "add_exception",
    "add_policy",
    "approval_failed",
    "begin_approval",
    "close_exception",
    "get_policy",
    "governance",
    "list_exceptions",
    "list_policies",
    "next_review_due",
    "propose_version",
    "record_review",
    "render_document",
    "settle_approval",
    "tick",
]
