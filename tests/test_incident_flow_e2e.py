"""Incident response end to end on the engine (Prefect API + served runner + fake Slack).

A bias incident on credit-scoring (high risk), recorded through `incidents.report` as intake
does (the HTTP path is tested with the intake), runs its playbook as an `incident-response`
deployment run: the rollback step is approved, then its shell hook fires, observably once,
although the run suspends and re-runs from the top four more times; the likely serious incident
is confirmed in the run's form; the root cause is asked of the responders and the system's owner
and answered with `aims incident rca --as`; stakeholders are told (the regulator's filers, since
it is serious); a CAPA is opened and its run started as a deployment run, not a subflow; the
lessons learned are asked likewise and answered in the run's UI form (a wrong code refused, then
the owner's code) and reopen the risk assessment; closure is rejected once (the run asks the
responders what was changed, answered with `aims answer`, then asks again, showing it) and an
eligible approver closes it. Evidence for each step, the timeline as an artifact.
A drill of the same playbook rehearses the hook and never fires it.

The session's playbook dir (AIMS_PLAYBOOKS_DIR of the runner) gets a test `bias.yaml` whose
containment hook appends `<incident> <step> <system>` to a log beside it: other tests' bias
incidents use it too, each finds its own lines by incident id.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from prefect_fixtures import (
    ask_of,
    engine_cli,
    read_run,
    resume_with,
    ui_code,
    wait_for_pause,
    wait_for_state,
)
from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.models import ApprovalRequest, Capa, HookRun, Notification
from aims_core.rules.playbooks import response_run
from aims_core.services import evidence, incidents
from aims_core.uow import Actor, UnitOfWork

SYSTEM = "credit-scoring"
SECURITY = "security@northwind.example"  # incident-responder, Responsible for incident response
OWNER = "credit.owner@northwind.example"  # owns credit-scoring
GOVERNANCE = "governance@northwind.example"  # Accountable for incident response
COMPLIANCE = "compliance@northwind.example"  # compliance-officer, Consulted
CEO = "ceo@northwind.example"  # only Informed: may not close an incident
ACTOR = Actor(who="e2e-intake", channel="api")

APPEND = 'import sys; open(sys.argv[1], "a").write(" ".join(sys.argv[2:]) + "\\n")'
TEST_PLAYBOOK = """\
title: Bias (test playbook)
steps:
  - id: confirm-disparity
    phase: triage
    title: Confirm the disparity
    instructions: Recompute the fairness metrics per group.
  - id: rollback-model
    phase: containment
    action: rollback-model
    title: Roll back to the last approved model version
    approval:
      roles: [incident-responder, governance-lead]
      when: {{systems: [credit-scoring], severities: [SEV2]}}
    hook:
      kind: shell
      command: [{python}, -c, '{script}', {log}, "{{incident_id}}", "{{step}}", "{{system}}"]
      timeout_s: 30
evidence:
  - {{kind: fairness-report, title: Fairness metrics per group}}
notify:
  - {{audience: on-call, roles: [incident-responder], system_owner: true}}
  - {{audience: internal-escalation, roles: [governance-lead]}}
  - {{audience: regulator, roles: [compliance-officer, legal], message: File the Art. 73 report.}}
closure: {{roles: [governance-lead, compliance-officer]}}
"""


def install_test_playbook(engine) -> Path:  # type: ignore[no-untyped-def]
    """Write the session's test `bias.yaml` (same content every time); returns the hook log."""
    books = Path(engine.runner.env_extra["AIMS_PLAYBOOKS_DIR"])
    books.mkdir(parents=True, exist_ok=True)
    log = books.parent / "hooks.log"
    text = TEST_PLAYBOOK.format(python=sys.executable, script=APPEND.replace("'", "''"), log=log)
    (books / "bias.yaml").write_text(text)
    return log


def fired(log: Path, incident_id: int) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if line.split(" ", 1)[0] == str(incident_id)]


def row(engine, stmt, timeout: float = 60) -> Any:  # type: ignore[no-untyped-def]
    """The one row `stmt` selects, once it exists."""
    deadline = time.monotonic() + timeout
    with get_engine(engine.settings.effective_database_url).connect() as conn:
        while (found := conn.execute(stmt).one_or_none()) is None:
            assert time.monotonic() < deadline, f"nothing for {stmt}"
            time.sleep(0.5)
            conn.rollback()
        return found


