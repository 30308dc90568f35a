"""Stage gates (ISO/IEC 42001 8.1, A.6.2): the checklist a gate demands, the review that records
it, and the stage move an approval makes.

The gate policy (aims_core/rules/gate.py) says what each gate demands of each risk tier; this
module applies it to one system. No Prefect here: the `stage-gate` flow calls these steps in order
(check → open review → ask → record outcome), and `aims gate check` needs no engine at all.

Evidence counts only if it verifies: its content still matches its hash and its keyed chain link
is right. A record edited in the database after the fact does not satisfy a gate.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import BaseModel, computed_field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from aims_core import catalog
from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import (
    AISystem,
    ApprovalRequest,
    ApprovalStatus,
    Evidence,
    GateReview,
    GateStatus,
    LifecycleStage,
    RiskTier,
    as_utc,
)
from aims_core.rules.gate import GATES, GatePolicy, policy_for
from aims_core.services import evidence, outbox
from aims_core.services.approvals import (
    ApprovalRequestIn,
    approved_by,
    rejected_by,
    rejection_reasons,
)
from aims_core.services.systems import get_system
from aims_core.uow import Actor, UnitOfWork, locked

__all__ = [
    "ACTIVITY",
    "Checklist",
    "ChecklistItem",
    "GateOutcome",
    "GateReviewOut",
    "abandon_review",
    "check_gate",
    "gate_run_name",
    "get_review",
    "list_reviews",
    "open_review",
    "outcome_of",
    "record_outcome",
    "verify_record",
]

#: The RACI activity that scopes gate approvers.
ACTIVITY: Final = "stage-gate"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20

CheckStatus = Literal["ready", "missing-evidence", "refused"]


# --- the checklist -----------------------------------------------------------------------------


class ChecklistItem(BaseModel):
    """One evidence kind a gate needs: the records that satisfy it, and those that do not."""

    kind: str
    title: str
    control: str
    control_title: str
    note: str = ""
    evidence_ids: list[int]
    unverified: list[str] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def present(self) -> bool:
        return bool(self.evidence_ids)


class Checklist(BaseModel):
    """What one gate demands of one system, and what the evidence store holds for it."""

    system: str
    tier: RiskTier
    owner: str
    from_stage: LifecycleStage
    to_stage: LifecycleStage
    reapproval: bool = False
    policy: str
    items: list[ChecklistItem] = []
    approver_roles: list[str] = []
    quorum: int = 0
    refused: str | None = None
    checked_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def missing(self) -> list[str]:
        return [i.kind for i in self.items if not i.present]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def evidence_ids(self) -> list[int]:
        return [e for i in self.items for e in i.evidence_ids]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> CheckStatus:
        if self.refused:
            return "refused"
        return "missing-evidence" if self.missing else "ready"

    @property
    def gate(self) -> str:
        """`credit-scoring: validation→deployment` (a re-approval says so)."""
        again = " (re-approval)" if self.reapproval else ""
        return f"{self.system}: {self.from_stage.value}→{self.to_stage.value}{again}"

    def summary(self) -> str:
        """One line saying where the gate stands."""
        if self.status == "refused":
            return f"refused: {self.refused}"
        if self.status == "missing-evidence":
            return f"missing evidence: {', '.join(self.missing)}"
        return f"ready for approval: {self.quorum} of {', '.join(self.approver_roles)}"

    def markdown(self) -> str:
        lines = [
            f"## Gate {self.gate}",
            "",
            f"**{self.summary()}**",
            "",
            f"- **system**: {self.system}, risk tier **{self.tier.value}**, owner {self.owner}",
            f"- **policy**: {self.policy}",
        ]
        if self.refused:
            return "\n".join(lines) + "\n"
        lines.append(
            f"- **approvers**: {self.quorum} of the roles {', '.join(self.approver_roles)} "
            "(never the requester)"
        )
        if not self.items:
            lines += ["", "No evidence required at this gate for this tier: approval only."]
            return "\n".join(lines) + "\n"
        lines += ["", "| | evidence | control | records |", "|---|---|---|---|"]
        for i in self.items:
            mark = "✅" if i.present else "❌"
            what = f"{i.kind} — {i.title}" + (f" ({i.note})" if i.note else "")
            records = ", ".join(f"#{e}" for e in i.evidence_ids) or "**missing**"
            if i.unverified:
                records += "; does not verify: " + "; ".join(i.unverified)
            lines.append(f"| {mark} | {what} | {i.control} {i.control_title} | {records} |")
        covered = [i.control for i in self.items if i.present]
        lines += [
            "",
            f"- **present**: {', '.join(i.kind for i in self.items if i.present) or '-'}",
            f"- **missing**: {', '.join(self.missing) or '-'}",
            f"- **controls covered**: {', '.join(dict.fromkeys(covered)) or '-'}",
        ]
        return "\n".join(lines) + "\n"

    def approval_details(self) -> str:
        """The checklist as approvers see it in Slack and the Prefect UI form: lists, not a table
        (Slack renders no Markdown tables); the message itself shows system, tier and quorum."""
        head = f"**Evidence for the {self.from_stage.value} → {self.to_stage.value} gate**"
        if not self.items:
            return f"{head}: none required for this tier (approval only; {self.policy})."
        lines = [f"{head} ({self.policy})"]
        for i in self.items:
            note = f" ({i.note})" if i.note else ""
            records = ", ".join(f"#{e}" for e in i.evidence_ids) or "missing"
            mark = "✅" if i.present else "❌"
            lines.append(f"- {mark} {i.kind} — {i.title}{note} · {i.control}: {records}")
        covered = dict.fromkeys(i.control for i in self.items if i.present)
        lines.append(f"**Controls covered**: {', '.join(covered) or '-'}")
        return "\n".join(lines)


def check_gate(
    uow: UnitOfWork,
    system: str,
    to_stage: LifecycleStage | str,
    policy: GatePolicy | None = None,
) -> Checklist:
    """The checklist for taking `system` into `to_stage`. Reads only.

    A tier the policy caps below `to_stage` is refused (whatever the stage or evidence); a move
    the life cycle does not allow is InvalidInput and names the moves that are allowed.
    """
    stage = _stage(to_stage)
    policy = policy or policy_for(uow.settings)
    with uow.read():
        row = get_system(uow.session, system)
        return _checklist(uow, row, stage, policy)


def gate_run_name(uow: UnitOfWork, system: str, to_stage: LifecycleStage | str) -> str:
    """`gate credit-scoring: validation→deployment`: the run's name, from the system's stage now."""
    stage = _stage(to_stage)
    with uow.read():
        row = get_system(uow.session, system)
        current = row.lifecycle_stage
        again = " (re-approval)" if stage is current and row.reapproval_stage is current else ""
        return f"gate {row.name}: {current.value}→{stage.value}{again}"


def _stage(value: LifecycleStage | str) -> LifecycleStage:
    text = str(value).strip().lower()
    stage = next((s for s in GATES if s.value == text), None)
    if stage is None:
        names = ", ".join(s.value for s in GATES)
        raise InvalidInput(f"no gate enters '{value}' (gates: {names})", field="to")
    return stage


def _checklist(
    uow: UnitOfWork, system: AISystem, to_stage: LifecycleStage, policy: GatePolicy
) -> Checklist:
    base = {
        "system": system.name,
        "tier": system.risk_tier,
        "owner": system.owner.email,
        "from_stage": system.lifecycle_stage,
        "to_stage": to_stage,
        "policy": policy.source,
        "checked_at": datetime.now(UTC),
    }
    refusal = policy.refusal(to_stage, system.risk_tier)
    if refusal is not None:
        return Checklist(**base, refused=f"{system.name} is {system.risk_tier.value}: {refusal}")
    reapproval = _allowed(policy, system, to_stage)
    rule = policy.rule(to_stage, system.risk_tier)
    found = _verified_evidence(uow, system.name, [e.kind for e in rule.evidence])
    kinds = catalog.evidence_kinds()
    controls = {r.id: r.title for r in catalog.requirements()}
    items = [
        ChecklistItem(
            kind=e.kind,
            title=kinds[e.kind].title,
            control=e.control,
            control_title=controls[e.control],
            note=e.note,
            evidence_ids=found[e.kind][0],
            unverified=found[e.kind][1],
        )
        for e in rule.evidence
    ]
    return Checklist(
        **base,
        reapproval=reapproval,
        items=items,
        approver_roles=list(rule.approvers),
        quorum=rule.quorum,
    )


def _allowed(policy: GatePolicy, system: AISystem, to_stage: LifecycleStage) -> bool:
    """Whether the move is allowed; True when it is the re-approval of the current stage."""
    current = system.lifecycle_stage
    if to_stage is current and system.reapproval_stage is current:
        return True
    if current in policy.entered_from(to_stage):
        return False
    options = [s.value for s in GATES if current in policy.entered_from(s)]
    if system.reapproval_stage is current:
        options.append(f"{current.value} (re-approval)")
    nxt = f"it may go to {' or '.join(options)}" if options else "it has no further gate"
    raise InvalidInput(
        f"{system.name} is at {current.value}, so it cannot pass the {to_stage.value} gate: {nxt}",
        field="to",
    )


def _verified_evidence(
    uow: UnitOfWork, system: str, kinds: list[str]
) -> dict[str, tuple[list[int], list[str]]]:
    """Per kind: ids of the system's records that verify, and why the others do not."""
    out: dict[str, tuple[list[int], list[str]]] = {k: ([], []) for k in kinds}
    if not kinds:
        return out
    key = evidence.evidence_key(uow.settings)
    rows = uow.session.scalars(
        select(Evidence)
        .where(Evidence.subject == f"system:{system}", Evidence.kind.in_(kinds))
        .order_by(Evidence.seq)
    )
    for row in rows:
        problem = verify_record(uow, row, key)
        if problem is None:
            out[row.kind][0].append(row.id)
        else:
            out[row.kind][1].append(f"#{row.id}: {problem}")
    return out


