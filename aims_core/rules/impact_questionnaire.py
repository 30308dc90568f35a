"""The AI system impact assessment questionnaire (6.1.4, 8.4, A.5), kept as data.

`impact_questionnaire.yaml` in the package holds the sections, the questions (each with the
Annex A controls its answer evidences) and who approves a completed assessment. It is checked
on load, every problem named at once, so a broken or edited file fails before anyone answers.
Each question also checks its own answers: the service, the CLI and the Prefect UI form all go
through `Question.check`.
"""

from __future__ import annotations

import enum
import functools
from importlib import resources
from pathlib import Path
from typing import Annotated, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from aims_core import catalog
from aims_core.errors import AimsError
from aims_core.models import RiskTier
from aims_core.rules.loading import load_located

PACKAGED_FILE: Final = "impact_questionnaire.yaml"
SCALE_MIN: Final = 1
SCALE_MAX: Final = 5
TEXT_MAX: Final = 10_000
DEFAULT_QUORUM: Final = "default"

# Question ids become field names of a pydantic model (the Prefect UI form): they must not shadow
# what BaseModel and Prefect's RunInput already define.
_RUN_INPUT_NAMES: Final = frozenset(
    {
        "metadata",
        "description",
        "keyset_from_type",
        "save",
        "asave",
        "load",
        "aload",
        "load_from_flow_run_input",
        "with_initial_data",
        "respond",
        "arespond",
        "send_to",
        "asend_to",
        "receive",
        "subclass_from_base_model_type",
    }
)
RESERVED_IDS: Final = _RUN_INPUT_NAMES | {n for n in dir(BaseModel) if not n.startswith("_")}

QuestionId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
Answer = str | int


