"""The answer forms of asks: one typed model per kind of human step that is not an approval.

A flow asks a question of a kind named here; every channel (Slack modal, Prefect UI form, CLI)
shows the same model and the answer service validates what comes back with it, so a field's
rules live once. Choices that depend on the organisation's rules (the serious-incident kinds of
its incident policy) are read from its settings when the model is built.

Field conventions the channels rely on: `title` is the label, `description` the hint, a `str`
with `json_schema_extra={"multiline": True}` is a long text, choices are `Literal[...]`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from aims_core.errors import InvalidInput
from aims_core.models import APPROVAL_KIND
from aims_core.settings import Settings

__all__ = [
    "APPROVAL_KIND",
    "CAPA_VERIFICATION",
    "FORM_TITLES",
    "NOT_SERIOUS",
    "SERIOUS_CONFIRMATION",
    "AnswerForm",
    "answer_model",
]

SERIOUS_CONFIRMATION = "serious-incident-confirmation"
CAPA_VERIFICATION = "capa-verification"
#: The serious-incident confirmation's answer that the incident is not serious.
NOT_SERIOUS = "not-serious"
_TEXT = 3_000
_MULTILINE: dict[str, Any] = {"multiline": True}


class AnswerForm(BaseModel):
    """What every answer form shares: no field the form does not name."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CapaVerificationAnswer(AnswerForm):
    """ISO/IEC 42001 10.2: has the nonconformity recurred since the actions were done?"""

    result: Literal["effective", "ineffective"] = Field(
        title="Result", description="effective: it has not recurred; ineffective: it has"
    )
    evidence: str = Field(
        min_length=1,
        max_length=_TEXT,
        title="Evidence",
        description="What shows the problem has (not) recurred",
        json_schema_extra=_MULTILINE,
    )


def _serious_confirmation(settings: Settings) -> type[AnswerForm]:
    from aims_core.rules.incident import incident_policy

    kinds = incident_policy(settings).classification.kind_ids
    choice = Literal[(NOT_SERIOUS, *kinds)]  # type: ignore[valid-type]

    def reason_when_dismissed(answer: Any) -> Any:
        if answer.kind == NOT_SERIOUS and not answer.reason:
            raise ValueError("say why it is not a serious incident (kept on the timeline)")
        return answer

    return create_model(
        "SeriousIncidentConfirmationAnswer",
        __base__=AnswerForm,
        __doc__="EU AI Act Art. 3(49)/73: is this a serious incident, and of which kind?",
        __validators__={
            "reason_when_dismissed": model_validator(mode="after")(reason_when_dismissed)
        },
        kind=(
            choice,
            Field(
                title="Serious-incident kind",
                description="Confirming starts the Art. 73 reporting clocks from the aware-at "
                "time; not-serious needs a reason",
            ),
        ),
        reason=(
            str,
            Field(
                default="",
                max_length=_TEXT,
                title="Reason",
                description="Why it is not serious (required then), or a note",
                json_schema_extra=_MULTILINE,
            ),
        ),
    )


_FORMS: dict[str, Callable[[Settings], type[AnswerForm]]] = {
    SERIOUS_CONFIRMATION: _serious_confirmation,
    CAPA_VERIFICATION: lambda _settings: CapaVerificationAnswer,
}
#: What each kind is called where people read it.
FORM_TITLES: dict[str, str] = {
    APPROVAL_KIND: "Approval",
    SERIOUS_CONFIRMATION: "Serious-incident confirmation",
    CAPA_VERIFICATION: "CAPA effectiveness verification",
}


def answer_model(settings: Settings, kind: str) -> type[AnswerForm]:
    """The typed answer of an ask of `kind` (InvalidInput for an approval or an unknown kind)."""
    build = _FORMS.get(kind)
    if build is None:
        known = ", ".join(sorted(_FORMS))
        raise InvalidInput(f"no answer form '{kind}' (forms: {known})", "kind")
    return build(settings)


def known_kind(kind: str) -> bool:
    return kind == APPROVAL_KIND or kind in _FORMS
