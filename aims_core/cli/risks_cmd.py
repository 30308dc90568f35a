"""`aims risks`: the AI risk register, treatment, and starting a risk assessment."""

from __future__ import annotations

import typer

from aims_core.cli._base import print_json, print_table
from aims_core.errors import InvalidInput
from aims_core.models import RiskTier, TreatmentOption
from aims_core.rules.risk import risk_policy
from aims_core.services import risks, system_events
from aims_core.services.risks import RiskIn, RiskOut, TreatmentIn, Trigger
from aims_core.services.systems import show_system
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork

app = typer.Typer(
    no_args_is_help=True,
    help="The AI risk register (6.1.2) and risk treatment (6.1.3); scales, appetite and who "
    "accepts come from the risk policy.",
)


@app.command("add")
def add(
    system: str = typer.Argument(..., help="The AI system's name."),
    title: str = typer.Option(..., "--title", help="One line naming the risk."),
    likelihood: int = typer.Option(..., "--likelihood", help="On the policy's likelihood scale."),
    impact: int = typer.Option(..., "--impact", help="On the policy's impact scale."),
    owner: str = typer.Option(..., "--owner", metavar="EMAIL", help="Who owns the risk."),
    description: str = typer.Option("", "--description", help="What could happen, to whom."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """Register a risk of an AI system; its score follows the risk policy."""
    data = RiskIn(
        system=system,
        title=title,
        description=description,
        owner=owner,
        likelihood=likelihood,
        impact=impact,
    )
    out = risks.add_risk(UnitOfWork(), data, Actor.cli())
    if as_json:
        print_json(out)
        return
    typer.echo(
        f"added risk {out.id} on {out.system}: {out.title} — score {out.score} {out.level} "
        f"({out.likelihood} {out.likelihood_label} x {out.impact} {out.impact_label})"
        + (", above appetite" if out.above_appetite else "")
    )


@app.command("list")
def list_(
    system: str | None = typer.Option(None, "--system", help="Only this system's risks."),
    above_appetite: bool = typer.Option(
        False, "--above-appetite", help="Only risks whose current score exceeds the appetite."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the register: score, treatment, residual score and status."""
    rows = risks.list_risks(UnitOfWork(), system=system, above_appetite=above_appetite)
    if as_json:
        print_json(rows)
        return
    appetite = risk_policy(get_settings()).appetite
    print_table(
        f"AI risks ({len(rows)}; appetite {appetite})",
        ["id", "system", "title", "owner", "score", "treatment", "residual", "status"],
        [
            (
                r.id,
                r.system,
                r.title,
                r.owner,
                f"{r.score} {r.level}",
                r.treatment.value if r.treatment else "-",
                r.residual_text + (" !" if r.above_appetite else ""),
                _status(r),
            )
            for r in rows
        ],
    )
    if any(r.above_appetite for r in rows):
        typer.echo(f"! above the appetite of {appetite}")


def _status(r: RiskOut) -> str:
    if r.acceptance_request_id is not None:
        return f"{r.status.value} (request {r.acceptance_request_id})"
    return r.status.value


@app.command("treat")
def treat(
    risk_id: int = typer.Argument(..., metavar="RISK", help="The risk's id."),
    option: TreatmentOption = typer.Option(..., "--option", help="How the risk is treated."),
    justification: str = typer.Option(..., "--justification", help="Why this treatment."),
    residual_likelihood: int | None = typer.Option(
        None, "--residual-likelihood", help="Likelihood after treatment (default: unchanged)."
    ),
    residual_impact: int | None = typer.Option(
        None, "--residual-impact", help="Impact after treatment (default: unchanged)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the record as JSON."),
) -> None:
    """Choose a treatment (avoid, mitigate, transfer, accept) and say why.

    Accepting a risk above appetite needs the policy's approvers: `aims risks assess` asks them.
    """
    data = TreatmentIn(
        risk_id=risk_id,
        option=option,
        justification=justification,
        residual_likelihood=residual_likelihood,
        residual_impact=residual_impact,
    )
    out = risks.treat_risk(UnitOfWork(), data, Actor.cli())
    if as_json:
        print_json(out)
        return
    typer.echo(
        f"risk {out.id} on {out.system}: {option.value}, residual {out.residual_text} — "
        f"{out.status.value}"
    )
    if out.status == "awaiting-acceptance":
        acceptance = risk_policy(get_settings()).acceptance
        typer.echo(
            f"the residual score is above the appetite: accepting it needs approval by "
            f"{', '.join(acceptance.approver_roles)} (quorum {acceptance.quorum}); ask with "
            f"`aims risks assess {out.system}`"
        )


@app.command("assess")
def assess(
    system: str = typer.Argument(..., help="The AI system's name."),
    event: int | None = typer.Option(
        None, "--event", metavar="ID", help="The system event this assessment answers."
    ),
) -> None:
    """Start a risk assessment run of a system (needs the engine); prints its id and UI link."""
    uow = UnitOfWork()
    target = show_system(uow, system)
    trigger: Trigger = "manual"
    if event is not None:
        recorded = system_events.get_event(uow, event)
        if recorded.system != target.name:
            raise InvalidInput(f"event {event} is about {recorded.system}", field="event")
        trigger = recorded.kind.value  # type: ignore[assignment]
    tier = target.risk_tier
    run_id, name, url = start_assessment(system, tier, trigger, event)
    typer.echo(f"started run {name} ({run_id})\n{url}")


def start_assessment(
    system: str, tier: RiskTier, trigger: Trigger, event_id: int | None
) -> tuple[str, str, str]:
    """Start the `risk-assessment` deployment run; EngineNotRunning when it cannot."""
    from aims_core.cli.engine import start_run

    spec = risks.assessment_run(system, tier, trigger, event_id)
    run_id, name, url = start_run(spec.deployment, spec.parameters, name=spec.name, tags=spec.tags)
    if event_id is not None:
        system_events.attach_run(UnitOfWork(), event_id, run_id, Actor.cli())
    return run_id, name, url
