"""The answer form of a management review's minutes (ISO/IEC 42001 9.3): top management
approves them (with what the meeting concluded, kept in the minutes) or rejects them, saying why.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, ValidationInfo, field_validator

from aims_core.ask_forms import MULTILINE, TEXT_MAX, AnswerForm, Form

REVIEW_MINUTES: Final = "review-minutes"


class ReviewMinutesAnswer(AnswerForm):
    """Top management's word on the minutes of a management review."""

    outcome: Literal["approve", "reject"] = Field(
        title="Minutes",
        description="approve: the minutes, with the decisions recorded, become evidence; "
        "reject: the reasons are kept and the pack is prepared again",
    )
    attendees: str = Field(
        default="",
        max_length=TEXT_MAX,
        title="Attendees",
        description="Who took part in the review",
    )
    notes: str = Field(
        default="",
        max_length=TEXT_MAX,
        title="Conclusions",
        description="What the meeting concluded, kept in the minutes (required to reject: why)",
        json_schema_extra=MULTILINE,
        validate_default=True,
    )

    @field_validator("notes")
    @classmethod
    def _reason_to_reject(cls, notes: str, info: ValidationInfo) -> str:
        if info.data.get("outcome") == "reject" and not notes:
            raise ValueError("say why the minutes are rejected")
        return notes


FORMS = {
    REVIEW_MINUTES: Form(
        "Management review minutes", lambda _settings, _subject: ReviewMinutesAnswer
    )
}
