"""Asking for a gap assessment's answers: one ask per area (or chunk of a long one) with
requirements not assessed, and applying an answered ask to the record.

Who answers is the assessment's assessor when it names a person; an assessment started without
one (a scheduled run) is answered by the holders of `ANSWER_ROLES`. The area's form is built from
the catalog (`aims_core/ask_forms/questionnaires.py`); what the records suggest is the
assessment's, so it goes in the ask's details.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sqlalchemy import select

from aims_core.ask_forms.questionnaires import (
    ACCEPT,
    GAP_AREA,
    evidence_name,
    field_name,
    gap_parts,
    note_name,
    part_subject,
)
from aims_core.models import GapStatus, Person
from aims_core.rules.gap import areas, describe, plan_policy
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.gap.answers import record
from aims_core.services.gap.queries import get
from aims_core.services.gap.schemas import DETAILS_MAX, GapAssessmentOut, RequirementOut, subject
from aims_core.uow import Actor, UnitOfWork

#: Who answers an assessment that names no person as its assessor: the AIMS's governance lead.
ANSWER_ROLES: Final = ("governance-lead",)


def area_asks(uow: UnitOfWork, assessment_id: int, round_: int) -> list[ApprovalRequestIn]:
    """The asks of one round: one per area (chunk) with requirements not assessed. Round
    `round_` asks again for what earlier rounds left open."""
    out = get(uow, assessment_id)
    if out.status is not GapStatus.draft:
        return []
    with uow.read():
        person = uow.session.scalar(select(Person.email).where(Person.email == out.assessor))
    missing = set(out.missing)
    by_id = out.by_id()
    titles = dict(areas())
    specs = []
    for area, chunk, of, reqs in gap_parts():
        open_here = [r for r in reqs if r in missing]
        if not open_here:
            continue
        part = f" (part {chunk} of {of})" if of > 1 else ""
        specs.append(
            ApprovalRequestIn(
                idempotency_key=f"gap-assessment-{out.id}-{area}-{chunk}-r{round_}",
                kind=GAP_AREA,
                subject=part_subject(subject(out.id), area, chunk, of),
                activity=plan_policy(uow.settings).approval.activity,
                title=f"Gap assessment #{out.id}: {area} {titles[area]}{part}"[:300],
                details=_details(out, [by_id[r] for r in reqs], open_here),
                approver_people=[person] if person else [],
                approver_roles=[] if person else list(ANSWER_ROLES),
            )
        )
    return specs


def _details(out: GapAssessmentOut, reqs: list[RequirementOut], open_here: list[str]) -> str:
    lines = [
        f"Not assessed here: {', '.join(open_here)}. Per requirement a status "
        "(conforming, partially-conforming, not-conforming, not-applicable: with a note); blank "
        "leaves it as it is, and what stays open is asked again. Confirm the suggestions to take "
        f"them for those left blank. From a shell: `aims gap record --file answers.yaml "
        f"--assessment {out.id} --as EMAIL`.",
        "",
    ]
    for r in reqs:
        now = f"**{r.status}**" if r.status else "not assessed"
        hint = (
            f"; suggested {describe(r.suggested_status)} "
            f"({'; '.join(r.suggested_records) or 'no records'})"
            if r.suggested_status
            else ""
        )
        lines.append(f"- {r.requirement} {r.title}: {now}{hint}")
    text = "\n".join(lines)
    return text if len(text) <= DETAILS_MAX else text[: DETAILS_MAX - 1] + "…"


def area_answers(out: GapAssessmentOut, answer: Mapping[str, object]) -> dict[str, object]:
    """An area's form answer (every field of the form, blank ones None) as `record` takes it:
    statuses given (a note or evidence left blank keeps the recorded one), and with ACCEPT the
    suggestions for those left blank."""
    given: dict[str, object] = {}
    for r in (r for r in out.requirements if field_name(r.requirement) in answer):
        status = answer.get(field_name(r.requirement))
        note = answer.get(note_name(r.requirement))
        links = answer.get(evidence_name(r.requirement))
        if status or ((note or links) and r.status):
            given[r.requirement] = {
                "status": status or r.status,
                "note": note if note else r.note,
                "evidence": links if links else r.evidence,
            }
        elif answer.get(ACCEPT) and r.suggested_status and not r.status:
            given[r.requirement] = {
                "status": r.suggested_status,
                "note": r.suggested_note or "confirmed from records",
            }
    return given


def record_area_answer(
    uow: UnitOfWork, assessment_id: int, answer: Mapping[str, object], actor: Actor
) -> GapAssessmentOut:
    """Apply one area's answered ask through `record` (its checks), in the name of `actor`."""
    answers = area_answers(get(uow, assessment_id), answer)
    if not answers:
        return get(uow, assessment_id)
    return record(uow, assessment_id, answers, actor)
