"""The incident record (clause 10, A.8.4): report, classify, timeline, serious-incident clocks.

Every channel (CLI, HTTP intake, Alertmanager, the incident-response flow, drills) records
incidents through `report`, so an incident is classified the same way wherever it comes from:
severity and category checked against `incident_classification.yaml`, the playbook taken from the
category, and the serious-incident rule run on the report's text, labels and harm signals. The
rule only *suggests*; a person confirms the kind (`confirm_serious`), which starts the Art. 73
clocks from `aware_at` (services/clocks.py).

`report` is one transaction: the incident (or, for a repeat of an alert already open, one line on
its timeline), the clocks that start at report (GDPR, internal SLAs), the audit event, and the
first notifications in the outbox (so the caller can deliver them at once, before handing over to
a playbook run). It writes no evidence: the response flow does, step by step.

Repeats: an alert's `fingerprint` attaches every repeat to the open incident of the same system
with that fingerprint, serialised per fingerprint (PostgreSQL advisory lock; SQLite's write
transactions are serial anyway), so five concurrent repeats still open one incident.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from aims_core.errors import InvalidInput, NotFound, from_validation_error
from aims_core.incident_policy import (
    Classification,
    IncidentFacts,
    IncidentPolicy,
    ResolvedCategory,
    Severity,
    Suggestion,
    incident_policy,
)
from aims_core.messages import escape, fmt_utc, mention
from aims_core.models import (
    Incident,
    IncidentEvent,
    IncidentStatus,
    RegulatoryClock,
    RiskTier,
    as_utc,
)
from aims_core.schemas import no_nul
from aims_core.services import outbox
from aims_core.services.clocks import (
    ClockOut,
    card,
    check_evidence,
    clock_out,
    clocks_of,
    meet_on_status,
    move_clocks,
    notify_people,
    people_with_roles,
    start_clocks,
    timeline_event,
)
from aims_core.services.outbox import TARGET_DEFAULT, NotificationIn
from aims_core.services.systems import get_system
from aims_core.uow import Actor, UnitOfWork

__all__ = [
    "FISHBONE",
    "IncidentIn",
    "IncidentOut",
    "ReportResult",
    "RootCauseIn",
    "TimelineOut",
    "add_timeline",
    "attach_run",
    "confirm_serious",
    "correct_aware_at",
    "get_incident",
    "list_incidents",
    "record_lessons",
    "record_root_cause",
    "report",
    "resolve_alert",
    "set_status",
]

KIND_OPENED: Final = "incident-opened"
KIND_SERIOUS: Final = "incident-serious"
#: A reporter's clock may run a little ahead of ours; beyond this, `aware_at` is refused.
FUTURE_SKEW: Final = timedelta(minutes=5)
FISHBONE: Final = ("people", "process", "data", "model", "infrastructure", "environment")
Source = Literal["cli", "api", "alertmanager", "drill"]


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _utc_now() -> datetime:
    return datetime.now(UTC)


def not_in_future(value: datetime) -> datetime:
    """Aware UTC, never ahead of now (a small clock skew is clamped, more is refused)."""
    value = as_utc(value)
    now = _utc_now()
    if value > now + FUTURE_SKEW:
        raise ValueError(f"{value.isoformat()} is in the future (now {now.isoformat()})")
    return min(value, now)


# --- boundary models ---------------------------------------------------------------------------


class IncidentIn(BaseModel):
    """An incident as a reporter sends it. Severity and category are checked against the
    classification data by `report` (their values can be organisation-specific)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    _no_nul = model_validator(mode="before")(no_nul)

    system: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    title: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    summary: Annotated[str, StringConstraints(max_length=20_000)] = ""
    severity: Annotated[str, StringConstraints(min_length=1, max_length=8, to_upper=True)]
    category: Annotated[str, StringConstraints(min_length=1, max_length=60)]
    source: Source = "cli"
    fingerprint: Annotated[
        Annotated[str, StringConstraints(min_length=1, max_length=200)] | None,
        BeforeValidator(_blank_to_none),
    ] = None
    aware_at: datetime | None = Field(
        default=None, description="When the organisation became aware; default now."
    )
    labels: dict[str, str] = Field(default_factory=dict)
    harm: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list
    )
    is_drill: bool = False

    @field_validator("aware_at")
    @classmethod
    def _aware_at(cls, value: datetime | None) -> datetime | None:
        return None if value is None else not_in_future(value)

    @model_validator(mode="after")
    def _drill(self) -> IncidentIn:
        if self.source == "drill":
            self.is_drill = True
        return self


