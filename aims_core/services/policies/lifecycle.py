"""A policy and its versions: registered, proposed, approved (or not), reviewed (5.2, A.2.2).

A proposed version goes through the shared approval service (the `policy-approval` run asks the
roles of `policy_governance.yaml`); once approved it supersedes the previous one, counts as a
review, and is kept as `policy` evidence with its SHA-256. A review that keeps the text records
`policy-review` evidence.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.models import (
    ApprovalRequest,
    ApprovalStatus,
    Person,
    Policy,
    PolicyReview,
    PolicyVersion,
    PolicyVersionStatus,
    as_utc,
)
from aims_core.rules.policy import governance
from aims_core.services.approvals import ApprovalRequestIn, approved_by
from aims_core.services.people import active_person
from aims_core.services.policies.documents import template_file
from aims_core.services.policies.due import as_of, next_review_due
from aims_core.services.policies.queries import (
    current_version,
    load_policy,
    pending_version,
    policy_out,
    rejection_reasons,
    version_out,
)
from aims_core.services.policies.records import (
    commit_and_anchor,
    notify,
    record_evidence,
)
from aims_core.services.policies.schemas import (
    DETAILS_MAX,
    PolicyIn,
    PolicyOut,
    ProposalIn,
    ReviewIn,
    VersionOut,
    approval_key,
    sha256,
    subject,
)
from aims_core.uow import Actor, UnitOfWork, locked


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
            owner=active_person(s, data.owner, "owner"),
            review_interval_months=data.review_interval_months,
            template=data.template,
            created_by=actor.who,
            created_at=as_of(now),
        )
        s.add(row)
        s.flush()
        uow.audit(actor, "policy.added", subject(row.key), **data.model_dump(mode="json"))
        out = policy_out(s, row, as_of(now))
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
        row = load_policy(s, key, lock=True)
        pending = pending_version(row)
        if pending is not None:
            hint = (
                f"`aims policy submit {row.key}` starts its approval"
                if pending.status is PolicyVersionStatus.draft
                else f"its approval is open (request {pending.request_id or '-'})"
            )
            raise Conflict(f"v{pending.version} of '{row.key}' is {pending.status}: {hint}", "key")
        current = current_version(row)
        if current is not None and current.content_sha256 == sha256(data.body):
            raise InvalidInput(
                f"the same text as v{current.version} in force: a review that keeps it is "
                f"`aims policy review {row.key} --outcome unchanged --notes ...`",
                "body",
            )
        requester = active_person(s, data.requester or row.owner.email, "requester")
        v = _new_version(s, row, data.body, data.change_note, requester.email, as_of(now))
        uow.audit(
            actor,
            "policy.version-proposed",
            subject(row.key),
            version=v.version,
            sha256=v.content_sha256,
            change_note=v.change_note,
            requester=requester.email,
        )
        out = version_out(s, row, v)
        uow.commit()
    return out


def draft_version(uow: UnitOfWork, key: str) -> VersionOut:
    """The draft waiting for its approval run to start (Conflict if there is none)."""
    with uow.read():
        s = uow.session
        row = load_policy(s, key)
        pending = pending_version(row)
        if pending is None or pending.status is not PolicyVersionStatus.draft:
            what = f"v{pending.version} is in approval" if pending else "no draft version"
            raise Conflict(f"policy '{row.key}': {what}", "key")
        return version_out(s, row, pending)


def _details(row: Policy, v: PolicyVersion) -> str:
    """What approvers see: the change, its fingerprint, and the diff from the version in force."""
    current = current_version(row)
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
        v = locked(s, PolicyVersion, version_id)
        if v is None:
            raise NotFound(f"no policy version {version_id}", "version")
        row = load_policy(s, s.get_one(Policy, v.policy_id).key)
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
            as_of(v.created_at) + timedelta(days=policy.deadline_days)
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
        out = version_out(s, row, v)
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
    at = as_of(now)
    with uow:
        s = uow.session
        v = locked(s, PolicyVersion, version_id)
        if v is None:
            raise NotFound(f"no policy version {version_id}", "version")
        row = load_policy(s, s.get_one(Policy, v.policy_id).key, lock=True)
        v = next(x for x in row.versions if x.id == version_id)
        if v.status in (PolicyVersionStatus.approved, PolicyVersionStatus.rejected):
            return version_out(s, row, v)
        req = s.get(ApprovalRequest, request_id)
        if req is None or req.status is ApprovalStatus.open:
            raise Conflict(f"approval request {request_id} is not decided yet", "request")
        v.request_id = req.id
        if req.status is ApprovalStatus.approved:
            _approve(uow, row, v, at, ", ".join(approved_by(req)) or "approval service", actor)
        else:
            v.status = PolicyVersionStatus.rejected
            s.flush()
            reasons = rejection_reasons(s, req.id)
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
                notify(
                    s,
                    f"policy-{row.key}-v{v.version}-rejected-to-{proposer.id}",
                    "policy-rejected",
                    row.key,
                    proposer,
                    f"{row.title} v{v.version} was not approved: "
                    + ("; ".join(reasons) or req.status.value)
                    + f". Propose a revised text: `aims policy propose {row.key} --file ...`",
                )
        out = version_out(s, row, v)
        commit_and_anchor(uow)
    return out


def _approve(
    uow: UnitOfWork,
    row: Policy,
    v: PolicyVersion,
    at: datetime,
    approved_by: str,
    actor: Actor,
    *,
    notify_owner: bool = True,
) -> None:
    s = uow.session
    for old in row.versions:
        if old.status is PolicyVersionStatus.approved:
            old.status = PolicyVersionStatus.superseded
    v.status = PolicyVersionStatus.approved
    v.approved_at = at
    v.evidence_id = record_evidence(
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
    if not notify_owner:
        return
    notify(
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
        row = load_policy(s, key, lock=True)
        if pending_version(row) is not None:
            raise Conflict(f"policy '{row.key}' has a version in approval", "key")
        v = _new_version(s, row, body, note or "imported", actor.who, as_utc(approved_at))
        uow.audit(actor, "policy.version-imported", subject(row.key), version=v.version)
        # Not news: an imported version was in force before the AIMS knew of it.
        _approve(uow, row, v, as_utc(approved_at), approved_by, actor, notify_owner=False)
        out = version_out(s, row, v)
        commit_and_anchor(uow)
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
    at = as_of(now)
    if data.outcome == "new-version":
        raise InvalidInput(
            f"propose the new text with `aims policy propose {key} --file ...`: its approval "
            "counts as the review",
            "outcome",
        )
    with uow:
        s = uow.session
        row = load_policy(s, key, lock=True)
        current = current_version(row)
        if current is None:
            raise Conflict(
                f"policy '{row.key}' has no approved version to review: propose one first", "key"
            )
        reviewer = active_person(s, data.reviewer or row.owner.email, "reviewer")
        was_due = next_review_due(row)
        text = (
            f"# Review of {row.title} v{current.version}\n\n"
            f"- **outcome**: kept unchanged\n- **reviewer**: {reviewer.name} <{reviewer.email}>\n"
            f"- **reviewed**: {at:%Y-%m-%d %H:%M} UTC (was due {was_due:%Y-%m-%d})\n"
            f"- **version in force**: v{current.version}, sha256 {current.content_sha256}\n\n"
            f"{data.notes}\n"
        )
        ev = record_evidence(
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
        out = policy_out(s, row, at)
        commit_and_anchor(uow)
    return out