def verify_record(uow: UnitOfWork, row: Evidence, key: bytes) -> str | None:
    """Why this one record does not verify (content hash, chain link), or None.

    The whole-chain walk (`aims evidence verify`) also catches deleted tails; a gate needs only
    that the records it relies on are the ones written, unedited, in their place in the chain.
    """
    problem = _content_problem(uow, row)
    if problem:
        return problem
    fields = {name: getattr(row, name) for name in evidence.CHAINED_FIELDS}
    if not hmac.compare_digest(evidence.chain_value(key, row.prev_chain, fields), row.chain):
        return "its chain link does not verify (edited after it was written)"
    previous = (
        evidence.GENESIS
        if row.seq == 1
        else uow.session.scalar(select(Evidence.chain).where(Evidence.seq == row.seq - 1))
    )
    if previous != row.prev_chain:
        return "it does not link to the record before it (records removed or reordered)"
    return None


def _content_problem(uow: UnitOfWork, row: Evidence) -> str | None:
    if row.content is not None:
        raw = row.content.encode("utf-8")
        if hashlib.sha256(raw).hexdigest() != row.content_sha256 or len(raw) != row.size:
            return "its content was edited (hash mismatch)"
        return None
    if not _HEX64.match(row.content_sha256):
        return "its content hash was edited"
    path = evidence.store_path(uow.settings, row.content_sha256)
    if not path.is_file() or path.stat().st_size != row.size:
        return "its stored file is missing or altered"
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return None if digest.hexdigest() == row.content_sha256 else "its stored file was altered"


