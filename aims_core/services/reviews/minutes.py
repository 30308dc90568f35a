"""The minutes of a management review: what the pack says in a page, the ask that top management
answers on them (the RACI of `management-review`: approve, with the meeting's attendees and
conclusions, or reject saying why), and filing the outcome: approved minutes with the decisions
become evidence; a rejection keeps the reasons. A past review approved as a plain approval (the
demo's history) is filed the same way."""

from __future__ import annotations

from datetime import UTC, datetime

from aims_core.ask_forms.reviews import REVIEW_MINUTES
from aims_core.errors import Conflict
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import ApprovalRequest, ReviewStatus, as_utc
from aims_core.services import evidence
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.reviews.periods import subject
from aims_core.services.reviews.queries import get_review, load_review, review_out
from aims_core.services.reviews.schemas import (
    ACTIVITY,
    APPROVER_ROLES,
    EVIDENCE_KIND,
    ReviewInputs,
    ReviewOut,
)
from aims_core.uow import Actor, UnitOfWork


def summary_markdown(review: ReviewOut) -> str:
    """What the pack says in a page: the figures of each input, where the files are."""
    inputs = ReviewInputs.model_validate(review.inputs)
    perf = inputs.performance
    counts = inputs.action_counts
    sev = ", ".join(f"{k} {v}" for k, v in perf.incidents_by_severity.items())
    mttc, training = perf.mean_time_to_contain_hours, perf.training_compliance_pct
    kinds = ", ".join(f"{k} {v}" for k, v in perf.findings_by_kind.items())
    lines = [
        f"## Management review {review.period} ({review.status.value})",
        "",
        f"- **a) previous actions**: {len(inputs.actions)} — "
        + ", ".join(f"{k} {v}" for k, v in counts.items()),
        f"- **b) external and internal issues**: {len(inputs.issues)} change(s)",
        f"- **c) interested parties**: {len(inputs.parties)} change(s)",
        f"- **d) performance**: CAPAs opened {perf.capas_opened}, closed {perf.capas_closed}, "
        f"open at end {perf.capas_open_at_end}; incidents {perf.incidents} ({sev}); "
        f"mean time to contain {'-' if mttc is None else mttc} h; "
        f"approvals overdue {perf.approvals_overdue}; training "
        f"{'-' if training is None else training} %; "
        f"SoA {perf.soa_decided}/{perf.soa_controls} decided; audits closed "
        f"{len(perf.audits_closed)}; findings {kinds}",
        f"- **e) opportunities for improvement**: {len(inputs.improvements)}",
        "",
        "Pack:",
        *(f"- `{p}`" for p in review.files().values()),
    ]
    if review.pack_evidence_ids:
        lines.append(f"- evidence: {', '.join(f'#{i}' for i in review.pack_evidence_ids)}")
    return "\n".join(lines)


def _decisions_md(review: ReviewOut) -> list[str]:
    if not review.actions:
        return ["_No decisions recorded._"]
    return [
        f"{n}. ({a.kind}) {a.decision} — owner {a.owner}, due {a.due} [action {a.id}]"
        for n, a in enumerate(review.actions, 1)
    ]


def approval_spec(review: ReviewOut, flow_run_id: str | None = None) -> ApprovalRequestIn:
    """The minutes approval: top management (RACI of `management-review`) approves the review
    with the decisions recorded. One request per preparation of the pack."""
    details = "\n".join(
        [
            summary_markdown(review),
            "",
            "Decisions recorded so far:",
            *_decisions_md(review),
            "",
            f"Record decisions before approving: `aims review decide {review.period} --decision "
            "TEXT --kind improvement|change|resources --owner EMAIL --due YYYY-MM-DD`.",
        ]
    )
    # One request per preparation: its time names it (the evidence of an identical pack may
    # be replayed, so the evidence ids alone could name a rejected request again).
    return ApprovalRequestIn(
        idempotency_key=f"management-review-{review.period}-{review.prepared_at:%Y%m%dT%H%M%S%f}",
        subject=review.subject,
        activity=ACTIVITY,
        title=f"Approve the minutes of management review {review.period}",
        details=details[:20_000],
        approver_roles=APPROVER_ROLES,
        evidence_ids=review.pack_evidence_ids,
        flow_run_id=flow_run_id,
    )


