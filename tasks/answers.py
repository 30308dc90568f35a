"""`collect_answers`: how a flow waits for a questionnaire — one ask per part, on `tasks.asks`.

A flow-level helper, not a task: Prefect refuses to suspend from inside a task. Round by round it
re-reads what is still open; the round's asks (one per part — an area, a section — with something
open, to the people the service names) are fixed by the flow's persisted task, opened all at once
(each person sees every part asked of them, in Slack or the UI, and may answer in any order) and
waited for one after the other with `tasks.asks.ask`, the one wait loop. Each answered ask is
applied once by the flow's persisted task, in the name of who answered; whatever stays open is
asked again in the next round, under new keys. A suspended run re-runs from the top: the same
asks come back cached, the same answers are not applied twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task

from aims_core.services import approvals
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from tasks.asks import AskOutcome, ask, open_request, outcome_of
from tasks.delivery import deliver_now

#: What an answer carries besides its form's fields (`AskOutcome.answers`).
_WHO = ("answered_by", "answered_in")


@dataclass(frozen=True)
class Questionnaire:
    """What a flow plugs into the wait: what is open, what each round asks, how an answer is
    applied."""

    #: `impact-assessment-7`: names the round's delivery and the log lines.
    name: str
    #: What is still open (re-read from the database); empty: the wait is over.
    missing: Callable[[], Sequence[str]]
    #: The asks of round N: a persisted task, so a re-run gets the same asks.
    asks: Callable[[int], list[ApprovalRequestIn]]
    #: Apply one answered ask: a persisted task keyed by the outcome (applied once).
    apply: Callable[[AskOutcome], object]


def given(outcome: AskOutcome) -> dict[str, Any]:
    """The answer's fields that were filled in (blank: leave the record as it is)."""
    return {k: v for k, v in outcome.answer.items() if k not in _WHO and v is not None}


def answered_as(outcome: AskOutcome) -> Actor:
    """Who answered, in the channel they answered in: the actor the answer is recorded as."""
    answer = outcome.answer
    return Actor(who=str(answer["answered_by"]), channel=str(answer["answered_in"]))


@task(name="open asks", persist_result=True)
def open_asks(specs: list[ApprovalRequestIn]) -> list[int]:
    """Every ask of a round opened (and its messages queued) at once, in one persisted task."""
    return [open_request.fn(spec) for spec in specs]


def answered(spec: ApprovalRequestIn) -> AskOutcome | None:
    """The outcome of an ask already closed, read from the database (as `ask` would after its
    wait), without its tasks: a run re-running over a round of answered asks stays quick."""
    settings = get_settings()
    request = approvals.request_by_key(UnitOfWork(settings), spec.idempotency_key)
    if request is None or request.status == "open":
        return None
    # This run goes on: nothing is left to resume.
    approvals.mark_resumed(UnitOfWork(settings), request.id)
    return outcome_of(request)


def collect_answers(q: Questionnaire) -> None:
    """Ask part by part, wait suspended, apply each answer, until nothing is open."""
    logger = get_run_logger()
    round_ = 1
    while missing := q.missing():
        specs = q.asks(round_)
        if not specs:
            raise RuntimeError(f"{q.name}: {len(missing)} open but nothing to ask")
        logger.info(
            "%s, round %d: %d open, asking %s",
            q.name,
            round_,
            len(missing),
            ", ".join(s.subject for s in specs),
        )
        open_asks(specs)  # every part asked at once, then one delivery pass
        deliver_now(f"{q.name}-round-{round_}")
        for spec in specs:
            outcome = answered(spec) or ask(spec)
            if outcome.answers:  # none when the ask was cancelled: asked again next round
                q.apply(outcome)
        round_ += 1