# --- reviews -----------------------------------------------------------------------------------


class GateReviewOut(BaseModel):
    id: int
    system: str
    from_stage: LifecycleStage
    to_stage: LifecycleStage
    status: GateStatus
    missing: list[str]
    reasons: str
    request_id: int | None
    approvals: list[str] = []
    rejections: list[str] = []
    flow_run_id: str | None
    requested_by: str
    created_at: datetime
    decided_at: datetime | None
    checklist: Checklist

    @property
    def subject(self) -> str:
        return f"gate:{self.id}"

    def summary(self) -> str:
        """One line: `approved (compliance@…, governance@…)`, `missing evidence: a, b`, …"""
        if self.status is GateStatus.approved:
            return f"approved by {', '.join(self.approvals) or '-'}"
        if self.status is GateStatus.rejected:
            return f"rejected: {self.reasons}"
        if self.status is GateStatus.waiting:
            req = f" (request {self.request_id})" if self.request_id else ""
            return f"waiting for {self.checklist.quorum} approval(s){req}"
        return self.reasons

    def markdown(self) -> str:
        """The checklist and, once decided, the decision: the run's artifact."""
        text = self.checklist.markdown()
        if self.status in (GateStatus.approved, GateStatus.rejected):
            text += (
                f"\n### Decision: {self.status.value}\n\n"
                f"- **approved by**: {', '.join(self.approvals) or '-'}\n"
                f"- **rejected by**: {', '.join(self.rejections) or '-'}\n"
                f"- **approval request**: #{self.request_id}\n"
            )
            if self.status is GateStatus.rejected:
                text += f"- **reasons**: {self.reasons}\n"
            else:
                text += f"- **{self.system}** is now at **{self.to_stage.value}**\n"
        elif self.status is GateStatus.waiting:
            text += f"\n### Waiting for approval\n\n{self.summary()}\n"
        return text


