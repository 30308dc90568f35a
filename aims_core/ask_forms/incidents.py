"""The answer forms of the incident response (ISO/IEC 42001 A.8.4, EU AI Act Art. 73)."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import (
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

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


INCIDENT_ROOT_CAUSE: Final = "incident-root-cause"
INCIDENT_LESSONS: Final = "incident-lessons"
CLOSURE_AMENDMENT: Final = "incident-closure-amendment"
#: The longest why or fishbone cause (the incident record's limit for one line of its analysis).
CAUSE_MAX: Final = 2_000

FISHBONE_FIELDS: Final = ("people", "process", "data", "model", "infrastructure", "environment")


def _why(n: int) -> Any:
    asked = "Why did it happen?" if n == 1 else f"Why was answer {n - 1} so?"
    return Field(
        default="" if n > 1 else ...,
        min_length=1 if n == 1 else 0,
        max_length=CAUSE_MAX,
        title=f"Why? ({n})",
        description=asked + (" (needed)" if n == 1 else " (optional; fill them in order)"),
    )


def _causes(category: str, examples: str) -> Any:
    return Field(
        default_factory=list,
        title=f"Fishbone: {category}",
        description=f"{examples}; one cause per line",
    )


class RootCauseAnswer(AnswerForm):
    """ISO/IEC 42001 10.2: why the incident happened, as 5 whys and fishbone causes.

    Lists in one modal: the whys are five text fields asked in order (the first needed), each
    fishbone category one list (one cause per line in Slack, `--set data=...` repeated in the CLI,
    a list in the Prefect UI), so the whole analysis fits one modal of 12 inputs."""

    why_1: str = _why(1)
    why_2: str = _why(2)
    why_3: str = _why(3)
    why_4: str = _why(4)
    why_5: str = _why(5)
    people: list[str] = _causes("people", "Skills, roles, oversight")
    process: list[str] = _causes("process", "Reviews, release and approval steps")
    data: list[str] = _causes("data", "Collection, labelling, drift, coverage")
    model: list[str] = _causes("model", "Design, training, evaluation, thresholds")
    infrastructure: list[str] = _causes("infrastructure", "Deployment, monitoring, capacity")
    environment: list[str] = _causes("environment", "Users, context of use, adversaries")
    root_cause: str = Field(
        default="",
        max_length=CAUSE_MAX,
        title="Root cause",
        description="The cause to remove (default: the last why)",
        json_schema_extra=MULTILINE,
    )

    @field_validator("why_2", "why_3", "why_4", "why_5")
    @classmethod
    def _in_order(cls, value: str, info: ValidationInfo) -> str:
        earlier = f"why_{int(str(info.field_name)[-1]) - 1}"
        if value and not info.data.get(earlier):
            raise ValueError(f"{earlier} is empty: give the whys in order")
        return value

    @field_validator(*FISHBONE_FIELDS, mode="before")
    @classmethod
    def _lines(cls, value: Any) -> Any:
        """One cause per line wherever the list came as one text; blank lines dropped."""
        items = value.splitlines() if isinstance(value, str) else value
        if isinstance(items, list):
            texts = [i.strip() if isinstance(i, str) else i for i in items]
            return [i for i in texts if i != ""]
        return value

    @field_validator(*FISHBONE_FIELDS)
    @classmethod
    def _short(cls, value: list[str]) -> list[str]:
        for n, cause in enumerate(value, 1):
            if len(cause) > CAUSE_MAX:
                raise ValueError(f"cause {n} is longer than {CAUSE_MAX} characters")
        return value


class LessonsAnswer(AnswerForm):
    """ISO/IEC 42001 10.2: what the organisation changes so the incident does not happen again;
    the system's risk assessment is reopened with them."""

    lessons: str = Field(
        min_length=1,
        max_length=TEXT_MAX,
        title="Lessons learned",
        description="What changes so it does not happen again (the system's risk assessment "
        "is reopened with them)",
        json_schema_extra=MULTILINE,
    )


class ClosureAmendmentAnswer(AnswerForm):
    """After a refused closure: what was changed, for the approvers of the next request."""

    changes: str = Field(
        min_length=1,
        max_length=TEXT_MAX,
        title="What was changed",
        description="What you changed since the closure was refused (the next closure request "
        "shows it to its approvers)",
        json_schema_extra=MULTILINE,
    )


FORMS = {
    SERIOUS_CONFIRMATION: Form("Serious-incident confirmation", serious_confirmation),
    INCIDENT_ROOT_CAUSE: Form("Incident root cause", lambda _s, _subject: RootCauseAnswer),
    INCIDENT_LESSONS: Form("Incident lessons learned", lambda _s, _subject: LessonsAnswer),
    CLOSURE_AMENDMENT: Form(
        "Incident closure amendment", lambda _s, _subject: ClosureAmendmentAnswer
    ),
}
