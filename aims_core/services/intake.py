"""Incident intake from anywhere (HTTP, Alertmanager, CLI): record, tell people, start the run.

An alert has a deadline in seconds, so intake does its first step itself instead of handing it to
a run (a run starts only after the runner's next poll, plus a subprocess start):

1. check every item first: a payload with one bad alert writes nothing for any alert;
2. `incidents.report` each item in its own transaction; a new incident's first notifications are
   queued in that same transaction (the outbox), so the message exists exactly when the incident
   does; a repeat of the same alert (fingerprint) attaches to the open incident;
3. deliver that incident's queued notifications at once, before the caller gets its answer. A
   Slack outage fails nothing: the rows stay in the outbox for the next delivery pass;
4. start the `incident-response` playbook as a deployment run and attach it to the incident.
   With the engine down (or the flow not deployed) the incident stays recorded and notified, and
   the result says the run was not started and how to start it: nothing restarts it on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select

from aims_core.errors import AimsError, InvalidInput, from_validation_error
from aims_core.models import AISystem
from aims_core.ports import Delivery, EngineNotRunning, Runs, RunStarted
from aims_core.rules.incident import incident_policy
from aims_core.rules.playbooks import response_run
from aims_core.services import incidents, outbox
from aims_core.services.incidents import IncidentIn, IncidentOut
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

log = logging.getLogger(__name__)

#: At most this many of an incident's queued rows are sent inside the request (the rest: outbox).
MAX_SENT_INLINE: Final = 20


class IntakeRejected(InvalidInput):
    """Some items are invalid: every problem is listed, and nothing was written for any item."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}; nothing was recorded")


class IntakeItem(BaseModel):
    """One thing to take in: `report` an incident, or `resolve` the alert with its fingerprint.

    `where` names the item in messages ("alerts[2]"); `paths` maps IncidentIn fields to where the
    caller's payload held them ({"system": "alerts[2].labels.ai_system"}), so an error names the
    field the sender wrote, not ours."""

    action: Literal["report", "resolve"] = "report"
    incident: IncidentIn
    where: str | None = None
    paths: dict[str, str] = Field(default_factory=dict)
    resolved: dict[str, Any] = Field(
        default_factory=dict,
        description="For a resolve: what the timeline keeps (endsAt makes a re-send idempotent).",
    )

    def path(self, field: str) -> str:
        if field in self.paths:
            return self.paths[field]
        return f"{self.where}.{field}" if self.where else field


class Notified(BaseModel):
    """What became of the incident's first notifications inside the request.

    `state`: delivered (all at Slack), logged (no Slack token: written to the log, by design),
    queued (Slack did not take them now: the outbox retries), failed (Slack refused them for good:
    see `detail`), none (nothing was queued, e.g. a repeat)."""

    state: Literal["delivered", "logged", "queued", "failed", "none"]
    sent: int = 0
    logged: int = 0
    queued: int = 0
    failed: int = 0
    detail: str = ""


class ItemResult(BaseModel):
    index: int
    where: str | None = None
    action: Literal["report", "resolve"]
    fingerprint: str | None = None
    incident_id: int | None = Field(
        default=None, description="None for a resolve that matched no open incident."
    )
    system: str | None = None
    severity: str | None = Field(default=None, description="The incident's, as classified.")
    category: str | None = Field(default=None, description="Stored form: `bias-fairness`.")
    created: bool = False
    attached: bool = Field(default=False, description="A repeat, added to the open incident.")
    notification: Notified | None = None
    run: RunStarted | None = None
    run_error: str | None = None
    error: str | None = Field(
        default=None,
        description="Refused when written although it passed the check (e.g. the system was "
        "removed meanwhile); the items before it are recorded.",
    )


class IntakeResult(BaseModel):
    items: list[ItemResult]

    @property
    def created(self) -> list[ItemResult]:
        return [i for i in self.items if i.created]

    @property
    def pending(self) -> bool:
        """Something a person should know is not done: a message not at Slack, a run not started."""
        return any(
            (i.notification is not None and i.notification.state in ("queued", "failed"))
            or (i.created and i.run is None)
            or i.error is not None
            for i in self.items
        )


# --- 1. check everything before writing anything ------------------------------------------------


def problems(settings: Settings, items: Sequence[IntakeItem]) -> list[str]:
    """Every reason `report` would refuse an item: an unknown system, severity or category,
    each naming the item's field as its sender wrote it. Cheap reads only, nothing written."""
    classification = incident_policy(settings).classification
    uow = UnitOfWork(settings)
    with uow.read():
        names = {i.incident.system for i in items}
        known = set(uow.session.scalars(select(AISystem.name).where(AISystem.name.in_(names))))
    out: list[str] = []
    for item in items:
        data = item.incident
        if data.system not in known:
            out.append(f"{item.path('system')}: unknown AI system '{data.system}'")
        try:
            classification.severity(data.severity, field=item.path("severity"))
        except InvalidInput as exc:
            out.append(str(exc))
        try:
            classification.resolve_category(data.category, field=item.path("category"))
        except InvalidInput as exc:
            out.append(str(exc))
    return out


def check(settings: Settings, items: Sequence[IntakeItem]) -> None:
    """IntakeRejected listing every problem of every item, before anything is written (the
    incident service checks again when it writes)."""
    if not items:
        raise IntakeRejected(["nothing to take in: no incident or alert given"])
    found = problems(settings, items)
    if found:
        raise IntakeRejected(found)


