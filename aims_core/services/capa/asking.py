"""The asks of a CAPA's own steps (ISO/IEC 42001 10.2): containment, root cause, the action plan
and each action's completion. The effectiveness verification's ask is in `verification`.

Who answers is data, not code in the flow: the CAPA's owner (for an action's completion, that
action's owner and the CAPA's owner), plus holders of the policy's `steps.stand_in_roles`.

Keys come from the database, so a re-run of the flow from the top meets the same ask: one ask per
step and attempt (per action for a completion), numbered, `capa-7-a1-containment-1`. A step is
asked again under the next number only once its ask is spent: ended without an answer, or
answered but not taken by the CAPA (`answer_not_applied`, e.g. the action's owner left between
the answer and the run applying it).

The action plan is asked one action at a time: each answer adds one action and says whether the
plan is complete (`plan_complete`). While the last answer applied says more follow, the run asks
for the next action; once it says complete (or the actions were planned without a run asking),
each open action's owner is asked for its completion, oldest action first.
"""

from __future__ import annotations

import re
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.ask_forms import AnswerForm, answer_model
from aims_core.ask_forms.capa import (
    CAPA_ACTION_DONE,
    CAPA_ACTION_PLAN,
    CAPA_CONTAINMENT,
    CAPA_ROOT_CAUSE,
    CapaActionAnswer,
    CapaActionDoneAnswer,
    CapaContainmentAnswer,
    CapaRootCauseAnswer,
)
from aims_core.errors import AimsError, Conflict, NotFound
from aims_core.models import (
    ApprovalRequest,
    ApprovalStatus,
    Capa,
    CapaAction,
    CapaStatus,
    Decision,
    Outcome,
    Person,
    as_utc,
)
from aims_core.rules.capa import capa_policy
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.capa.lifecycle import (
    add_action,
    complete_action,
    record_containment,
    record_root_cause,
)
from aims_core.services.capa.queries import (
    applied_plan_asks,
    current_analysis,
    load_capa,
    marked_asks,
)
from aims_core.services.capa.recording import head, notify
from aims_core.services.capa.schemas import DETAILS_MAX, NOT_APPLIED, CapaOut, subject
from aims_core.services.inputs import validated
from aims_core.services.people import get_person
from aims_core.uow import Actor, UnitOfWork

__all__ = [
    "action_of_ask",
    "answer_not_applied",
    "apply_answer",
    "completion_spec",
    "containment_spec",
    "plan_spec",
    "root_cause_spec",
    "step_spec",
]

#: Who is asked when the policy names no stand-in and nobody the CAPA names is active.
FALLBACK_ROLES: Final = ("governance-lead",)


def _asks(session: Session, prefix: str) -> list[tuple[int, str, ApprovalStatus]]:
    """The asks numbered under `prefix` (`prefix-1`, `prefix-2`, ...), oldest first."""
    rows = session.execute(
        select(ApprovalRequest.id, ApprovalRequest.idempotency_key, ApprovalRequest.status)
        .where(ApprovalRequest.idempotency_key.startswith(f"{prefix}-", autoescape=True))
        .order_by(ApprovalRequest.id)
    )
    return [(i, k, st) for i, k, st in rows if k[len(prefix) + 1 :].isdigit()]


def _key(session: Session, capa_id: int, prefix: str, consumed: set[int] | None = None) -> str:
    """The key of the step's ask: the one not yet spent (open, or answered and not yet applied),
    else the next number. `consumed`: asks the CAPA has taken without leaving the step (the
    plan's earlier actions)."""
    asks = _asks(session, prefix)
    spent = marked_asks(session, capa_id, NOT_APPLIED) | (consumed or set())
    for ask_id, key, status in asks:
        if ask_id not in spent and status in (ApprovalStatus.open, ApprovalStatus.answered):
            return key
    return f"{prefix}-{len(asks) + 1}"