class TimelineOut(BaseModel):
    id: int
    at: datetime
    kind: str
    text: str
    data: dict[str, Any]
    actor: str


class IncidentOut(BaseModel):
    id: int
    system: str
    system_tier: str
    title: str
    summary: str
    severity: str
    category: str
    status: IncidentStatus
    source: str
    fingerprint: str | None
    aware_at: datetime
    reported_at: datetime
    serious_suggested: list[str]
    serious_kind: str | None
    serious_confirmed_at: datetime | None
    is_drill: bool
    playbook: str | None
    root_cause: dict[str, Any]
    lessons: str
    flow_run_id: str | None
    timeline: list[TimelineOut]
    clocks: list[ClockOut]


class ReportResult(BaseModel):
    incident: IncidentOut
    created: bool = Field(description="False when a repeat attached to an open incident.")


Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class RootCauseIn(BaseModel):
    """Root-cause analysis: up to five whys, fishbone causes by category, the root cause
    (default: the last why, where a 5-whys chain ends)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    whys: list[Line] = Field(min_length=1, max_length=5)
    fishbone: dict[str, list[Line]] = Field(default_factory=dict)
    root_cause: Annotated[str, StringConstraints(max_length=2000)] = ""

    @field_validator("fishbone")
    @classmethod
    def _fishbone(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = [k for k in value if k not in FISHBONE]
        if unknown:
            raise ValueError(
                f"unknown fishbone category '{unknown[0]}' (one of: {', '.join(FISHBONE)})"
            )
        return {k: value[k] for k in FISHBONE if value.get(k)}

    @model_validator(mode="after")
    def _root(self) -> RootCauseIn:
        if not self.root_cause:
            self.root_cause = self.whys[-1]
        return self


def _coerce(model: type[BaseModel], data: BaseModel | Mapping[str, Any]) -> Any:
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


# --- reading -----------------------------------------------------------------------------------


def _timeline_out(e: IncidentEvent) -> TimelineOut:
    return TimelineOut(
        id=e.id, at=as_utc(e.at), kind=e.kind, text=e.text, data=dict(e.data or {}), actor=e.actor
    )


def _out(session: Session, i: Incident, now: datetime | None = None) -> IncidentOut:
    events = session.scalars(
        select(IncidentEvent).where(IncidentEvent.incident_id == i.id).order_by(IncidentEvent.id)
    )
    return IncidentOut(
        id=i.id,
        system=i.system.name,
        system_tier=i.system.risk_tier.value,
        title=i.title,
        summary=i.summary,
        severity=i.severity,
        category=i.category,
        status=i.status,
        source=i.source,
        fingerprint=i.fingerprint,
        aware_at=as_utc(i.aware_at),
        reported_at=as_utc(i.reported_at),
        serious_suggested=list(i.serious_suggested or []),
        serious_kind=i.serious_kind,
        serious_confirmed_at=as_utc(i.serious_confirmed_at) if i.serious_confirmed_at else None,
        is_drill=i.is_drill,
        playbook=i.playbook,
        root_cause=dict(i.root_cause or {}),
        lessons=i.lessons,
        flow_run_id=i.flow_run_id,
        timeline=[_timeline_out(e) for e in events],
        clocks=[clock_out(c, i, now) for c in clocks_of(session, i.id)],
    )


def _get(session: Session, incident_id: int, *, lock: bool = False) -> Incident:
    stmt = select(Incident).where(Incident.id == incident_id)
    if lock:
        # NO KEY UPDATE: timeline and clock rows inserted meanwhile reference the incident.
        stmt = stmt.with_for_update(key_share=True)
    incident = session.scalar(stmt)
    if incident is None:
        raise NotFound(f"no incident {incident_id} (see `aims incident list`)", field="incident")
    return incident


def get_incident(uow: UnitOfWork, incident_id: int) -> IncidentOut:
    with uow.read():
        return _out(uow.session, _get(uow.session, incident_id))


def list_incidents(
    uow: UnitOfWork, *, open_only: bool = False, system: str | None = None
) -> list[IncidentOut]:
    """Newest first; `open_only`: every status but closed."""
    with uow.read():
        s = uow.session
        stmt = select(Incident)
        if open_only:
            stmt = stmt.where(Incident.status != IncidentStatus.closed)
        if system is not None:
            stmt = stmt.where(Incident.system_id == get_system(s, system).id)
        return [_out(s, i) for i in s.scalars(stmt.order_by(Incident.id.desc()))]


# --- report ------------------------------------------------------------------------------------


def _serialise_fingerprint(session: Session, system_id: int, fingerprint: str) -> None:
    """One reporter at a time per (system, fingerprint) until commit, so concurrent repeats of
    one alert cannot each open an incident. SQLite's write transactions are already serial."""
    if session.get_bind().dialect.name == "sqlite":
        return
    digest = hashlib.sha256(f"incident:{system_id}:{fingerprint}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _open_with_fingerprint(
    session: Session, fingerprint: str, *, system_id: int | None = None, is_drill: bool = False
) -> Incident | None:
    stmt = select(Incident).where(
        Incident.fingerprint == fingerprint,
        Incident.status != IncidentStatus.closed,
        Incident.is_drill.is_(is_drill),
    )
    if system_id is not None:
        stmt = stmt.where(Incident.system_id == system_id)
    return session.scalar(
        stmt.order_by(Incident.id.desc()).limit(1).with_for_update(key_share=True)
    )


