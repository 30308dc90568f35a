"""RACI per activity, organisation-wide or per AI system, with exactly one Accountable."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from aims_core.errors import NotFound
from aims_core.models import RaciActivity, RaciKind, RaciMember
from aims_core.schemas import RaciIn, RaciOut
from aims_core.services.people import persons_by_email
from aims_core.services.systems import get_system
from aims_core.uow import Actor, UnitOfWork

ORG_SCOPE = "org"


def raci_out(r: RaciActivity) -> RaciOut:
    by_kind: dict[RaciKind, list[str]] = {k: [] for k in RaciKind}
    for m in r.members:
        by_kind[m.kind].append(m.person.email)
    return RaciOut(
        activity=r.activity,
        system=r.system.name if r.system else None,
        responsible=sorted(by_kind[RaciKind.responsible]),
        accountable=r.accountable.email,
        consulted=sorted(by_kind[RaciKind.consulted]),
        informed=sorted(by_kind[RaciKind.informed]),
    )


def set_raci(uow: UnitOfWork, data: RaciIn, actor: Actor) -> RaciOut:
    """Create or replace the RACI of one activity (in one scope)."""
    with uow:
        out = set_raci_in(uow, data, actor)
        uow.commit()
    return out


def set_raci_in(uow: UnitOfWork, data: RaciIn, actor: Actor) -> RaciOut:
    """`set_raci` inside the caller's transaction (an organisation file applies many)."""
    s = uow.session
    system = get_system(s, data.system) if data.system else None
    scope = f"system:{system.id}" if system else ORG_SCOPE
    people = persons_by_email(
        s, [*data.responsible, *data.accountable, *data.consulted, *data.informed]
    )
    for field in ("responsible", "accountable", "consulted", "informed"):
        for email in getattr(data, field):
            if email not in people:
                raise NotFound(f"no person with email '{email}'", field=field)
    accountable = people[data.accountable[0]]  # may also be Responsible
    row = s.scalar(
        select(RaciActivity).where(
            RaciActivity.activity == data.activity, RaciActivity.scope == scope
        )
    )
    old = raci_out(row).model_dump() if row else None
    if row is None:
        row = RaciActivity(activity=data.activity, scope=scope, system=system)
        s.add(row)
    row.accountable = accountable
    row.members.clear()
    s.flush()
    for kind, emails in (
        (RaciKind.responsible, data.responsible),
        (RaciKind.consulted, data.consulted),
        (RaciKind.informed, data.informed),
    ):
        for email in dict.fromkeys(emails):
            row.members.append(RaciMember(person=people[email], kind=kind))
    s.flush()
    out = raci_out(row)
    uow.audit(
        actor,
        "raci.set",
        f"raci:{data.activity}@{system.name if system else ORG_SCOPE}",  # the key, as typed or not
        old=old,
        new=out.model_dump(),
    )
    return out


def show_raci(uow: UnitOfWork, system: str | None = None) -> list[RaciOut]:
    """Every RACI row, or those of one system plus the organisation-wide ones."""
    with uow.read():
        s = uow.session
        q = select(RaciActivity).options(
            selectinload(RaciActivity.members).selectinload(RaciMember.person),
            selectinload(RaciActivity.system),
            selectinload(RaciActivity.accountable),
        )
        if system:
            sys_row = get_system(s, system)
            q = q.where(RaciActivity.scope.in_([ORG_SCOPE, f"system:{sys_row.id}"]))
        rows = s.scalars(q.order_by(RaciActivity.activity, RaciActivity.scope))
        return [raci_out(r) for r in rows]
