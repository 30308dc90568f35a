"""The questionnaire: open an assessment pre-filled from the records, record answers (checked,
all or nothing, from any channel), confirm suggestions, and complete it once every requirement
has an answer."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from aims_core.errors import Conflict, InvalidInput, refuse_answers
from aims_core.models import GapAnswer, GapAssessment, GapStatus
from aims_core.rules.gap import Conformity, assessable
from aims_core.services.gap.prefill import suggestions
from aims_core.services.gap.queries import _load, _open_row, _out, get
from aims_core.services.gap.schemas import AnswerIn, GapAssessmentOut, _now, subject
from aims_core.services.people import get_person
from aims_core.services.runs import take_over_open
from aims_core.uow import Actor, UnitOfWork


def start(
    uow: UnitOfWork,
    actor: Actor,
    *,
    assessor: str | None = None,
    flow_run_id: str | None = None,
    take_over: bool = False,
    now: datetime | None = None,
) -> GapAssessmentOut:
    """Open a new assessment, pre-filled from the records (one open assessment at a time).

    Idempotent for the flow: the same `flow_run_id` gets its assessment back. `take_over` lets
    a new run continue the open assessment of a run that ended (answers kept). The assessor
    (default: the caller, recorded as given) never approves the assessment.
    """
    flow_run_id = str(flow_run_id) if flow_run_id else None
    suggested = suggestions(uow, now)  # read first: probes open their own transactions
    with uow:
        s = uow.session
        who = get_person(s, assessor, "assessor").email if assessor else actor.who
        existing = _open_row(s)
        if existing is not None:
            take_over_open(
                uow,
                actor,
                existing,
                flow_run_id,
                take_over=take_over,
                action="gap.run-replaced",
                subject=subject(existing.id),
                refusal=f"gap assessment {existing.id} is still {existing.status.value}: "
                f"finish it first (`aims gap show {existing.id}`)",
                field="assessment",
            )
            return _out(s, uow.settings, existing)
        row = GapAssessment(status=GapStatus.draft, flow_run_id=flow_run_id, created_by=who)
        s.add(row)
        s.flush()
        for n, req in enumerate(assessable()):
            hint = suggested.get(req.id)
            s.add(
                GapAnswer(
                    assessment_id=row.id,
                    requirement_id=req.id,
                    position=n,
                    suggested_status=hint.status if hint else None,
                    suggested_records=hint.records if hint else [],
                    suggested_note=hint.note if hint else "",
                    evidence=[],
                )
            )
        s.flush()
        s.refresh(row, ["answers"])
        uow.audit(
            actor,
            "gap.started",
            subject(row.id),
            assessor=who,
            flow_run_id=flow_run_id,
            suggested={k: v.status for k, v in suggested.items()},
        )
        out = _out(s, uow.settings, row)
        uow.commit()
    return out


def check_answers(answers: Mapping[str, object]) -> dict[str, AnswerIn]:
    """Every answer checked; InvalidInput names the requirement and the problem (all at once)."""
    if not isinstance(answers, Mapping) or not answers:
        raise InvalidInput("no answers given", "answers")
    known = {r.id for r in assessable()}
    checked: dict[str, AnswerIn] = {}
    problems: list[tuple[str, str]] = []
    for req, value in answers.items():
        rid = str(req).strip()
        if rid not in known:
            problems.append((rid, "not an assessable requirement (see `aims gap requirements`)"))
            continue
        if isinstance(value, str):
            value = {"status": value}
        try:
            answer = AnswerIn.model_validate(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if where == "status":
                msg = (
                    f"'{err.get('input')}' is not one of: {', '.join(c.value for c in Conformity)}"
                )
            problems.append((f"{rid}.{where}" if where else rid, msg))
            continue
        if answer.status is Conformity.not_applicable and not answer.note:
            problems.append((f"{rid}.note", "not applicable needs a justification (--note)"))
            continue
        checked[rid] = answer
    refuse_answers(problems)
    return checked


def _draft(row: GapAssessment) -> None:
    if row.status is not GapStatus.draft:
        raise Conflict(
            f"gap assessment {row.id} is {row.status.value}: its answers are frozen", "assessment"
        )


def record(
    uow: UnitOfWork, assessment_id: int, answers: Mapping[str, object], actor: Actor
) -> GapAssessmentOut:
    """Record conformity per requirement (merged into earlier answers); all or nothing."""
    checked = check_answers(answers)
    with uow:
        s = uow.session
        row = _load(s, assessment_id, lock=True)
        _draft(row)
        by_req = {a.requirement_id: a for a in row.answers}
        changed: dict[str, dict[str, Any]] = {}
        at = _now()
        for rid, ans in checked.items():
            a = by_req[rid]
            new = (ans.status.value, ans.note, ans.evidence)
            if (a.status, a.note, list(a.evidence or [])) == new:
                continue
            a.status, a.note, a.evidence = new[0], new[1], list(new[2])
            a.answered_by, a.answered_at = actor.who, at
            changed[rid] = ans.model_dump(mode="json")
        if changed:
            s.flush()
            uow.audit(actor, "gap.recorded", subject(row.id), answers=changed)
        out = _out(s, uow.settings, row)
        uow.commit()
    return out


def accept_suggestions(
    uow: UnitOfWork, assessment_id: int, actor: Actor, *, only: list[str] | None = None
) -> GapAssessmentOut:
    """Confirm the suggested status of every requirement not answered yet (or of `only`)."""
    current = get(uow, assessment_id)
    answers = {
        r.requirement: {
            "status": r.suggested_status,
            "note": r.suggested_note
            or "confirmed from the records: " + "; ".join(r.suggested_records),
        }
        for r in current.requirements
        if r.suggested_status and (r.requirement in only if only else not r.status)
    }
    if not answers:
        return current
    return record(uow, assessment_id, answers, actor)


def complete(uow: UnitOfWork, assessment_id: int, actor: Actor) -> GapAssessmentOut:
    """Freeze the answers once every requirement has one. Idempotent past draft."""
    with uow:
        s = uow.session
        row = _load(s, assessment_id, lock=True)
        if row.status is GapStatus.draft:
            missing = [a.requirement_id for a in row.answers if not a.status]
            if missing:
                raise InvalidInput(
                    f"{len(missing)} requirement(s) not assessed: {', '.join(missing[:10])}"
                    + (" …" if len(missing) > 10 else ""),
                    "answers",
                )
            row.status = GapStatus.answered
            row.completed_at = _now()
            s.flush()
            uow.audit(actor, "gap.completed", subject(row.id), answered=len(row.answers))
            uow.commit()
        return _out(s, uow.settings, row)
