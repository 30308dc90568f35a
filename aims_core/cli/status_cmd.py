"""`aims status`: what is waiting on whom, from the records alone (no engine needed)."""

from __future__ import annotations

from datetime import datetime

import typer

from aims_core.cli._base import print_json, print_table
from aims_core.errors import InvalidInput
from aims_core.messages import fmt_utc
from aims_core.services import status as statuses
from aims_core.services.clocks import fmt_left
from aims_core.services.status import Counts, StatusReport
from aims_core.system_keys import label
from aims_core.uow import UnitOfWork


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"'{value}' is not an ISO 8601 time (e.g. 2026-11-20T14:05:00+01:00)", field="at"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"'{value}' has no time zone: add one (+01:00, or Z for UTC)", "at")
    return parsed


def headline(c: Counts) -> str:
    """`waiting: 2 approvals (1 overdue), 1 incident clock, ...`; only the non-zero parts."""
    parts = []
    for n, one, many, late, how in (
        (c.approvals, "approval", "approvals", c.approvals_overdue, "overdue"),
        (c.clocks, "incident clock", "incident clocks", c.clocks_overdue, "overdue"),
        (c.capa_actions_overdue, "overdue CAPA action", "overdue CAPA actions", 0, ""),
        (c.capa_verifications_due, "CAPA verification due", "CAPA verifications due", 0, ""),
        (
            c.trainings_expiring,
            "training expiring",
            "trainings expiring",
            c.trainings_expired,
            "expired",
        ),
        (c.review_actions_overdue, "overdue review action", "overdue review actions", 0, ""),
        (c.policy_reviews_due, "policy review due", "policy reviews due", 0, ""),
        (c.policy_exceptions_due, "policy exception expiring", "policy exceptions expiring", 0, ""),
        (c.vendor_assessments_due, "vendor assessment due", "vendor assessments due", 0, ""),
        (c.plan_tasks_overdue, "overdue plan task", "overdue plan tasks", 0, ""),
    ):
        if n:
            text = f"{n} {one if n == 1 else many}"
            parts.append(f"{text} ({late} {how})" if late else text)
    return "waiting: " + ", ".join(parts) if parts else "nothing waiting"


def _day(value: datetime | None) -> str:
    return fmt_utc(value) if value else "-"


def _print(r: StatusReport) -> None:
    typer.echo(f"{headline(r.counts)}  (as of {fmt_utc(r.generated_at)})")
    if r.approvals:
        print_table(
            f"Approvals waiting ({len(r.approvals)})",
            ["request", "title", "requested", "deadline", "decided", "waiting for", "run"],
            [
                (
                    a.request_id,
                    a.title,
                    f"{a.requested_at:%Y-%m-%d}",
                    _day(a.deadline) + (" OVERDUE" if a.overdue else ""),
                    f"{a.approvals}/{a.quorum}",
                    ", ".join(a.waiting_for) or "-",
                    a.flow_run_id or "-",
                )
                for a in r.approvals
            ],
        )
    if r.clocks:
        print_table(
            f"Incident clocks running ({len(r.clocks)})",
            ["clock", "incident", "system", "obligation", "deadline", "time left", "reminds"],
            [
                (
                    c.clock_id,
                    f"#{c.incident_id}{' (drill)' if c.is_drill else ''} {c.incident_title}",
                    label(c.system, c.system_name),
                    c.clock,
                    _day(c.due_at),
                    fmt_left(int(c.remaining_hours * 3600)),
                    ", ".join(c.people) or "-",
                )
                for c in r.clocks
            ],
        )
    if r.capa_actions_overdue:
        print_table(
            f"CAPA actions overdue ({len(r.capa_actions_overdue)})",
            ["CAPA", "action", "owner", "due", "days late"],
            [
                (
                    f"{a.capa_id} {a.capa_title}",
                    f"{a.action_id} {a.action}",
                    a.owner,
                    f"{a.due_at:%Y-%m-%d}",
                    a.days_overdue,
                )
                for a in r.capa_actions_overdue
            ],
        )
    if r.capa_verifications_due:
        print_table(
            f"CAPA effectiveness verifications due ({len(r.capa_verifications_due)})",
            ["CAPA", "owner", "due", "verifiers"],
            [
                (f"{v.capa_id} {v.title}", v.owner, _day(v.due_at), ", ".join(v.verifiers))
                for v in r.capa_verifications_due
            ],
        )
    if r.trainings_expiring:
        print_table(
            f"Trainings expired or expiring ({len(r.trainings_expiring)})",
            ["person", "training", "expires", "days left"],
            [
                (
                    t.person,
                    t.title,
                    f"{t.expires_on}" + (" EXPIRED" if t.expired else ""),
                    t.days_left,
                )
                for t in r.trainings_expiring
            ],
        )
    if r.review_actions_overdue:
        print_table(
            f"Management review actions overdue ({len(r.review_actions_overdue)})",
            ["action", "review", "decision", "owner", "due"],
            [(a.action_id, a.review, a.decision, a.owner, a.due) for a in r.review_actions_overdue],
        )
    if r.policy_reviews_due:
        print_table(
            f"Policy reviews due ({len(r.policy_reviews_due)})",
            ["policy", "title", "owner", "due"],
            [(p.policy, p.title, p.owner, f"{p.due_at:%Y-%m-%d}") for p in r.policy_reviews_due],
        )
    if r.policy_exceptions_due:
        print_table(
            f"Policy exceptions expiring ({len(r.policy_exceptions_due)})",
            ["exception", "policy", "title", "owner", "expires"],
            [
                (e.exception_id, e.policy, e.title, e.owner, _day(e.expires_at))
                for e in r.policy_exceptions_due
            ],
        )
    if r.vendor_assessments_due:
        print_table(
            f"Vendor assessments due ({len(r.vendor_assessments_due)})",
            ["vendor", "criticality", "owner", "due"],
            [
                (v.vendor, v.criticality, v.owner or "-", f"{v.due_at:%Y-%m-%d}")
                for v in r.vendor_assessments_due
            ],
        )
    if r.plan_tasks_overdue:
        print_table(
            f"Implementation plan tasks overdue ({len(r.plan_tasks_overdue)})",
            ["task", "requirement", "title", "owner", "due", "days overdue"],
            [
                (t.task_id, t.requirement, t.title, t.owner, _day(t.due_at), t.days_overdue)
                for t in r.plan_tasks_overdue
            ],
        )
    if r.waiting_on:
        print_table(
            f"Waiting on ({len(r.waiting_on)} people)",
            ["person", "total", "approvals", "clocks", "CAPA", "trainings", "other"],
            [
                (
                    email,
                    w.total,
                    w.approvals,
                    w.clocks,
                    w.capa_actions + w.capa_verifications,
                    w.trainings,
                    w.review_actions
                    + w.policy_reviews
                    + w.policy_exceptions
                    + w.vendor_assessments
                    + w.plan_tasks,
                )
                for email, w in r.waiting_on.items()
            ],
        )


def status(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    at: str | None = typer.Option(
        None,
        "--at",
        metavar="ISO-8601",
        help="Judge due dates as of this time, with zone (default: now).",
    ),
) -> None:
    """What is waiting on whom: open approvals, incident clocks, overdue CAPA actions, expiring
    trainings, review actions, policy reviews and exceptions, vendor reassessments, overdue
    implementation plan tasks."""
    report = statuses.snapshot(UnitOfWork(), now=_as_of(at))
    if as_json:
        print_json(report)
        return
    _print(report)
