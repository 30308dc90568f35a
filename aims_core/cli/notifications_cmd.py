"""`aims notifications`: the outbox, and one delivery pass by hand.

Without a Slack token every notification ends up `logged`: this listing is then where an operator
(or an approver without Slack) reads them. The Slack client is imported only by `deliver`, so the
rest of the CLI starts without slack_sdk.
"""

from __future__ import annotations

import typer

from aims_core.cli._base import fail, print_json, print_table
from aims_core.models import NotificationStatus
from aims_core.services import outbox
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(no_args_is_help=True, help="The notification outbox (Slack or log).")

_STATUSES = ", ".join(s.value for s in NotificationStatus)


def _short(text: str, width: int = 70) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


@app.command("list")
def list_(
    status: str | None = typer.Option(None, "--status", help=f"Only this status: {_STATUSES}."),
    request: int | None = typer.Option(None, "--request", help="Only this approval request."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many (the newest)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with blocks)."),
) -> None:
    """List notifications, oldest first: queued, sent, logged (no Slack) and failed ones."""
    if status is not None and status not in {s.value for s in NotificationStatus}:
        fail(f"--status: unknown status '{status}' (one of: {_STATUSES})")
    rows = outbox.list_notifications(UnitOfWork(), status=status, limit=limit, request_id=request)
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Notifications ({len(rows)})",
        ["id", "status", "kind", "to", "subject", "tries", "when", "text", "error / note"],
        [
            (
                n.id,
                n.status.value,
                n.kind,
                n.recipient or n.target,
                n.subject,
                n.attempts,
                f"{(n.sent_at or n.next_attempt_at):%Y-%m-%d %H:%M:%S}",
                _short(n.text),
                _short(n.last_error or "", 40),
            )
            for n in rows
        ],
    )


@app.command("deliver")
def deliver(
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many notifications."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Run one delivery pass now (the scheduled delivery flow does this on its own)."""
    from notifications.slack import deliver_due, make_client

    settings = get_settings()
    client = make_client(settings)
    report = deliver_due(settings, client, limit=limit)
    if as_json:
        print_json(report)
        return
    where = "Slack" if client is not None else "the log (no AIMS_SLACK_BOT_TOKEN)"
    typer.echo(
        f"delivered to {where}: sent {report.sent}, updated {report.updated}, "
        f"logged {report.logged}, retried {report.retried}, failed {report.failed}, "
        f"possible duplicates {report.possible_duplicates}"
    )
    if report.stopped:
        typer.echo(f"stopped early: {report.stopped}")
    for line in report.errors:
        typer.echo(f"  {line}")


@app.command("requeue")
def requeue(
    ids: list[int] | None = typer.Argument(None, help="Notification ids (`list --status failed`)."),
    all_failed: bool = typer.Option(False, "--all-failed", help="Every failed notification."),
) -> None:
    """Send failed notifications again, after fixing the cause (token, channel, membership)."""
    if not ids and not all_failed:
        fail("name notification ids, or --all-failed")
    count = outbox.requeue(UnitOfWork(), Actor.cli(), None if all_failed else ids)
    typer.echo(f"requeued {count} notification(s)")