def _suggest(
    cls: Classification, data: IncidentIn, cat: ResolvedCategory, tier: str
) -> list[Suggestion]:
    return cls.suggest_serious(
        title=data.title,
        summary=data.summary,
        category=cat.stored,
        severity=data.severity,
        tier=tier,
        labels=data.labels,
        harm=data.harm,
    )


def _confirm_hint(incident_id: int, kinds: list[str]) -> str:
    return f"`aims incident confirm-serious {incident_id} --kind {'|'.join(kinds)}`"


def _repeat(
    uow: UnitOfWork,
    incident: Incident,
    data: IncidentIn,
    cls: Classification,
    cat: ResolvedCategory,
    actor: Actor,
    now: datetime,
) -> None:
    """A repeat of an open alert: one timeline line; new serious suggestions are added."""
    s = uow.session
    suggestions = _suggest(cls, data, cat, incident.system.risk_tier.value)
    known = list(incident.serious_suggested or [])
    new = [x for x in suggestions if x.kind not in known]
    if new:
        order = cls.kind_ids
        incident.serious_suggested = sorted({*known, *(x.kind for x in new)}, key=order.index)
    earlier = s.scalar(
        select(func.count())
        .select_from(IncidentEvent)
        .where(IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "alert-repeat")
    )
    repeats = (earlier or 0) + 1
    line = f"repeat {repeats} of the alert ({data.severity}, via {data.source})"
    if data.severity != incident.severity:
        line += f"; it now says {data.severity}, the incident stays {incident.severity}"
    if new:
        line += "; likely serious: " + ", ".join(f"{x.kind} ({x.reason})" for x in new)
    timeline_event(
        s,
        incident.id,
        "alert-repeat",
        line,
        actor,
        data={
            "source": data.source,
            "severity": data.severity,
            "title": data.title,
            "labels": data.labels,
            "harm": data.harm,
            "aware_at": data.aware_at.isoformat() if data.aware_at else None,
        },
        at=now,
    )
    uow.audit(
        actor,
        "incident.repeat",
        f"incident:{incident.id}",
        fingerprint=data.fingerprint,
        repeat=repeats,
        serious_suggested=[x.kind for x in new],
    )


