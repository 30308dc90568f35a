"""The processes that run by themselves: what is scheduled, and that a schedule starts them."""

from __future__ import annotations

import time
from uuid import uuid4

from prefect_fixtures import engine_cli, wait_for_state

from aims_core.models import NotificationStatus
from aims_core.services import outbox
from aims_core.uow import Actor, UnitOfWork


def test_notification_delivery_sends_what_a_service_only_queued(engine) -> None:
    """A daily check only queues; the every-minute delivery pass is what carries it to Slack."""
    from prefect.deployments import run_deployment

    key = f"schedule-test-{uuid4().hex[:8]}"
    text = f"Reminder {key}: your required training expires in 7 days."
    queued = outbox.queue_notification(
        UnitOfWork(engine.settings),
        {
            "idempotency_key": key,
            "kind": "training-reminder",
            "subject": "person:ceo@northwind.example",
            "recipient": "ceo@northwind.example",
            "target": "dm",
            "text": text,
        },
        Actor(who="e2e", channel="test"),
    )
    assert queued.status == NotificationStatus.queued

    run = run_deployment("notification-delivery/notification-delivery", timeout=0)
    wait_for_state(run.id, {"Completed"}, timeout=60)

    assert outbox.get_notification(UnitOfWork(engine.settings), key).status == "sent"
    assert [m.text for m in engine.slack.messages if m.text == text] == [text]


def test_management_review_runs_by_itself_on_its_schedule(engine) -> None:
    """Nobody starts it: a schedule comes due, Prefect's scheduler creates the run, the served
    runner runs it, and the run writes the pack and opens the minutes approval."""
    from datetime import UTC, datetime, timedelta
    from pathlib import Path

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.schedules import IntervalSchedule

    from aims_core.services import approvals, reviews

    name = "management-review/management-review"
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        # What production runs: quarterly, 06:00 on the 1st, in the configured time zone.
        assert [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules] == [
            ("0 6 1 1,4,7,10 *", engine.settings.timezone)
        ]
        # Here the quarter cannot wait: one more schedule on the same deployment, due in 15 s.
        due = datetime.now(UTC) + timedelta(seconds=15)
        (added,) = client.create_deployment_schedules(
            deployment.id, [(IntervalSchedule(interval=timedelta(days=1), anchor_date=due), True)]
        )
        client.resume_deployment(deployment.id)  # served paused in tests
        only_this = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        try:
            run = None
            deadline = datetime.now(UTC) + timedelta(seconds=90)
            while run is None and datetime.now(UTC) < deadline:
                for candidate in client.read_flow_runs(deployment_filter=only_this):
                    started = candidate.state is not None and not candidate.state.is_scheduled()
                    if candidate.auto_scheduled and started:
                        run = candidate
                time.sleep(1)
            assert run is not None, "the schedule came due but no scheduled run started"
        finally:
            client.pause_deployment(deployment.id)
            client.delete_deployment_schedule(deployment.id, added.id)
            for leftover in client.read_flow_runs(deployment_filter=only_this):
                if leftover.state is not None and leftover.state.is_scheduled():
                    client.delete_flow_run(leftover.id)

    # Started by Prefect's scheduler at the due time, not by this test.
    assert run.auto_scheduled and run.expected_start_time is not None
    assert abs((run.expected_start_time - due).total_seconds()) < 1
    waiting = wait_for_state(run.id, {"Suspended"}, timeout=120)
    period = reviews.default_period(run.expected_start_time, engine.settings.timezone)
    assert waiting.name == f"management review {period}"

    review = reviews.get_review(UnitOfWork(engine.settings), period)
    pack = Path(review.pack_dir)
    for suffix in ("html", "md", "xlsx"):
        assert (pack / f"management-review-{period}.{suffix}").stat().st_size > 0
    request = approvals.get_request(UnitOfWork(engine.settings), review.request_id)
    assert (request.activity, request.status, request.flow_run_id) == (
        "management-review",
        "open",
        str(run.id),
    )
    assert "ceo@northwind.example" in request.approvers

    # The minutes approved (as the CEO would from the CLI), the scheduled run finishes its work.
    approved = engine_cli(
        engine, "review", "minutes", period, "--as", "ceo@northwind.example", "--approve"
    )
    assert approved.exit_code == 0, approved.output
    wait_for_state(run.id, {"Completed"}, timeout=120)
    assert reviews.get_review(UnitOfWork(engine.settings), period).status == "approved"


def test_every_cycle_is_scheduled_in_the_organisations_time_zone(monkeypatch) -> None:
    """What runs by itself, and when (the issue's table), read from the deployments served."""
    from datetime import timedelta

    from deployments.serve import all_deployments

    monkeypatch.setenv("AIMS_TIMEZONE", "Europe/Berlin")
    monkeypatch.delenv("AIMS_SCHEDULES_PAUSED", raising=False)
    served = {d.name: d for d in all_deployments()}
    when = {
        name: [
            getattr(s.schedule, "cron", None) or getattr(s.schedule, "interval", None)
            for s in d.schedules or []
        ]
        for name, d in served.items()
    }
    assert when["management-review"] == ["0 6 1 1,4,7,10 *"]
    assert when["training-renewal"] == when["policy-review"] == ["0 7 * * *"]
    assert when["plan-tracking"] == ["0 7 * * *"]
    assert when["audit-planning"] == ["0 6 1 * *"]
    assert when["vendor-reassessment"] == ["0 6 2 * *"]
    assert when["approval-reconciler"] == [timedelta(minutes=5)]
    assert when["notification-delivery"] == [timedelta(minutes=1)]
    crons = [
        s.schedule
        for d in served.values()
        for s in d.schedules or []
        if getattr(s.schedule, "cron", None)
    ]
    assert crons and {c.timezone for c in crons} == {"Europe/Berlin"}
    assert not any(d.paused for d in served.values())
    # The scheduled passes never pile up behind a slow one.
    for name in (
        "training-renewal",
        "policy-review",
        "plan-tracking",
        "audit-planning",
        "notification-delivery",
    ):
        assert served[name].concurrency_limit == 1
