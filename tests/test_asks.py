"""Asks at the service level, on SQLite and PostgreSQL: typed answers validated by their form,
segregation of duties and deactivation in every channel, and personal codes that cannot be
checked offline, work once, and lock the UI after five wrong tries.

Uses the demo organisation (see tests/test_approvals.py for who holds which role).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from records import count
from sqlalchemy import String, Text, inspect, select, text
from sqlalchemy.orm import Session

from aims_core.approval_codes import normalise
from aims_core.ask_forms import CAPA_VERIFICATION, SERIOUS_CONFIRMATION
from aims_core.db import session_factory
from aims_core.errors import InvalidInput
from aims_core.models import (
    ApprovalApprover,
    ApprovalStatus,
    AuditEvent,
    Base,
    Decision,
    Notification,
    Outcome,
    Person,
)
from aims_core.services import approvals as ap
from aims_core.services.approvals import ApprovalRequestIn, DecisionIn, Refused
from aims_core.services.leavers import DeactivationIn, deactivate_person
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

D = "@northwind.example"
GOV, COMPLIANCE, AUDITOR, ETHICS, DS = (
    f"{n}{D}" for n in ("governance", "compliance", "auditor", "ethics", "ds.lead")
)
VERIFIERS = ["internal-auditor", "compliance-officer", "governance-lead"]
CHANNELS = {
    "slack": Actor(who="slack:U0DEMO003", channel="slack"),
    "cli": Actor(who="tester as someone", channel="cli"),
    "ui": Actor(who="ui-claim:someone", channel="ui"),
}


def verification(**changes: Any) -> ApprovalRequestIn:
    """A CAPA effectiveness verification whose owner (governance) may not verify it."""
    base: dict[str, Any] = {
        "idempotency_key": "capa-9-a1-v1-verification",
        "kind": CAPA_VERIFICATION,
        "subject": "capa:9",
        "activity": "capa-verification",
        "title": "Verify CAPA 9: missed fraud bursts",
        "approver_roles": VERIFIERS,
        "excluded": {GOV: "owns CAPA 9: someone else verifies its effectiveness"},
    }
    return ApprovalRequestIn(**(base | changes))


def approval(**changes: Any) -> ApprovalRequestIn:
    base: dict[str, Any] = {
        "idempotency_key": "policy-approval-1",
        "subject": "policy:ai-policy",
        "activity": "policy-approval",
        "title": "Approve the AI policy v3",
        "approver_roles": ["compliance-officer", "ethics-committee"],
        "quorum": 2,
    }
    return ApprovalRequestIn(**(base | changes))


def person_id(settings: Settings, email: str) -> int:
    with session_factory(settings.effective_database_url)() as s:
        found = s.scalar(select(Person.id).where(Person.email == email))
        assert found is not None
        return found


def code(org: UnitOfWork, settings: Settings, rid: int, email: str) -> str:
    found = ap.current_code(org, rid, person_id(settings, email))
    assert found
    return found


def answer(rid: int, person: str, **fields: Any) -> DecisionIn:
    code_ = fields.pop("code", None)
    return DecisionIn(
        request_id=rid, person=person, outcome=Outcome.answer, answer=fields, code=code_
    )


def ui(email: str) -> Actor:
    return Actor(who=f"ui-claim:{email}", channel="ui")


def actions(settings: Settings, action: str) -> list[AuditEvent]:
    with session_factory(settings.effective_database_url)() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# --- typed answers ------------------------------------------------------------------------------


def test_a_typed_answer_is_validated_by_its_form_and_recorded_once(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    ask = ap.create_request(org, verification(), actor)
    assert (ask.kind, ask.status) == (CAPA_VERIFICATION, ApprovalStatus.open)
    assert GOV not in ask.approvers and AUDITOR in ask.approvers
    assert ask.excluded == {GOV: "owns CAPA 9: someone else verifies its effectiveness"}

    bad = {
        "result": ({"result": "maybe", "evidence": "x"}, "result"),
        "evidence": ({"result": "effective", "evidence": ""}, "evidence"),
        "unknown field": ({"result": "effective", "evidence": "x", "mood": "ok"}, "mood"),
    }
    for case, (fields, field) in bad.items():
        with pytest.raises(InvalidInput) as exc:
            ap.decide(org, answer(ask.id, AUDITOR, **fields), CHANNELS["cli"])
        assert exc.value.field == field, case
    # An approval's outcome on an ask of another kind, and an answer on an approval.
    with pytest.raises(InvalidInput) as exc:
        ap.decide(org, DecisionIn(request_id=ask.id, person=AUDITOR, outcome="approve"), actor)
    assert exc.value.field == "outcome"
    policy = ap.create_request(org, approval(), actor)
    with pytest.raises(InvalidInput):
        ap.decide(org, answer(policy.id, COMPLIANCE, result="effective", evidence="x"), actor)
    assert count(settings, Decision) == 0

    given = {"result": "effective", "evidence": "No burst missed since"}
    result = ap.decide(org, answer(ask.id, AUDITOR, **given), CHANNELS["cli"])
    assert result.recorded and result.status is ApprovalStatus.answered
    assert result.summary() == "answered (1 of 1)"
    again = ap.decide(org, answer(ask.id, AUDITOR, **given), CHANNELS["cli"])
    assert not again.recorded
    out = ap.get_request(org, ask.id)
    assert out.answered_by == [AUDITOR] and out.decisions[0].answer == given
    (event,) = actions(settings, "approval.decided")
    assert event.details["kind"] == CAPA_VERIFICATION and event.details["answer"] == given
    # A second person after the quorum: the ask is closed.
    with pytest.raises(Refused) as closed:
        ap.decide(org, answer(ask.id, COMPLIANCE, **given), CHANNELS["slack"])
    assert closed.value.reason == "closed"


def test_the_serious_incident_form_needs_a_policy_kind_and_a_reason_to_dismiss(
    org: UnitOfWork, actor: Actor
) -> None:
    ask = ap.create_request(
        org,
        ApprovalRequestIn(
            idempotency_key="incident-3-serious-confirmation",
            kind=SERIOUS_CONFIRMATION,
            subject="incident:3",
            activity="serious-incident-confirmation",
            title="Serious incident? #3",
            approver_roles=["governance-lead", "compliance-officer"],
        ),
        actor,
    )
    for fields, field in (
        ({"kind": "a-bad-day"}, "kind"),
        ({"kind": "not-serious", "reason": ""}, None),  # the whole answer: a reason is needed
    ):
        with pytest.raises(InvalidInput) as exc:
            ap.decide(org, answer(ask.id, GOV, **fields), CHANNELS["cli"])
        if field:
            assert exc.value.field == field
        else:
            assert "say why it is not a serious incident" in str(exc.value)
    result = ap.decide(org, answer(ask.id, GOV, kind="health"), CHANNELS["slack"])
    assert result.recorded and result.status is ApprovalStatus.answered


@pytest.mark.parametrize("channel", list(CHANNELS))
def test_segregation_of_duties_and_deactivation_refuse_in_every_channel(
    channel: str, org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    ask = ap.create_request(org, verification(), actor)
    given = {"result": "effective", "evidence": "no recurrence"}
    who = CHANNELS[channel]

    # In the UI each comes with their code, as it stood before (the owner was never given one).
    codes = {GOV: None, COMPLIANCE: code(org, settings, ask.id, COMPLIANCE)}

    def attempt(email: str) -> Refused:
        data = answer(ask.id, email, **given, code=codes[email] if channel == "ui" else None)
        with pytest.raises(Refused) as exc:
            ap.decide(org, data, ui(email) if channel == "ui" else who)
        return exc.value

    owner = attempt(GOV)
    assert owner.reason == "separation" and "owns CAPA 9" in owner.message
    deactivate_person(org, COMPLIANCE, DeactivationIn(reason="left the company"), actor)
    leaver = attempt(COMPLIANCE)
    assert leaver.reason == "deactivated" and "left the company" in leaver.message
    assert count(settings, Decision) == 0
    refused = [e.details["reason"] for e in actions(settings, "approval.refused")]
    assert refused == ["separation", "deactivated"]


# --- personal codes -----------------------------------------------------------------------------


def _text_columns(session: Session) -> list[tuple[str, str]]:
    out = []
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, String | Text) or column.type.__class__.__name__ == "JSON":
                out.append((table.name, column.name))
    return out


def test_nothing_in_the_database_lets_a_code_be_checked_offline(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    """The code, with or without dashes, and the SHA-256 of either, appear in no column of any
    table — after the request's messages were queued and a UI answer was read."""
    req = ap.create_request(org, approval(), actor)
    from aims_core.services import outbox

    outbox.queue_request_messages(org, req.id, settings.evidence_key_bytes())
    first = code(org, settings, req.id, COMPLIANCE)
    ap.decide(
        org,
        DecisionIn(request_id=req.id, person=COMPLIANCE, outcome="approve", code=first),
        ui(COMPLIANCE),
    )
    codes = [first, code(org, settings, req.id, COMPLIANCE), code(org, settings, req.id, ETHICS)]
    needles = {
        n
        for c in codes
        for form in (c, normalise(c))
        for n in (form, hashlib.sha256(form.encode()).hexdigest())
    }
    assert len(first) == 19 and len(normalise(first)) * 5 >= 80  # base32: 5 bits a character
    with session_factory(settings.effective_database_url)() as s:
        columns = _text_columns(s)
        assert ("notification", "blocks") in columns and ("audit_event", "details") in columns
        for table, column in columns:
            for (value,) in s.execute(text(f'SELECT CAST("{column}" AS TEXT) FROM "{table}"')):
                if value:
                    found = [n for n in needles if n in value or n.lower() in value]
                    assert not found, f"{table}.{column} holds a code or its hash"
        assert not {c["name"] for c in inspect(s.get_bind()).get_columns("approval_approver")} & {
            "code_hash",
            "code",
        }