def report(
    uow: UnitOfWork, data: IncidentIn | Mapping[str, Any], actor: Actor, *, notify: bool = True
) -> ReportResult:
    """Record an incident (or attach a repeat), classify it, start its report-time clocks and
    queue its first notifications, in one transaction. Bad input: InvalidInput naming the field,
    nothing written; an unknown system: NotFound on `system`."""
    data = _coerce(IncidentIn, data)
    policy = incident_policy(uow.settings)
    cls = policy.classification
    sev = cls.severity(data.severity)
    cat = cls.resolve_category(data.category)
    now = _utc_now()
    with uow:
        s = uow.session
        system = get_system(s, data.system)
        if data.fingerprint:
            _serialise_fingerprint(s, system.id, data.fingerprint)
            existing = _open_with_fingerprint(
                s, data.fingerprint, system_id=system.id, is_drill=data.is_drill
            )
            if existing is not None:
                _repeat(uow, existing, data, cls, cat, actor, now)
                out = _out(s, existing, now)
                uow.commit()
                return ReportResult(incident=out, created=False)
        suggestions = _suggest(cls, data, cat, system.risk_tier.value)
        incident = Incident(
            system_id=system.id,
            title=data.title,
            summary=data.summary,
            severity=sev.id,
            category=cat.stored,
            status=IncidentStatus.open,
            source=data.source,
            fingerprint=data.fingerprint,
            aware_at=data.aware_at or now,
            reported_at=now,
            serious_suggested=[x.kind for x in suggestions],
            is_drill=data.is_drill,
            playbook=cat.playbook,
            root_cause={},
            lessons="",
            reported_by=actor.who,
        )
        s.add(incident)
        s.flush()
        timeline_event(
            s,
            incident.id,
            "reported",
            f"{'drill ' if data.is_drill else ''}{sev.id} {cat.stored} incident reported via "
            f"{data.source} by {actor.who}; playbook {cat.playbook}",
            actor,
            data={
                "source": data.source,
                "severity": sev.id,
                "category": cat.stored,
                "playbook": cat.playbook,
                "fingerprint": data.fingerprint,
                "labels": data.labels,
                "harm": data.harm,
            },
            at=now,
        )
        if suggestions:
            timeline_event(
                s,
                incident.id,
                "serious-suggested",
                "likely serious incident: "
                + "; ".join(f"{x.kind} ({x.reason})" for x in suggestions)
                + ". A person confirms with "
                + _confirm_hint(incident.id, incident.serious_suggested),
                actor,
                data={"suggestions": [{"kind": x.kind, "reason": x.reason} for x in suggestions]},
                at=now,
            )
        facts = _facts(incident, system.risk_tier, data.labels, data.harm)
        start_clocks(s, incident, "reported", facts, policy, actor, now=now)
        uow.audit(
            actor,
            "incident.reported",
            f"incident:{incident.id}",
            system=system.name,
            severity=sev.id,
            category=cat.stored,
            source=data.source,
            fingerprint=data.fingerprint,
            aware_at=as_utc(incident.aware_at).isoformat(),
            serious_suggested=incident.serious_suggested,
            is_drill=data.is_drill,
        )
        if notify:
            _queue_opened(s, incident, sev, cat, suggestions, cls)
        out = _out(s, incident, now)
        uow.commit()
    return ReportResult(incident=out, created=True)


def _facts(
    incident: Incident,
    tier: RiskTier,
    labels: Mapping[str, str],
    harm: list[str] | tuple[str, ...],
) -> IncidentFacts:
    return IncidentFacts(
        category=incident.category,
        severity=incident.severity,
        tier=tier,
        aware_at=as_utc(incident.aware_at),
        labels=dict(labels),
        harm=tuple(harm),
        serious_kind=incident.serious_kind,
    )


