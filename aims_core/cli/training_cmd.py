"""`aims training`: Training requirements, records and the competence matrix (7.2, 7.3, A.4.6).

Records only: nothing here needs the engine. The daily pass that reminds and escalates runs as
the `training-renewal` deployment; `aims training tick` runs the same pass now.
"""

from __future__ import annotations

from pathlib import Path

import typer

from aims_core.cli._base import print_json, print_table
from aims_core.services import training
from aims_core.services.training import MatrixRow, Status
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(
    no_args_is_help=True,
    help="Training requirements, records and the competence matrix (7.2, 7.3, A.4.6).",
)


@app.command("catalog")
def catalog_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The trainings an AIMS needs: validity, the controls each serves, the roles that require
    it by default."""
    cat = training.training_catalog(get_settings())
    if as_json:
        print_json(cat)
        return
    print_table(
        f"Training catalog ({len(cat.trainings)})",
        ["id", "title", "valid (days)", "controls", "default for roles"],
        [
            (
                t.id,
                t.title,
                t.validity_days,
                ", ".join(t.controls),
                ", ".join(cat.roles_requiring(t.id)),
            )
            for t in cat.trainings
        ],
    )


@app.command("require")
def require(
    role: str = typer.Argument(..., metavar="ROLE", help="A role id (aims_core/data/roles.yaml)."),
    training_id: str = typer.Argument(..., metavar="TRAINING", help="A training id (catalog)."),
    validity_days: int | None = typer.Option(
        None, "--validity-days", help="Days a completion counts (default: the catalog's)."
    ),
) -> None:
    """Require a training of every holder of a role."""
    out = training.require(
        UnitOfWork(),
        {"role": role, "training": training_id, "validity_days": validity_days},
        Actor.cli(),
    )
    verb = "now requires" if out.changed else "already requires"
    typer.echo(f"{out.role} {verb} {out.title} ({out.training}), valid {out.validity_days} days")


@app.command("require-defaults")
def require_defaults() -> None:
    """Apply the catalog's default trainings per role (only what is missing or differs)."""
    out = training.require_defaults(UnitOfWork(), Actor.cli())
    changed = [r for r in out if r.changed]
    typer.echo(f"{len(changed)} requirement(s) added or changed, {len(out) - len(changed)} kept")


@app.command("requirements")
def requirements(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The requirements in force, by role."""
    rows = training.list_requirements(UnitOfWork())
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Training requirements ({len(rows)})",
        ["role", "training", "title", "valid (days)"],
        [(r.role, r.training, r.title, r.validity_days) for r in rows],
    )


@app.command("record")
def record(
    email: str = typer.Argument(..., metavar="EMAIL", help="Who completed it."),
    training_id: str = typer.Argument(..., metavar="TRAINING", help="A training id (catalog)."),
    completed: str = typer.Option(..., "--completed", metavar="YYYY-MM-DD", help="Completed on."),
    expires: str | None = typer.Option(
        None,
        "--expires",
        metavar="YYYY-MM-DD",
        help="Expires on (default: completed + the required validity).",
    ),
    evidence: Path | None = typer.Option(
        None, "--evidence", metavar="FILE", help="Certificate or attendance record."
    ),
    note: str = typer.Option("", "--note", help="A line about the completion."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """Record a completed training (a renewal is a new record: it counts at once)."""
    out = training.record(
        UnitOfWork(),
        {
            "email": email,
            "training": training_id,
            "completed": completed,
            "expires": expires,
            "evidence": evidence,
            "note": note,
        },
        Actor.cli(),
    )
    if as_json:
        print_json(out)
        return
    head = "already recorded" if out.replayed else "recorded"
    typer.echo(
        f"{head}: {out.email} completed {out.title} ({out.training}), expires on "
        f"{out.expires_on} (record {out.id}, evidence {out.evidence_id})"
    )


def _cell(r: MatrixRow) -> str:
    match r.status:
        case Status.missing:
            return "MISSING"
        case Status.expired:
            return f"EXPIRED {r.expires_on}"
        case Status.expiring:
            return f"expiring {r.expires_on} ({r.days_left} d)"
        case _:
            return f"ok to {r.expires_on}"


@app.command("status")
def status(
    person: str | None = typer.Option(None, "--person", metavar="EMAIL", help="One person."),
    role: str | None = typer.Option(None, "--role", help="Holders of one role, its trainings."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one row per training)."),
    xlsx: Path | None = typer.Option(
        None,
        "--xlsx",
        dir_okay=False,
        help="Also write the whole matrix as a workbook (a sheet per role).",
    ),
) -> None:
    """The competence matrix: who has which required training current, expiring, expired or
    missing (expired ones may not approve)."""
    uow = UnitOfWork()
    rows = training.matrix(uow, person=person, role=role)
    if xlsx is not None:
        training.export_xlsx(uow, xlsx)
    if as_json:
        print_json(rows)
    else:
        trainings = list(dict.fromkeys(r.training for r in sorted(rows, key=lambda r: r.training)))
        people = list(dict.fromkeys(r.email for r in rows))
        cells = {(r.email, r.training): _cell(r) for r in rows}
        print_table(
            f"Competence matrix ({len(people)} people, {len(rows)} required trainings)",
            ["person", *trainings],
            [(p, *(cells.get((p, t), "") for t in trainings)) for p in people],
        )
        counts = {s: sum(1 for r in rows if r.status is s) for s in Status}
        typer.echo(", ".join(f"{n} {s.value}" for s, n in counts.items()))
    if xlsx is not None:
        typer.echo(f"wrote {xlsx}", err=as_json)


@app.command("tick")
def tick(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """One daily pass now: remind before expiry, escalate expired trainings (the engine runs it
    every morning as the training-renewal deployment). Messages go out with the next delivery."""
    report = training.tick(get_settings())
    if as_json:
        print_json(report)
    else:
        typer.echo(report.summary())