def incident_in(where: str | None = None, **fields: Any) -> IncidentIn:
    """IncidentIn from caller fields; a pydantic error becomes InvalidInput naming the field."""
    try:
        return IncidentIn(**fields)
    except ValidationError as exc:
        err = from_validation_error(exc)
        field = f"{where}.{err.field}" if where and err.field else (err.field or where)
        raise InvalidInput(err.message, field=field) from None


# --- 3. the first message, now -----------------------------------------------------------------


def deliver_now(settings: Settings, incident_id: int, delivery: Delivery) -> Notified:
    """Send this incident's queued notifications now, oldest first, and stop at Slack's first
    transient error (an outage: the rest wait in the outbox, no point timing out on each)."""
    queued = outbox.queued_ids(UnitOfWork(settings), f"incident:{incident_id}", MAX_SENT_INLINE)
    if not queued:
        return Notified(state="none")
    report = delivery.deliver_subject(f"incident:{incident_id}", limit=MAX_SENT_INLINE)
    left = len(queued) - report.sent - report.logged - report.failed
    detail = "; ".join(report.errors[:3])
    if report.stopped:
        detail = f"{report.stopped}: {detail}" if detail else report.stopped
    if left > 0:
        state: Literal["delivered", "logged", "queued", "failed", "none"] = "queued"
        detail = f"{left} message(s) wait in the outbox for the next delivery pass" + (
            f"; Slack: {detail}" if detail else ""
        )
    elif report.failed:
        state = "failed"
    elif report.sent:
        state = "delivered"
    else:
        state = "logged"
        detail = "no Slack bot token (AIMS_SLACK_BOT_TOKEN): written to the log"
    return Notified(
        state=state,
        sent=report.sent,
        logged=report.logged,
        queued=max(left, 0),
        failed=report.failed,
        detail=detail,
    )


# --- 4. the playbook run -----------------------------------------------------------------------


def _start_playbook(
    settings: Settings, out: IncidentOut, actor: Actor, runs: Runs
) -> tuple[RunStarted | None, str | None]:
    # The same name and tags however the run is started (CLI, intake, UI): the playbooks' rule.
    spec = response_run(
        out.id,
        system=out.system,
        tier=out.system_tier,
        severity=out.severity,
        category=out.category,
        playbook=out.playbook,
        drill=out.is_drill,
    )
    try:
        run = runs.start(spec.deployment, spec.parameters, name=spec.name, tags=spec.tags)
    except Exception as exc:  # engine down, flow not deployed, Prefect refusing: all alike
        if isinstance(exc, EngineNotRunning):
            reason = exc.message
        else:
            log.exception("incident %s: starting the playbook run failed", out.id)
            reason = f"starting the run failed: {type(exc).__name__}: {exc}"
        return None, (
            f"the playbook run was not started: {reason.rstrip('.')}. The incident is recorded "
            "and its first messages are in the outbox, but nothing starts the run later on its "
            "own (no restart is built yet): once the engine serves incident-response, start it "
            f"with `prefect deployment run {spec.deployment} --param incident_id={out.id}`"
        )
    try:
        incidents.attach_run(UnitOfWork(settings), out.id, run.id, actor)
    except AimsError as exc:  # the run exists; only the link back is missing
        log.warning("incident %s: run %s started but not attached: %s", out.id, run.id, exc)
    return RunStarted(id=run.id, name=run.name, url=run.url), None


# --- the use case ------------------------------------------------------------------------------


def take_in(
    settings: Settings,
    items: Sequence[IntakeItem],
    actor: Actor,
    *,
    runs: Runs,
    delivery: Delivery,
) -> IntakeResult:
    """Check all items, then record each (first message delivered right after its record), then
    start a playbook run for each new incident. Raises IntakeRejected (nothing written) when any
    item is invalid. The entry point gives the runs and the delivery (short Slack timeouts)."""
    check(settings, items)
    results: list[ItemResult] = []
    created: list[tuple[ItemResult, IncidentOut]] = []
    for index, item in enumerate(items):
        began = time.perf_counter()
        data = item.incident
        try:
            if item.action == "resolve":
                assert data.fingerprint is not None, "a resolve needs the alert's fingerprint"
                resolved = incidents.resolve_alert(
                    UnitOfWork(settings), data.fingerprint, actor, item.resolved or None
                )
                results.append(
                    ItemResult(
                        index=index,
                        where=item.where,
                        action="resolve",
                        fingerprint=data.fingerprint,
                        incident_id=resolved.id if resolved is not None else None,
                    )
                )
                continue
            rep = incidents.report(UnitOfWork(settings), data, actor)
        except AimsError as exc:
            if not results:  # nothing written yet: a plain refusal, as from the check
                raise
            results.append(
                ItemResult(
                    index=index,
                    where=item.where,
                    action=item.action,
                    fingerprint=data.fingerprint,
                    error=str(exc),
                )
            )
            continue
        out = rep.incident
        result = ItemResult(
            index=index,
            where=item.where,
            action="report",
            fingerprint=data.fingerprint,
            incident_id=out.id,
            system=out.system,
            severity=out.severity,
            category=out.category,
            created=rep.created,
            attached=not rep.created,
        )
        if rep.created:
            result.notification = deliver_now(settings, out.id, delivery)
            created.append((result, out))
            log.info(
                "incident %s recorded and notified (%s) in %.0f ms",
                out.id,
                result.notification.state,
                (time.perf_counter() - began) * 1000,
            )
        results.append(result)
    for result, out in created:
        result.run, result.run_error = _start_playbook(settings, out, actor, runs)
    return IntakeResult(items=results)