def _answerers(uow: UnitOfWork, people: list[Person]) -> dict[str, Any]:
    """The people the CAPA names (the active ones) and the policy's stand-in roles."""
    roles = list(capa_policy(uow.settings).steps.stand_in_roles)
    emails = list(dict.fromkeys(p.email for p in people if p.active))
    if not emails and not roles:
        roles = list(FALLBACK_ROLES)
    return {"approver_people": emails, "approver_roles": roles}


def _context(row: Capa) -> list[str]:
    """What the person answering sees of the CAPA so far."""
    lines = [f"{head(row)} (owner {row.owner.email}, attempt {row.attempt})"]
    if row.description:
        lines.append(row.description)
    if row.containment:
        lines.append(f"- containment: {row.containment}")
    analysis = current_analysis(row)
    if analysis:
        lines.append(f"- root cause: {analysis['root_cause']}")
    for n, result in enumerate((row.verification or {}).get("results", []), 1):
        verdict = "effective" if result["effective"] else "not effective"
        lines.append(
            f"- verification {n} (attempt {result['attempt']}): {verdict}, {result['evidence']}"
        )
    for a in row.actions:
        if a.attempt == row.attempt:
            state = "done" if a.done_at else f"due {as_utc(a.due_at):%Y-%m-%d}"
            lines.append(f"- action {a.id}: {a.title} ({a.owner.email}, {state})")
    return lines


def _spec(
    uow: UnitOfWork,
    row: Capa,
    *,
    key: str,
    kind: str,
    title: str,
    ask: str,
    people: list[Person],
    flow_run_id: str | None,
) -> ApprovalRequestIn:
    details = "\n".join([ask, "", *_context(row)])
    return ApprovalRequestIn(
        idempotency_key=key,
        kind=kind,
        subject=subject(row.id),
        activity=kind,
        system=row.system.name if row.system else None,
        title=f"{title}: {row.title}"[:300],
        details=details[:DETAILS_MAX],
        quorum=1,
        flow_run_id=flow_run_id,
        **_answerers(uow, people),
    )


def _expect(row: Capa, what: str, *statuses: CapaStatus) -> None:
    if row.status not in statuses:
        raise Conflict(f"CAPA {row.id} is at {row.status.value}, not waiting for {what}", "status")


