"""The effectiveness verification of a CAPA's actions (ISO/IEC 42001 10.2), once due.

A verifier holding a role from the policy (not the owner, unless the policy allows it) records
evidence that the nonconformity has or has not recurred. Effective: the CAPA awaits its closure
approval. Ineffective: back to root cause with the next attempt, whose action plan starts empty.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from aims_core.ask_forms import CAPA_VERIFICATION
from aims_core.errors import Conflict, InvalidInput
from aims_core.models import Capa, CapaStatus, Person, as_utc
from aims_core.rules.capa import CapaPolicy, capa_policy
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.capa.queries import load_capa, results_of
from aims_core.services.capa.recording import (
    allowed,
    commit_and_anchor,
    head,
    notify,
    record_evidence,
)
from aims_core.services.capa.schemas import TEXT_MAX, CapaOut, VerificationOut, at_or_now, subject
from aims_core.services.people import active_person
from aims_core.uow import Actor, UnitOfWork


def _check_verifier(
    session: Session, policy: CapaPolicy, row: Capa, verifier: str | None
) -> Person | None:
    roles = policy.verification.verifier_roles
    if verifier is None or not verifier.strip():
        if roles:
            raise InvalidInput(
                f"who verified it? Give the verifier's email (roles: {', '.join(roles)})",
                "verifier",
            )
        return None
    person = active_person(session, verifier, "verifier")
    if roles and not {r.id for r in person.roles} & set(roles):
        raise InvalidInput(
            f"{person.email} may not verify CAPAs (roles: {', '.join(roles)})", "verifier"
        )
    if person.id == row.owner_id and not policy.verification.owner_may_verify:
        raise InvalidInput(
            f"{person.email} owns CAPA {row.id}: someone else verifies its effectiveness",
            "verifier",
        )
    return person


def record_verification(
    uow: UnitOfWork,
    capa_id: int,
    effective: bool,
    evidence_text: str,
    actor: Actor,
    *,
    verifier: str | None = None,
    now: datetime | None = None,
) -> CapaOut:
    """The effectiveness check, once due: the verifier's evidence that the nonconformity has (or
    has not) recurred. Effective: the CAPA awaits closure approval. Ineffective: back to root
    cause with attempt + 1, whose action plan starts empty (the owner is told)."""
    text = (evidence_text or "").strip()
    if not text:
        raise InvalidInput("say what shows the problem has (not) recurred", "evidence")
    if len(text) > TEXT_MAX:
        raise InvalidInput(f"at most {TEXT_MAX} characters", "evidence")
    at = at_or_now(now)
    policy = capa_policy(uow.settings)
    with uow:
        s = uow.session
        row = load_capa(s, capa_id, lock=True)
        allowed(row, "an effectiveness verification", CapaStatus.verification)
        due = as_utc(row.verification_due_at) if row.verification_due_at else at
        if due > at:
            raise Conflict(
                f"CAPA {row.id}'s effectiveness verification is due {due:%Y-%m-%d %H:%M} UTC, "
                "not before (the fix must have had time to show)",
                "verification",
            )
        person = _check_verifier(s, policy, row, verifier)
        results = results_of(row)
        n = len(results) + 1
        verdict = "effective" if effective else "NOT effective"
        ev = record_evidence(
            uow,
            row,
            f"capa-{row.id}-verification-{n}",
            f"Effectiveness verification {n} ({verdict}): {head(row)}",
            f"# Effectiveness verification {n}, {head(row)}\n\n- **attempt**: {row.attempt}\n"
            f"- **result**: {verdict}\n- **verifier**: {person.email if person else actor.who}\n"
            f"- **at**: {at:%Y-%m-%d %H:%M} UTC\n\n{text}\n",
            actor,
        )
        result = VerificationOut(
            number=n,
            attempt=row.attempt,
            effective=effective,
            evidence=text,
            verifier=person.email if person else None,
            recorded_by=actor.who,
            channel=actor.channel,
            at=at,
            evidence_id=ev,
        )
        row.verification = {
            **(row.verification or {}),
            "results": [*results, result.model_dump(mode="json")],
        }
        attempt = row.attempt
        if effective:
            row.status = CapaStatus.awaiting_closure
        else:
            row.status = CapaStatus.root_cause
            row.attempt += 1
            row.verification_due_at = None
            notify(
                s,
                f"capa-{row.id}-verification-{n}-to-{row.owner_id}",
                "capa-verification",
                row,
                row.owner,
                f"{head(row)}: the actions of attempt {attempt} were NOT effective ({text}). "
                f"Back to root cause, attempt {row.attempt}: `aims capa rca {row.id} ...`",
            )
        s.flush()
        uow.audit(
            actor,
            "capa.verified-effective" if effective else "capa.verified-ineffective",
            subject(row.id),
            verification=n,
            attempt=attempt,
            verifier=result.verifier,
            evidence=text,
            evidence_id=ev,
        )
        return commit_and_anchor(uow, row)


#: Who verifies when the policy names no verifier roles: the AIMS's governance lead.
DEFAULT_VERIFIERS = ("governance-lead",)


def verification_spec(
    uow: UnitOfWork, capa_id: int, *, flow_run_id: str | None = None
) -> ApprovalRequestIn:
    """The ask for the effectiveness verification, once due: to the policy's verifier roles,
    never the CAPA's owner (unless the policy allows it), one answer. One ask per attempt and
    verification, so a re-verification after a rejected closure is a new ask."""
    policy = capa_policy(uow.settings).verification
    with uow.read():
        row = load_capa(uow.session, capa_id)
        n = len(results_of(row)) + 1
        excluded = (
            {}
            if policy.owner_may_verify
            else {row.owner.email: f"owns CAPA {row.id}: someone else verifies its effectiveness"}
        )
        actions = [a for a in row.actions if a.attempt == row.attempt]
        details = "\n".join(
            [
                f"Has the nonconformity recurred since the actions of attempt {row.attempt} "
                "were done? Effective: the CAPA goes to closure approval; ineffective: back to "
                "root cause with the next attempt.",
                "",
                *(f"- action: {a.title} ({'done' if a.done_at else 'open'})" for a in actions),
            ]
        )
        return ApprovalRequestIn(
            idempotency_key=f"capa-{row.id}-a{row.attempt}-v{n}-verification",
            kind=CAPA_VERIFICATION,
            subject=subject(row.id),
            activity="capa-verification",
            system=row.system.name if row.system else None,
            title=f"Verify CAPA {row.id}: {row.title}"[:300],
            details=details,
            approver_roles=list(policy.verifier_roles or DEFAULT_VERIFIERS),
            quorum=1,
            excluded=excluded,
            flow_run_id=flow_run_id,
        )