class QuestionnaireError(AimsError):
    """A questionnaire file with problems; `problems` lists every one of them."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s), questionnaire refused:\n{lines}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuestionKind(enum.StrEnum):
    text = "text"
    choice = "choice"
    scale = "scale"


class ScaleLabels(_Strict):
    low: str = Field(min_length=1)
    high: str = Field(min_length=1)


class Question(_Strict):
    id: QuestionId
    text: str = Field(min_length=1)
    kind: QuestionKind
    required: bool
    controls: list[str] = Field(min_length=1)
    options: list[str] = Field(default_factory=list)
    scale: ScaleLabels | None = None

    def check(self, value: object) -> Answer | None:
        """The answer as stored (stripped text, a canonical option, an int), or None for blank.

        Raises ValueError saying what is wrong in words an assessor can act on.
        """
        if value is None:
            return None
        if isinstance(value, bool):  # a JSON true/false is not an answer to any of our kinds
            raise ValueError(f"expected {self._expected()}, got {str(value).lower()}")
        if self.kind is QuestionKind.scale:
            return self._check_scale(value)
        if isinstance(value, int | float) and self.kind is QuestionKind.text:
            value = str(value)
        if not isinstance(value, str):
            raise ValueError(f"expected {self._expected()}, got {type(value).__name__}")
        value = value.strip()
        if not value:
            return None
        if self.kind is QuestionKind.choice:
            by_lower = {o.lower(): o for o in self.options}
            if value.lower() not in by_lower:
                raise ValueError(f"'{value}' is not one of: {', '.join(self.options)}")
            return by_lower[value.lower()]
        if len(value) > TEXT_MAX:
            raise ValueError(f"longer than {TEXT_MAX} characters ({len(value)})")
        if "\x00" in value:
            raise ValueError("contains a NUL character")
        return value

    def _check_scale(self, value: object) -> int | None:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            if not (value.isascii() and value.isdigit()):
                raise ValueError(f"'{value}' is not a whole number from {SCALE_MIN} to {SCALE_MAX}")
            value = int(value)
        if not isinstance(value, int):
            raise ValueError(f"expected a whole number from {SCALE_MIN} to {SCALE_MAX}")
        if not SCALE_MIN <= value <= SCALE_MAX:
            raise ValueError(f"{value} is outside the scale {SCALE_MIN} to {SCALE_MAX}")
        return value

    def _expected(self) -> str:
        if self.kind is QuestionKind.choice:
            return f"one of: {', '.join(self.options)}"
        if self.kind is QuestionKind.scale:
            return f"a whole number from {SCALE_MIN} to {SCALE_MAX}"
        return "text"

    def describe_kind(self) -> str:
        """`text`, `choice: a | b | c`, `scale 1 (rare) to 5 (almost certain)`."""
        if self.kind is QuestionKind.choice:
            return "choice: " + " | ".join(self.options)
        if self.kind is QuestionKind.scale:
            if self.scale is None:
                return f"scale {SCALE_MIN} to {SCALE_MAX}"
            return f"scale {SCALE_MIN} ({self.scale.low}) to {SCALE_MAX} ({self.scale.high})"
        return "text"


class Section(_Strict):
    id: Slug
    title: str = Field(min_length=1)
    description: str = ""
    questions: list[Question] = Field(min_length=1)


class ApprovalRule(_Strict):
    """Who approves a completed assessment: the roles, and the quorum per EU AI Act risk tier."""

    activity: Slug
    approver_roles: list[str] = Field(min_length=1)
    quorum: dict[str, int]

    def quorum_for(self, tier: RiskTier | str) -> int:
        return self.quorum.get(str(tier), self.quorum[DEFAULT_QUORUM])


class Questionnaire(_Strict):
    id: Slug
    version: int = Field(ge=1)
    title: str = Field(min_length=1)
    approval: ApprovalRule
    sections: list[Section] = Field(min_length=1)

    @property
    def ref(self) -> str:
        """What an assessment stores: `aims-impact@1`."""
        return f"{self.id}@{self.version}"

    @functools.cached_property
    def questions(self) -> dict[str, Question]:
        return {q.id: q for s in self.sections for q in s.questions}

    def required_ids(self) -> list[str]:
        return [q.id for q in self.questions.values() if q.required]

    def missing_required(self, answers: dict[str, object]) -> list[str]:
        """Required questions without an answer, in questionnaire order."""
        return [q for q in self.required_ids() if answers.get(q) in (None, "")]

    def section_number(self, question_id: str) -> int:
        """1-based number of the section holding the question."""
        for n, section in enumerate(self.sections, 1):
            if any(q.id == question_id for q in section.questions):
                return n
        raise KeyError(question_id)


def _problems(q: Questionnaire) -> list[str]:
    """What structure alone cannot say: duplicates, kinds without their options, unknown ids."""
    problems: list[str] = []
    known_controls = {r.id for r in catalog.requirements()}
    known_roles = {r.id for r in catalog.roles()}
    seen_sections: set[str] = set()
    seen_questions: dict[str, str] = {}
    for section in q.sections:
        if section.id in seen_sections:
            problems.append(f"section {section.id}: duplicate section id")
        seen_sections.add(section.id)
        for question in section.questions:
            where = f"question {question.id} (section {section.id})"
            if question.id in seen_questions:
                problems.append(
                    f"{where}: duplicate question id (also in section "
                    f"{seen_questions[question.id]})"
                )
            seen_questions.setdefault(question.id, section.id)
            if question.id in RESERVED_IDS or question.id.startswith("model_"):
                problems.append(f"{where}: id '{question.id}' is reserved, choose another")
            is_choice = question.kind is QuestionKind.choice
            if is_choice and len(question.options) < 2:
                problems.append(f"{where}: a choice needs at least two options")
            if not is_choice and question.options:
                problems.append(f"{where}: options are only for kind choice")
            if is_choice and len({o.lower() for o in question.options}) != len(question.options):
                problems.append(f"{where}: duplicate options")
            if any(not o.strip() for o in question.options):
                problems.append(f"{where}: blank option")
            if question.scale is not None and question.kind is not QuestionKind.scale:
                problems.append(f"{where}: scale labels are only for kind scale")
            problems.extend(
                f"{where}: unknown control '{c}' (not in the ISO/IEC 42001 catalog)"
                for c in question.controls
                if c not in known_controls
            )
    if not q.required_ids():
        problems.append("questions: at least one question must be required")
    problems.extend(
        f"approval.approver_roles: unknown role '{r}' (roles: {', '.join(sorted(known_roles))})"
        for r in q.approval.approver_roles
        if r not in known_roles
    )
    tiers = {t.value for t in RiskTier}
    if DEFAULT_QUORUM not in q.approval.quorum:
        problems.append("approval.quorum: needs a 'default' entry")
    for key, value in q.approval.quorum.items():
        if key != DEFAULT_QUORUM and key not in tiers:
            problems.append(
                f"approval.quorum.{key}: unknown risk tier (tiers: {', '.join(sorted(tiers))})"
            )
        if value < 1:
            problems.append(f"approval.quorum.{key}: must be at least 1, got {value}")
    return problems


def parse(data: object, source: str) -> Questionnaire:
    """Validate a questionnaire document; QuestionnaireError lists every problem found."""
    try:
        q = Questionnaire.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "document"
            problems.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
        raise QuestionnaireError(source, problems) from None
    problems = _problems(q)
    if problems:
        raise QuestionnaireError(source, problems)
    return q


def load_file(path: Path) -> Questionnaire:
    """A questionnaire an organisation supplies (validated exactly like the packaged one)."""
    try:
        data, _root = load_located(path.read_text("utf-8"))
    except OSError as exc:
        raise QuestionnaireError(str(path), [f"cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise QuestionnaireError(str(path), [f"not valid YAML: {exc}"]) from None
    return parse(data, str(path))


@functools.cache
def questionnaire() -> Questionnaire:
    """The packaged questionnaire (cached: parsed once per process)."""
    text = resources.files("aims_core.data").joinpath(PACKAGED_FILE).read_text("utf-8")
    return parse(load_located(text)[0], PACKAGED_FILE)
