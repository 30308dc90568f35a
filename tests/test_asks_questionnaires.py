"""Questionnaires as asks, at the service level on SQLite and PostgreSQL: one ask per impact
section and per gap area (to the assessor; to the governance lead when a gap assessment names no
person), each form built from its part's questions and checked by their own rules, every part
fitting one Slack modal, and an answered ask applied in the name of who answered.

The review minutes' ask is tested with the reviews (tests/test_management_review.py); the generic
checks of asks (codes, lockout, deactivation) once in tests/test_asks.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from records import count
from sqlalchemy import select

from aims_core.ask_forms import answer_model
from aims_core.ask_forms.questionnaires import (
    FIELDS_PER_ASK,
    GAP_AREA,
    IMPACT_SECTION,
    REQUIREMENTS_PER_ASK,
    chunks,
    gap_parts,
    impact_parts,
    part_subject,
)
from aims_core.ask_forms.reviews import REVIEW_MINUTES
from aims_core.ask_modals import MAX_BLOCKS, answer_modal
from aims_core.db import session_factory
from aims_core.errors import InvalidInput
from aims_core.models import AuditEvent, Decision, GapAnswer, Outcome
from aims_core.rules.impact_questionnaire import questionnaire
from aims_core.services import approvals as ap
from aims_core.services import gap, impact
from aims_core.services.approvals import DecisionIn, Refused
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
OWNER, ETHICS, GOV, CEO = (f"{n}{D}" for n in ("ops.owner", "ethics", "governance", "ceo"))
CLI = Actor(who="tester", channel="cli")


def answer(rid: int, person: str, **fields: Any) -> DecisionIn:
    return DecisionIn(request_id=rid, person=person, outcome=Outcome.answer, answer=fields)


def applied(outcome: ap.ApprovalRequestOut) -> dict[str, Any]:
    """The ask's answer as the flow applies it (tasks.answers.given): the fields filled in."""
    [d] = outcome.decisions
    return {k: v for k, v in (d.answer or {}).items() if v is not None}


# --- the forms, without a database ----------------------------------------------------------------


def test_every_part_fits_one_slack_modal_and_a_long_part_is_split_in_order() -> None:
    settings = Settings()
    parts = [
        (IMPACT_SECTION, part_subject("impact-assessment:1", sid, n, of))
        for sid, n, of, _qs in impact_parts()
    ] + [(GAP_AREA, part_subject("gap:1", area, n, of)) for area, n, of, _r in gap_parts()]
    assert len(parts) == len(questionnaire().sections) + 17  # one ask per section, per area
    for kind, subject in parts:
        model = answer_model(settings, kind, subject)
        ask = SimpleNamespace(id=1, round=1, title=subject, details="")
        view = answer_modal(ask, model)
        assert len(view["blocks"]) <= MAX_BLOCKS, subject
    # The rule: in order, FIELDS_PER_ASK at a time (a gap requirement takes three fields).
    assert [len(c) for c in chunks(list(range(200)), FIELDS_PER_ASK)] == [98, 98, 4]
    assert REQUIREMENTS_PER_ASK == 32
    assert part_subject("impact-assessment:4", "misuse", 2, 3) == "impact-assessment:4/misuse/2"
    assert part_subject("gap:4", "A.6.2", 1, 1) == "gap:4/A.6.2"
    for kind, subject in ((IMPACT_SECTION, "impact-assessment:4/nope"), (GAP_AREA, "gap:4")):
        with pytest.raises(InvalidInput) as exc:
            answer_model(settings, kind, subject)
        assert exc.value.field == "subject"


def test_the_forms_check_each_field_with_its_own_rule() -> None:
    settings = Settings()
    section = answer_model(settings, IMPACT_SECTION, "impact-assessment:1/intended-use")
    assert list(section.model_fields) == [
        "intended_purpose",
        "deployment_context",
        "human_oversight",
        "decision_significance",
    ]
    # Options are canonical whatever the case typed; a scale out of range, a blank required
    # answer and an empty answer are refused naming the field.
    assert section.model_validate({"human_oversight": "Human-On-The-Loop"}).human_oversight == (
        "human-on-the-loop"
    )
    for given, field in (
        ({"decision_significance": 9}, "decision_significance"),
        ({"human_oversight": "sometimes"}, "human_oversight"),
        ({"intended_purpose": "  "}, "intended_purpose"),
        ({}, None),
    ):
        with pytest.raises(ValueError) as exc:
            section.model_validate(given)
        [err] = exc.value.errors()  # type: ignore[attr-defined]
        assert err["loc"] == ((field,) if field else ()), given
    area = answer_model(settings, GAP_AREA, "gap:1/4")
    assert {"accept_suggestions", "r_4_4", "note_4_4", "evidence_4_4"} <= set(area.model_fields)
    with pytest.raises(ValueError) as exc:
        area.model_validate({"r_4_4": "not-applicable"})
    [err] = exc.value.errors()  # type: ignore[attr-defined]
    assert err["loc"] == ("note_4_4",) and "justification" in err["msg"]
    minutes = answer_model(settings, REVIEW_MINUTES, "review:2026Q3")
    with pytest.raises(ValueError) as exc:
        minutes.model_validate({"outcome": "reject"})
    [err] = exc.value.errors()  # type: ignore[attr-defined]
    assert err["loc"] == ("notes",) and "why" in err["msg"]