def _stored_facts(session: Session, incident: Incident) -> IncidentFacts:
    """The facts of a recorded incident: labels and harm signals are kept on its first line."""
    first = session.scalar(
        select(IncidentEvent)
        .where(IncidentEvent.incident_id == incident.id, IncidentEvent.kind == "reported")
        .order_by(IncidentEvent.id)
        .limit(1)
    )
    data = dict(first.data or {}) if first else {}
    return _facts(
        incident,
        incident.system.risk_tier,
        {str(k): str(v) for k, v in (data.get("labels") or {}).items()},
        [str(h) for h in data.get("harm") or []],
    )


# --- the first message -------------------------------------------------------------------------


def opened_message(
    incident: Incident,
    sev: Severity,
    cat: ResolvedCategory,
    suggestions: list[Suggestion],
) -> tuple[str, list[dict[str, Any]]]:
    """The first message to responders: what, where, how bad, since when, and whether it is
    likely a serious incident someone must confirm (the Art. 73 clock waits for them)."""
    drill = "[DRILL] " if incident.is_drill else ""
    system = incident.system
    owner = mention(system.owner.slack_user_id, system.owner.name)
    what = incident.summary.strip() or incident.title
    hint = _confirm_hint(incident.id, [x.kind for x in suggestions]) if suggestions else ""
    text = (
        f"{drill}{sev.id} {cat.stored} incident #{incident.id} on {system.name}: {what} "
        f"(aware at {fmt_utc(incident.aware_at)})"
    )
    if suggestions:
        text += f". Likely serious: confirm with {hint}"
    lines = [
        f"*System:* {escape(system.name)} ({system.risk_tier.value}-risk), owner {owner}",
        f"*Severity:* {sev.id} {escape(sev.title)}: {sev.response_line()}",
        f"*Category:* {escape(cat.stored)}, playbook `{escape(cat.playbook)}`",
        f"*Aware at:* {fmt_utc(incident.aware_at)}, reported via {escape(incident.source)}",
    ]
    if incident.summary.strip():
        lines.append(escape(incident.summary.strip()))
    if suggestions:
        reasons = "; ".join(f"{x.kind}: {escape(x.reason)}" for x in suggestions)
        lines.append(
            f":warning: *Likely serious incident* ({reasons}). Confirm with {hint}: "
            "the EU AI Act reporting clock counts from the aware-at time."
        )
    header = f"{drill}{sev.id} {cat.stored}: {incident.title}"
    context = f"Incident #{incident.id} · `aims incident show {incident.id}`"
    return text, card(header, "\n".join(lines), context)


def _queue_opened(
    session: Session,
    incident: Incident,
    sev: Severity,
    cat: ResolvedCategory,
    suggestions: list[Suggestion],
    cls: Classification,
) -> None:
    text_, blocks = opened_message(incident, sev, cat, suggestions)
    roles = list(dict.fromkeys([*sev.notify_roles, *cat.category.also_notify]))
    people = [*people_with_roles(session, roles), incident.system.owner]
    subject = f"incident:{incident.id}"
    notify_people(
        session,
        people,
        key=f"incident-{incident.id}-opened",
        kind=KIND_OPENED,
        subject=subject,
        text=text_,
        blocks=blocks,
    )
    if sev.notify_channel:
        outbox.queue(
            session,
            NotificationIn(
                idempotency_key=f"incident-{incident.id}-opened-channel",
                kind=KIND_OPENED,
                subject=subject,
                target=TARGET_DEFAULT,
                thread_key=f"{subject}-channel",
                text=text_[:3000],
                blocks=blocks,
            ),
        )


# --- alerts, timeline, run, status -------------------------------------------------------------


