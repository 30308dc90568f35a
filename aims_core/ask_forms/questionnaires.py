"""The answer forms of questionnaires: one part (an impact-assessment section, a gap-assessment
area) per ask, its form built from that part's questions.

The ask's subject names the part, so the builder needs no database: `impact-assessment:7/misuse`
is section `misuse` of impact assessment 7, `gap:3/A.6.2` area A.6.2 of gap assessment 3; the
questions come from the rules (the packaged questionnaire, the ISO/IEC 42001 catalog). What the
records suggest (a gap requirement's suggested status) is the record's, so the service puts it in
the ask's details, not here.

One modal per ask: Slack holds 100 blocks, two of them the ask's own, so a part with more fields
than `FIELDS_PER_ASK` is split in order into chunks that fit, each its own ask with `/2`, `/3`
... after the part in the subject (an impact question is one field; a gap requirement three, its
status, note and evidence links, beside the one "confirm the suggestions" field).

Every field is optional: blank leaves the record as it is (a part may be answered in several
goes; the flow asks again for what is still open), but an answer must give something.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final, Literal

from pydantic import Field, ValidationInfo, create_model, field_validator, model_validator

from aims_core import catalog
from aims_core.ask_forms import MULTILINE, AnswerForm, Form
from aims_core.errors import InvalidInput
from aims_core.rules.gap import Conformity, area_of, areas, assessable
from aims_core.rules.impact_questionnaire import (
    SCALE_MAX,
    SCALE_MIN,
    Question,
    QuestionKind,
    questionnaire,
)
from aims_core.rules.impact_questionnaire import TEXT_MAX as ANSWER_MAX
from aims_core.settings import Settings

IMPACT_SECTION: Final = "impact-section"
GAP_AREA: Final = "gap-area"
#: Fields one Slack modal holds: 100 blocks less the ask's header and context.
FIELDS_PER_ASK: Final = 98
#: The gap form's field confirming the suggested statuses of the requirements left blank.
ACCEPT: Final = "accept_suggestions"
#: A gap note's longest text (the gap service's limit).
NOTE_MAX: Final = 5_000

_SUBJECT = re.compile(r"^(?P<kind>[a-z-]+):(?P<id>\d+)/(?P<part>[^/\s]+)(?:/(?P<chunk>[1-9]\d*))?$")


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """`items` in order, `size` at a time (one modal each)."""
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def part_subject(record_subject: str, part: str, chunk: int, of: int) -> str:
    """`impact-assessment:7/misuse`, or `.../misuse/2` for the second of several chunks."""
    return f"{record_subject}/{part}" + (f"/{chunk}" if of > 1 else "")


def _parse(subject: str, kind: str) -> tuple[int, str, int]:
    """(record id, part, 1-based chunk) of a questionnaire ask's subject."""
    m = _SUBJECT.match(subject.strip())
    if m is None or m["kind"] != kind:
        raise InvalidInput(
            f"'{subject}' does not name a part ({kind}:ID/PART[/N] expected)", "subject"
        )
    return int(m["id"]), m["part"], int(m["chunk"] or 1)


# --- impact assessment: one section per ask ----------------------------------------------------


def impact_parts() -> list[tuple[str, int, int, list[Question]]]:
    """Every ask a questionnaire may need: (section id, chunk, chunks, its questions)."""
    out = []
    for section in questionnaire().sections:
        pieces = chunks(list(section.questions), FIELDS_PER_ASK)
        out += [(section.id, n, len(pieces), qs) for n, qs in enumerate(pieces, 1)]
    return out


def _impact_field(question: Question) -> tuple[Any, Any]:
    need = "required" if question.required else "optional"
    hint = f"{need} · {', '.join(question.controls)}"
    if question.kind is QuestionKind.scale:
        return (
            int | None,
            Field(
                default=None,
                ge=SCALE_MIN,
                le=SCALE_MAX,
                title=question.text,
                description=f"{question.describe_kind()} · {hint}",
            ),
        )
    if question.kind is QuestionKind.choice:
        choice = Literal[tuple(question.options)]  # type: ignore[valid-type]
        return (choice | None, Field(default=None, title=question.text, description=hint))
    return (
        str | None,
        Field(
            default=None,
            max_length=ANSWER_MAX,
            title=question.text,
            description=hint,
            json_schema_extra=MULTILINE,
        ),
    )


def impact_section(_settings: Settings, subject: str) -> type[AnswerForm]:
    """The questions of one section (or chunk) of the impact questionnaire, each checked by
    its question's own rule (`Question.check`: canonical options, the scale, text limits)."""
    _id, part, chunk = _parse(subject, "impact-assessment")
    found = [qs for sid, n, _of, qs in impact_parts() if (sid, n) == (part, chunk)]
    if not found:
        sections = ", ".join(s.id for s in questionnaire().sections)
        raise InvalidInput(f"no section '{part}' (part {chunk}) (sections: {sections})", "subject")
    return _impact_model(part, chunk)