def task_states(run_id: str, name: str) -> list[str]:
    """The state names of the run's task runs of one task (a run with many waits has more task
    runs than one unfiltered read returns)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=f"{name}-")),
        )
    return [t.state.name if t.state else "" for t in runs if t.name.rsplit("-", 1)[0] == name]


def start(incident) -> str:  # type: ignore[no-untyped-def]
    from aims_core.cli.engine import start_run

    spec = response_run(
        incident.id,
        system=incident.system,
        tier=incident.system_tier,
        severity=incident.severity,
        category=incident.category,
        playbook=incident.playbook,
    )
    run_id, _, _ = start_run(spec.deployment, spec.parameters, name=spec.name, tags=spec.tags)
    return run_id


def test_a_bias_incident_runs_its_playbook_to_an_approved_closure(engine) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    settings = engine.settings
    log = install_test_playbook(engine)
    t0 = time.monotonic()
    # 0. The alert arrives from Alertmanager (a real v4 payload): intake records the incident,
    #    sends the first Slack message inside the request, and starts the playbook run.
    from fastapi.testclient import TestClient
    from pydantic import SecretStr
    from test_intake import alert, webhook

    from notifications.app import create_app

    token = "e2e-intake-token-" + "x" * 24
    intake_settings = settings.model_copy(update={"intake_token": SecretStr(token)})
    posts_before = len(engine.slack.calls("chat.postMessage"))
    payload = webhook(alert("e2e0bias0credit01", system=SYSTEM, severity="high", category="bias"))
    with TestClient(create_app(intake_settings)) as client:
        answer = client.post(
            "/alertmanager", json=payload, headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 201, answer.text
    item = answer.json()["incidents"][0]
    assert item["created"] is True and item["notification"]["state"] == "delivered"
    assert len(engine.slack.calls("chat.postMessage")) > posts_before  # before the 201 came back
    incident = incidents.get_incident(UnitOfWork(settings), item["incident_id"])
    assert (incident.severity, incident.category, incident.source) == (
        "SEV2",
        "bias-fairness",
        "alertmanager",
    )
    assert incident.serious_suggested == ["fundamental-rights"]  # bias, SEV2, high risk
    run_id = item["run"]["id"]
    assert incident.flow_run_id == run_id
    i = incident.id

    # 1. The rollback of a high-risk system waits for approval before its hook fires.
    req = row(
        engine,
        select(ApprovalRequest).where(
            ApprovalRequest.idempotency_key == f"incident-{i}-step-rollback-model"
        ),
    )
    wait_for_pause(run_id, f"approval-{req.id}-round-1")
    t_approval = time.monotonic()
    assert fired(log, i) == []
    approved = engine_cli(engine, "approve", str(req.id), "--as", SECURITY)
    assert approved.exit_code == 0, approved.output

    # 2. Hook fired once; the run asks the governance lead or the compliance officer whether this
    # is a serious incident. In the UI form, a claim without the person's code is refused and
    # the run waits again; with their code it is recorded.
    serious = ask_of(settings, f"incident-{i}-serious-confirmation")
    wait_for_pause(run_id, f"approval-{serious}-round-1")
    assert fired(log, i) == [f"{i} rollback-model {SYSTEM}"]
    resume_with(run_id, person=GOVERNANCE, code="", kind="fundamental-rights", reason="")
    wait_for_pause(run_id, f"approval-{serious}-round-2")
    code = ui_code(settings, serious, GOVERNANCE)
    resume_with(run_id, person=GOVERNANCE, code=code, kind="fundamental-rights", reason="")

    # 3. The root cause is asked of the responders and the owner: `aims incident rca` answers
    # the ask (it must say as whom), which resumes the run.
    rca_ask = ask_of(settings, f"incident-{i}-root-cause")
    wait_for_pause(run_id, f"approval-{rca_ask}-round-1")
    t_rca = time.monotonic()
    rca_args = [
        "incident",
        "rca",
        str(i),
        "--why",
        "Approval rates for applicants over 60 fell after release 4.2",
        "--why",
        "Release 4.2 was retrained on data without thin-file older applicants",
        "--fishbone-data",
        "Sampling excluded thin-file applicants",
        "--root-cause",
        "Retraining data was not checked for age coverage",
    ]
    unnamed = engine_cli(engine, *rca_args)
    assert unnamed.exit_code == 2 and "give --as EMAIL" in unnamed.output, unnamed.output
    rca = engine_cli(engine, *rca_args, "--as", SECURITY)
    assert rca.exit_code == 0, rca.output
    assert f"flow run {run_id}: resumed" in rca.output, rca.output

    # 4. Lessons asked likewise, answered in the UI form: a wrong code is refused and the run
    # waits again; with the owner's code it is recorded. The CAPA and its run exist by then.
    lessons_ask = ask_of(settings, f"incident-{i}-lessons")
    wait_for_pause(run_id, f"approval-{lessons_ask}-round-1")
    capa = row(engine, select(Capa).where(Capa.incident_id == i))
    assert (capa.idempotency_key, capa.source) == (f"incident-{i}", "incident")
    capa_hook = row(
        engine, select(HookRun).where(HookRun.idempotency_key == f"incident-{i}-capa-run")
    )
    assert capa_hook.status == "succeeded", capa_hook.output
    capa_run_id = capa_hook.output.split()[2]
    capa_run, capa_deployment = read_run(capa_run_id)
    assert capa_deployment.name == "capa" and capa_run.parameters == {"capa_id": capa.id}
    assert capa_run.parent_task_run_id is None  # a deployment run of its own, not a subflow
    lessons = "Check age coverage of retraining data before each release."
    resume_with(run_id, person=OWNER, code="WRONG-CODE", lessons=lessons)
    wait_for_pause(run_id, f"approval-{lessons_ask}-round-2")
    code = ui_code(settings, lessons_ask, OWNER)
    resume_with(run_id, person=OWNER, code=code, lessons=lessons)

    # 5. The risk assessment is reopened; closure waits for an eligible approver.
    risk_hook = row(
        engine,
        select(HookRun).where(
            HookRun.idempotency_key == f"incident-{i}-risk-reassessment",
            HookRun.finished_at.is_not(None),
        ),
    )
    assert risk_hook.status == "succeeded", risk_hook.output
    risk_run, risk_deployment = read_run(risk_hook.output.split()[2])
    assert risk_deployment.name == "risk-assessment" and risk_run.parent_task_run_id is None
    assert risk_run.parameters["system"] == SYSTEM and "incident" in risk_run.tags
    closure = row(
        engine,
        select(ApprovalRequest).where(ApprovalRequest.idempotency_key == f"incident-{i}-closure-1"),
    )
    assert closure.subject == f"incident:{i}"
    wait_for_pause(run_id, f"approval-{closure.id}-round-1")
    refused = engine_cli(engine, "approve", str(closure.id), "--as", CEO)
    assert refused.exit_code == 2 and "not an eligible approver" in refused.output
    rejected = engine_cli(
        engine, "reject", str(closure.id), "--as", COMPLIANCE, "--comment", "Attach the metrics"
    )
    assert rejected.exit_code == 0, rejected.output

    # 6. Rejected: the run asks the responders and the owner what was changed (`aims answer`),
    # then asks for closure again under a new request that shows it.
    amend = ask_of(settings, f"incident-{i}-closure-1-amendment")
    wait_for_pause(run_id, f"approval-{amend}-round-1")
    waits = engine_cli(engine, "incident", "resume", str(i))
    assert f"waits for ask {amend}" in waits.output, waits.output
    amended = engine_cli(
        engine, "answer", str(amend), "--as", SECURITY, "--set", "changes=Metrics attached"
    )
    assert amended.exit_code == 0 and f"flow run {run_id}: resumed" in amended.output
    again = row(
        engine,
        select(ApprovalRequest).where(ApprovalRequest.idempotency_key == f"incident-{i}-closure-2"),
    )
    assert again.details.startswith("**Since the last request**: closure asked again: Metrics")
    wait_for_pause(run_id, f"approval-{again.id}-round-1")
    t_closure = time.monotonic()
    closed = engine_cli(engine, "approve", str(again.id), "--as", GOVERNANCE)
    assert closed.exit_code == 0, closed.output

    done = wait_for_state(run_id, {"Closed"})
    t_done = time.monotonic()
    result = done.state.result()
    assert (result.capa_id, result.closure_request_id) == (capa.id, again.id)

    # The hook fired exactly once, although the run re-ran from the top after every wait.
    assert fired(log, i) == [f"{i} rollback-model {SYSTEM}"]
    out = incidents.get_incident(UnitOfWork(settings), i)
    assert out.status.value == "closed" and out.serious_kind == "fundamental-rights"
    kinds = [e.kind for e in out.timeline]
    for kind in ("classified", "notified", "triage", "approval", "containment"):
        assert kind in kinds, kinds
    for kind in ("serious-confirmed", "root-cause", "stakeholders", "capa", "lessons", "closure"):
        assert kind in kinds, kinds
    assert kinds.index("containment") < kinds.index("root-cause") < kinds.index("closure")
    closing = [e.text for e in out.timeline if e.kind == "closure"]
    assert closing[0] == f"closure not approved (rejected) by {COMPLIANCE}: Attach the metrics"
    assert closing[-1] == f"closure approved by {GOVERNANCE}"

    # Each answer is on the record once, in the name of whoever gave it.
    def by(start: str) -> list[str]:
        return [e.actor for e in out.timeline if e.text.startswith(start)]

    assert by("root cause:") == [SECURITY] and by("lessons learned:") == [OWNER]
    assert by("closure asked again") == [SECURITY]
    # The run re-ran from the top after each of its nine waits: the hook's step came back cached.
    states = task_states(run_id, "run step")
    assert states.count("Completed") == 2, states  # triage and rollback, once each
    assert "Cached" in states, states

    # Evidence for each step, on the incident.
    records = evidence.list_evidence(settings, subject=f"incident:{i}")
    by_key = {e.idempotency_key.removeprefix(f"incident-{i}-"): e.kind for e in records}
    assert by_key == {
        "report": "incident-report",
        "on-call": "incident-report",
        "step-rollback-model-decision": "decision",
        "step-confirm-disparity": "incident-report",
        "step-rollback-model": "incident-report",
        "serious-decision": "decision",
        "root-cause-analysis": "root-cause-analysis",
        "stakeholders": "incident-report",
        "lessons": "incident-report",
        "closure-1": "decision",
        "closure-2": "decision",
        "closed": "incident-report",
    }

    # Confirmed serious: the regulator's filers were told; the on-call heard of the playbook.
    with get_engine(settings.effective_database_url).connect() as conn:
        told = conn.execute(
            select(Notification.kind, Notification.idempotency_key).where(
                Notification.subject == f"incident:{i}"
            )
        ).all()
    assert any(kind == "incident-regulator" for kind, _ in told), told
    assert any(kind == "incident-playbook" for kind, _ in told), told

    # The run in the UI: name, tags, and the timeline artifact (its latest version).
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        [artifact] = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"incident-{i}-timeline"]))
        )
    assert run.name == f"incident {i} SEV2 bias: {SYSTEM}"
    assert {"incident", SYSTEM, "high", "SEV2", "bias-fairness"} <= set(run.tags)
    assert artifact.data.startswith(f"# Incident {i}: {incident.title}")
    assert "**Status**: closed" in artifact.data
    assert "rollback-model: shell hook" in artifact.data and "succeeded" in artifact.data
    print(
        f"\nincident e2e: report→approval wait {t_approval - t0:.1f} s, approval→rca wait "
        f"{t_rca - t_approval:.1f} s, rca→closure wait {t_closure - t_rca:.1f} s, "
        f"closure→closed {t_done - t_closure:.1f} s, total {t_done - t0:.1f} s"
    )


def test_a_drill_rehearses_the_playbook_and_fires_nothing(engine) -> None:
    settings = engine.settings
    log = install_test_playbook(engine)
    t0 = time.monotonic()
    started = engine_cli(
        engine, "incident", "drill", "--playbook", "bias", "--system", SYSTEM, "--unattended"
    )
    assert started.exit_code == 0, started.output
    run_id = started.output.split("started run ", 1)[1].split("(", 1)[1].split(")", 1)[0]
    i = int(started.output.split("drill incident ", 1)[1].split(":", 1)[0])

    done = wait_for_state(run_id, {"Drill closed"})
    result = done.state.result()
    assert result.drill and result.capa_id is None and result.closure_request_id is None
    out = incidents.get_incident(UnitOfWork(settings), i)
    assert out.is_drill and out.source == "drill" and out.status.value == "closed"
    assert fired(log, i) == []
    with get_engine(settings.effective_database_url).connect() as conn:
        hooks_run = conn.execute(
            select(HookRun.step, HookRun.status, HookRun.dry_run).where(HookRun.incident_id == i)
        ).all()
        capas = conn.execute(select(Capa.id).where(Capa.incident_id == i)).all()
        sent = conn.execute(
            select(Notification.kind, Notification.target).where(
                Notification.subject == f"incident:{i}"
            )
        ).all()
    assert sorted(hooks_run) == [
        ("risk-reassessment", "rehearsed", True),
        ("rollback-model", "rehearsed", True),
    ]
    assert capas == []
    assert not any(kind == "incident-regulator" for kind, _ in sent)
    assert all(target == "log" for _, target in sent), sent  # unattended: nobody disturbed
    texts = [e.text for e in out.timeline]
    assert any("rehearsed (drill: not fired)" in t for t in texts), texts
    assert any(t.startswith("rehearsed: a real incident opens a CAPA") for t in texts), texts
    run, _ = read_run(run_id)
    assert run.name == f"drill {i} SEV3 bias: {SYSTEM}" and "drill" in run.tags
    print(f"\ndrill e2e (unattended): {time.monotonic() - t0:.1f} s")
