"""The answer form of internal audit fieldwork (ISO/IEC 42001 9.2).

The audit's run asks its auditor one fieldwork entry at a time: a finding, "fieldwork complete",
or both (the last finding and the end of fieldwork in one answer). Another finding is another
entry: once an entry is answered the run records it and asks the next, so the auditor always has
one open form, in every channel, until they say fieldwork is complete. (A separate, concurrent
completion ask could not be offered in the run's Prefect UI form, which shows one ask at a time.)

The choices come from the audit itself (the ask's subject, `audit:<id>`): its scope's clauses
and controls and its sampled systems, so a finding outside the scope is refused by the form, in
the channel, before anything is recorded.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, Field, ValidationError, create_model, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from aims_core.ask_forms import MULTILINE, TEXT_MAX, AnswerForm, Form
from aims_core.models import FindingKind
from aims_core.settings import Settings

AUDIT_FIELDWORK: Final = "audit-fieldwork"
#: The fields of a finding; `control`, `kind` and `statement` are required for one.
FINDING_FIELDS: Final = ("control", "kind", "statement", "evidence", "system")
REQUIRED: Final = ("control", "kind", "statement")


def _blank_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _scope_of(settings: Settings, subject: str) -> tuple[list[str], list[str]]:
    """The audit's requirements in scope and sampled systems (none for another subject)."""
    kind, _, ident = subject.partition(":")
    if kind != "audit" or not ident.isdigit():
        return [], []
    from aims_core.models import Audit
    from aims_core.uow import UnitOfWork

    with UnitOfWork(settings).read() as uow:
        row = uow.session.get(Audit, int(ident))
        return (list(row.scope), list(row.systems)) if row is not None else ([], [])


def _problem(field: str, message: str) -> ValidationError:
    """A problem of the whole answer, placed on the field to fix (its Slack block)."""
    return ValidationError.from_exception_data(
        "AuditFieldworkAnswer",
        [
            InitErrorDetails(
                type=PydanticCustomError("fieldwork", message), loc=(field,), input=None
            )
        ],
    )


def _finding_or_complete(answer: Any) -> Any:
    given = [f for f in FINDING_FIELDS if getattr(answer, f, None) is not None]
    if given:
        missing = next((f for f in REQUIRED if getattr(answer, f) is None), None)
        if missing:
            raise _problem(
                missing,
                f"a finding needs its {missing} (clause or control, type and description), or "
                "leave every finding field blank",
            )
    elif not answer.complete:
        raise _problem(
            "control",
            "record a finding (clause or control, type, description) or say fieldwork is complete",
        )
    return answer


def fieldwork_form(settings: Settings, subject: str) -> type[AnswerForm]:
    """One fieldwork entry of audit `subject`: a finding and/or fieldwork complete."""
    scope, systems = _scope_of(settings, subject)
    text = Annotated[str | None, BeforeValidator(_blank_to_none)]
    control: Any = (
        Literal[tuple(scope)]  # type: ignore[valid-type]
        if scope
        else Annotated[str, Field(min_length=1, max_length=16)]
    )
    fields: dict[str, Any] = {
        "control": (
            Annotated[control | None, BeforeValidator(_blank_to_none)],
            Field(
                default=None,
                title="Clause or control",
                description="The requirement in this audit's scope the finding is against, "
                "e.g. A.6.2.4",
            ),
        ),
        "kind": (
            Annotated[
                Literal[tuple(k.value for k in FindingKind)] | None,  # type: ignore[valid-type]
                BeforeValidator(_blank_to_none),
            ],
            Field(
                default=None,
                title="Type",
                description="major-nc or minor-nc: a nonconformity (opens a CAPA at once); "
                "observation; opportunity for improvement",
            ),
        ),
        "statement": (
            text,
            Field(
                default=None,
                max_length=TEXT_MAX,
                title="Description",
                description="What was found, and against what",
                json_schema_extra=MULTILINE,
            ),
        ),
        "evidence": (
            text,
            Field(
                default=None,
                max_length=TEXT_MAX,
                title="Evidence",
                description="What you saw: records, interviews, samples, evidence ids "
                "(kept with the finding)",
                json_schema_extra=MULTILINE,
            ),
        ),
    }
    if systems:
        fields["system"] = (
            Annotated[
                Literal[tuple(systems)] | None,  # type: ignore[valid-type]
                BeforeValidator(_blank_to_none),
            ],
            Field(
                default=None,
                title="AI system",
                description="The sampled AI system concerned, if any",
            ),
        )
    fields["complete"] = (
        bool,
        Field(
            default=False,
            title="Fieldwork complete",
            description="Yes: fieldwork is over (after this finding, if any); the run writes "
            "the report and asks for its approval",
        ),
    )
    return create_model(
        "AuditFieldworkAnswer",
        __base__=AnswerForm,
        __doc__=fieldwork_form.__doc__,
        __validators__={"finding_or_complete": model_validator(mode="after")(_finding_or_complete)},
        **fields,
    )


FORMS = {AUDIT_FIELDWORK: Form("Audit fieldwork", fieldwork_form)}
