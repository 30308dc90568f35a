"""The answer forms of CAPA steps (ISO/IEC 42001 10.2)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aims_core.ask_forms import CAPA_VERIFICATION, MULTILINE, TEXT_MAX, AnswerForm, Form


class CapaVerificationAnswer(AnswerForm):
    """Has the nonconformity recurred since the actions were done?"""

    result: Literal["effective", "ineffective"] = Field(
        title="Result", description="effective: it has not recurred; ineffective: it has"
    )
    evidence: str = Field(
        min_length=1,
        max_length=TEXT_MAX,
        title="Evidence",
        description="What shows the problem has (not) recurred",
        json_schema_extra=MULTILINE,
    )


FORMS = {
    CAPA_VERIFICATION: Form(
        "CAPA effectiveness verification", lambda _settings, _subject: CapaVerificationAnswer
    ),
}