def containment_spec(
    uow: UnitOfWork, capa_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn:
    """The ask for containment and correction, to the CAPA's owner (and the stand-ins)."""
    with uow.read():
        s = uow.session
        row = load_capa(s, capa_id)
        _expect(row, "containment", CapaStatus.containment)
        return _spec(
            uow,
            row,
            key=_key(s, row.id, f"capa-{row.id}-a{row.attempt}-containment"),
            kind=CAPA_CONTAINMENT,
            title=f"Contain CAPA {row.id}",
            ask="What was done to control and correct the nonconformity and deal with its "
            "consequences? The CAPA then goes to root cause.",
            people=[row.owner],
            flow_run_id=flow_run_id,
        )


def root_cause_spec(
    uow: UnitOfWork, capa_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn:
    """The ask for this attempt's root cause analysis, to the CAPA's owner (and stand-ins)."""
    with uow.read():
        s = uow.session
        row = load_capa(s, capa_id)
        _expect(row, "a root cause", CapaStatus.root_cause)
        return _spec(
            uow,
            row,
            key=_key(s, row.id, f"capa-{row.id}-a{row.attempt}-root-cause"),
            kind=CAPA_ROOT_CAUSE,
            title=f"Root cause of CAPA {row.id} (attempt {row.attempt})",
            ask="Why did it happen? Give the whys (5 whys) or the causes per category "
            "(fishbone), and the root cause the actions must remove. Similar open CAPAs are "
            "recorded with it.",
            people=[row.owner],
            flow_run_id=flow_run_id,
        )


def _plan_key(s: Session, row: Capa) -> str:
    return _key(s, row.id, f"capa-{row.id}-a{row.attempt}-plan", applied_plan_asks(s, row.id))


def plan_spec(
    uow: UnitOfWork, capa_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn:
    """The ask for the plan's next action, to the CAPA's owner (and stand-ins)."""
    with uow.read():
        s = uow.session
        row = load_capa(s, capa_id)
        _expect(row, "an action", CapaStatus.action_plan, CapaStatus.tracking)
        n = sum(1 for a in row.actions if a.attempt == row.attempt) + 1
        return _spec(
            uow,
            row,
            key=_plan_key(s, row),
            kind=CAPA_ACTION_PLAN,
            title=f"Plan action {n} of CAPA {row.id}",
            ask="Plan one corrective action: what, who (blank: you) and by when, and whether "
            "it completes the plan. If not, you are asked for the next one; once complete, each "
            "action's owner is asked to say when it is done.",
            people=[row.owner],
            flow_run_id=flow_run_id,
        )


def completion_spec(
    uow: UnitOfWork, action_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn:
    """The ask that an action is done, to its owner and the CAPA's owner (and stand-ins)."""
    with uow.read():
        s = uow.session
        capa_id = s.scalar(select(CapaAction.capa_id).where(CapaAction.id == action_id))
        if capa_id is None:
            raise NotFound(f"no CAPA action {action_id} (see `aims capa show ID`)", "action")
        row = load_capa(s, capa_id)
        action = next(a for a in row.actions if a.id == action_id)
        return _spec(
            uow,
            row,
            key=_key(s, row.id, f"capa-{row.id}-a{action.attempt}-action-{action.id}-done"),
            kind=CAPA_ACTION_DONE,
            title=f"Action {action.id} of CAPA {row.id} done? {action.title}",
            ask=f"Is action {action.id} ({action.title}, due {as_utc(action.due_at):%Y-%m-%d}) "
            "done? Say what shows it; it is kept as evidence. The last action done schedules "
            "the effectiveness verification.",
            people=[action.owner, row.owner],
            flow_run_id=flow_run_id,
        )


def action_of_ask(key: str) -> int | None:
    """The action a completion ask is about, from its key (`capa-7-a1-action-12-done-1` → 12)."""
    found = re.fullmatch(r"capa-\d+-a\d+-action-(\d+)-done-\d+", key)
    return int(found.group(1)) if found else None


def _more_to_plan(s: Session, row: Capa) -> bool:
    """Whether the last plan answer the CAPA took said another action follows."""
    applied = applied_plan_asks(s, row.id)
    asks = [i for i, _key, _st in _asks(s, f"capa-{row.id}-a{row.attempt}-plan") if i in applied]
    if not asks:
        return False  # planned without a run asking (the CLI): the plan is what was given
    answer = s.scalar(select(Decision.answer).where(Decision.request_id == asks[-1]))
    return not (answer or {}).get("plan_complete", True)


def step_spec(
    uow: UnitOfWork, capa_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn | None:
    """The ask for the step the CAPA is at: containment, root cause, the plan's next action or
    the completion of its oldest open action; None at the verification and after."""
    with uow.read():
        s = uow.session
        row = load_capa(s, capa_id)
        status = row.status
        pending = (
            _plan_key(s, row) if status is CapaStatus.tracking and _more_to_plan(s, row) else None
        )
        open_actions = sorted(
            a.id for a in row.actions if a.attempt == row.attempt and a.done_at is None
        )
    if status is CapaStatus.containment:
        return containment_spec(uow, capa_id, flow_run_id=flow_run_id)
    if status is CapaStatus.root_cause:
        return root_cause_spec(uow, capa_id, flow_run_id=flow_run_id)
    if status is CapaStatus.action_plan or pending:
        return plan_spec(uow, capa_id, flow_run_id=flow_run_id)
    if status is CapaStatus.tracking and open_actions:
        return completion_spec(uow, open_actions[0], flow_run_id=flow_run_id)
    return None


def answer_not_applied(
    uow: UnitOfWork, capa_id: int, ask_id: int, answered_by: str, error: str, actor: Actor
) -> None:
    """An answered ask the CAPA could not take (e.g. the action's owner left between the answer
    and the run applying it): audited, so the step is asked again under the next key, and the
    person who answered is told why. Idempotent on the ask."""
    with uow:
        s = uow.session
        row = load_capa(s, capa_id, lock=True)
        if ask_id in marked_asks(s, row.id, NOT_APPLIED):
            return
        uow.audit(actor, NOT_APPLIED, subject(row.id), ask_id=ask_id, error=error)
        person = get_person(s, answered_by, "answered_by")
        notify(
            s,
            f"capa-{row.id}-ask-{ask_id}-not-applied",
            "capa-answer-not-applied",
            row,
            person,
            f"Your answer to ask {ask_id} on {head(row)} could not be recorded: {error}. "
            "You are asked again.",
        )
        uow.commit()


#: The CAPA step each kind of ask answers.
STEP_KINDS: Final = (CAPA_CONTAINMENT, CAPA_ROOT_CAUSE, CAPA_ACTION_PLAN, CAPA_ACTION_DONE)


def apply_answer(uow: UnitOfWork, ask_id: int, by: Actor) -> CapaOut | str:
    """Apply the answer to a CAPA step's ask, as the database holds it, through the step's own
    service call, in the name of who answered (in the channel they answered in): the service
    checks it again, and a repeat records nothing twice. When the CAPA cannot take it (e.g. the
    action's owner left since), `answer_not_applied` records that (as `by`, who applies it) and
    tells them, and the step is asked again; the reason is returned."""
    with uow.read():
        s = uow.session
        req = s.get(ApprovalRequest, ask_id)
        if req is None or req.kind not in STEP_KINDS or not req.subject.startswith("capa:"):
            raise NotFound(f"no CAPA step ask {ask_id}", "ask")
        decision = s.scalar(
            select(Decision)
            .where(Decision.request_id == ask_id, Decision.outcome == Outcome.answer)
            .order_by(Decision.id)
        )
        if decision is None:
            raise Conflict(f"ask {ask_id} has no answer yet", "ask")
        kind, key, about = req.kind, req.idempotency_key, req.subject
        who, channel, given = decision.person.email, decision.channel, decision.answer or {}
    capa_id = int(about.removeprefix("capa:"))
    actor = Actor(who=who, channel=channel)
    try:
        answer = validated(answer_model(uow.settings, kind, about), given)
        return _apply(uow, capa_id, key, ask_id, answer, actor)
    except AimsError as exc:
        why = str(exc)
        answer_not_applied(uow, capa_id, ask_id, who, why, by)
        return why


def _apply(
    uow: UnitOfWork, capa_id: int, key: str, ask_id: int, answer: AnswerForm, actor: Actor
) -> CapaOut:
    """The step's own service call for a typed answer."""
    if isinstance(answer, CapaContainmentAnswer):
        return record_containment(uow, capa_id, answer.containment, actor)
    if isinstance(answer, CapaRootCauseAnswer):
        data = {"method": answer.method, "whys": answer.whys, "fishbone": answer.fishbone()}
        return record_root_cause(uow, capa_id, {**data, "root_cause": answer.root_cause}, actor)
    if isinstance(answer, CapaActionAnswer):
        with uow.read():
            owner = answer.owner or load_capa(uow.session, capa_id).owner.email
        data = {"title": answer.title, "owner": owner, "due": answer.due}
        return add_action(uow, capa_id, data, actor, ask_id=ask_id)
    action_id = action_of_ask(key)
    if not isinstance(answer, CapaActionDoneAnswer) or action_id is None:
        raise NotFound(f"ask '{key}' is not a CAPA step", "ask")
    return complete_action(uow, action_id, answer.evidence, actor)
