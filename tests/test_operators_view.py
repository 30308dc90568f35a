"""The operators' view in the Prefect UI: every run readably named and tagged, every flow
publishing what it did, every wait with a form that says what is asked and how to answer.

Fast static checks over `deployments.serve.all_deployments()` and the flow modules' source, tag
vocabulary checks on the demo organisation, and one end-to-end run on the session's engine: a
risk assessment started as the UI starts it (no name, no tags) that tags itself, publishes its
artifacts and waits with a clear resume form. It uses doc-summariser (gpai tier), which no other
flow test touches.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import time
from pathlib import Path
from types import ModuleType

from prefect_fixtures import (
    engine_cli,
    read_run,
    resume_with,
    run_artifacts,
    wait_for_pause,
    wait_for_state,
)
from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.models import Risk, RiskStatus
from aims_core.services import risks
from aims_core.services.approvals import ApprovalRequestIn
from aims_core.services.reconcile import wait_key
from aims_core.services.risks import RiskIn, TreatmentIn
from aims_core.uow import Actor, UnitOfWork
from tasks.run_tags import approval_tags, system_tags

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = "doc-summariser"  # gpai tier in the demo organisation
GOVERNANCE = "governance@northwind.example"  # risk-manager, Accountable for risk-assessment
DS = "ds.lead@northwind.example"
ACTOR = Actor(who="e2e", channel="test")


def _deployments():  # type: ignore[no-untyped-def]
    from deployments.serve import all_deployments

    return all_deployments()


def _flow_of(entrypoint: str):  # type: ignore[no-untyped-def]
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def _module_sources() -> dict[str, ast.Module]:
    """Every flow and shared-task module, parsed."""
    files = sorted((ROOT / "flows").glob("*.py")) + sorted((ROOT / "tasks").glob("*.py"))
    return {str(f.relative_to(ROOT)): ast.parse(f.read_text("utf-8")) for f in files}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    def called(node: ast.Call) -> str | None:
        f = node.func
        return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None

    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and called(n) == name]


def _has_description(call: ast.Call) -> bool:
    return any(k.arg == "description" for k in call.keywords)


# --- static: names, tags, artifacts, forms -------------------------------------------------------


def test_every_deployment_is_tagged_aims_and_its_process() -> None:
    deployments = _deployments()
    assert len(deployments) >= 16
    names = [d.name for d in deployments]
    assert len(names) == len(set(names)), names
    for d in deployments:
        assert d.tags[0] == "aims", (d.name, d.tags)
        process = [t for t in d.tags if t != "aims"]
        assert process, f"{d.name}: no process tag"
        assert all(t == t.lower() and " " not in t for t in process), (d.name, d.tags)


def test_every_flow_names_its_runs() -> None:
    """No run gets Prefect's random name (`witty-lemur`): each flow has a name function or a
    template with parameters."""
    for d in _deployments():
        flow = _flow_of(d.entrypoint)
        name = flow.flow_run_name
        assert name is not None, f"{d.name}: runs get a random name"
        assert callable(name) or "{" in name, f"{d.name}: every run has the same name"


def test_every_flow_publishes_an_artifact() -> None:
    for d in _deployments():
        flow = _flow_of(d.entrypoint)
        module: ModuleType = inspect.getmodule(flow.fn)  # type: ignore[assignment]
        tree = ast.parse(inspect.getsource(module))
        made = [
            c
            for kind in ("markdown", "table", "link")
            for c in _calls(tree, f"create_{kind}_artifact")
        ]
        assert made, f"{d.name}: publishes no artifact"
        assert all(any(k.arg == "key" for k in c.keywords) for c in made), (
            f"{d.name}: an artifact without a key (the UI's Artifacts page lists keyed ones)"
        )


def test_every_wait_shows_a_form_that_says_what_is_asked() -> None:
    """Each `suspend_flow_run` waits for a form (a RunInput with a markdown description), built
    right there, by a helper of the same module, or by a form builder passed in (every form of
    the module has its description); none is a bare Resume button."""
    waits = 0
    for path, tree in _module_sources().items():
        for form in _calls(tree, "with_initial_data"):
            assert _has_description(form), f"{path}:{form.lineno}: a form without description"
        functions = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)]
        helpers = {f.name: f for f in functions}
        for fn in functions:
            params = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
            for call in _calls(fn, "suspend_flow_run"):
                waits += 1
                where = f"{path}:{call.lineno}"
                arg = next((k.value for k in call.keywords if k.arg == "wait_for_input"), None)
                assert isinstance(arg, ast.Call), f"{where}: waits without a form"
                func = arg.func
                if isinstance(func, ast.Attribute) and func.attr == "with_initial_data":
                    continue
                if (
                    isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name)
                    and func.value.id in params
                ):  # a shared wait (tasks/answers.py): the form builder comes with its argument,
                    # so every module calling this helper must build described forms
                    callers = [
                        other
                        for other, t in _module_sources().items()
                        if other != path and _calls(t, fn.name)
                    ]
                    assert callers, f"{where}: {fn.name} is called by no flow"
                    for other in callers:
                        assert _calls(_module_sources()[other], "with_initial_data"), (
                            f"{other}: calls {fn.name} but builds no form"
                        )
                    continue
                assert isinstance(func, ast.Name), f"{where}: unknown form"
                if func.id in params:  # a builder passed in: one of this module's forms
                    assert _calls(tree, "with_initial_data"), f"{where}: no form in the module"
                    continue
                assert func.id in helpers, f"{where}: unknown form {func.id}"
                built = _calls(helpers[func.id], "with_initial_data")
                assert built, f"{where}: {func.id} builds no described form"
    # Every human step is an ask, waited for in one loop (tasks/asks.py); the CAPA's sleep until
    # its verification falls due is the other wait. Finding fewer means the scan went blind.
    assert waits >= 2


# --- the tag vocabulary --------------------------------------------------------------------------


def _spec(subject: str, system: str | None = None) -> ApprovalRequestIn:
    return ApprovalRequestIn(
        idempotency_key=f"tags-{subject}",
        subject=subject,
        activity="approval",
        system=system,
        title="tags",
        approver_roles=["governance-lead"],
    )


def test_approval_runs_are_tagged_by_subject_system_and_tier(org: UnitOfWork) -> None:
    s = org.settings
    assert approval_tags(_spec(f"system:{SYSTEM}"), s) == ["approval", "system", SYSTEM, "gpai"]
    assert approval_tags(_spec("gate:7", "cv-screening"), s) == [
        "approval",
        "gate",
        "cv-screening",
        "high",
    ]
    assert approval_tags(_spec("policy:ai-policy"), s) == ["approval", "policy"]
    # The same bare values the CLI and intake tag runs with (risk assessment, incident).
    assert system_tags("marketing-recommender", s) == ["marketing-recommender", "minimal"]
    assert system_tags(None, s) == []
    assert system_tags("no-such-system", s) == ["no-such-system"]  # a tag never fails a run


# --- end to end: a run started from the UI -------------------------------------------------------


def _risk_above_appetite(engine) -> int:  # type: ignore[no-untyped-def]
    uow = UnitOfWork(engine.settings)
    risk = risks.add_risk(
        uow,
        RiskIn(system=SYSTEM, title="Summaries leak personal data", owner=DS, likelihood=4,
               impact=5),
        ACTOR,
    )  # fmt: skip
    risks.treat_risk(
        uow,
        TreatmentIn(risk_id=risk.id, option="accept", justification="Internal use only"),
        ACTOR,
    )
    return risk.id


def _form_description(run_id: str) -> str:
    """The markdown the UI shows above the Resume form of the run's current wait."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        keyset = run.state.state_details.run_input_keyset  # type: ignore[union-attr]
        assert keyset, "the wait has no form"
        deadline = time.monotonic() + 15
        while True:  # saved just after the run shows Suspended
            try:
                return client.read_flow_run_input(run_id, keyset["description"])
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)


