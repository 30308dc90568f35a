"""`aims vendor`: Third-party AI vendors and their reassessments (A.10).

Only records: no engine needed. The monthly `vendor-reassessment` run opens the reassessments
that fall due; `aims vendor tick` runs the same pass now.
"""

from __future__ import annotations

from pathlib import Path

import typer

from aims_core.cli._base import print_json, print_table
from aims_core.services import vendors
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(
    no_args_is_help=True, help="Third-party AI vendors and their reassessments (A.10)."
)


def _day(value: object) -> str:
    return f"{value:%Y-%m-%d}" if value else "-"


@app.command("add")
def add(
    name: str = typer.Argument(...),
    criticality: str = typer.Option(..., "--criticality", help="low, medium, high or critical."),
    services: str = typer.Option("", "--services", help="What the vendor provides."),
    owner: str = typer.Option(..., "--owner", metavar="EMAIL", help="Who manages the vendor."),
    contact: str = typer.Option("", "--contact", help="The vendor's contact."),
) -> None:
    """Register a vendor (or complete one an AI system already names)."""
    v = vendors.add_vendor(
        UnitOfWork(),
        {
            "name": name,
            "criticality": criticality,
            "services": services,
            "owner": owner,
            "contact": contact,
        },
        Actor.cli(),
    )
    typer.echo(
        f"registered vendor {v.name} ({v.criticality.value}, reassessed every "
        f"{v.reassess_every_months} months); next assessment due {_day(v.next_due)}"
    )


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Vendors with their criticality, last assessment, next due date and open reassessment."""
    rows = vendors.list_vendors(UnitOfWork())
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Vendors ({len(rows)})",
        ["vendor", "criticality", "owner", "systems", "last assessed", "next due", "open"],
        [
            (
                v.name,
                v.criticality.value,
                v.owner or "-",
                ", ".join(v.systems),
                _day(v.last_assessed_at) if v.last_assessed_at else "never",
                _day(v.next_due) + (" (due)" if v.overdue else ""),
                f"#{v.open_assessment.id} since {_day(v.open_assessment.due_at)}"
                if v.open_assessment
                else "",
            )
            for v in rows
        ],
    )


@app.command("assess")
def assess(
    name: str = typer.Argument(...),
    result: str = typer.Option(..., "--result", help="acceptable, conditional or unacceptable."),
    notes: str = typer.Option(..., "--notes", help="What was assessed and found."),
    evidence: Path | None = typer.Option(None, "--evidence", help="A file to keep as evidence."),
    as_: str = typer.Option(..., "--as", metavar="EMAIL", help="The assessor."),
) -> None:
    """Record an assessment: completes the open reassessment, or records a new one."""
    a = vendors.assess(
        UnitOfWork(),
        name,
        {"result": result, "notes": notes, "assessor": as_, "evidence_file": evidence},
        Actor.cli(),
    )
    v = vendors.get_vendor(UnitOfWork(), name)
    typer.echo(
        f"assessment {a.id} of {a.vendor}: {a.result} (evidence #{a.evidence_id}); "
        f"next due {_day(v.next_due)}"
    )


@app.command("tick")
def tick() -> None:
    """Run the monthly pass now: open the reassessments that are due, tell their people."""
    report = vendors.tick(get_settings())
    typer.echo(f"vendor reassessment: {report.summary()}")
    for name in report.opened:
        typer.echo(f"  opened: {name}")
    for f in report.failures:
        typer.echo(f"  failed vendor {f.id}: {f.error}", err=True)
