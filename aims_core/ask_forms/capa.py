"""The answer forms of CAPA steps (ISO/IEC 42001 10.2): containment, root cause, the action
plan (one action per answer), an action's completion, the effectiveness verification.

Each form checks what the CAPA service will check when the run applies the answer (lengths, the
method's fields, a due date not past, an action owner who is an active person), so an answer the
ask accepts is one the CAPA takes; the service checks again when it records it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Final, Literal, Self

from pydantic import AfterValidator, Field, field_validator, model_validator
from sqlalchemy import select

from aims_core.ask_forms import CAPA_VERIFICATION, MULTILINE, TEXT_MAX, AnswerForm, Form
from aims_core.settings import Settings

CAPA_CONTAINMENT: Final = "capa-containment"
CAPA_ROOT_CAUSE: Final = "capa-root-cause"
CAPA_ACTION_PLAN: Final = "capa-action-plan"
CAPA_ACTION_DONE: Final = "capa-action-done"

#: The fishbone categories, one list field each in the root-cause form.
FISHBONE: Final[tuple[str, ...]] = ("data", "model", "process", "people", "tooling", "environment")

#: The longest why or cause (one line).
LINE_MAX: Final = 2000


def _lines(items: list[str]) -> list[str]:
    """Whys or causes, one a line: blanks dropped, each at most a line's length."""
    lines = [i.strip() for i in items if i.strip()]
    long = next((i for i in lines if len(i) > LINE_MAX), None)
    if long is not None:
        raise ValueError(f"at most {LINE_MAX} characters a line ('{long[:40]}…')")
    return lines


#: Whys or causes (in a Slack modal: one multiline input, one item per line).
Lines = Annotated[list[str], AfterValidator(_lines)]


def method_problem(method: str, whys: list[str], causes: list[str]) -> str | None:
    """What a root cause analysis of `method` lacks (the service's rule and the form's)."""
    if method == "5-whys" and not whys:
        return "whys: give at least one why (--why), or --method other"
    if method == "fishbone" and not causes:
        return f"fishbone: give at least one cause per category ({', '.join(FISHBONE)})"
    return None


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


class CapaContainmentAnswer(AnswerForm):
    """React to the nonconformity: control and correct it, deal with its consequences."""

    containment: str = Field(
        min_length=1,
        max_length=TEXT_MAX,
        title="Containment and correction",
        description="What was done to control and correct it and deal with the consequences",
        json_schema_extra=MULTILINE,
    )


def _causes(category: str) -> Any:
    return Field(
        default_factory=list,
        max_length=10,
        title=f"Fishbone: {category} causes",
        description="One cause per line",
    )


class CapaRootCauseAnswer(AnswerForm):
    """Why did it happen? The chain of whys, or causes per fishbone category, and the root cause
    the actions must remove."""

    method: Literal["5-whys", "fishbone", "other"] = Field(
        default="5-whys",
        title="Method",
        description="5-whys needs the whys; fishbone at least one cause; other neither",
    )
    whys: Lines = Field(
        default_factory=list, max_length=10, title="Why? (5 whys)", description="One per line"
    )
    data: Lines = _causes("data")
    model: Lines = _causes("model")
    process: Lines = _causes("process")
    people: Lines = _causes("people")
    tooling: Lines = _causes("tooling")
    environment: Lines = _causes("environment")
    root_cause: str = Field(
        min_length=1,
        max_length=TEXT_MAX,
        title="Root cause",
        description="The cause to remove",
        json_schema_extra=MULTILINE,
    )

    @model_validator(mode="after")
    def _method_has_its_fields(self) -> Self:
        causes = [c for category in FISHBONE for c in getattr(self, category)]
        problem = method_problem(self.method, self.whys, causes)
        if problem:
            raise ValueError(problem)
        return self

    def fishbone(self) -> dict[str, list[str]]:
        """The causes by category, as the CAPA service records them."""
        return {c: list(getattr(self, c)) for c in FISHBONE if getattr(self, c)}


class CapaActionAnswer(AnswerForm):
    """One corrective action of the plan. The plan is asked one action at a time: each answer
    says whether it completes the plan (then tracking starts) or another action follows."""

    title: str = Field(min_length=1, max_length=300, title="Action", description="What is done")
    owner: str = Field(
        default="",
        max_length=320,
        title="Owner",
        description="Email of who does it (blank: the CAPA's owner)",
    )
    due: date = Field(title="Due date", description="By when (due at the end of that day, UTC)")
    plan_complete: bool = Field(
        title="Plan complete with this action?",
        description="Yes: the plan is complete, each action's owner is asked when it is done; "
        "No: you are asked for the next action",
    )

    @field_validator("due")
    @classmethod
    def _not_past(cls, value: date) -> date:
        today = datetime.now(UTC).date()
        if value < today:
            raise ValueError(f"{value} is in the past (today is {today})")
        return value


def action_answer(settings: Settings, _subject: str) -> type[AnswerForm]:
    """The action form of this organisation: its owner must be an active person (checked when
    the answer is given, so a typo is refused in the modal, not when the run applies it)."""

    class ActionAnswer(CapaActionAnswer):
        @field_validator("owner")
        @classmethod
        def _an_active_person(cls, value: str) -> str:
            return _active_email(settings, value)

    ActionAnswer.__name__ = ActionAnswer.__qualname__ = "CapaActionAnswer"
    ActionAnswer.__doc__ = CapaActionAnswer.__doc__
    return ActionAnswer


def _active_email(settings: Settings, value: str) -> str:
    from aims_core.db import session_factory
    from aims_core.models import Person

    email = value.strip().lower()
    if not email:
        return ""
    with session_factory(settings.effective_database_url)() as s:
        active = s.scalar(select(Person.active).where(Person.email == email))
    if active is None:
        raise ValueError(f"no person with email '{email}' (see `aims people list`)")
    if not active:
        raise ValueError(f"{email} is deactivated: name someone else")
    return email


class CapaActionDoneAnswer(AnswerForm):
    """The action is done: what shows it (kept as evidence, ISO/IEC 42001 10.2 g)."""

    evidence: str = Field(
        min_length=1,
        max_length=TEXT_MAX,
        title="Evidence",
        description="What shows it is done (a merged change, a report, a record)",
        json_schema_extra=MULTILINE,
    )


def _fixed(model: type[AnswerForm]) -> Any:
    return lambda _settings, _subject: model


FORMS = {
    CAPA_CONTAINMENT: Form("CAPA containment", _fixed(CapaContainmentAnswer)),
    CAPA_ROOT_CAUSE: Form("CAPA root cause", _fixed(CapaRootCauseAnswer)),
    CAPA_ACTION_PLAN: Form("CAPA action plan", action_answer),
    CAPA_ACTION_DONE: Form("CAPA action done", _fixed(CapaActionDoneAnswer)),
    CAPA_VERIFICATION: Form("CAPA effectiveness verification", _fixed(CapaVerificationAnswer)),
}