class GateOutcome(BaseModel):
    """How a gate request ended, in one message and in fields (the stage-gate run's result).

    Defined here, not in the flow module: a run's result is unpickled by whoever reads it."""

    review_id: int
    gate: str
    status: GateStatus
    message: str
    missing: list[str]
    request_id: int | None
    approvals: list[str]
    rejections: list[str]


def outcome_of(review: GateReviewOut) -> GateOutcome:
    gate = review.checklist.gate
    messages = {
        GateStatus.missing_evidence: f"{gate}: {review.reasons}; nobody was asked to approve",
        GateStatus.refused: f"{gate}: {review.reasons}",
        GateStatus.waiting: f"{gate}: {review.summary()}",
        GateStatus.approved: f"{gate}: {review.summary()}; {review.system} is now at "
        f"{review.to_stage.value}",
        GateStatus.rejected: f"{gate}: {review.summary()}; the owner was told",
    }
    return GateOutcome(
        review_id=review.id,
        gate=gate,
        status=review.status,
        message=messages[review.status],
        missing=review.missing,
        request_id=review.request_id,
        approvals=review.approvals,
        rejections=review.rejections,
    )


def _review_out(session: Session, row: GateReview) -> GateReviewOut:
    request = _request_of(session, row)
    return GateReviewOut(
        id=row.id,
        system=row.system.name,
        from_stage=row.from_stage,
        to_stage=row.to_stage,
        status=row.status,
        missing=list(row.missing or []),
        reasons=row.reasons,
        request_id=request.id if request is not None else None,
        approvals=approved_by(request) if request is not None else [],
        rejections=rejected_by(request) if request is not None else [],
        flow_run_id=row.flow_run_id,
        requested_by=row.requested_by,
        created_at=as_utc(row.created_at),
        decided_at=as_utc(row.decided_at) if row.decided_at else None,
        checklist=Checklist.model_validate(row.checklist),
    )


def _request_of(session: Session, row: GateReview) -> ApprovalRequest | None:
    """The review's approval request: linked once decided, found by subject while waiting."""
    q = select(ApprovalRequest).options(selectinload(ApprovalRequest.decisions))
    if row.request_id is not None:
        return session.scalar(q.where(ApprovalRequest.id == row.request_id))
    return session.scalar(
        q.where(ApprovalRequest.subject == f"gate:{row.id}").order_by(ApprovalRequest.id.desc())
    )


def _lock_system(session: Session, name: str) -> AISystem:
    """The system, locked until commit. By name, as a checklist names it: `uow.locked` takes a
    primary key, so this stays one `SELECT ... FOR UPDATE` of its own."""
    system = session.scalar(select(AISystem).where(AISystem.name == name).with_for_update())
    if system is None:
        raise NotFound(f"no AI system named '{name}'", field="system")
    return system


def _lock_review(session: Session, review_id: int) -> GateReview:
    row = locked(session, GateReview, review_id)
    if row is None:
        raise NotFound(f"no gate review {review_id} (see `aims gate list`)", field="review")
    return row


_OPENED: Final = {
    "ready": (GateStatus.waiting, "gate.requested"),
    "missing-evidence": (GateStatus.missing_evidence, "gate.missing-evidence"),
    "refused": (GateStatus.refused, "gate.refused"),
}


def approval_request(review: GateReviewOut, requester: str | None) -> ApprovalRequestIn:
    """What a gate asks its approvers (the stage-gate flow, and the demo's past gates)."""
    checklist = review.checklist
    return ApprovalRequestIn(
        idempotency_key=f"gate-{review.id}",
        subject=review.subject,
        activity=ACTIVITY,
        system=checklist.system,
        title=f"Gate {checklist.gate}",
        details=checklist.approval_details(),
        approver_roles=checklist.approver_roles,
        quorum=checklist.quorum,
        requester=requester,
        evidence_ids=checklist.evidence_ids,
    )


