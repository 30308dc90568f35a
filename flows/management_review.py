"""Management review (ISO/IEC 42001 9.3) as a quarterly run: pack, then the minutes approval.

Scheduled at 06:00 on the first day of each quarter (deployments/serve.py), with no parameters:
the period is then the quarter before the run's scheduled start, in the configured time zone. The
run gathers every 9.3.2 input and writes the pack (a persisted task keyed by the period: the
re-run from the top after the suspended wait gets it back cached and does not rewrite it),
publishes a summary and a table of the inputs, and asks top management (RACI `management-review`)
for their word on the minutes (`tasks.asks.ask`: Slack, the Prefect UI form with their personal
code, or `aims review minutes --as`): approve, with the meeting's attendees and conclusions, or
reject saying why. Decisions are recorded meanwhile with `aims review decide`. The answer is filed
once in the name of who gave it: approved, the minutes, listing the decisions, become evidence.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.runtime import flow_run

from aims_core.models import ReviewStatus
from aims_core.services import reviews
from aims_core.services.reviews import ReviewInputs, ReviewOut
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.answers import answered_as
from tasks.asks import AskOutcome, ask, open_request
from tasks.run_names import run_name
from tasks.run_tags import tag_this_run

ACTOR = Actor(who="flow:management-review", channel="flow")


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


def _period(period: str | None) -> str:
    """The given period, else the quarter before the run's scheduled start (or now)."""
    if period:
        return period.strip()
    at = flow_run.scheduled_start_time or datetime.now(UTC)
    return reviews.default_period(at, get_settings().timezone)


def _tag_run(period: str) -> None:
    """Tag the run with its period however it was started (schedule, CLI, UI)."""
    tag_this_run(("management-review", period))


@task(name="prepare review pack", persist_result=True)
def prepare_pack(period: str) -> ReviewOut:
    """Gather the inputs, render the pack, record it as evidence: once per run and period."""
    return reviews.prepare(_uow(), period, None, ACTOR)


@task(name="publish review summary", persist_result=True)
def publish(review: ReviewOut) -> None:
    inputs = ReviewInputs.model_validate(review.inputs)
    key = f"management-review-{review.period.lower()}"
    create_markdown_artifact(
        key=key,
        markdown=reviews.summary_markdown(review),
        description=f"Management review {review.period}: the pack",
    )
    create_table_artifact(
        key=f"{key}-inputs",
        table=[
            {"input": f"{k}) {reviews.INPUT_TITLES[k]}", "figure": name, "value": value}
            for k, name, value in _input_rows(inputs)
        ],
        description=f"Management review {review.period}: the 9.3.2 inputs",
    )
    html = review.files()["html"].resolve()
    create_link_artifact(
        key=f"{key}-pack",
        link=html.as_uri(),
        link_text=str(html),
        description=f"Management review {review.period}: the pack (HTML; .md and .xlsx beside it)",
    )


def _input_rows(inputs: ReviewInputs) -> list[tuple[str, str, object]]:
    rows: list[tuple[str, str, object]] = [
        ("a", f"actions {status}", n) for status, n in inputs.action_counts.items()
    ]
    rows += [("b", "issue changes", len(inputs.issues))]
    rows += [("c", "interested-party changes", len(inputs.parties))]
    rows += [("d", name, "-" if v is None else v) for name, v in
             reviews.performance_rows(inputs.performance)]  # fmt: skip
    rows += [("e", "opportunities", len(inputs.improvements))]
    return rows


@task(name="link minutes request", persist_result=True)
def link_request(period: str, request_id: int) -> None:
    reviews.attach_request(_uow(), period, request_id, str(flow_run.id), ACTOR)


@task(name="record minutes", persist_result=True)
def record_minutes(period: str, outcome: AskOutcome) -> ReviewOut:
    """The answered ask, filed once in the name of who answered: approved, the minutes (with
    the meeting's conclusions and the decisions) become evidence; rejected, the reasons kept."""
    actor = answered_as(outcome) if outcome.answers else ACTOR
    return reviews.record_outcome(_uow(), period, actor)


@flow(
    name="management-review",
    flow_run_name=run_name(lambda p: f"management review {_period(p.get('period'))}"),
    log_prints=True,
)
def management_review(period: str | None = None) -> ReviewOut:
    """Prepare the management review pack of a quarter and ask top management for the minutes."""
    logger = get_run_logger()
    period = _period(period)
    _tag_run(period)
    existing = reviews.find_review(_uow(), period)
    if existing is not None and existing.status is ReviewStatus.approved:
        logger.info("management review %s is already approved: nothing to do", period)
        return existing
    review = prepare_pack(period)
    publish(review)
    spec = reviews.minutes_spec(review, flow_run_id=str(flow_run.id))
    request_id = open_request(spec)
    link_request(period, request_id)
    outcome = ask(spec)
    out = record_minutes(period, outcome)
    logger.info("management review %s: %s", period, out.status.value)
    create_markdown_artifact(
        key=f"management-review-{period.lower()}",
        markdown=reviews.summary_markdown(out) + (f"\n\n{out.minutes}" if out.minutes else ""),
        description=f"Management review {period}: {out.status.value}",
    )
    return out
