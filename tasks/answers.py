"""`collect_answers`: the one way a flow waits for a questionnaire's answers.

A flow-level helper, not a task: Prefect refuses to suspend from inside a task. Round by round
it re-reads the database (authoritative: answers may equally come from the CLI), suspends with a
form for the first part still open, records what was typed through the service, and waits again
under a new key until nothing is missing. A suspended run re-runs from the top on resume, so the
part of each round is fixed by the flow's persisted task and a round's answers are recorded by a
persisted task keyed by the round's suspend key: a re-run shows the same form under the same key
and records nothing twice. Keys come from the database (assessment id, part, round).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prefect import get_run_logger, task
from prefect.cache_policies import DEFAULT
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput

from aims_core.errors import AimsError

S = TypeVar("S")  # the assessment as its service returns it
P = TypeVar("P")  # the part of the questionnaire one round asks for (an area, a section)


def slug(part: object) -> str:
    """`A.6.2` → `a-6-2`: what a suspend key (lowercase letters, digits, dashes) may hold."""
    return re.sub(r"[^a-z0-9]+", "-", str(part).lower()).strip("-")


@dataclass(frozen=True)
class Questionnaire(Generic[S, P]):
    """What a flow plugs into the wait: how its assessment is read, asked and recorded."""

    #: `gap-12`: the assessment's own prefix of every suspend key.
    key_prefix: str
    #: What a part is called (`area`, `section`), in keys and the log.
    part_name: str
    #: What is still open (`requirement(s)`), for the log.
    open_name: str
    #: The assessment as the database holds it now.
    load: Callable[[], S]
    #: What is still unanswered in it; empty: the wait is over.
    missing: Callable[[S], Sequence[str]]
    #: The part round N asks for: a persisted task, so it is decided once.
    part: Callable[[int], P]
    #: The resume form of a part, saying why the last answers were refused (if they were).
    form: Callable[[S, P, str | None], type[RunInput]]
    #: What the person gave in the form, as the service takes it.
    answers: Callable[[S, P, RunInput], dict[str, Any]]
    #: Record answers through the service (its checks; AimsError: refused).
    record: Callable[[dict[str, Any]], object]

    def key(self, part: P, round_: int) -> str:
        """The suspend key of one round: distinct per round, the same on every re-run."""
        return f"{self.key_prefix}-{self.part_name}-{slug(part)}-round-{round_}"


# The answers come from the round's stored input (immutable once given), so the round's key alone
# identifies the call: a re-run must not re-apply them over later changes from the CLI.
@task(name="record form answers", persist_result=True, cache_policy=DEFAULT - "answers" - "record")
def record_form_answers(
    key: str, answers: dict[str, Any], record: Callable[[dict[str, Any]], object]
) -> str | None:
    """Answers typed into the form, through the same service (and checks) as the CLI.

    Returns why they were refused, for the next form to say; the run never fails on bad input.
    """
    if not answers:
        return None
    try:
        record(answers)
    except AimsError as exc:
        get_run_logger().warning("answers from the form refused: %s", exc)
        return str(exc)
    return None


def collect_answers(q: Questionnaire[S, P]) -> None:
    """Wait, suspended, until the database holds every answer wanted (from any channel)."""
    logger = get_run_logger()
    refusal: str | None = None
    round_ = 1
    while True:
        current = q.load()
        missing = q.missing(current)
        if not missing:
            return
        part = q.part(round_)
        logger.info(
            "waiting for answers (round %d, %s %s): %d %s open",
            round_,
            q.part_name,
            part,
            len(missing),
            q.open_name,
        )
        key = q.key(part, round_)
        answer = suspend_flow_run(
            wait_for_input=q.form(current, part, refusal), key=key, timeout=None
        )
        refusal = record_form_answers(key, q.answers(current, part, answer), q.record)
        round_ += 1