def open_review(
    uow: UnitOfWork,
    checklist: Checklist,
    actor: Actor,
    *,
    requested_by: str | None = None,
    flow_run_id: str | None = None,
    at: datetime | None = None,
) -> GateReviewOut:
    """Record a gate request with its checklist: waiting for approval when ready, else closed at
    once as missing-evidence or refused (nobody is asked to approve an incomplete gate). `at`:
    when it was requested (a past business date); default now.

    Idempotent per flow run (a re-run finds its review). Conflict when the system moved since the
    check, or when another review of the system is still waiting on an open approval request.
    """
    status, action = _OPENED[checklist.status]
    with uow:
        s = uow.session
        system = _lock_system(s, checklist.system)
        if flow_run_id:
            existing = s.scalar(
                select(GateReview).where(
                    GateReview.flow_run_id == flow_run_id, GateReview.system_id == system.id
                )
            )
            if existing is not None:
                return _review_out(s, existing)
        if system.lifecycle_stage is not checklist.from_stage:
            raise Conflict(
                f"{system.name} moved to {system.lifecycle_stage.value} since the check at "
                f"{checklist.from_stage.value}: check the gate again",
                field="system",
            )
        if status is GateStatus.waiting:
            _refuse_second_waiting(s, system)
        now = as_utc(at) if at is not None else datetime.now(UTC)
        row = GateReview(
            system=system,
            from_stage=checklist.from_stage,
            to_stage=checklist.to_stage,
            status=status,
            checklist=checklist.model_dump(mode="json"),
            missing=checklist.missing,
            reasons="" if status is GateStatus.waiting else checklist.summary(),
            flow_run_id=flow_run_id,
            requested_by=requested_by or actor.who,
            created_at=now,
            decided_at=None if status is GateStatus.waiting else now,
        )
        s.add(row)
        s.flush()
        uow.audit(
            actor,
            action,
            f"gate:{row.id}",
            system=system.name,
            tier=system.risk_tier.value,
            from_stage=checklist.from_stage.value,
            to_stage=checklist.to_stage.value,
            reapproval=checklist.reapproval,
            missing=checklist.missing,
            evidence_ids=checklist.evidence_ids,
            refused=checklist.refused,
            flow_run_id=flow_run_id,
        )
        out = _review_out(s, row)
        uow.commit()
    return out


def _refuse_second_waiting(session: Session, system: AISystem) -> None:
    """One open gate approval per system: two could both move its stage."""
    waiting = session.scalars(
        select(GateReview.id).where(
            GateReview.system_id == system.id, GateReview.status == GateStatus.waiting
        )
    ).all()
    if not waiting:
        return
    open_request = session.scalar(
        select(ApprovalRequest).where(
            ApprovalRequest.subject.in_([f"gate:{i}" for i in waiting]),
            ApprovalRequest.status == ApprovalStatus.open,
        )
    )
    if open_request is not None:
        raise Conflict(
            f"{system.name} already has a gate waiting for approval ({open_request.subject}, "
            f"approval request {open_request.id}): decide or reject that one first "
            f"(`aims approvals show {open_request.id}`)",
            field="system",
        )


def record_outcome(
    uow: UnitOfWork,
    review_id: int,
    request_id: int,
    actor: Actor,
    *,
    at: datetime | None = None,
) -> GateReviewOut:
    """Record the decided approval request on its gate review, once (`at`: when, default now).

    Approved: the system enters the stage (a re-approval clears its marker). Rejected: the reasons
    are kept and the owner is told. Either way the decision is evidence on the gate and on the
    system. A repeat finds the review decided and changes nothing.
    """
    with uow:
        s = uow.session
        review = _lock_review(s, review_id)
        if review.status in (GateStatus.approved, GateStatus.rejected):
            return _review_out(s, review)
        if review.status is not GateStatus.waiting:
            raise Conflict(f"gate review {review_id} is {review.status.value}", field="review")
        request = s.scalar(
            select(ApprovalRequest)
            .where(ApprovalRequest.id == request_id)
            .options(selectinload(ApprovalRequest.decisions))
        )
        if request is None or request.subject != f"gate:{review_id}":
            raise InvalidInput(
                f"approval request {request_id} is not the request of gate review {review_id}",
                field="request",
            )
        if request.status is ApprovalStatus.open:
            raise Conflict(f"approval request {request_id} is not decided yet", field="request")
        system = _lock_system(s, review.system.name)
        review.request_id = request.id
        review.decided_at = as_utc(at) if at is not None else datetime.now(UTC)
        subject = f"gate:{review.id}"
        if request.status is ApprovalStatus.approved:
            _enter_stage(uow, review, system, actor)
        else:
            _reject(uow, review, system, request)
        s.flush()
        out = _review_out(s, review)
        _record_decision(uow, out, actor)
        uow.audit(
            actor,
            f"gate.{review.status.value}",
            subject,
            system=system.name,
            from_stage=review.from_stage.value,
            to_stage=review.to_stage.value,
            request_id=request.id,
            approvals=out.approvals,
            rejections=out.rejections,
            reasons=review.reasons,
        )
        uow.commit()
    evidence.sync_anchor(uow.settings)
    return out


