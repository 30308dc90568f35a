"""`aims gate policy/check/request/list/show`: life-cycle stage gates.

`check`, `list`, `show` and `policy` read records and need no engine; `request` starts the
`stage-gate` process as a deployment run (Prefect is imported only then).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from aims_core import processes
from aims_core.cli._base import print_json, print_table
from aims_core.rules.gate import GATES, GatePolicy, load_policy, policy_for
from aims_core.services import gates
from aims_core.services.gates import Checklist
from aims_core.settings import get_settings
from aims_core.uow import UnitOfWork

app = typer.Typer(no_args_is_help=True, help="Life-cycle stage gates: policy, checks, requests.")

STAGE_HELP = f"The stage to enter: {', '.join(s.value for s in GATES)}."


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


@app.command("policy")
def policy(
    file: Path | None = typer.Option(
        None, "--file", help="A policy file to read instead of the one in force."
    ),
    check: bool = typer.Option(False, "--check", help="Only validate; print whether it is valid."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show or validate a gate policy.

    Without --file: the policy in force (AIMS_GATE_POLICY_FILE, else the packaged one). With
    --check, every problem is listed with its line and path, and the exit code is 2 if any."""
    loaded = load_policy(file) if file is not None else policy_for(get_settings())
    if check:
        rules = sum(len(by_tier) for by_tier in loaded.gates.values())
        typer.echo(f"gate policy {loaded.source} is valid: {rules} rules over {len(GATES)} gates")
    elif as_json:
        print_json(loaded)
    else:
        _print_policy(loaded)


def _print_policy(p: GatePolicy) -> None:
    rows = []
    for stage in GATES:
        entered = ", ".join(s.value for s in p.entered_from(stage))
        for tier, rule in p.gates.get(stage, {}).items():
            evidence = ", ".join(f"{e.kind} ({e.control})" for e in rule.evidence)
            rows.append(
                (
                    f"{entered} → {stage.value}",
                    tier.value,
                    evidence or "(approval only)",
                    f"{rule.quorum} of {', '.join(rule.approvers)}",
                )
            )
    print_table(
        f"Gate policy: {p.source}", ["gate", "tier", "evidence (control)", "approvals"], rows
    )
    for tier, ceiling in p.ceilings.items():
        typer.echo(f"{tier.value}: never beyond {ceiling.stage.value} ({ceiling.reason})")


@app.command("check")
def check(
    system: str = typer.Argument(..., help="The AI system."),
    to: str = typer.Option(..., "--to", help=STAGE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What a gate demands and what the evidence store holds (no engine needed).

    Exit code 0 when the gate is ready for approval, 1 when evidence is missing or the policy
    refuses it."""
    checklist = gates.check_gate(UnitOfWork(), system, to)
    if as_json:
        print_json(checklist)
    else:
        _print_checklist(checklist)
    if checklist.status != "ready":
        raise typer.Exit(1)


def _print_checklist(c: Checklist) -> None:
    typer.echo(f"gate {c.gate} ({c.tier.value} risk; policy {c.policy})")
    if c.items:
        print_table(
            "Evidence",
            ["", "kind", "control", "records"],
            [
                (
                    "ok" if i.present else "MISSING",
                    i.kind + (f" ({i.note})" if i.note else ""),
                    f"{i.control} {i.control_title}",
                    (", ".join(f"#{e}" for e in i.evidence_ids) or "-")
                    + "".join(f"; not verified {u}" for u in i.unverified),
                )
                for i in c.items
            ],
        )
    if c.status == "ready":
        typer.echo(f"approvals: {c.quorum} of the roles {', '.join(c.approver_roles)}")
    typer.echo(c.summary())


@app.command("request")
def request(
    system: str = typer.Argument(..., help="The AI system."),
    to: str = typer.Option(..., "--to", help=STAGE_HELP),
    requester: str | None = typer.Option(
        None, "--requester", metavar="EMAIL", help="Who asks (never one of the approvers)."
    ),
) -> None:
    """Start a stage-gate run; prints its id and UI link.

    The run checks the evidence, asks the approvers the policy names (or ends at once, recorded,
    when evidence is missing or the policy refuses), and on approval moves the system."""
    from aims_core.cli.engine import known_person, start_run

    uow = UnitOfWork()
    checklist = gates.check_gate(uow, system, to)  # a bad system, stage or move: nothing started
    requester = known_person(requester, "--requester")
    run_id, name, url = start_run(
        processes.STAGE_GATE.id,
        {"system": checklist.system, "to_stage": checklist.to_stage.value, "requester": requester},
        name=gates.gate_run_name(uow, checklist.system, checklist.to_stage),
        # the tags the run adds itself (tasks/run_tags.py), so it needs no API call for them
        tags=["gate", checklist.system, checklist.tier.value, f"tier:{checklist.tier.value}"],
    )
    typer.echo(f"started run {name} ({run_id})\n{url}")
    if checklist.status != "ready":
        typer.echo(f"{checklist.summary()}: the run records it and asks nobody to approve")


@app.command("list")
def list_(
    system: str | None = typer.Option(None, "--system", help="Only this system's gates."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Gate reviews, newest first."""
    rows = gates.list_reviews(UnitOfWork(), system=system)
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Gate reviews ({len(rows)})",
        ["id", "gate", "status", "outcome", "request", "requested by", "at"],
        [
            (
                r.id,
                r.checklist.gate,
                r.status.value,
                r.summary(),
                r.request_id or "-",
                r.requested_by,
                _when(r.decided_at or r.created_at),
            )
            for r in rows
        ],
    )


@app.command("show")
def show(
    review_id: int = typer.Argument(..., metavar="ID", help="The gate review id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One gate review: its checklist as it was requested, and the decision."""
    review = gates.get_review(UnitOfWork(), review_id)
    if as_json:
        print_json(review)
    else:
        typer.echo(review.markdown())
