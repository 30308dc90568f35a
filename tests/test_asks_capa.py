"""A CAPA's own steps as asks, at the service level, on SQLite and PostgreSQL: containment, root
cause, the action plan (one action per answer, until one says the plan is complete) and each
action's completion are asked of the people the CAPA names plus the policy's stand-ins; answers
are checked by their forms (the field named), applied once in the name of who answered, and an
answer the CAPA cannot take is recorded, told and asked again under the next key. The CLI answers
the open ask (`--as`). The generic code checks are in tests/test_asks.py; the real-Prefect path
is tests/test_capa_e2e.py.

Demo organisation: fraud-detection is owned by ops.owner; governance holds governance-lead (the
shipped policy's stand-in role); ds.lead and auditor hold neither.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from records import count
from sqlalchemy import select, update

from aims_core.ask_forms import answer_model
from aims_core.ask_forms.capa import (
    CAPA_ACTION_DONE,
    CAPA_ACTION_PLAN,
    CAPA_CONTAINMENT,
    CAPA_ROOT_CAUSE,
)
from aims_core.ask_modals import answer_modal
from aims_core.db import get_engine
from aims_core.errors import InvalidInput
from aims_core.models import AuditEvent, CapaStatus, Decision, Notification, Outcome, Person
from aims_core.services import approvals as ap
from aims_core.services import capa as capas
from aims_core.services.approvals import ApprovalRequestOut, DecisionIn, Refused
from aims_core.services.capa import CapaOut
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
OWNER, GOV, DS, AUDITOR = (f"{n}{D}" for n in ("ops.owner", "governance", "ds.lead", "auditor"))
FLOW = Actor(who="flow:capa", channel="flow")
SLACK, CLI = Actor(who="slack:U0", channel="slack"), Actor(who="tester as x", channel="cli")


def soon() -> str:
    return str(date.today() + timedelta(days=7))


def opened(org: UnitOfWork, actor: Actor, **changes: Any) -> CapaOut:
    data = {"title": "Card-testing bursts not flagged", "owner": OWNER, "system": "fraud-detection"}
    return capas.open_capa(org, {**data, **changes}, actor)


def ask_now(org: UnitOfWork, capa_id: int) -> ApprovalRequestOut:
    """What the run asks now (the flow's `ask` opens the same spec)."""
    spec = capas.step_spec(org, capa_id)
    assert spec is not None
    return ap.create_request(org, spec, FLOW)


def answer(
    org: UnitOfWork, ask: ApprovalRequestOut, email: str, by: Actor = SLACK, **fields: Any
) -> ap.DecisionResult:
    data = DecisionIn(request_id=ask.id, person=email, outcome=Outcome.answer, answer=fields)
    return ap.decide(org, data, by)


def refused(org: UnitOfWork, ask: ApprovalRequestOut, email: str, **fields: Any) -> Refused:
    with pytest.raises(Refused) as exc:
        answer(org, ask, email, **fields)
    return exc.value


def capa_events(settings: Settings, capa_id: int) -> list[tuple[str, str, str]]:
    with get_engine(settings.effective_database_url).connect() as conn:
        rows = conn.execute(
            select(AuditEvent.action, AuditEvent.actor, AuditEvent.channel)
            .where(AuditEvent.subject == f"capa:{capa_id}", AuditEvent.action.startswith("capa."))
            .order_by(AuditEvent.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_each_step_is_asked_of_the_people_the_capa_names_and_applied_once_as_them(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    c = opened(org, actor, verify_after_days=0)

    # Containment: the owner and the stand-in (governance-lead); nobody else.
    ask = ask_now(org, c.id)
    assert (ask.kind, ask.approvers, ask.excluded) == (CAPA_CONTAINMENT, [GOV, OWNER], {})
    assert ask.subject == f"capa:{c.id}" and "Contain CAPA" in ask.title
    assert refused(org, ask, DS, containment="x").reason == "not-eligible"
    assert answer(org, ask, OWNER, containment="Fallback rules on").recorded
    assert ap.request_by_key(org, f"capa-{c.id}-a1-containment-1").status == "answered"  # type: ignore[union-attr]
    assert capas.apply_answer(org, ask.id, FLOW).status is CapaStatus.root_cause  # type: ignore[union-attr]

    # Root cause, answered by the stand-in from the CLI: fishbone causes, one per category field.
    ask = ask_now(org, c.id)
    assert (ask.kind, ask.approvers) == (CAPA_ROOT_CAUSE, [GOV, OWNER])
    given = {"method": "fishbone", "data": ["Bursts rare", "Sampled out"], "root_cause": "Gap"}
    assert answer(org, ask, GOV, CLI, **given).recorded
    out = capas.apply_answer(org, ask.id, FLOW)
    assert isinstance(out, CapaOut) and out.status is CapaStatus.action_plan
    assert (out.root_cause.method, out.root_cause.fishbone) == (  # type: ignore[union-attr]
        "fishbone",
        {"data": ["Bursts rare", "Sampled out"]},
    )

    # The plan, one action per answer: the first (owner blank: the CAPA's owner) says more
    # follow, so the next plan ask comes; the second completes the plan.
    first = ask_now(org, c.id)
    assert (first.kind, first.approvers) == (CAPA_ACTION_PLAN, [GOV, OWNER])
    answer(org, first, OWNER, title="Keep bursts", due=soon(), plan_complete=False)
    assert capas.apply_answer(org, first.id, FLOW).status is CapaStatus.tracking  # type: ignore[union-attr]
    second = ask_now(org, c.id)
    assert second.kind == CAPA_ACTION_PLAN
    assert second.title.startswith(f"Plan action 2 of CAPA {c.id}:")
    answer(org, second, OWNER, title="Label bursts", owner=DS, due=soon(), plan_complete=True)
    out = capas.apply_answer(org, second.id, FLOW)
    assert isinstance(out, CapaOut)
    a1, a2 = out.current_actions
    assert [(a.title, a.owner) for a in (a1, a2)] == [("Keep bursts", OWNER), ("Label bursts", DS)]

    # Each action's completion: its owner and the CAPA's owner (and the stand-in), oldest first.
    done1 = ask_now(org, c.id)
    assert (done1.kind, done1.approvers) == (CAPA_ACTION_DONE, [GOV, OWNER])
    assert refused(org, done1, DS, evidence="x").reason == "not-eligible"
    answer(org, done1, OWNER, evidence="PR 42 merged")
    capas.apply_answer(org, done1.id, FLOW)
    done2 = ask_now(org, c.id)
    assert ap.request_by_key(org, f"capa-{c.id}-a1-action-{a2.id}-done-1").id == done2.id  # type: ignore[union-attr]
    assert done2.approvers == [GOV, OWNER, DS]
    answer(org, done2, DS, CLI, evidence="Job live")
    assert capas.apply_answer(org, done2.id, FLOW).status is CapaStatus.verification  # type: ignore[union-attr]
    assert capas.step_spec(org, c.id) is None  # the verification has its own ask

    # Applied again (a re-run from the top): nothing recorded twice, every step in its answerer's
    # name and channel.
    before = capa_events(settings, c.id)
    for ask_id in (first.id, second.id, done1.id, done2.id):
        assert isinstance(capas.apply_answer(org, ask_id, FLOW), CapaOut)
    assert capa_events(settings, c.id) == before
    assert [e for e in before if e[0] != "capa.opened"] == [
        ("capa.contained", OWNER, "slack"),
        ("capa.root-cause", GOV, "cli"),
        ("capa.action-added", OWNER, "slack"),
        ("capa.action-added", OWNER, "slack"),
        ("capa.action-done", OWNER, "slack"),
        ("capa.action-done", DS, "cli"),
        ("capa.verification-scheduled", DS, "cli"),
    ]

    # Ineffective: attempt 2 asks for its root cause under a new key.
    capas.record_verification(org, c.id, False, "Recurred", actor, verifier=AUDITOR)
    spec = capas.step_spec(org, c.id)
    assert spec is not None and spec.idempotency_key == f"capa-{c.id}-a2-root-cause-1"


def test_the_forms_refuse_bad_answers_naming_the_field_and_record_nothing(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    c = opened(org, actor, containment="Fallback on")
    rca = ask_now(org, c.id)
    past = str(datetime.now(UTC).date() - timedelta(days=1))
    with get_engine(settings.effective_database_url).begin() as conn:
        conn.execute(update(Person).where(Person.email == AUDITOR).values(active=False))
    # field None: a problem of the whole answer, whose message names the fields (in a modal it
    # shows on the first block, the method).
    cases: list[tuple[str, dict[str, Any], str | None, str]] = [
        (CAPA_ROOT_CAUSE, {"root_cause": "Gap"}, None, "whys: give at least one why"),
        (CAPA_ROOT_CAUSE, {"method": "fishbone", "root_cause": "Gap"}, None, "fishbone: give"),
        (CAPA_ROOT_CAUSE, {"method": "other", "root_cause": " "}, "root_cause", "at least 1"),
        (CAPA_ACTION_PLAN, {"title": "x", "due": past, "plan_complete": True}, "due", "past"),
        (CAPA_ACTION_PLAN, {"title": "x", "due": soon()}, "plan_complete", "required"),
        (
            CAPA_ACTION_PLAN,
            {"title": "x", "owner": f"nobody{D}", "due": soon(), "plan_complete": True},
            "owner",
            f"no person with email 'nobody{D}'",
        ),
        (
            CAPA_ACTION_PLAN,
            {"title": "x", "owner": AUDITOR, "due": soon(), "plan_complete": True},
            "owner",
            "deactivated",
        ),
        (CAPA_ACTION_DONE, {"evidence": ""}, "evidence", "at least 1"),
        (CAPA_CONTAINMENT, {}, "containment", "required"),
    ]
    for kind, fields, field, message in cases:
        ask = rca
        if kind != CAPA_ROOT_CAUSE:  # the same form on an ask of that kind about this CAPA
            ask = ap.create_request(
                org,
                ap.ApprovalRequestIn(
                    idempotency_key=f"capa-{c.id}-form-{kind}",
                    kind=kind,
                    subject=f"capa:{c.id}",
                    activity=kind,
                    title="form",
                    approver_people=[OWNER],
                ),
                actor,
            )
        with pytest.raises(InvalidInput) as exc:
            answer(org, ask, OWNER, **fields)
        assert exc.value.field == field and message in str(exc.value), (kind, fields, exc.value)
    assert count(settings, Decision) == 0


def test_every_capa_form_fits_a_slack_modal_and_the_prefect_ui_form(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    from tasks.asks import ui_form

    c = opened(org, actor)
    ask = ask_now(org, c.id)
    for kind in (CAPA_CONTAINMENT, CAPA_ROOT_CAUSE, CAPA_ACTION_PLAN, CAPA_ACTION_DONE):
        model = answer_model(settings, kind, ask.subject)
        view = answer_modal(ask, model, form=kind)
        blocks = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
        assert set(blocks) == set(model.model_fields), kind
        form = ui_form(settings, ask.model_copy(update={"kind": kind}))
        assert {"person", "code"} | set(model.model_fields) == set(form.model_fields), kind
    plan = answer_model(settings, CAPA_ACTION_PLAN, ask.subject)
    blocks = {b["block_id"]: b for b in answer_modal(ask, plan)["blocks"] if "block_id" in b}
    assert blocks["due"]["element"]["type"] == "datepicker"
    assert blocks["plan_complete"]["element"]["type"] == "radio_buttons"
    assert blocks["owner"]["optional"] is True


def test_an_answer_the_capa_cannot_take_is_told_and_asked_again_under_the_next_key(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    c = opened(org, actor, containment="Fallback on")
    capas.record_root_cause(org, c.id, {"method": "other", "root_cause": "Gap"}, actor)
    plan = ask_now(org, c.id)
    assert ap.request_by_key(org, f"capa-{c.id}-a1-plan-1").id == plan.id  # type: ignore[union-attr]
    answer(org, plan, OWNER, title="Label bursts", owner=DS, due=soon(), plan_complete=True)
    # Until the run applies it, the answered ask is still the step's ask (a re-run meets it).
    assert capas.step_spec(org, c.id).idempotency_key == f"capa-{c.id}-a1-plan-1"  # type: ignore[union-attr]
    with get_engine(settings.effective_database_url).begin() as conn:  # ds.lead leaves meanwhile
        conn.execute(update(Person).where(Person.email == DS).values(active=False))

    why = capas.apply_answer(org, plan.id, FLOW)
    assert isinstance(why, str) and "owner" in why and "deactivated" in why
    assert capas.apply_answer(org, plan.id, FLOW) == why  # a repeat records it once
    assert [e[0] for e in capa_events(settings, c.id)][-1] == "capa.answer-not-applied"
    assert [e[0] for e in capa_events(settings, c.id)].count("capa.answer-not-applied") == 1
    with get_engine(settings.effective_database_url).connect() as conn:
        told = conn.execute(
            select(Person.email, Notification.text)
            .join(Person, Person.id == Notification.recipient_id)
            .where(Notification.kind == "capa-answer-not-applied")
        ).all()
    assert [(email, f"ask {plan.id}" in text) for email, text in told] == [(OWNER, True)]
    again = ask_now(org, c.id)
    assert ap.request_by_key(org, f"capa-{c.id}-a1-plan-2").id == again.id  # type: ignore[union-attr]
    assert capas.get_capa(org, c.id).status is CapaStatus.action_plan


def test_the_cli_answers_the_runs_open_ask_as_someone_it_was_put_to(
    org: UnitOfWork, settings: Settings, actor: Actor, run_cli: Any
) -> None:
    c = opened(org, actor)
    ask = ask_now(org, c.id)
    text = ("capa", "containment", str(c.id), "--text", "Fallback on")
    missing = run_cli(*text)
    assert missing.exit_code == 2, missing.output
    assert f"asks {GOV}, {OWNER} for containment (ask {ask.id}): give --as EMAIL" in missing.output
    wrong = run_cli(*text, "--as", DS)
    assert wrong.exit_code == 2 and "not an eligible approver" in wrong.output, wrong.output
    assert capas.get_capa(org, c.id).status is CapaStatus.containment  # recorded nothing
    ok = run_cli(*text, "--as", OWNER)
    assert ok.exit_code == 0 and f"recorded answer by {OWNER} on ask {ask.id}" in ok.output
    capas.apply_answer(org, ask.id, FLOW)  # what the resumed run does

    ask = ask_now(org, c.id)
    rca = ("rca", str(c.id), "--cause", "data=Bursts rare", "--root-cause", "Gap", "--as", OWNER)
    assert run_cli("capa", *rca).exit_code == 0
    assert ap.get_request(org, ask.id).decisions[0].answer["data"] == ["Bursts rare"]  # type: ignore[index]
    capas.apply_answer(org, ask.id, FLOW)

    ask = ask_now(org, c.id)
    plan = ("action", str(c.id), "--title", "Label", "--owner", DS, "--due", soon(), "--more")
    assert run_cli("capa", *plan, "--as", OWNER).exit_code == 0
    assert ap.get_request(org, ask.id).decisions[0].answer["plan_complete"] is False  # type: ignore[index]
    action = capas.apply_answer(org, ask.id, FLOW).current_actions[0]  # type: ignore[union-attr]
    assert capas.step_spec(org, c.id).kind == CAPA_ACTION_PLAN  # type: ignore[union-attr]

    # No ask open for the plan now (the run has not asked yet): the direct path.
    direct = run_cli("capa", *plan[:-1])
    assert direct.exit_code == 0 and "planned for" in direct.output, direct.output
    ask = ap.create_request(org, capas.completion_spec(org, action.id), FLOW)
    bare = run_cli("capa", "done", str(action.id), "--as", DS)
    assert bare.exit_code == 2 and "evidence" in bare.output, bare.output
    done = run_cli("capa", "done", str(action.id), "--evidence", "Job live", "--as", DS)
    assert done.exit_code == 0 and f"recorded answer by {DS} on ask {ask.id}" in done.output
