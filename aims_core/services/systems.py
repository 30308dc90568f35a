"""The AI system inventory: add, list, show, and bulk import from CSV or Excel."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from aims_core.errors import Conflict, ImportRejected, NotFound
from aims_core.importing import RawRow
from aims_core.models import AISystem, Vendor
from aims_core.schemas import SystemIn, SystemOut
from aims_core.services.people import get_person, persons_by_email
from aims_core.uow import Actor, UnitOfWork

IMPORT_COLUMNS = ("name", "owner", "purpose", "risk_tier", "criticality", "vendor")
REQUIRED_COLUMNS = IMPORT_COLUMNS[:-1]


def system_out(s: AISystem) -> SystemOut:
    return SystemOut(
        id=s.id,
        name=s.name,
        purpose=s.purpose,
        owner=s.owner.email,
        owner_name=s.owner.name,
        risk_tier=s.risk_tier,
        criticality=s.criticality,
        lifecycle_stage=s.lifecycle_stage,
        vendor=s.vendor.name if s.vendor else None,
    )


def get_system(session: Session, name: str, field: str = "system") -> AISystem:
    system = session.scalar(select(AISystem).where(AISystem.name == name.strip()))
    if system is None:
        raise NotFound(f"no AI system named '{name}' (see `aims systems list`)", field=field)
    return system


def _vendor(session: Session, name: str | None, cache: dict[str, Vendor]) -> Vendor | None:
    if not name:
        return None
    if name not in cache:
        vendor = session.scalar(select(Vendor).where(Vendor.name == name))
        if vendor is None:
            vendor = Vendor(name=name)
            session.add(vendor)
        cache[name] = vendor
    return cache[name]


def add_system(uow: UnitOfWork, data: SystemIn, actor: Actor) -> SystemOut:
    with uow:
        s = uow.session
        if s.scalar(select(AISystem.id).where(AISystem.name == data.name)) is not None:
            raise Conflict(f"an AI system named '{data.name}' already exists", field="name")
        system = AISystem(
            name=data.name,
            purpose=data.purpose,
            owner=get_person(s, data.owner, field="owner"),
            risk_tier=data.risk_tier,
            criticality=data.criticality,
            vendor=_vendor(s, data.vendor, {}),
        )
        s.add(system)
        s.flush()
        uow.audit(actor, "system.added", f"system:{system.name}", **data.model_dump(mode="json"))
        out = system_out(system)
        uow.commit()
    return out


def list_systems(uow: UnitOfWork) -> list[SystemOut]:
    with uow.read():
        rows = uow.session.scalars(
            select(AISystem)
            .options(joinedload(AISystem.owner), joinedload(AISystem.vendor))
            .order_by(AISystem.name)
        )
        return [system_out(s) for s in rows]


def show_system(uow: UnitOfWork, name: str) -> SystemOut:
    with uow.read():
        return system_out(get_system(uow.session, name))


# --- import -------------------------------------------------------------------------------------


def import_systems(
    uow: UnitOfWork,
    rows: Iterable[RawRow],
    actor: Actor,
    source: str,
    progress: Callable[[int], None] | None = None,
) -> list[SystemOut]:
    """Validate every row first, then write all of them in one transaction, or none.

    Every bad row is reported with its line and field (a person fixes the whole file at once).
    """
    rows = list(rows)
    with uow:
        s = uow.session
        problems: list[str] = []
        valid: list[tuple[int, SystemIn]] = []
        for row in rows:
            try:
                valid.append((row.line, SystemIn.model_validate(row.values)))
            except ValidationError as exc:
                problems.extend(f"line {row.line}: {p}" for p in _describe(exc))

        # Owners and names are checked on every row, valid or not, so one pass finds everything.
        raw_owner = {r.line: r.values.get("owner", "").strip().lower() for r in rows}
        raw_name = {r.line: r.values.get("name", "").strip() for r in rows}
        owners = persons_by_email(s, (o for o in raw_owner.values() if o))
        existing = set(
            s.scalars(
                select(AISystem.name).where(AISystem.name.in_([n for n in raw_name.values() if n]))
            )
        )
        first_seen: dict[str, int] = {}
        for row in rows:
            owner, name = raw_owner[row.line], raw_name[row.line]
            if owner and "@" in owner and owner not in owners:
                problems.append(f"line {row.line}: owner: no person with email '{owner}'")
            if not name:
                continue
            if name in existing:
                problems.append(
                    f"line {row.line}: name: an AI system named '{name}' already exists"
                )
            elif name in first_seen:
                problems.append(
                    f"line {row.line}: name: duplicate name '{name}' (first on line "
                    f"{first_seen[name]})"
                )
            else:
                first_seen[name] = row.line
        if problems:
            line_of = [int(p.split(":", 1)[0].removeprefix("line ")) for p in problems]
            ordered = [
                p for _, p in sorted(zip(line_of, problems, strict=True), key=lambda x: x[0])
            ]
            raise ImportRejected(ordered, source, bad_rows=len(set(line_of)))

        vendors: dict[str, Vendor] = {}
        systems = []
        for i, (_, d) in enumerate(valid, 1):
            system = AISystem(
                name=d.name,
                purpose=d.purpose,
                owner=owners[d.owner],
                risk_tier=d.risk_tier,
                criticality=d.criticality,
                vendor=_vendor(s, d.vendor, vendors),
            )
            s.add(system)
            systems.append(system)
            uow.audit(actor, "system.imported", f"system:{d.name}", source=source)
            if progress and i % 100 == 0:
                progress(100)
        s.flush()
        out = [system_out(x) for x in systems]
        uow.commit()
    if progress:
        progress(len(valid) % 100)
    return out


def _describe(exc: ValidationError) -> list[str]:
    """Pydantic's errors as `field: problem`, worded for someone fixing a spreadsheet."""
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "row"
        if err["type"] == "missing" or err.get("input") in ("", None):
            msg = "missing"
        elif err["type"] == "enum":
            msg = f"'{err['input']}' is not one of {err['ctx']['expected']}"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{field}: {msg}")
    return out


def count_systems(uow: UnitOfWork) -> int:
    with uow.read():
        return uow.session.scalar(select(func.count()).select_from(AISystem)) or 0