def _enter_stage(uow: UnitOfWork, review: GateReview, system: AISystem, actor: Actor) -> None:
    current = system.lifecycle_stage
    if current not in (review.from_stage, review.to_stage):
        raise Conflict(
            f"{system.name} is at {current.value}, no longer at {review.from_stage.value}: the "
            f"approval of gate review {review.id} cannot move it",
            field="system",
        )
    review.status = GateStatus.approved
    system.lifecycle_stage = review.to_stage
    cleared = system.reapproval_stage is review.to_stage
    if cleared:
        system.reapproval_stage = None
    uow.audit(
        actor,
        "system.stage-changed",
        f"system:{system.name}",
        from_stage=current.value,
        to_stage=review.to_stage.value,
        gate_review=review.id,
        reapproval_cleared=cleared,
    )


def _reject(
    uow: UnitOfWork, review: GateReview, system: AISystem, request: ApprovalRequest
) -> None:
    review.status = GateStatus.rejected
    reasons = rejection_reasons(request, bare_email_if_no_comment=True)
    if request.status is ApprovalStatus.cancelled:
        reasons.append("the approval request was cancelled")
    review.reasons = "; ".join(reasons) or "rejected"
    gate = f"{system.name}: {review.from_stage.value}→{review.to_stage.value}"
    outbox.queue(
        uow.session,
        outbox.NotificationIn(
            idempotency_key=f"gate-{review.id}-rejected",
            kind="gate-rejected",
            subject=f"gate:{review.id}",
            recipient=system.owner.email,
            text=(
                f"Gate {gate} was rejected. Reasons: {review.reasons}. "
                f"See `aims gate list --system {system.name}`; address them and request the "
                "gate again."
            ),
        ),
    )


def _record_decision(uow: UnitOfWork, review: GateReviewOut, actor: Actor) -> None:
    """The decision as evidence on the gate and on the system (keyed: written once)."""
    text = review.model_dump_json(
        indent=2,
        include={
            "id",
            "system",
            "from_stage",
            "to_stage",
            "status",
            "reasons",
            "request_id",
            "approvals",
            "rejections",
            "decided_at",
        },
    )
    title = f"Gate {review.checklist.gate} {review.status.value}"
    for subject, key in (
        (review.subject, f"gate-{review.id}-decision"),
        (f"system:{review.system}", f"gate-{review.id}-decision-system"),
    ):
        evidence.append_in(
            uow,
            EvidenceIn(
                subject=subject, kind="decision", title=title, text=text, idempotency_key=key
            ),
            actor,
        )


def abandon_review(uow: UnitOfWork, review_id: int, reason: str, actor: Actor) -> GateReviewOut:
    """Close a waiting review that cannot be put to anyone (e.g. too few eligible approvers for
    the quorum), so it does not block the next request. A decided review is left as it is."""
    with uow:
        s = uow.session
        review = _lock_review(s, review_id)
        if review.status is GateStatus.waiting:
            review.status = GateStatus.refused
            review.reasons = reason
            review.decided_at = datetime.now(UTC)
            s.flush()
            uow.audit(actor, "gate.refused", f"gate:{review.id}", reason=reason)
        out = _review_out(s, review)
        uow.commit()
    return out


def get_review(uow: UnitOfWork, review_id: int) -> GateReviewOut:
    with uow.read():
        row = uow.session.get(GateReview, review_id)
        if row is None:
            raise NotFound(f"no gate review {review_id} (see `aims gate list`)", field="review")
        return _review_out(uow.session, row)


def list_reviews(uow: UnitOfWork, system: str | None = None) -> list[GateReviewOut]:
    """Gate reviews, newest first; only one system's with `system`."""
    with uow.read():
        q = select(GateReview).options(selectinload(GateReview.system))
        if system is not None:
            q = q.where(GateReview.system_id == get_system(uow.session, system).id)
        rows = uow.session.scalars(q.order_by(GateReview.id.desc()))
        return [_review_out(uow.session, r) for r in rows]
