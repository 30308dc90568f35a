"""Which Prefect run follows a record: the start step shared by the services of waiting flows.

A record a flow waits on (an assessment, an audit) names its run, so a decision or an answer
from any channel wakes the right one. A re-run after a resume must get its record back with
nothing written; a new run continuing a record whose run ended replaces that run, audited with
the one it replaced. Called inside the service's unit of work; it never commits by itself.
"""

from __future__ import annotations

from typing import Protocol

from aims_core.errors import Conflict
from aims_core.uow import Actor, UnitOfWork


class RunFollowed(Protocol):
    """A row that names the run following it."""

    flow_run_id: str | None


def attach_run(
    uow: UnitOfWork,
    actor: Actor,
    row: RunFollowed,
    flow_run_id: str | None,
    action: str,
    subject: str,
) -> bool:
    """Make `flow_run_id` the run that follows `row`, audited as `action` with the run it
    replaces; False (nothing written) when no run is given or it already is."""
    if not flow_run_id or row.flow_run_id == flow_run_id:
        return False
    previous, row.flow_run_id = row.flow_run_id, flow_run_id
    uow.audit(actor, action, subject, flow_run_id=flow_run_id, previous=previous)
    return True


def take_over_open(
    uow: UnitOfWork,
    actor: Actor,
    row: RunFollowed,
    flow_run_id: str | None,
    *,
    take_over: bool,
    action: str,
    subject: str,
    refusal: str,
    field: str,
) -> None:
    """Starting when `row` is still open: the run that opened it gets it back (nothing
    written); with `take_over` a new run continues it (committed); else Conflict(`refusal`)."""
    if flow_run_id and row.flow_run_id == flow_run_id:
        return
    if not (take_over and flow_run_id):
        raise Conflict(refusal, field)
    attach_run(uow, actor, row, flow_run_id, action, subject)
    uow.commit()