def test_a_run_started_from_the_ui_is_named_tagged_explained_and_reported(engine) -> None:
    from prefect.deployments import run_deployment

    started_at = time.monotonic()
    risk_id = _risk_above_appetite(engine)
    # As the UI's "Quick run" starts it: parameters only, no name, no tags.
    run = run_deployment(
        "risk-assessment/risk-assessment", parameters={"system": SYSTEM}, timeout=0
    )
    run_id = str(run.id)
    wait_for_state(run_id, {"Suspended"})
    run, deployment = read_run(run_id)
    assert run.name == f"risk assessment {SYSTEM} (manual)"
    assert {"aims", "risk-assessment", SYSTEM, "gpai", "manual"} <= set(run.tags), run.tags
    assert deployment.name == "risk-assessment"
    assert f"risk-register-{SYSTEM}" in run_artifacts(run_id)

    with get_engine(engine.settings.effective_database_url).connect() as conn:
        request_id = conn.execute(
            select(Risk.acceptance_request_id).where(Risk.id == risk_id)
        ).scalar_one()
    assert request_id
    form = _form_description(run_id)
    assert f"Accept risk #{risk_id} on {SYSTEM}" in form
    assert "risk tier **gpai**" in form and GOVERNANCE in form
    assert f"aims approve {request_id} --as EMAIL" in form and "Resume" in form

    # A decision typed into the form without the personal code is not counted: the next
    # round's form says why.
    resume_with(run_id, approver=GOVERNANCE, decision="approve", code="not-the-code")
    wait_for_pause(run_id, wait_key(request_id, 2))
    assert "your last answer was not counted" in _form_description(run_id)

    approved = engine_cli(engine, "approve", str(request_id), "--as", GOVERNANCE)
    assert approved.exit_code == 0, approved.output
    wait_for_state(run_id, {"Completed"})
    arts = run_artifacts(run_id)
    outcome = str(arts[f"risk-assessment-{SYSTEM}"])
    assert f"accepted: #{risk_id}" in outcome and "evidence**: record #" in outcome
    with get_engine(engine.settings.effective_database_url).connect() as conn:
        status = conn.execute(select(Risk.status).where(Risk.id == risk_id)).scalar_one()
    assert status == RiskStatus.treated
    print(f"UI-started run: refused form, approved: {time.monotonic() - started_at:.1f} s")