@functools.cache
def _impact_model(part: str, chunk: int) -> type[AnswerForm]:
    [questions] = [qs for sid, n, _of, qs in impact_parts() if (sid, n) == (part, chunk)]
    by_id = {q.id: q for q in questions}

    def check(value: object, info: ValidationInfo) -> object:
        question = by_id[str(info.field_name)]
        checked = question.check(value)
        if checked is None and question.required:
            raise ValueError("required: give an answer (or leave it out to answer later)")
        return checked

    section = next(s for s in questionnaire().sections if s.id == part)
    return create_model(
        f"ImpactSection_{part.replace('-', '_')}_{chunk}",
        __base__=AnswerForm,
        __doc__=f"{section.title}: {section.description.strip()}".strip(": "),
        __validators__={
            "check": field_validator(*by_id, mode="before")(check),
            "something": model_validator(mode="after")(_something_given),
        },
        **{q.id: _impact_field(q) for q in questions},
    )


def _something_given(answer: Any) -> Any:
    if not any(answer.model_dump().values()):  # None, False, "" and [] give nothing
        raise ValueError("answer at least one question")
    return answer


# --- gap assessment: one area per ask ----------------------------------------------------------


def field_name(requirement: str) -> str:
    """`A.6.2.4` → `r_a_6_2_4`: the status field of a requirement (its note: `note_a_6_2_4`)."""
    return "r_" + re.sub(r"[^a-z0-9]+", "_", requirement.lower()).strip("_")


def note_name(requirement: str) -> str:
    return "note_" + field_name(requirement)[2:]


def evidence_name(requirement: str) -> str:
    return "evidence_" + field_name(requirement)[2:]


#: Requirements per gap ask: a status, a note and evidence links each, beside the ACCEPT field.
REQUIREMENTS_PER_ASK: Final = (FIELDS_PER_ASK - 1) // 3


def gap_parts() -> list[tuple[str, int, int, list[str]]]:
    """Every ask an assessment may need: (area, chunk, chunks, its requirement ids)."""
    out = []
    for area, _title in areas():
        ids = [r.id for r in assessable() if area_of(r.id) == area]
        pieces = chunks(ids, REQUIREMENTS_PER_ASK)
        out += [(area, n, len(pieces), reqs) for n, reqs in enumerate(pieces, 1)]
    return out


def gap_area(_settings: Settings, subject: str) -> type[AnswerForm]:
    """A status and a note per requirement of one area (or chunk) of the gap assessment, plus
    "confirm the suggestions" for those left blank; not-applicable needs a note (6.1.3 d)."""
    _id, part, chunk = _parse(subject, "gap")
    if not any((area, n) == (part, chunk) for area, n, _of, _reqs in gap_parts()):
        known = ", ".join(a for a, _t in areas())
        raise InvalidInput(f"no area '{part}' (part {chunk}) (areas: {known})", "subject")
    return _gap_model(part, chunk)


@functools.cache
def _gap_model(part: str, chunk: int) -> type[AnswerForm]:
    [reqs] = [r for area, n, _of, r in gap_parts() if (area, n) == (part, chunk)]
    titles = {r.id: r.title for r in catalog.requirements()}
    status = Literal[tuple(c.value for c in Conformity)]  # type: ignore[valid-type]
    fields: dict[str, Any] = {
        ACCEPT: (
            bool,
            Field(
                default=False,
                title="Confirm the suggested statuses",
                description="Take the suggested status (see the ask) for every requirement "
                "left blank here",
            ),
        )
    }
    notes: dict[str, str] = {}
    for rid in reqs:
        fields[field_name(rid)] = (
            status | None,
            Field(default=None, title=f"{rid} {titles[rid]}", description="blank: as it is"),
        )
        fields[note_name(rid)] = (
            str | None,
            Field(
                default=None,
                max_length=NOTE_MAX,
                title=f"{rid} note",
                description="Why (a not-applicable needs one)",
                json_schema_extra=MULTILINE,
                validate_default=True,
            ),
        )
        fields[evidence_name(rid)] = (
            list[str] | None,
            Field(
                default=None,
                max_length=50,
                title=f"{rid} evidence",
                description="Links to what shows it (record ids, URLs), one per line; given: "
                "they replace the ones recorded",
            ),
        )
        notes[note_name(rid)] = field_name(rid)

    def justified(value: str | None, info: ValidationInfo) -> str | None:
        chosen = info.data.get(notes[str(info.field_name)])
        if chosen == Conformity.not_applicable.value and not value:
            raise ValueError("not applicable needs a justification")
        return value

    return create_model(
        f"GapArea_{re.sub(r'[^A-Za-z0-9]', '_', part)}_{chunk}",
        __base__=AnswerForm,
        __doc__=f"Conformity of area {part} {dict(areas())[part]}",
        __validators__={
            "justified": field_validator(*notes)(justified),
            "something": model_validator(mode="after")(_something_given),
        },
        **fields,
    )


FORMS = {
    IMPACT_SECTION: Form("Impact assessment section", impact_section),
    GAP_AREA: Form("Gap assessment area", gap_area),
}