def resolve_alert(
    uow: UnitOfWork,
    fingerprint: str,
    actor: Actor,
    data: Mapping[str, Any] | BaseModel | None = None,
) -> IncidentOut | None:
    """An alert says it is resolved: a line on the open incident's timeline. It does not close
    the incident (closure is a decision, after investigation). None if no open incident has it.
    `data` (the alert, as a mapping or a model) is kept on the line; a re-sent resolution with
    the same `endsAt` (top level or in its labels) writes nothing."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    data = dict(data or {})
    with uow:
        s = uow.session
        incident = _open_with_fingerprint(s, fingerprint) or _open_with_fingerprint(
            s, fingerprint, is_drill=True
        )
        if incident is None:
            return None
        labels = data.get("labels") if isinstance(data.get("labels"), Mapping) else {}
        ends = next(
            (d[k] for d in (data, labels) for k in ("endsAt", "ends_at") if d and d.get(k)), None
        )
        key = None
        if ends:
            digest = hashlib.sha256(f"{fingerprint}|{ends}".encode()).hexdigest()[:32]
            key = f"incident-{incident.id}-resolved-{digest}"
        _, created = timeline_event(
            s,
            incident.id,
            "alert-resolved",
            "the alert reports resolved; the incident stays "
            f"{incident.status.value} until it is closed",
            actor,
            data=_jsonable(data),
            key=key,
        )
        if created:
            uow.audit(actor, "incident.alert-resolved", f"incident:{incident.id}", ends_at=ends)
        out = _out(s, incident)
        uow.commit()
    return out


def _jsonable(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(dict(data), default=str))
    return out


def add_timeline(
    uow: UnitOfWork,
    incident_id: int,
    kind: str,
    text: str,
    actor: Actor,
    *,
    data: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> TimelineOut:
    """Add a line (a playbook step, a message sent, a decision). Idempotent on the key: a
    re-run step that passes the same key gets the existing line back and writes nothing."""
    kind = kind.strip()
    if not kind or len(kind) > 40:
        raise InvalidInput("1 to 40 characters", field="kind")
    if not text.strip():
        raise InvalidInput("must not be blank", field="text")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
        raise InvalidInput("1 to 200 characters", field="idempotency_key")
    with uow:
        s = uow.session
        _get(s, incident_id)
        row, created = timeline_event(
            s,
            incident_id,
            kind,
            text.strip(),
            actor,
            data=_jsonable(data or {}),
            key=idempotency_key,
        )
        if row.incident_id != incident_id:
            raise InvalidInput(
                f"key already names a line of incident {row.incident_id}", field="idempotency_key"
            )
        if created:
            uow.audit(actor, "incident.timeline", f"incident:{incident_id}", kind=kind)
        out = _timeline_out(row)
        uow.commit()
    return out


def attach_run(uow: UnitOfWork, incident_id: int, flow_run_id: str, actor: Actor) -> IncidentOut:
    """The Prefect run handling the incident, beside the record (the UI and the record point at
    each other). The same run again changes nothing."""
    flow_run_id = flow_run_id.strip()
    if not 0 < len(flow_run_id) <= 64:
        raise InvalidInput("1 to 64 characters", field="flow_run_id")
    with uow:
        s = uow.session
        incident = _get(s, incident_id, lock=True)
        if incident.flow_run_id != flow_run_id:
            previous = incident.flow_run_id
            incident.flow_run_id = flow_run_id
            timeline_event(
                s,
                incident.id,
                "run",
                f"playbook run {flow_run_id} attached" + (f" (was {previous})" if previous else ""),
                actor,
                data={"flow_run_id": flow_run_id, "previous": previous},
            )
            uow.audit(
                actor, "incident.run-attached", f"incident:{incident.id}", flow_run_id=flow_run_id
            )
        out = _out(s, incident)
        uow.commit()
    return out


def _status(value: IncidentStatus | str) -> IncidentStatus:
    try:
        return IncidentStatus(value)
    except ValueError:
        known = ", ".join(x.value for x in IncidentStatus)
        raise InvalidInput(f"unknown status '{value}' (one of: {known})", field="status") from None


def set_status(
    uow: UnitOfWork,
    incident_id: int,
    status: IncidentStatus | str,
    actor: Actor,
    note: str = "",
) -> IncidentOut:
    """Move the incident on (closing stamps `closed_at`; another status after closed reopens
    it). Clocks met by the status (internal SLAs) are met; the same status again is a no-op."""
    new = _status(status)
    policy = incident_policy(uow.settings)
    now = _utc_now()
    with uow:
        s = uow.session
        incident = _get(s, incident_id, lock=True)
        old = incident.status
        if old is not new:
            incident.status = new
            incident.closed_at = now if new is IncidentStatus.closed else None
            timeline_event(
                s,
                incident.id,
                "status",
                f"status {old.value} → {new.value}" + (f": {note.strip()}" if note.strip() else ""),
                actor,
                data={"from": old.value, "to": new.value, "note": note.strip()},
                at=now,
            )
            met = meet_on_status(s, incident, new, policy, actor, now)
            uow.audit(
                actor,
                "incident.status",
                f"incident:{incident.id}",
                old=old.value,
                new=new.value,
                note=note.strip(),
                clocks=[c.id for c in met],
            )
        out = _out(s, incident, now)
        uow.commit()
    return out


# --- serious incidents -------------------------------------------------------------------------


def confirm_serious(
    uow: UnitOfWork, incident_id: int, kind: str, actor: Actor, *, now: datetime | None = None
) -> list[ClockOut]:
    """A person confirms the incident as serious, of `kind`: the clocks whose rules apply start,
    counted from `aware_at` (not from now). Idempotent; a different kind later (health turned
    out a death) starts that kind's clocks too, and the earlier ones keep running."""
    policy = incident_policy(uow.settings)
    k = policy.classification.serious_kind(kind)
    at = as_utc(now) if now else _utc_now()
    with uow:
        s = uow.session
        incident = _get(s, incident_id, lock=True)
        previous = incident.serious_kind
        changed = previous != k.id
        if changed:
            incident.serious_kind = k.id
            incident.serious_confirmed_at = incident.serious_confirmed_at or at
        facts = _stored_facts(s, incident)
        if changed:
            plans = policy.clocks.plan("serious-confirmed", facts, policy.classification)
            timeline_event(
                s,
                incident.id,
                "serious-confirmed",
                f"confirmed serious: {k.title} ({k.basis})"
                + (f", was {previous}" if previous else "")
                + (
                    f"; clocks from aware at {fmt_utc(incident.aware_at)}: "
                    + ", ".join(p.rule.id for p in plans)
                    if plans
                    else "; no clock rule applies to it on its aware-at date"
                ),
                actor,
                data={"kind": k.id, "previous": previous, "rules": [p.rule.id for p in plans]},
                at=at,
            )
        before = {c.id for c in clocks_of(s, incident.id)}
        clocks = start_clocks(s, incident, "serious-confirmed", facts, policy, actor, now=at)
        started = [c for c in clocks if c.id not in before]
        if changed:
            uow.audit(
                actor,
                "incident.serious-confirmed",
                f"incident:{incident.id}",
                kind=k.id,
                previous=previous,
                clocks=[c.rule for c in started],
            )
            _queue_serious(s, incident, k.title, clocks, policy)
        out = [clock_out(c, incident, at) for c in clocks]
        uow.commit()
    return out


