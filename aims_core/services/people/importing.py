"""`aims people import FILE`: many people at once, all or nothing, every bad line named.

The same rules and message style as the systems import (`services.systems.import_systems`):
`line N: field: problem`, sorted by line, nothing written when any line is bad. A manager may be
someone already in AIMS or anyone in the file, above or below.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError
from sqlalchemy import select

from aims_core.errors import ImportRejected
from aims_core.importing import RawRow
from aims_core.models import Person, Role
from aims_core.schemas import PersonOut
from aims_core.services.people.records import person_out, persons_by_email
from aims_core.services.people.schemas import PersonImportRow
from aims_core.uow import Actor, UnitOfWork

__all__ = ["IMPORT_COLUMNS", "REQUIRED_COLUMNS", "import_people"]

IMPORT_COLUMNS = ("email", "name", "roles", "manager", "slack_id")
REQUIRED_COLUMNS = IMPORT_COLUMNS[:2]


def import_people(
    uow: UnitOfWork, rows: Iterable[RawRow], actor: Actor, source: str
) -> list[PersonOut]:
    """Validate every row first (each problem with its line), then add all people, or none."""
    rows = list(rows)
    with uow:
        s = uow.session
        problems: list[tuple[int, str]] = []
        valid: list[tuple[int, PersonImportRow]] = []
        for row in rows:
            try:
                valid.append((row.line, PersonImportRow.model_validate(row.values)))
            except ValidationError as exc:
                problems += [(row.line, p) for p in _describe(exc)]

        # Emails, managers, roles and Slack ids are checked on every row, valid or not.
        raw = {r.line: {k: r.values.get(k, "").strip() for k in IMPORT_COLUMNS} for r in rows}
        email_of = {line: v["email"].lower() for line, v in raw.items()}
        existing = persons_by_email(s, [e for e in email_of.values() if e])
        in_file: dict[str, int] = {}
        for line, email in email_of.items():
            if not email:
                continue
            if email in existing:
                problems.append((line, f"email: a person with email '{email}' already exists"))
            elif email in in_file:
                problems.append(
                    (line, f"email: duplicate email '{email}' (first on line {in_file[email]})")
                )
            else:
                in_file[email] = line
        known_roles = list(s.scalars(select(Role.id).order_by(Role.id)))
        managers = persons_by_email(s, [v["manager"] for v in raw.values() if v["manager"]])
        slack_owner = dict(
            s.execute(
                select(Person.slack_user_id, Person.email).where(
                    Person.slack_user_id.in_([v["slack_id"] for v in raw.values() if v["slack_id"]])
                )
            )
            .tuples()
            .all()
        )
        slack_first: dict[str, int] = {}
        for line, d in valid:
            for role in dict.fromkeys(d.roles):
                if role not in known_roles:
                    problems.append(
                        (line, f"roles: unknown role '{role}' (roles: {', '.join(known_roles)})")
                    )
            if d.manager is not None:
                if d.manager == d.email:
                    problems.append((line, "manager: a person cannot be their own manager"))
                elif d.manager not in managers and d.manager not in in_file:
                    problems.append(
                        (line, f"manager: no person with email '{d.manager}' (in AIMS or the file)")
                    )
            if d.slack_id is not None:
                if d.slack_id in slack_owner:
                    problems.append(
                        (
                            line,
                            f"slack_id: {d.slack_id} already belongs to {slack_owner[d.slack_id]}",
                        )
                    )
                elif d.slack_id in slack_first:
                    problems.append(
                        (
                            line,
                            f"slack_id: duplicate Slack id {d.slack_id} (first on line "
                            f"{slack_first[d.slack_id]})",
                        )
                    )
                else:
                    slack_first[d.slack_id] = line
        if problems:
            problems.sort(key=lambda p: p[0])
            raise ImportRejected(
                [f"line {line}: {p}" for line, p in problems],
                source,
                bad_rows=len({line for line, _ in problems}),
            )

        roles = {r.id: r for r in s.scalars(select(Role))}
        added = {
            d.email: Person(
                email=d.email,
                name=d.name,
                slack_user_id=d.slack_id,
                roles=[roles[r] for r in dict.fromkeys(d.roles)],
            )
            for _, d in valid
        }
        s.add_all(added.values())
        for _, d in valid:  # managers last: one may be further down the file
            if d.manager is not None:
                added[d.email].manager = added.get(d.manager) or managers[d.manager]
        s.flush()
        for _, d in valid:
            uow.audit(
                actor,
                "person.imported",
                f"person:{d.email}",
                source=source,
                roles=list(dict.fromkeys(d.roles)),
                manager=d.manager,
                slack_id=d.slack_id,
            )
        out = [person_out(p) for p in added.values()]
        uow.commit()
    return out


def _describe(exc: ValidationError) -> list[str]:
    """Pydantic's errors as `field: problem`, worded for someone fixing a spreadsheet (as the
    systems import words them)."""
    out = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "row"
        if err["type"] == "missing" or err.get("input") in ("", None):
            msg = "missing"
        elif err["type"] == "extra_forbidden":
            msg = "not a column of a people file"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{field}: {msg}")
    return out