def test_a_code_works_once_and_each_read_sends_the_next_one_privately(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    req = ap.create_request(org, approval(), actor)
    right = code(org, settings, req.id, COMPLIANCE)
    assert ap.decide(
        org,
        DecisionIn(request_id=req.id, person=COMPLIANCE, outcome="approve", code=right),
        ui(COMPLIANCE),
    ).recorded
    # The same code again (say, replayed from Prefect's stored run input): dead.
    with pytest.raises(Refused) as exc:
        ap.decide(
            org,
            DecisionIn(request_id=req.id, person=COMPLIANCE, outcome="approve", code=right),
            ui(COMPLIANCE),
        )
    assert exc.value.reason == "bad-code"
    # A wrong try naming ethics kills ethics' current code too.
    ethics_code = code(org, settings, req.id, ETHICS)
    for typed in ("WRONG-CODE", ethics_code):
        with pytest.raises(Refused) as exc:
            ap.decide(
                org,
                DecisionIn(request_id=req.id, person=ETHICS, outcome="approve", code=typed),
                ui(ETHICS),
            )
        assert exc.value.reason == "bad-code"
    # Each read queued the person's next code (rendered at delivery, so no code in the row).
    with session_factory(settings.effective_database_url)() as s:
        sent = list(
            s.scalars(
                select(Person.email)
                .join(Notification, Notification.recipient_id == Person.id)
                .where(Notification.kind == "ask-code")
                .order_by(Notification.id)
            )
        )
    assert sent == [COMPLIANCE, COMPLIANCE, ETHICS, ETHICS]  # one per read, the ask still open
    reads = actions(settings, "ask.code-read")
    assert [(e.details["person"], e.details["right"]) for e in reads] == [
        (COMPLIANCE, True),
        (COMPLIANCE, False),
        (ETHICS, False),
        (ETHICS, False),
    ]


def test_five_wrong_codes_lock_the_ui_for_that_person_and_ask_only(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    req = ap.create_request(org, approval(quorum=1), actor)
    other = ap.create_request(org, approval(idempotency_key="policy-approval-2"), actor)
    third = ap.create_request(org, approval(idempotency_key="policy-approval-3", quorum=1), actor)

    def ui_try(rid: int, typed: str) -> str:
        with pytest.raises(Refused) as exc:
            ap.decide(
                org,
                DecisionIn(request_id=rid, person=COMPLIANCE, outcome="approve", code=typed),
                ui(COMPLIANCE),
            )
        return exc.value.reason

    for rid in (req.id, third.id):
        wrong = [ui_try(rid, f"WRONG-{n}") for n in range(ap.MAX_WRONG_CODES)]
        assert wrong == ["bad-code"] * 5
        assert ui_try(rid, code(org, settings, rid, COMPLIANCE)) == "ui-locked"
    with session_factory(settings.effective_database_url)() as s:
        row = s.get(ApprovalApprover, (req.id, person_id(settings, COMPLIANCE)))
        assert row is not None and row.ui_locked_at is not None and row.wrong_codes == 5
        told = set(
            s.scalars(
                select(Person.email)
                .join(Notification, Notification.recipient_id == Person.id)
                .where(Notification.kind == "ask-ui-locked")
            )
        )
    assert told == {COMPLIANCE, GOV}  # the person and the governance lead
    # The other ask's UI still works for them; Slack and the CLI still work on the locked ones.
    assert ap.decide(
        org,
        DecisionIn(
            request_id=other.id,
            person=COMPLIANCE,
            outcome="approve",
            code=code(org, settings, other.id, COMPLIANCE),
        ),
        ui(COMPLIANCE),
    ).recorded
    for rid, channel in ((req.id, "slack"), (third.id, "cli")):
        result = ap.decide(
            org, DecisionIn(request_id=rid, person=COMPLIANCE, outcome="approve"), CHANNELS[channel]
        )
        assert result.recorded and result.status is ApprovalStatus.approved, channel


def test_an_operator_hands_over_a_code_and_it_is_audited(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    req = ap.create_request(org, approval(), actor)
    handed = ap.hand_over_code(org, req.id, COMPLIANCE, actor)
    assert handed == code(org, settings, req.id, COMPLIANCE)
    (event,) = actions(settings, "ask.code-handed-over")
    assert event.details == {"person": COMPLIANCE} and event.actor == actor.who
    with pytest.raises(Exception, match="not an eligible answerer"):
        ap.hand_over_code(org, req.id, DS, actor)


def test_an_ask_may_name_the_people_who_answer(
    org: UnitOfWork, settings: Settings, actor: Actor
) -> None:
    """A CAPA owner's own step goes to them by name, not to a role; a leaver cannot be asked."""
    named = ap.create_request(
        org, verification(approver_roles=[], approver_people=[DS], excluded={}), actor
    )
    assert named.approvers == [DS]
    both = ap.create_request(
        org,
        verification(
            idempotency_key="k2", approver_roles=["internal-auditor"], approver_people=[DS]
        ),
        actor,
    )
    assert DS in both.approvers and AUDITOR in both.approvers
    with pytest.raises(ValueError, match="name the approver roles or people"):
        verification(approver_roles=[], approver_people=[])
    deactivate_person(org, DS, DeactivationIn(reason="moved on"), actor)
    with pytest.raises(InvalidInput) as exc:
        ap.create_request(org, verification(idempotency_key="k3", approver_people=[DS]), actor)
    assert exc.value.field == "approver_people"