def _queue_serious(
    session: Session,
    incident: Incident,
    title: str,
    clocks: list[RegulatoryClock],
    policy: IncidentPolicy,
) -> None:
    """Tell whoever files the report (reminder and escalation roles) and the system owner."""
    roles = list(
        dict.fromkeys(
            [*policy.clocks.defaults.remind_roles, *policy.clocks.defaults.escalate_to_roles]
        )
    )
    people = [*people_with_roles(session, roles), incident.system.owner]
    drill = "[DRILL] " if incident.is_drill else ""
    due = "; ".join(f"{c.label}: due {fmt_utc(c.deadline)}" for c in clocks) or "no clock applies"
    text_ = (
        f"{drill}Serious incident confirmed: #{incident.id} on {incident.system.name} "
        f"({title}). {due}"
    )
    body = (
        f":rotating_light: *{escape(title)}*: incident #{incident.id} on "
        f"*{escape(incident.system.name)}*: {escape(incident.title)}\n"
        f"Aware at {fmt_utc(incident.aware_at)}.\n"
        + "\n".join(f"• {escape(c.label)}: due *{fmt_utc(c.deadline)}*" for c in clocks)
    )
    notify_people(
        session,
        people,
        key=f"incident-{incident.id}-serious-{incident.serious_kind}",
        kind=KIND_SERIOUS,
        subject=f"incident:{incident.id}",
        text=text_,
        blocks=card(
            f"{drill}Serious incident #{incident.id} confirmed", body, "`aims incidents clocks`"
        ),
    )