# --- impact assessment ---------------------------------------------------------------------------


def test_impact_sections_are_asked_of_the_assessor_and_applied_in_their_name(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    a = impact.start(org, "support-chatbot", actor)
    specs = impact.section_asks(org, a.id, 1)
    assert [s.subject for s in specs] == [
        f"impact-assessment:{a.id}/{s.id}" for s in questionnaire().sections
    ]
    assert {tuple(s.approver_people) for s in specs} == {(OWNER,)}
    first = ap.create_request(org, specs[0], actor)
    assert first.approvers == [OWNER] and "Still open here: intended_purpose" in first.details

    # Only the assessor answers; what the form refuses names the field, nothing written.
    with pytest.raises(Refused) as refused:
        ap.decide(org, answer(first.id, ETHICS, intended_purpose="x"), CLI)
    assert refused.value.reason == "not-eligible"
    with pytest.raises(InvalidInput) as bad:
        ap.decide(org, answer(first.id, OWNER, decision_significance=0), CLI)
    assert bad.value.field == "decision_significance"
    assert count(settings, Decision) == 0

    # A partial answer closes the ask; recorded in the assessor's name, the rest asked again.
    given = {"intended_purpose": "Answers questions", "human_oversight": "human-on-the-loop"}
    ap.decide(org, answer(first.id, OWNER, **given), CLI)
    done = ap.get_request(org, first.id)
    assert done.status == "answered" and applied(done) == given
    impact.answer(org, a.id, applied(done), Actor(who=OWNER, channel="cli"))
    again = impact.section_asks(org, a.id, 2)
    assert again[0].idempotency_key == f"impact-assessment-{a.id}-intended-use-1-r2"
    assert "Still open here: deployment_context, decision_significance" in again[0].details
    assert "- intended_purpose: Answers questions" in again[0].details
    with session_factory(settings.effective_database_url)() as s:
        [who] = s.scalars(
            select(AuditEvent.actor).where(
                AuditEvent.action == "impact.answered", AuditEvent.subject == a.subject
            )
        )
    assert who == OWNER


# --- gap assessment ------------------------------------------------------------------------------


def test_gap_areas_are_asked_of_the_assessor_or_else_the_governance_lead(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    a = gap.start(org, actor)  # no person named: the caller, not a person
    specs = gap.area_asks(org, a.id, 1)
    assert len(specs) == 17 and specs[0].subject == f"gap:{a.id}/4"
    assert (specs[0].approver_people, specs[0].approver_roles) == ([], ["governance-lead"])
    assert "4.1 " in specs[0].details and "suggested conforming" in specs[0].details
    ask = ap.create_request(org, specs[0], actor)
    assert ask.approvers == [GOV]

    # Confirm the suggestions, one status typed with its note; applied in the answerer's name.
    given = {"accept_suggestions": True, "r_4_4": "not-conforming", "note_4_4": "none"}
    ap.decide(org, answer(ask.id, GOV, **given), CLI)
    [d] = ap.get_request(org, ask.id).decisions
    gap.record_area_answer(org, a.id, d.answer or {}, Actor(who=GOV, channel="slack"))
    now = gap.get(org, a.id).by_id()
    assert [now[r].status for r in ("4.1", "4.2", "4.3", "4.4")] == [
        "conforming",
        "conforming",
        "partially-conforming",
        "not-conforming",
    ]
    assert now["4.4"].note == "none" and now["4.4"].answered_by == GOV
    assert now["5.2"].status is None  # another area: untouched
    with session_factory(settings.effective_database_url)() as s:
        by = set(s.scalars(select(GapAnswer.answered_by).where(GapAnswer.status.is_not(None))))
    assert by == {GOV}
    # A note alone keeps the recorded status; area 4 is no longer asked.
    gap.record_area_answer(org, a.id, {"r_4_4": None, "note_4_4": "being written"}, CLI)
    assert gap.get(org, a.id).by_id()["4.4"].status == "not-conforming"
    assert gap.area_asks(org, a.id, 2)[0].subject == f"gap:{a.id}/5"


def test_a_named_assessor_answers_the_gap_areas_alone(org: UnitOfWork, actor: Actor) -> None:
    a = gap.start(org, actor, assessor=CEO)
    [first, *_] = gap.area_asks(org, a.id, 1)
    assert (first.approver_people, first.approver_roles) == ([CEO], [])
    ask = ap.create_request(org, first, actor)
    with pytest.raises(Refused):
        ap.decide(org, answer(ask.id, GOV, accept_suggestions=True), CLI)
    with pytest.raises(InvalidInput) as bad:
        ap.decide(org, answer(ask.id, CEO, r_4_1="not-applicable"), CLI)
    assert bad.value.field == "note_4_1"
