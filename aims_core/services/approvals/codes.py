"""Personal codes as people receive them: rendered from the current counter when a message is
delivered, or shown to an operator who hands it over (organisations without Slack)."""

from __future__ import annotations

from sqlalchemy import select

from aims_core.approval_codes import personal_code
from aims_core.errors import AimsError, NotFound
from aims_core.models import ApprovalApprover, ApprovalStatus, Person
from aims_core.services.approvals.queries import load, subject
from aims_core.uow import Actor, UnitOfWork

__all__ = ["current_code", "hand_over_code"]


def current_code(uow: UnitOfWork, request_id: int, person_id: int) -> str | None:
    """The person's code for the ask as it stands now; None when they are not an answerer of
    it or no evidence key is configured."""
    key = uow.settings.evidence_key_bytes()
    if not key:
        return None
    with uow.read():
        counter = uow.session.scalar(
            select(ApprovalApprover.code_counter).where(
                ApprovalApprover.request_id == request_id,
                ApprovalApprover.person_id == person_id,
            )
        )
    return None if counter is None else personal_code(key, request_id, person_id, counter)


def hand_over_code(uow: UnitOfWork, request_id: int, email: str, actor: Actor) -> str:
    """`aims asks code ASK --for EMAIL`: an operator reads a person's current code to hand it
    over (no Slack to send it). Audited: who looked up whose code, for which ask."""
    email = email.strip().lower()
    with uow:
        s = uow.session
        req = load(s, request_id)
        person = s.scalar(select(Person).where(Person.email == email))
        if person is None:
            raise NotFound(f"no person with email '{email}'", "for")
        row = s.get(ApprovalApprover, (req.id, person.id))
        if row is None:
            raise AimsError(f"{email} is not an eligible answerer of request {req.id}", "for")
        if req.status is not ApprovalStatus.open:
            raise AimsError(f"request {req.id} is already {req.status.value}", "ask")
        uow.audit(actor, "ask.code-handed-over", subject(req.id), person=email)
        uow.commit()
    code = current_code(uow, request_id, person.id)
    if code is None:
        raise AimsError("no evidence key configured: personal codes derive from it", "ask")
    return code
