"""The approvers' messages of an approval request, queued in a unit of work of their own.

`outbox.queue_approval_messages` works inside a caller's session (the services that decide
queue updates in the same transaction); a flow step that opens a request queues them on their
own, here, so no flow opens a session itself.
"""

from __future__ import annotations

from aims_core.services import outbox
from aims_core.uow import UnitOfWork


def queue_request_messages(uow: UnitOfWork, request_id: int, key: bytes | None = None) -> int:
    """One DM per approver who has not decided yet (idempotent); how many the round has. With
    the evidence `key` the DMs offer each approver's personal code for the UI form."""
    with uow:
        rows = outbox.queue_approval_messages(uow.session, request_id, key)
        uow.commit()
        return len(rows)