def minutes_spec(review: ReviewOut, flow_run_id: str | None = None) -> ApprovalRequestIn:
    """The run's ask on the minutes: top management (the RACI of `management-review`) approves
    them, with who attended and what was concluded, or rejects them saying why. One ask per
    preparation of the pack, like `approval_spec`."""
    spec = approval_spec(review, flow_run_id)
    how = (
        f"Answer in Slack, the run's Prefect UI form, or `aims review minutes {review.period} "
        "--as EMAIL --approve|--reject --notes TEXT`."
    )
    return spec.model_copy(
        update={
            "kind": REVIEW_MINUTES,
            "title": f"The minutes of management review {review.period}: approve or reject",
            "details": f"{spec.details[: 20_000 - len(how) - 2]}\n\n{how}",
        }
    )


def _verdict(req: ApprovalRequest) -> tuple[str, str, dict[str, str]]:
    """(approved|rejected|open, who decided, the minutes answer) of a minutes ask or approval."""
    if req.kind != REVIEW_MINUTES:
        who = ", ".join(
            f"{d.person.email} ({d.outcome.value}{': ' + d.comment if d.comment else ''})"
            for d in req.decisions
        )
        return req.status.value, who, {}
    answered = [d for d in req.decisions if d.answer]
    if req.status.value != "answered" or not answered:
        return req.status.value, "", {}
    d = answered[0]
    answer = {k: str(v or "") for k, v in (d.answer or {}).items()}
    verdict = "approved" if answer.get("outcome") == "approve" else "rejected"
    notes = f": {answer['notes']}" if verdict == "rejected" and answer.get("notes") else ""
    return verdict, f"{d.person.email} ({answer.get('outcome')}{notes}, via {d.channel})", answer


def record_outcome(uow: UnitOfWork, period: str, actor: Actor) -> ReviewOut:
    """File what top management decided on the minutes ask: approved -> the minutes (with the
    meeting's attendees and conclusions, and the decisions) become evidence; rejected -> the
    reasons are kept. The flow calls it in the name of who answered. Idempotent."""
    with uow:
        s = uow.session
        row = load_review(s, period, lock=True)
        if row.request_id is None:
            raise Conflict(f"no minutes approval was asked for {period}", "period")
        req = s.get(ApprovalRequest, row.request_id)
        assert req is not None
        status, who, answer = _verdict(req)
        if status not in ("approved", "rejected") or row.status.value == status:
            return review_out(row)
        meeting = [
            *([f"Attendees: {answer['attendees']}", ""] if answer.get("attendees") else []),
            *(
                ["## Conclusions", "", answer["notes"], ""]
                if answer.get("notes") and status == "approved"
                else []
            ),
        ]
        if status == "approved":
            row.status = ReviewStatus.approved
            row.approved_at = as_utc(req.decided_at) if req.decided_at else datetime.now(UTC)
            out = review_out(row)
            row.minutes = (
                "\n".join(
                    [
                        f"# Minutes of management review {period}",
                        "",
                        f"Approved {row.approved_at:%Y-%m-%d %H:%M} UTC by {who} "
                        f"(request {req.id}).",
                        "",
                        *meeting,
                        summary_markdown(out),
                        "",
                        "## Decisions (9.3.3)",
                        "",
                        *_decisions_md(out),
                    ]
                )
                + "\n"
            )
            ev = evidence.append_in(
                uow,
                EvidenceIn(
                    subject=subject(period),
                    kind=EVIDENCE_KIND,
                    title=f"Management review {period}: approved minutes",
                    text=row.minutes,
                    media_type="text/markdown; charset=utf-8",
                    idempotency_key=f"review-{period}-minutes-{req.id}",
                ),
                actor,
            )
            uow.audit(
                actor, "review.approved", subject(period), request_id=req.id,
                decisions=len(out.actions), evidence_id=ev.id,
            )  # fmt: skip
        else:
            row.status = ReviewStatus.rejected
            row.minutes = f"Minutes rejected by {who} (request {req.id}).\n"
            uow.audit(actor, "review.rejected", subject(period), request_id=req.id, by=who)
        s.flush()
        out = review_out(row)
        uow.commit()
    evidence.sync_anchor(uow.settings)
    return out


def attach_request(
    uow: UnitOfWork, period: str, request_id: int, flow_run_id: str | None, actor: Actor
) -> ReviewOut:
    """The minutes approval request (and the run waiting on it) of a review. Idempotent."""
    with uow:
        row = load_review(uow.session, period, lock=True)
        if (row.request_id, row.flow_run_id) != (request_id, flow_run_id):
            row.request_id, row.flow_run_id = request_id, flow_run_id
            uow.audit(
                actor, "review.minutes-requested", subject(period),
                request_id=request_id, flow_run_id=flow_run_id,
            )  # fmt: skip
        uow.commit()
    return get_review(uow, period)
