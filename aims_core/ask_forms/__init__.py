"""The answer forms of asks: one typed model per kind of human step that is not an approval.

A flow asks a question of a kind registered here; every channel (Slack modal, Prefect UI form,
CLI) shows the same model and the answer service validates what comes back with it, so a field's
rules live once. Each domain keeps its forms in its own module of this package (`FORMS`: kind →
title and builder), merged into `_FORMS` at the bottom. A builder gets the organisation's
settings (choices from its rules, e.g. the incident policy's serious-incident kinds) and the ask's
subject (a form that depends on the record, e.g. one questionnaire section's questions).

Field conventions the channels rely on: `title` is the label, `description` the hint, a `str`
with `json_schema_extra={"multiline": True}` is a long text, choices are `Literal[...]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from aims_core.errors import InvalidInput
from aims_core.models import APPROVAL_KIND
from aims_core.settings import Settings

__all__ = [
    "APPROVAL_KIND",
    "CAPA_VERIFICATION",
    "FORM_TITLES",
    "MULTILINE",
    "NOT_SERIOUS",
    "SERIOUS_CONFIRMATION",
    "TEXT_MAX",
    "AnswerForm",
    "Form",
    "answer_model",
    "known_kind",
]

SERIOUS_CONFIRMATION = "serious-incident-confirmation"
CAPA_VERIFICATION = "capa-verification"
#: The serious-incident confirmation's answer that the incident is not serious.
NOT_SERIOUS = "not-serious"
#: The longest free text of a form field (Slack's limit for one input).
TEXT_MAX = 3_000
#: `json_schema_extra` of a long text field.
MULTILINE: dict[str, Any] = {"multiline": True}


class AnswerForm(BaseModel):
    """What every answer form shares: no field the form does not name."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


@dataclass(frozen=True)
class Form:
    """A registered answer form: what people read it as, and how its model is built."""

    title: str
    build: Callable[[Settings, str], type[AnswerForm]]


def answer_model(settings: Settings, kind: str, subject: str = "") -> type[AnswerForm]:
    """The typed answer of an ask of `kind` about `subject` (InvalidInput for an approval or an
    unknown kind)."""
    form = _FORMS.get(kind)
    if form is None:
        known = ", ".join(sorted(_FORMS))
        raise InvalidInput(f"no answer form '{kind}' (forms: {known})", "kind")
    return form.build(settings, subject)


def known_kind(kind: str) -> bool:
    return kind == APPROVAL_KIND or kind in _FORMS


# Each domain's forms, in their own module (they use the names above: imported last).
from aims_core.ask_forms import audits, capa, incidents, questionnaires, reviews  # noqa: E402

_FORMS: dict[str, Form] = {
    **audits.FORMS,
    **incidents.FORMS,
    **capa.FORMS,
    **questionnaires.FORMS,
    **reviews.FORMS,
}
#: What each kind is called where people read it.
FORM_TITLES: dict[str, str] = {APPROVAL_KIND: "Approval"} | {k: f.title for k, f in _FORMS.items()}
