"""The steps of a CAPA up to its verification (ISO/IEC 42001 10.2): open, contain, find the
root cause, plan and complete actions.

Each step is one service call whatever the channel (the `capa` flow's forms, `aims capa ...`,
the incident flow): the CAPA locked, its status checked, the change, its evidence on
`capa:<id>`, its audit event and its notices committed together. Repeating a step with the same
data changes nothing. The effectiveness check is in `verification`, closure in `closure`, the
scheduled pass in `tracking`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.models import Capa, CapaAction, CapaStatus, Control, Incident, as_utc
from aims_core.rules.capa import capa_policy
from aims_core.services.capa.queries import (
    analyses_of,
    applied_plan_asks,
    capa_out,
    current_analysis,
    load_capa,
    similar_rows,
)
from aims_core.services.capa.recording import (
    allowed,
    commit_and_anchor,
    head,
    nonconformity_md,
    notify,
    record_evidence,
)
from aims_core.services.capa.schemas import (
    ACTION_ADDED,
    RCA_KIND,
    TEXT_MAX,
    ActionIn,
    CapaIn,
    CapaOut,
    RootCauseIn,
    at_or_now,
    subject,
)
from aims_core.services.people import active_person
from aims_core.services.systems import get_system
from aims_core.uow import Actor, UnitOfWork


def open_capa(
    uow: UnitOfWork,
    data: CapaIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
) -> CapaOut:
    """Record a nonconformity as a CAPA, its owner told. Idempotent on `idempotency_key`: a
    repeat returns the CAPA opened first (a different source or incident under the same key is
    a Conflict). Without a key every call opens a new CAPA. `now`: when it was opened (a past
    business date); default now."""
    if not isinstance(data, CapaIn):
        data = CapaIn.model_validate(data)
    key = data.idempotency_key or f"capa-{uuid4().hex}"
    policy = capa_policy(uow.settings)
    try:
        with uow:
            s = uow.session
            existing = s.scalar(select(Capa).where(Capa.idempotency_key == key))
            if existing is not None:
                return _same_capa(s, existing, data)
            owner = active_person(s, data.owner, "owner")
            system = get_system(s, data.system) if data.system else None
            if data.incident_id is not None:
                incident = s.get(Incident, data.incident_id)
                if incident is None:
                    raise NotFound(f"no incident {data.incident_id}", "incident_id")
                if system is None:
                    system = incident.system
                elif system.id != incident.system_id:
                    raise InvalidInput(
                        f"incident {incident.id} is about {incident.system.name}, "
                        f"not {system.name}",
                        "system",
                    )
            if data.control_id is not None and s.get(Control, data.control_id) is None:
                raise NotFound(
                    f"no clause or control '{data.control_id}' (see `aims catalog list`)",
                    "control_id",
                )
            row = Capa(
                idempotency_key=key,
                title=data.title,
                description=data.description,
                source=data.source,
                system=system,
                incident_id=data.incident_id,
                control_id=data.control_id,
                owner=owner,
                status=CapaStatus.containment,
                containment="",
                root_cause={},
                attempt=1,
                verify_after_days=(
                    policy.verification.after_days
                    if data.verify_after_days is None
                    else data.verify_after_days
                ),
                verification={},
                created_by=actor.who,
                created_at=at_or_now(now),
            )
            s.add(row)
            s.flush()
            similar = [c.id for c in similar_rows(s, row)]
            record_evidence(
                uow,
                row,
                f"capa-{row.id}-opened",
                f"Nonconformity: {head(row)}",
                nonconformity_md(row),
                actor,
            )
            uow.audit(
                actor,
                "capa.opened",
                subject(row.id),
                title=row.title,
                source=row.source,
                system=system.name if system else None,
                incident_id=row.incident_id,
                control_id=row.control_id,
                owner=owner.email,
                verify_after_days=row.verify_after_days,
                similar_open=similar,
                idempotency_key=key,
            )
            notify(
                s,
                f"capa-{row.id}-opened-to-{owner.id}",
                "capa-opened",
                row,
                owner,
                f"You own {head(row)}. First: contain and correct it — "
                "answer the run's ask (in Slack, the run's Prefect form with your personal code, "
                f"or `aims capa containment {row.id} --text ... --as {owner.email}`)."
                + (f" Similar open CAPAs: {', '.join(map(str, similar))}." if similar else ""),
            )
            if data.containment.strip():
                _contain(uow, row, data.containment.strip(), actor)
            return commit_and_anchor(uow, row)
    except IntegrityError:
        # A concurrent open with the same key won the race (PostgreSQL): return its CAPA.
        with uow.read():
            existing = uow.session.scalar(select(Capa).where(Capa.idempotency_key == key))
            if existing is None:
                raise
            return _same_capa(uow.session, existing, data)


def _same_capa(session: Session, row: Capa, data: CapaIn) -> CapaOut:
    if (row.source, row.incident_id) != (data.source, data.incident_id):
        raise Conflict(
            f"'{row.idempotency_key}' already names CAPA {row.id} ({row.source}"
            + (f", incident {row.incident_id}" if row.incident_id else "")
            + ")",
            "idempotency_key",
        )
    return capa_out(session, load_capa(session, row.id))


def attach_run(uow: UnitOfWork, capa_id: int, flow_run_id: str, actor: Actor) -> CapaOut:
    """The run that follows this CAPA from now on (the CLI's start, or the run claiming itself;
    a new run replaces one that ended). Idempotent."""
    with uow:
        row = load_capa(uow.session, capa_id, lock=True)
        if row.flow_run_id != flow_run_id:
            previous, row.flow_run_id = row.flow_run_id, flow_run_id
            uow.audit(
                actor,
                "capa.run-attached",
                subject(row.id),
                flow_run_id=flow_run_id,
                previous=previous,
            )
        out = capa_out(uow.session, row)
        uow.commit()
    return out


def _contain(uow: UnitOfWork, row: Capa, text: str, actor: Actor) -> None:
    row.containment = text
    row.status = CapaStatus.root_cause
    ev = record_evidence(
        uow,
        row,
        f"capa-{row.id}-containment",
        f"Containment and correction: {head(row)}",
        f"# Containment and correction, {head(row)}\n\n{text}\n",
        actor,
    )
    uow.session.flush()
    uow.audit(actor, "capa.contained", subject(row.id), containment=text, evidence_id=ev)


def record_containment(uow: UnitOfWork, capa_id: int, text: str, actor: Actor) -> CapaOut:
    """React to the nonconformity: what was done to control and correct it and deal with its
    consequences. Moves the CAPA to root cause. A repeat of the same text changes nothing."""
    text = (text or "").strip()
    if not text:
        raise InvalidInput("say what was done to contain and correct it", "containment")
    if len(text) > TEXT_MAX:
        raise InvalidInput(f"at most {TEXT_MAX} characters", "containment")
    with uow:
        row = load_capa(uow.session, capa_id, lock=True)
        if row.status is not CapaStatus.containment and row.containment == text:
            return capa_out(uow.session, row)
        allowed(row, "containment", CapaStatus.containment)
        _contain(uow, row, text, actor)
        return commit_and_anchor(uow, row)


def _rca_md(row: Capa, a: Mapping[str, Any]) -> str:
    lines = [f"# Root cause analysis, {head(row)} (attempt {a['attempt']})", ""]
    lines.append(f"- **method**: {a['method']}")
    if a["whys"]:
        lines += ["", "## Why?", ""]
        lines += [f"{n}. {why}" for n, why in enumerate(a["whys"], 1)]
    if a["fishbone"]:
        lines += ["", "## Causes by category (fishbone)", ""]
        for category, causes in a["fishbone"].items():
            lines.append(f"- **{category}**: " + "; ".join(causes))
    lines += ["", "## Root cause", "", a["root_cause"], ""]
    similar = ", ".join(f"CAPA {i}" for i in a["similar"]) or "none open"
    lines.append(f"Similar nonconformities (open CAPAs, same system or control): {similar}.")
    return "\n".join(lines) + "\n"


def record_root_cause(
    uow: UnitOfWork,
    capa_id: int,
    data: RootCauseIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
) -> CapaOut:
    """Record why the nonconformity happened, with the similar open CAPAs found at that moment.

    Moves the CAPA to its action plan; until the first action it may be revised (a new record,
    the earlier one kept as evidence). The same analysis again changes nothing.
    """
    if not isinstance(data, RootCauseIn):
        data = RootCauseIn.model_validate(data)
    with uow:
        s = uow.session
        row = load_capa(s, capa_id, lock=True)
        current = current_analysis(row)
        given = data.model_dump(mode="json")
        if current is not None and all(current[k] == v for k, v in given.items()):
            return capa_out(s, row)
        allowed(row, "a root cause", CapaStatus.root_cause, CapaStatus.action_plan)
        analyses = analyses_of(row)
        n = sum(1 for a in analyses if a["attempt"] == row.attempt) + 1
        analysis: dict[str, Any] = {
            **given,
            "attempt": row.attempt,
            "similar": [c.id for c in similar_rows(s, row)],
            "recorded_by": actor.who,
            "recorded_at": at_or_now(now).isoformat(),
            "evidence_id": None,
        }
        suffix = f" (revision {n})" if n > 1 else ""
        analysis["evidence_id"] = record_evidence(
            uow,
            row,
            f"capa-{row.id}-a{row.attempt}-rca-{n}",
            f"Root cause analysis{suffix}: {head(row)}",
            _rca_md(row, analysis),
            actor,
            RCA_KIND,
        )
        row.root_cause = {"analyses": [*analyses, analysis]}  # a new dict: JSON is not tracked
        row.status = CapaStatus.action_plan
        s.flush()
        uow.audit(
            actor,
            "capa.root-cause",
            subject(row.id),
            attempt=row.attempt,
            revision=n,
            method=data.method,
            root_cause=data.root_cause,
            similar_open=analysis["similar"],
            evidence_id=analysis["evidence_id"],
        )
        return commit_and_anchor(uow, row)


def add_action(
    uow: UnitOfWork,
    capa_id: int,
    data: ActionIn | Mapping[str, Any],
    actor: Actor,
    *,
    now: datetime | None = None,
    ask_id: int | None = None,
) -> CapaOut:
    """Plan one corrective action (owner told). The first starts tracking; one added while the
    CAPA waits for its verification takes it back to tracking (verification is due only after
    the last action is done). `ask_id`: the plan ask this answers, recorded with the action (the
    run's next plan ask counts on it); an ask already applied adds nothing."""
    if not isinstance(data, ActionIn):
        data = ActionIn.model_validate(data)
    today = at_or_now(now).date()
    with uow:
        s = uow.session
        row = load_capa(s, capa_id, lock=True)
        if ask_id is not None and ask_id in applied_plan_asks(s, row.id):
            return capa_out(s, row)
        if data.due < today:
            raise InvalidInput(f"{data.due} is in the past (today is {today})", "due")
        allowed(
            row, "an action", CapaStatus.action_plan, CapaStatus.tracking, CapaStatus.verification
        )
        owner = active_person(s, data.owner, "owner")
        action = CapaAction(
            title=data.title,
            owner=owner,
            due_at=data.due_at,
            attempt=row.attempt,
            reminders_sent=0,
        )
        row.actions.append(action)
        row.status = CapaStatus.tracking
        row.verification_due_at = None
        s.flush()
        uow.audit(
            actor,
            ACTION_ADDED,
            subject(row.id),
            action_id=action.id,
            title=data.title,
            owner=owner.email,
            due=data.due.isoformat(),
            attempt=row.attempt,
            **({"ask_id": ask_id} if ask_id is not None else {}),
        )
        notify(
            s,
            f"capa-action-{action.id}-assigned",
            "capa-action",
            row,
            owner,
            f"Action {action.id} of {head(row)} is yours: {data.title}, due {data.due}. "
            f"When done: `aims capa done {action.id} --evidence ... --as {owner.email}` (or "
            "answer the run's ask in Slack).",
        )
        out = capa_out(s, row)
        uow.commit()
    return out


def complete_action(
    uow: UnitOfWork,
    action_id: int,
    evidence_text: str | None,
    actor: Actor,
    *,
    now: datetime | None = None,
) -> CapaOut:
    """Mark an action done, with what shows it (kept as evidence). The last open action of the
    attempt schedules the effectiveness verification `verify_after_days` later. Idempotent."""
    text = (evidence_text or "").strip()
    if len(text) > TEXT_MAX:
        raise InvalidInput(f"at most {TEXT_MAX} characters", "evidence")
    at = at_or_now(now)
    with uow:
        s = uow.session
        capa_id = s.scalar(select(CapaAction.capa_id).where(CapaAction.id == action_id))
        if capa_id is None:
            raise NotFound(f"no CAPA action {action_id} (see `aims capa show ID`)", "action")
        row = load_capa(s, capa_id, lock=True)
        action = next(a for a in row.actions if a.id == action_id)
        if action.done_at is not None:
            return capa_out(s, row)
        if action.attempt != row.attempt:
            raise Conflict(
                f"action {action.id} belongs to attempt {action.attempt} of CAPA {row.id}, "
                f"which is at attempt {row.attempt}",
                "action",
            )
        allowed(row, "a completed action", CapaStatus.tracking)
        action.evidence_id = record_evidence(
            uow,
            row,
            f"capa-action-{action.id}-done",
            f"Action {action.id} done: {action.title}",
            f"# Action {action.id} of {head(row)}: done\n\n- **action**: {action.title}\n"
            f"- **owner**: {action.owner.email}\n- **due**: {as_utc(action.due_at):%Y-%m-%d}\n"
            f"- **done**: {at:%Y-%m-%d %H:%M} UTC, recorded by {actor.who}\n\n"
            f"{text or '(no evidence text given)'}\n",
            actor,
        )
        action.done_at = at
        s.flush()
        uow.audit(
            actor,
            "capa.action-done",
            subject(row.id),
            action_id=action.id,
            evidence=text,
            evidence_id=action.evidence_id,
        )
        if all(a.done_at is not None for a in row.actions if a.attempt == row.attempt):
            row.status = CapaStatus.verification
            row.verification_due_at = at + timedelta(days=row.verify_after_days)
            s.flush()
            uow.audit(
                actor,
                "capa.verification-scheduled",
                subject(row.id),
                attempt=row.attempt,
                due_at=as_utc(row.verification_due_at).isoformat(),
            )
        return commit_and_anchor(uow, row)
