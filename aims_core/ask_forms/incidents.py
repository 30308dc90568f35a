"""The answer forms of the incident response (ISO/IEC 42001 A.8.4, EU AI Act Art. 73)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model, model_validator

from aims_core.ask_forms import (
    MULTILINE,
    NOT_SERIOUS,
    SERIOUS_CONFIRMATION,
    TEXT_MAX,
    AnswerForm,
    Form,
)
from aims_core.settings import Settings


def serious_confirmation(settings: Settings, _subject: str) -> type[AnswerForm]:
    """EU AI Act Art. 3(49)/73: is this a serious incident, and of which kind? The kinds are
    the organisation's incident policy's."""
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
        __doc__=serious_confirmation.__doc__,
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
                max_length=TEXT_MAX,
                title="Reason",
                description="Why it is not serious (required then), or a note",
                json_schema_extra=MULTILINE,
            ),
        ),
    )


FORMS = {SERIOUS_CONFIRMATION: Form("Serious-incident confirmation", serious_confirmation)}