def correct_aware_at(
    uow: UnitOfWork, incident_id: int, aware_at: datetime, evidence_id: int, actor: Actor
) -> IncidentOut:
    """Correct when the organisation became aware, only with evidence about this incident (a
    deadline must not move on someone's word); every clock not yet met moves with it."""
    try:
        new = not_in_future(aware_at)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="aware_at") from None
    now = _utc_now()
    with uow:
        s = uow.session
        incident = _get(s, incident_id, lock=True)
        check_evidence(s, evidence_id, incident.id)
        reported = as_utc(incident.reported_at)
        if new > reported:
            raise InvalidInput(
                f"{new.isoformat()} is after the incident was reported ({reported.isoformat()}): "
                "the organisation was aware by then",
                field="aware_at",
            )
        old = as_utc(incident.aware_at)
        if new != old:
            incident.aware_at = new
            moved = move_clocks(s, incident, new, now)
            timeline_event(
                s,
                incident.id,
                "aware-at-corrected",
                f"aware at corrected from {fmt_utc(old)} to {fmt_utc(new)} (evidence "
                f"{evidence_id}); {len(moved)} clock(s) moved",
                actor,
                data={
                    "from": old.isoformat(),
                    "to": new.isoformat(),
                    "evidence_id": evidence_id,
                    "clocks": {str(c.id): as_utc(c.deadline).isoformat() for c, _ in moved},
                },
                at=now,
            )
            uow.audit(
                actor,
                "incident.aware-at-corrected",
                f"incident:{incident.id}",
                old=old.isoformat(),
                new=new.isoformat(),
                evidence_id=evidence_id,
                clocks=[c.id for c, _ in moved],
            )
        out = _out(s, incident, now)
        uow.commit()
    return out


# --- investigation -----------------------------------------------------------------------------


def record_root_cause(
    uow: UnitOfWork, incident_id: int, rca: RootCauseIn | Mapping[str, Any], actor: Actor
) -> IncidentOut:
    """Record the root-cause analysis (5 whys and/or fishbone). Recording the same analysis
    again writes nothing; a revised one replaces it, and the timeline keeps both."""
    rca = _coerce(RootCauseIn, rca)
    analysis = rca.model_dump()
    now = _utc_now()
    with uow:
        s = uow.session
        incident = _get(s, incident_id, lock=True)
        current = {k: v for k, v in (incident.root_cause or {}).items() if k in analysis}
        if current != analysis:
            incident.root_cause = {
                **analysis,
                "recorded_by": actor.who,
                "recorded_at": now.isoformat(),
            }
            timeline_event(
                s,
                incident.id,
                "root-cause",
                f"root cause: {rca.root_cause}",
                actor,
                data=analysis,
                at=now,
            )
            uow.audit(
                actor,
                "incident.root-cause",
                f"incident:{incident.id}",
                whys=len(rca.whys),
                fishbone=sorted(rca.fishbone),
            )
        out = _out(s, incident, now)
        uow.commit()
    return out


def record_lessons(uow: UnitOfWork, incident_id: int, text: str, actor: Actor) -> IncidentOut:
    """Lessons learned (10.2): what the organisation changes so it does not happen again."""
    lessons = text.strip()
    if not lessons:
        raise InvalidInput("must not be blank", field="text")
    if len(lessons) > 20_000:
        raise InvalidInput("at most 20000 characters", field="text")
    now = _utc_now()
    with uow:
        s = uow.session
        incident = _get(s, incident_id, lock=True)
        if incident.lessons != lessons:
            incident.lessons = lessons
            timeline_event(s, incident.id, "lessons", f"lessons learned: {lessons}", actor, at=now)
            uow.audit(actor, "incident.lessons", f"incident:{incident.id}", chars=len(lessons))
        out = _out(s, incident, now)
        uow.commit()
    return out
