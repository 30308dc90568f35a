"""The AI system inventory: add, list, show, and bulk import from CSV or Excel."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydantic import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, joinedload

from aims_core.errors import Conflict, ImportRejected, InvalidInput, NotFound
from aims_core.importing import RawRow
from aims_core.models import AISystem, Vendor
from aims_core.schemas import SystemIn, SystemOut
from aims_core.services.people import get_person, persons_by_email
from aims_core.system_keys import derive_key, key_problem
from aims_core.uow import Actor, UnitOfWork

IMPORT_COLUMNS = ("name", "owner", "purpose", "risk_tier", "criticality", "vendor", "key")
REQUIRED_COLUMNS = IMPORT_COLUMNS[:5]
OPTIONAL_COLUMNS = IMPORT_COLUMNS[5:]


def system_out(s: AISystem) -> SystemOut:
    return SystemOut(
        id=s.id,
        name=s.name,
        display_name=s.display_name,
        purpose=s.purpose,
        owner=s.owner.email,
        owner_name=s.owner.name,
        risk_tier=s.risk_tier,
        criticality=s.criticality,
        lifecycle_stage=s.lifecycle_stage,
        vendor=s.vendor.name if s.vendor else None,
    )


def get_system(session: Session, name: str, field: str = "system") -> AISystem:
    """The system a person names: by its key; failing that, its key in another case, its exact
    display name (people type what they see), then the key that text derives to (`Evaluation
    credit` finds `evaluation-credit`). Two systems equally matched are refused, not guessed."""
    text = name.strip()
    system = session.scalar(select(AISystem).where(AISystem.name == text))
    if system is not None:  # the common path: one indexed lookup, as before display names
        return system
    lowered, derived = text.lower(), derive_key(text)
    found = session.scalars(
        select(AISystem).where(
            or_(
                AISystem.name.in_({lowered, derived} - {""}),
                func.lower(AISystem.name) == lowered,  # a key from before keys were lowercase
                AISystem.display_name == text,
            )
        )
    ).all()
    for matches in (
        lambda s: s.name.lower() == lowered,
        lambda s: s.display_name == text,
        lambda s: s.name == derived,
    ):
        best = sorted((s for s in found if matches(s)), key=lambda s: s.name)
        if len(best) > 1:
            keys = ", ".join(s.name for s in best)
            raise InvalidInput(f"'{text}' could name AI systems {keys}: give its key", field=field)
        if best:
            return best[0]
    raise NotFound(f"no AI system named '{name}' (see `aims systems list`)", field=field)


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
        taken = _keys_taken(s, [data.key]).get(data.key)
        if taken is not None:
            field, what = _clash(data.key, data.name, given=derive_key(data.name) != data.key)
            raise Conflict(
                f"{what} already exists: it is the key of AI system '{taken}'; give another "
                "name or key",
                field=field,
            )
        system = AISystem(
            name=data.key,
            display_name=data.name,
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

        # Owners and keys are checked on every row, valid or not, so one pass finds everything.
        raw_owner = {r.line: r.values.get("owner", "").strip().lower() for r in rows}
        keyed = {line: d for line, d in valid}
        row_key = {r.line: _row_key(r.values, keyed.get(r.line)) for r in rows}
        owners = persons_by_email(s, (o for o in raw_owner.values() if o))
        taken = _keys_taken(s, [k[0] for k in row_key.values() if k])
        first_seen: dict[str, tuple[int, str]] = {}
        for row in rows:
            owner = raw_owner[row.line]
            if owner and "@" in owner and owner not in owners:
                problems.append(f"line {row.line}: owner: no person with email '{owner}'")
            if (key_name := row_key[row.line]) is None:
                continue
            key, name = key_name
            field, what = _clash(key, name, given=bool(row.values.get("key", "").strip()))
            if key in taken:
                problems.append(
                    f"line {row.line}: {field}: {what} already exists: it is the key of AI "
                    f"system '{taken[key]}'"
                )
            elif key in first_seen:
                line, other = first_seen[key]
                problems.append(
                    f"line {row.line}: {field}: duplicate {field}: {what} is also the key of "
                    f"line {line} ('{other}')"
                )
            else:
                first_seen[key] = (row.line, name)
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
                name=d.key,
                display_name=d.name,
                purpose=d.purpose,
                owner=owners[d.owner],
                risk_tier=d.risk_tier,
                criticality=d.criticality,
                vendor=_vendor(s, d.vendor, vendors),
            )
            s.add(system)
            systems.append(system)
            uow.audit(actor, "system.imported", f"system:{d.key}", name=d.name, source=source)
            if progress and i % 100 == 0:
                progress(100)
        s.flush()
        out = [system_out(x) for x in systems]
        uow.commit()
    if progress:
        progress(len(valid) % 100)
    return out


def _row_key(values: dict[str, str], valid: SystemIn | None) -> tuple[str, str] | None:
    """(key, display name) of a row, valid or not, so a clash is found beside other problems;
    None when neither a key nor a name gives one (that row's own problem says why)."""
    name = values.get("name", "").strip()
    if valid is not None:
        return valid.key, valid.name
    given = values.get("key", "").strip()
    key = (given if key_problem(given) is None else "") if given else derive_key(name)
    return (key, name) if key else None


def _clash(key: str, name: str, given: bool) -> tuple[str, str]:
    """Which field a key clash is the fault of, and the key as it says it: a given key as such;
    a derived one with the name it came from (`key 'evaluation-credit' (from 'Évaluation
    crédit')`), since the name is what a person changes."""
    if given:
        return "key", f"'{key}'"
    return "name", f"key '{key}'" + (f" (from '{name}')" if name != key else "")


def _keys_taken(session: Session, keys: list[str]) -> dict[str, str]:
    """Existing systems whose key is one of `keys` in any case (keys from before the key rule
    may have capitals), as lowercased key → display name."""
    wanted = {k.lower() for k in keys if k}
    if not wanted:
        return {}
    rows = session.execute(
        select(AISystem.name, AISystem.display_name).where(func.lower(AISystem.name).in_(wanted))
    )
    return {key.lower(): display for key, display in rows if key.lower() in wanted}


def _describe(exc: ValidationError) -> list[str]:
    """Pydantic's errors as `field: problem`, worded for someone fixing a spreadsheet."""
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "row"
        if err["type"] == "missing" or (
            err.get("input") in ("", None) and err["type"] != "value_error"  # ours say more
        ):
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
