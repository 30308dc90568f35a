"""Auditor independence (9.2.2): an auditor does not audit their own work."""

from __future__ import annotations

from collections import Counter, defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from aims_core.errors import Conflict
from aims_core.models import AISystem, Audit, AuditStatus, Person, RaciActivity, RaciKind
from aims_core.rules.audit import AuditPolicy, audit_policy
from aims_core.services.audits.periods import _tz
from aims_core.services.audits.queries import _load, _out, subject
from aims_core.services.audits.schemas import AuditOut
from aims_core.services.directory import role_holders
from aims_core.services.people import get_person
from aims_core.uow import Actor, UnitOfWork


def own_work(session: Session, policy: AuditPolicy, audit: Audit) -> list[tuple[Person, str]]:
    """Who did the work `audit` looks at, and how (`policy.fieldwork.impartiality`): owners of
    its sampled systems, people Responsible or Accountable for an activity of an area in scope
    (organisation-wide, or for a sampled system). Each as (person, "is ... / owns ...")."""
    counted = set(policy.fieldwork.impartiality)
    out: list[tuple[Person, str]] = []
    sampled = {
        sys.id: sys
        for sys in session.scalars(select(AISystem).where(AISystem.name.in_(list(audit.systems))))
    }
    scopes = ["org", *(f"system:{i}" for i in sampled)]
    by_area: dict[str, list[str]] = defaultdict(list)
    for c in audit.scope:
        area = policy.area_of(c)
        if area is not None:
            by_area[area.id].append(c)
    for area_id, reqs in by_area.items():
        activities = policy.area(area_id).activities
        if not activities or not counted & {"responsible", "accountable"}:
            continue
        rows = session.scalars(
            select(RaciActivity)
            .where(RaciActivity.activity.in_(activities), RaciActivity.scope.in_(scopes))
            .options(selectinload(RaciActivity.members), selectinload(RaciActivity.system))
            .order_by(RaciActivity.activity, RaciActivity.scope)
        )
        for r in rows:
            parts: dict[int, tuple[Person, list[str]]] = {}
            if "responsible" in counted:
                for m in r.members:
                    if m.kind is RaciKind.responsible:
                        parts.setdefault(m.person_id, (m.person, []))[1].append("Responsible")
            if "accountable" in counted:
                parts.setdefault(r.accountable_id, (r.accountable, []))[1].append("Accountable")
            where = f"@{r.system.name}" if r.system else ""
            shown = ", ".join(reqs[:6]) + (" ..." if len(reqs) > 6 else "")
            out += [
                (
                    person,
                    f"is {' and '.join(roles)} for {r.activity}{where}, which covers {shown} "
                    "in this audit's scope",
                )
                for person, roles in parts.values()
            ]
    if "system-owner" in counted:
        out += [
            (sys.owner, f"owns {sys.name}, a system sampled by this audit")
            for sys in sampled.values()
        ]
    return out


def conflicts(session: Session, policy: AuditPolicy, audit: Audit, person: Person) -> list[str]:
    """Why `person` may not audit `audit` (empty: independent). An auditor holds the auditor
    role and did none of the work the audit looks at (`own_work`)."""
    out = []
    if not person.active:
        out.append(f"{person.email} is not active")
    if policy.auditor_role not in {r.id for r in person.roles}:
        out.append(f"{person.email} does not hold the role {policy.auditor_role}")
    mine = [how for p, how in own_work(session, policy, audit) if p.id == person.id]
    return out + [f"{person.email} {how}" for how in mine]


def impartiality_exclusions(session: Session, policy: AuditPolicy, audit: Audit) -> dict[str, str]:
    """Everyone active whose own work `audit` looks at, with why they may not answer its
    fieldwork asks (ISO/IEC 42001 9.2.2): the asks' `excluded`."""
    reasons: dict[str, list[str]] = defaultdict(list)
    for person, how in own_work(session, policy, audit):
        if person.active and how not in reasons[person.email]:
            reasons[person.email].append(how)
    return {
        email: f"{'; '.join(hows)}: an auditor does not audit their own work (9.2.2)"
        for email, hows in reasons.items()
    }


def _pick_auditor(
    session: Session, policy: AuditPolicy, audit: Audit, programme_id: int
) -> tuple[Person | None, str]:
    """The independent auditor with the fewest audits in the programme (None, and why not)."""
    holders = role_holders(session, [policy.auditor_role])
    if not holders:
        return None, f"nobody holds the role {policy.auditor_role}"
    load = Counter(
        session.scalars(
            select(Audit.auditor_id).where(
                Audit.programme_id == programme_id, Audit.auditor_id.is_not(None)
            )
        )
    )
    reasons = []
    for p in sorted(holders, key=lambda p: (load[p.id], p.id)):
        problems = conflicts(session, policy, audit, p)
        if not problems:
            return p, ""
        reasons.append(problems[0])
    return None, "no independent auditor: " + "; ".join(reasons)


def assign_auditor(uow: UnitOfWork, audit_id: int, email: str, actor: Actor) -> AuditOut:
    """Make `email` the audit's auditor, if independent; else Conflict naming every conflict."""
    policy, tz = audit_policy(uow.settings), _tz(uow.settings)
    with uow:
        s = uow.session
        row = _load(s, audit_id, lock=True)
        if row.status not in (AuditStatus.planned,):
            raise Conflict(
                f"audit {row.id} is {row.status.value}: the auditor is chosen before it starts",
                "audit",
            )
        person = get_person(s, email, "auditor")
        problems = conflicts(s, policy, row, person)
        if problems:
            raise Conflict(
                f"{person.name} may not audit audit {row.id} ({row.period}), an auditor may not "
                f"audit their own work: {'; '.join(problems)}",
                "auditor",
            )
        if row.auditor_id != person.id:
            previous = row.auditor.email if row.auditor else None
            row.auditor = person
            s.flush()
            uow.audit(
                actor,
                "audit.auditor-assigned",
                subject(row.id),
                auditor=person.email,
                previous=previous,
            )
        out = _out(s, row, policy, tz)
        uow.commit()
    return out
