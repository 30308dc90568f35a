"""The `aims` command line. Commands call services; no Prefect is imported here at start-up,
so `aims --help` stays fast (the engine commands import flows lazily)."""

from __future__ import annotations

import typer

from aims_core.cli import (
    approvals_cmd,
    audit_cmd,
    bridge_cmd,
    capa_cmd,
    catalog_cmd,
    config_cmd,
    context_cmd,
    db_cmd,
    demo_cmd,
    drill_cmd,
    evidence_cmd,
    gap_cmd,
    gate_cmd,
    impact_cmd,
    incident_cmd,
    intake_cmd,
    notifications_cmd,
    people_cmd,
    policy_cmd,
    raci_cmd,
    review_cmd,
    risks_cmd,
    soa_cmd,
    status_cmd,
    system_events_cmd,
    systems_cmd,
    training_cmd,
    up_cmd,
    vendor_cmd,
)
from aims_core.cli._base import AimsGroup

app = typer.Typer(
    cls=AimsGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="AIMS Flow: an ISO/IEC 42001 AI Management System run as Prefect flows.",
)
app.command("init")(db_cmd.init)
app.add_typer(config_cmd.app, name="config")
app.add_typer(db_cmd.app, name="db")
app.add_typer(catalog_cmd.app, name="catalog")
app.add_typer(soa_cmd.app, name="soa")
app.add_typer(people_cmd.app, name="people")
systems_cmd.app.command("event")(system_events_cmd.event)
app.add_typer(systems_cmd.app, name="systems")
app.add_typer(risks_cmd.app, name="risks")
app.add_typer(raci_cmd.app, name="raci")
app.add_typer(evidence_cmd.app, name="evidence")
app.add_typer(gate_cmd.app, name="gate")
app.add_typer(impact_cmd.app, name="impact")
app.add_typer(gap_cmd.app, name="gap")
app.add_typer(gap_cmd.plan_app, name="plan")
app.add_typer(demo_cmd.app, name="demo")
app.add_typer(approvals_cmd.app, name="approvals")
app.command("approve")(approvals_cmd.approve)
app.command("reject")(approvals_cmd.reject)
app.add_typer(notifications_cmd.app, name="notifications")
app.command("bridge")(bridge_cmd.bridge)
app.command("up")(up_cmd.up)
app.add_typer(capa_cmd.app, name="capa")
incident_cmd.app.command("report")(intake_cmd.report)
incident_cmd.app.command("drill")(drill_cmd.drill)
incident_cmd.app.command("playbooks")(drill_cmd.playbooks)
incident_cmd.app.command("resume")(drill_cmd.resume)
app.add_typer(incident_cmd.app, name="incident")
app.add_typer(incident_cmd.incidents_app, name="incidents")
app.add_typer(training_cmd.app, name="training")
app.add_typer(policy_cmd.app, name="policy")
app.add_typer(vendor_cmd.app, name="vendor")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(review_cmd.app, name="review")
app.add_typer(context_cmd.app, name="context")
app.command("status")(status_cmd.status)


def main() -> None:
    from aims_core.cli.engine import adopt_running_engine

    adopt_running_engine()
    app()
