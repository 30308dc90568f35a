"""Applying an organisation file: the database made to hold what the file declares, in one
transaction, printing what changed.

Idempotent by construction: each entry is compared with what the database holds and written
only where it differs, so a second apply changes nothing and writes nothing (not even an audit
event). What the database has beyond the file is reported, never deleted: people are
deactivated only with `prune` (their open work reassigned first, as `aims people deactivate`),
systems, vendors, RACI rows and requirements stay until removed by their own commands.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from aims_core.models import AISystem, Person, RaciActivity, RaciMember, Role, Vendor
from aims_core.rules.training import TrainingCatalog, training_catalog
from aims_core.schemas import RaciIn, SystemIn
from aims_core.services import raci
from aims_core.services.leavers import deactivate_in
from aims_core.services.org.reading import OrgDocument, OrgFileInvalid
from aims_core.services.org.schemas import OrgApplied, OrgChange, OrgFile, OrgPerson, OrgRaci
from aims_core.services.people import resolve_roles
from aims_core.services.systems import _vendor as find_or_create_vendor
from aims_core.services.training.records import require_in
from aims_core.services.training.schemas import RequirementIn
from aims_core.system_keys import derive_key
from aims_core.uow import Actor, UnitOfWork


def apply_org(
    uow: UnitOfWork,
    doc: OrgDocument,
    actor: Actor,
    *,
    dry_run: bool = False,
    prune: bool = False,
    reassign_to: str | None = None,
) -> OrgApplied:
    """Every problem of the file is named (with its line) before anything is written; then the
    whole file is applied, or nothing (`dry_run` rolls back what it would have written)."""
    org = doc.org
    cat = training_catalog(uow.settings)
    with uow:
        s = uow.session
        problems = _problems(s, doc, cat)
        if problems:
            raise OrgFileInvalid(doc.source, problems)
        changes = [
            *_people(uow, org.people, actor),
            *_vendors(uow, org, actor),
            *_systems(uow, org.systems, actor),
            *_raci(uow, org.raci, actor, _system_keys(s, org)),
            *_trainings(uow, org, actor, cat),
        ]
        if "people" in org.model_fields_set:
            changes += _absent_people(uow, org, actor, prune=prune, reassign_to=reassign_to)
        written = [c for c in changes if c.writes]
        if written:
            uow.audit(
                actor,
                "org.applied",
                f"org:{org.organisation}",
                source=doc.source,
                changes=Counter(f"{c.kind}.{c.action}" for c in written),
            )
        if not dry_run and written:
            uow.commit()
    return OrgApplied(organisation=org.organisation, dry_run=dry_run, changes=changes)


# --- checks: everything a schema cannot see, each with its line ------------------------------


def _problems(s: Session, doc: OrgDocument, cat: TrainingCatalog) -> list[str]:
    org = doc.org
    people = {p.email: p for p in s.scalars(select(Person))}
    declared = {p.email for p in org.people} | doc.refused_emails
    roles = set(s.scalars(select(Role.id)))
    problems: list[str] = list(doc.problems)

    def dupes(section: str, keys: Iterable[str], what: str) -> None:
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key in first:
                also = doc.line((section, first[key]))
                problems.append(doc.at((section, i), f"{what} '{key}' is also on line {also}"))
            else:
                first[key] = i

    def person(place: tuple[str | int, ...], email: str | None) -> None:
        if email is None or email in declared:
            return
        found = people.get(email)
        if found is None:
            problems.append(doc.at(place, f"no person '{email}' in the file or the database"))
        elif not found.active:
            problems.append(doc.at(place, f"{email} is deactivated"))

    dupes("people", (p.email for p in org.people), "email")
    dupes("people", (p.slack_id for p in org.people if p.slack_id), "Slack id")
    slack_owner = {p.slack_user_id: p.email for p in people.values() if p.slack_user_id}
    for i, p in enumerate(org.people):
        for j, role in enumerate(p.roles):
            if role not in roles:
                known = ", ".join(sorted(roles))
                problems.append(
                    doc.at(("people", i, "roles", j), f"unknown role '{role}' ({known})")
                )
        if p.manager == p.email:
            problems.append(doc.at(("people", i, "manager"), "a person cannot manage themselves"))
        else:
            person(("people", i, "manager"), p.manager)
        holder = slack_owner.get(p.slack_id) if p.slack_id else None
        if holder and holder != p.email and holder not in declared:
            problems.append(
                doc.at(("people", i, "slack_id"), f"Slack id {p.slack_id} belongs to {holder}")
            )
    dupes("vendors", (v.name for v in org.vendors), "vendor")
    for i, v in enumerate(org.vendors):
        person(("vendors", i, "owner"), v.owner)
    dupes("systems", (sy.key for sy in org.systems), "system key")
    for i, sy in enumerate(org.systems):
        person(("systems", i, "owner"), sy.owner)
    keys = _system_keys(s, org)
    dupes("raci", (f"{r.activity} ({keys.get(r.system or '')})" for r in org.raci), "RACI")
    for i, r in enumerate(org.raci):
        if r.system and r.system not in keys and r.system.lower() not in doc.refused_systems:
            problems.append(doc.at(("raci", i, "system"), f"no AI system '{r.system}'"))
        for field in ("responsible", "consulted", "informed"):
            for j, email in enumerate(getattr(r, field)):
                person(("raci", i, field, j), email)
        person(("raci", i, "accountable"), r.accountable)
    if isinstance(org.trainings, list):
        catalog_ids = sorted(t.id for t in cat.trainings)
        for i, t in enumerate(org.trainings):
            if t.role not in roles:
                problems.append(doc.at(("trainings", i, "role"), f"unknown role '{t.role}'"))
            if t.training not in catalog_ids:
                problems.append(
                    doc.at(
                        ("trainings", i, "training"),
                        f"unknown training '{t.training}' (catalog: {', '.join(catalog_ids)})",
                    )
                )
    return problems


# --- sections ------------------------------------------------------------------------------


def _people(uow: UnitOfWork, entries: list[OrgPerson], actor: Actor) -> list[OrgChange]:
    s = uow.session
    have = {
        p.email: p
        for p in s.scalars(
            select(Person).options(selectinload(Person.roles), selectinload(Person.manager))
        )
    }
    changes: list[OrgChange] = []
    # Slack ids first let go where they move to someone else (a unique column).
    moving = {p.slack_id for p in entries if p.slack_id}
    for p in entries:
        row = have.get(p.email)
        moves = row is not None and row.active and row.slack_user_id in moving
        if moves and row.slack_user_id != p.slack_id:
            row.slack_user_id = None
    s.flush()
    for p in entries:
        row = have.get(p.email)
        if row is None:
            row = Person(email=p.email, name=p.name, slack_user_id=p.slack_id)
            row.roles = resolve_roles(s, p.roles)
            s.add(row)
            have[p.email] = row
            changes.append(OrgChange(action="add", kind="person", key=p.email))
            continue
        if not row.active:
            changes.append(
                OrgChange(
                    action="deactivated",
                    kind="person",
                    key=p.email,
                    details=["deactivated: left as is (`aims people reactivate` to bring back)"],
                )
            )
            continue
        details = []
        if row.name != p.name:
            details.append(f"name: {row.name} → {p.name}")
            row.name = p.name
        if row.slack_user_id != p.slack_id:
            details.append(f"Slack id: {row.slack_user_id or '-'} → {p.slack_id or '-'}")
            row.slack_user_id = p.slack_id
        now_roles = [r.id for r in row.roles]
        if sorted(now_roles) != sorted(p.roles):
            added = [r for r in p.roles if r not in now_roles]
            removed = [r for r in now_roles if r not in p.roles]
            details.append(
                "roles: " + " ".join([*(f"+{r}" for r in added), *(f"-{r}" for r in removed)])
            )
            row.roles = resolve_roles(s, p.roles)
        if details:
            changes.append(OrgChange(action="update", kind="person", key=p.email, details=details))
    s.flush()
    for p in entries:  # managers once everyone exists (a file lists people in any order)
        row = have[p.email]
        if not row.active:
            continue
        current = row.manager.email if row.manager else None
        if current != p.manager:
            row.manager = have.get(p.manager) if p.manager else None
            if row.manager is None and p.manager:
                row.manager = s.scalar(select(Person).where(Person.email == p.manager))
            change = next((c for c in changes if c.key == p.email and c.kind == "person"), None)
            if change is None:
                change = OrgChange(action="update", kind="person", key=p.email)
                changes.append(change)
            if change.action == "update":
                change.details.append(f"manager: {current or '-'} → {p.manager or '-'}")
    s.flush()
    for c in changes:
        if c.writes:
            row = have[c.key]
            action = "person.added" if c.action == "add" else "person.updated"
            uow.audit(
                actor,
                action,
                f"person:{c.key}",
                roles=[r.id for r in row.roles],
                manager=row.manager.email if row.manager else None,
                changes=c.details,
            )
    return changes


def _vendors(uow: UnitOfWork, org: OrgFile, actor: Actor) -> list[OrgChange]:
    s = uow.session
    changes = []
    for v in org.vendors:
        row = s.scalar(select(Vendor).where(Vendor.name == v.name))
        owner = s.scalar(select(Person).where(Person.email == v.owner))
        if row is None or row.owner_id is None:
            row = find_or_create_vendor(s, v.name, {})
            assert row is not None
            row.criticality, row.services, row.contact, row.owner = (
                v.criticality,
                v.services,
                v.contact,
                owner,
            )
            s.flush()
            uow.audit(actor, "vendor.registered", f"vendor:{v.name}", **v.model_dump(mode="json"))
            changes.append(OrgChange(action="add", kind="vendor", key=v.name))
            continue
        details = _differences(
            row,
            {
                "criticality": v.criticality,
                "services": v.services,
                "contact": v.contact,
            },
        )
        if row.owner is None or row.owner.email != v.owner:
            details.append(f"owner: {row.owner.email if row.owner else '-'} → {v.owner}")
            row.owner = owner
        if details:
            s.flush()
            uow.audit(actor, "vendor.updated", f"vendor:{v.name}", changes=details)
            changes.append(OrgChange(action="update", kind="vendor", key=v.name, details=details))
    return changes


def _systems(uow: UnitOfWork, entries: list[SystemIn], actor: Actor) -> list[OrgChange]:
    s = uow.session
    changes = []
    vendors: dict[str, Vendor] = {}
    for sy in entries:
        row = s.scalar(select(AISystem).where(AISystem.name == sy.key))
        owner = s.scalar(select(Person).where(Person.email == sy.owner))
        vendor = find_or_create_vendor(s, sy.vendor, vendors)
        if row is None:
            row = AISystem(
                name=sy.key,
                display_name=sy.name,
                purpose=sy.purpose,
                owner=owner,
                risk_tier=sy.risk_tier,
                criticality=sy.criticality,
                vendor=vendor,
            )
            s.add(row)
            s.flush()
            uow.audit(actor, "system.added", f"system:{sy.key}", **sy.model_dump(mode="json"))
            changes.append(OrgChange(action="add", kind="system", key=sy.key))
            continue
        details = _differences(
            row,
            {
                "display_name": sy.name,
                "purpose": sy.purpose,
                "risk_tier": sy.risk_tier,
                "criticality": sy.criticality,
            },
        )
        if row.owner.email != sy.owner:
            details.append(f"owner: {row.owner.email} → {sy.owner}")
            row.owner = owner  # type: ignore[assignment]
        if (row.vendor.name if row.vendor else None) != sy.vendor:
            details.append(f"vendor: {row.vendor.name if row.vendor else '-'} → {sy.vendor or '-'}")
            row.vendor = vendor
        if details:
            s.flush()
            uow.audit(actor, "system.updated", f"system:{sy.key}", changes=details)
            changes.append(OrgChange(action="update", kind="system", key=sy.key, details=details))
    return changes


def _raci(
    uow: UnitOfWork, entries: list[OrgRaci], actor: Actor, keys: dict[str, str]
) -> list[OrgChange]:
    s = uow.session
    current = {
        (r.activity, r.system.name if r.system else None): raci.raci_out(r)
        for r in s.scalars(
            select(RaciActivity).options(
                selectinload(RaciActivity.members).selectinload(RaciMember.person)
            )
        )
    }
    changes = []
    for r in entries:
        system = keys[r.system] if r.system else None
        data = RaciIn(
            activity=r.activity,
            system=system,
            responsible=r.responsible,
            accountable=[r.accountable],
            consulted=r.consulted,
            informed=r.informed,
        )
        wanted = {
            "responsible": sorted(set(r.responsible)),
            "accountable": r.accountable,
            "consulted": sorted(set(r.consulted)),
            "informed": sorted(set(r.informed)),
        }
        key = f"{r.activity} ({system or 'organisation'})"
        now = current.get((r.activity, system))
        if now is not None and all(getattr(now, k) == v for k, v in wanted.items()):
            continue
        details = (
            [
                f"{k}: {_show(getattr(now, k))} → {_show(v)}"
                for k, v in wanted.items()
                if getattr(now, k) != v
            ]
            if now
            else []
        )
        raci.set_raci_in(uow, data, actor)
        changes.append(
            OrgChange(action="update" if now else "add", kind="raci", key=key, details=details)
        )
    return changes


def _trainings(
    uow: UnitOfWork, org: OrgFile, actor: Actor, cat: TrainingCatalog
) -> list[OrgChange]:
    if org.trainings == "catalog-defaults":
        known = set(uow.session.scalars(select(Role.id)))
        wanted = [
            RequirementIn(role=role, training=t)
            for role, ids in cat.requirements.items()
            if role in known
            for t in ids
        ]
    else:
        wanted = list(org.trainings)
    changes = []
    for data in wanted:
        out = require_in(uow, data, actor, cat)
        if out.changed:
            changes.append(
                OrgChange(
                    action="add",
                    kind="training",
                    key=f"{out.training} for {out.role}",
                    details=[f"valid {out.validity_days} days"],
                )
            )
    return changes


def _absent_people(
    uow: UnitOfWork, org: OrgFile, actor: Actor, *, prune: bool, reassign_to: str | None
) -> list[OrgChange]:
    declared = {p.email for p in org.people}
    absent = uow.session.scalars(
        select(Person)
        .where(Person.active.is_(True), Person.email.not_in(declared))
        .order_by(Person.email)
    )
    changes = []
    for person in absent:
        if prune:
            details = deactivate_in(
                uow, person, actor, reason="not in the organisation file", reassign_to=reassign_to
            )
            changes.append(
                OrgChange(action="deactivate", kind="person", key=person.email, details=details)
            )
        else:
            changes.append(
                OrgChange(
                    action="absent",
                    kind="person",
                    key=person.email,
                    details=["not in the file (`--prune` deactivates)"],
                )
            )
    return changes


# --- small helpers -------------------------------------------------------------------------


def _system_keys(s: Session, org: OrgFile) -> dict[str, str]:
    """Each way the file may name a system (its key, its display name, the key that text
    derives to) -> the key: the file's systems, then the database's."""
    out: dict[str, str] = {}
    rows = [(key, name) for key, name in s.execute(select(AISystem.name, AISystem.display_name))]
    for key, name in [*rows, *((sy.key, sy.name) for sy in org.systems)]:
        out.update({name: key, derive_key(name): key, key: key})
    return out


def _differences(row: object, wanted: dict[str, object]) -> list[str]:
    """Set each differing attribute; one `field: old → new` line per change."""
    out = []
    for field, value in wanted.items():
        old = getattr(row, field)
        if old != value:
            out.append(f"{field.replace('_', ' ')}: {_show(old)} → {_show(value)}")
            setattr(row, field, value)
    return out


def _show(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    text = str(getattr(value, "value", value) if value is not None else "-")
    return text if len(text) <= 60 else text[:57] + "..."
