"""The CLI's way into a questionnaire run's asks (an impact section, a gap area, one ask each).

While a run asks for a part, answers to that part go to its open ask, through the answer service
(`approvals.decide` as `aims answer` calls it: the same checks as Slack and the Prefect UI, in
the name of `--as`);
answers to parts no ask is open for are recorded directly, as when no run asks. Every part's
answer is checked by its form before any is recorded, so a mistake records nothing.
"""

from __future__ import annotations

from typing import Any

import typer

from aims_core.ask_forms import answer_model
from aims_core.errors import AimsError, InvalidInput
from aims_core.models import ApprovalStatus, Outcome
from aims_core.services import approvals
from aims_core.services.approvals import ApprovalRequestOut
from aims_core.services.inputs import validated
from aims_core.uow import Actor, UnitOfWork


def open_part_asks(record_subject: str) -> list[ApprovalRequestOut]:
    """The open asks about parts of a record (`impact-assessment:7/...`), oldest first."""
    rows = approvals.list_requests(UnitOfWork(), status=ApprovalStatus.open)
    return sorted(
        (r for r in rows if r.subject.startswith(f"{record_subject}/")), key=lambda r: r.id
    )


def fields_of(ask: ApprovalRequestOut) -> set[str]:
    """The answer fields of an ask's form."""
    return set(answer_model(UnitOfWork().settings, ask.kind, ask.subject).model_fields)


def answer_parts(
    what: str, asks: list[ApprovalRequestOut], email: str | None, answers: dict[int, dict[str, Any]]
) -> None:
    """Answer each ask in `answers` (ask id → its form's fields) as `email`, all checked first,
    then all recorded, then their follow-ups: the Slack messages updated, and the run resumed
    once (through the earliest ask: it re-reads them all; one resume per answer would make it
    re-run and suspend again for each)."""
    if not answers:
        return
    if not email:
        who = sorted({p for a in asks for p in a.approvers})
        raise AimsError(
            f"{what}'s run asks {', '.join(who)} for it (ask "
            f"{', '.join(str(i) for i in answers)}): give --as EMAIL",
            "as",
        )
    settings = UnitOfWork().settings
    by_id = {a.id: a for a in asks}
    for ask_id, answer in answers.items():
        ask = by_id[ask_id]
        try:
            validated(answer_model(settings, ask.kind, ask.subject), answer)
        except InvalidInput as exc:
            raise InvalidInput(f"{ask.subject} (ask {ask_id}): {exc.message}", exc.field) from None
    who = email.strip().lower()
    actor = Actor(who=f"{Actor.cli().who} as {who}", channel="cli")
    results: list[approvals.DecisionResult] = []
    try:
        for ask_id, answer in sorted(answers.items()):
            data = approvals.DecisionIn(
                request_id=ask_id, person=who, outcome=Outcome.answer, answer=answer
            )
            result = approvals.decide(UnitOfWork(), data, actor)
            head = "recorded answer" if result.recorded else "answer already recorded"
            typer.echo(f"{head} by {who} on ask {ask_id}: {result.summary()}")
            results.append(result)
    finally:  # what was recorded is followed up, even if a later ask refused
        _follow_up(results)


def _follow_up(results: list[approvals.DecisionResult]) -> None:
    from aims_core.cli.approvals_cmd import follow_up
    from notifications.interactions import after_decision

    waking = next((r for r in results if r.resume_needed), None)
    for result in results:
        if result is not waking and result.recorded:
            after_decision(UnitOfWork().settings, result, resume=lambda *_: None)
    if waking is not None:
        follow_up(waking)
