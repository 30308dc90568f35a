"""Errors a user can cause: each names the field and the problem. The CLI prints one line."""

from __future__ import annotations

from pydantic import ValidationError


class AimsError(Exception):
    """A user-facing error: bad input, unknown record, or a refused operation."""

    exit_code = 2

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidInput(AimsError):
    pass


class NotFound(AimsError):
    pass


class Conflict(AimsError):
    pass


class ImportRejected(AimsError):
    """A file import with bad rows: every problem is listed and nothing was written."""

    def __init__(self, problems: list[str], source: str, bad_rows: int) -> None:
        self.problems = problems
        super().__init__(
            f"{source}: {bad_rows} bad row(s), {len(problems)} problem(s); nothing imported"
        )


def from_validation_error(exc: ValidationError) -> InvalidInput:
    """The first problem of a pydantic error as one line naming the field."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or None
    msg = err.get("msg", "invalid value")
    msg = msg.removeprefix("Value error, ")
    return InvalidInput(msg, field=field)


def problems_of(exc: ValidationError, top: str = "file") -> list[str]:
    """Every problem of a pydantic error as `field: problem` (for files that list them all)."""
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or top
        msg = "missing" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        out.append(f"{field}: {msg}")
    return out


def refuse_answers(problems: list[tuple[str, str]], field: str = "answers") -> None:
    """All-or-nothing input: one problem names its own field; several are listed together."""
    if len(problems) == 1:
        raise InvalidInput(problems[0][1], problems[0][0])
    if problems:
        listed = "; ".join(f"{where}: {msg}" for where, msg in problems)
        raise InvalidInput(f"{len(problems)} answers refused, none recorded: {listed}", field)
