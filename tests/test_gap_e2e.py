"""A gap assessment end to end, on the real engine (Prefect API + served runner + fake Slack).

`aims gap start` → the run asks the assessor every area (one ask each, what the records suggest
in its details) and waits on area 4's → a UI answer with a wrong code refused (the run waits
again), then the assessor's code with one status and the suggestions confirmed → the rest with
`aims gap record --file --as` (answering the open asks) → approval requested → the assessor may
not approve, the CEO does with `aims approve` → maturity frozen, plan made, report kept as
evidence, the run publishes its summary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from prefect_fixtures import (
    ask_of,
    engine_cli,
    resume_with,
    ui_code,
    wait_for_pause,
    wait_for_state,
)
from sqlalchemy import func, select

from aims_core.db import get_engine
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import ApprovalRequest, AuditEvent
from aims_core.rules.gap import assessable
from aims_core.services import evidence, gap, plan
from aims_core.uow import Actor, UnitOfWork

GOV = "governance@northwind.example"
CEO = "ceo@northwind.example"


def test_gap_assessment_through_form_cli_and_approval(engine, tmp_path: Path, monkeypatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.input.run_input import keyset_from_paused_state
    from prefect.logging.handlers import APILogHandler

    from flows.plan_tracking import ARTIFACT_KEY, plan_tracking

    settings = engine.settings
    t0 = time.monotonic()
    started = engine_cli(engine, "gap", "start", "--assessor", GOV)
    assert started.exit_code == 0, started.output
    run_id = started.output.split("(", 1)[1].split(")", 1)[0]

    wait_for_state(run_id, {"Suspended"})
    [a] = [x for x in gap.list_assessments(UnitOfWork(settings)) if x.flow_run_id == run_id]
    area4 = ask_of(settings, f"gap-assessment-{a.id}-4-1-r1")
    run = wait_for_pause(run_id, f"approval-{area4}-round-1")
    with get_client(sync_client=True) as client:
        keyset = keyset_from_paused_state(run.state)
        description = client.read_flow_run_input(run.id, keyset["description"])
        schema = json.loads(client.read_flow_run_input(run.id, keyset["schema"]))
    assert f"Gap assessment #{a.id}: 4 Context of the organization" in description
    assert "- 4.1 Understanding the organization and its context: not assessed; suggested" in (
        description
    )
    assert {"r_4_1", "note_4_4", "accept_suggestions", "person", "code"} <= set(
        schema["properties"]
    )

    # Area 4 through the UI form: a wrong code is refused and the run waits again; with the
    # assessor's code, one status typed and the suggestions confirmed for the rest.
    typed = {"r_4_4": "not-conforming", "note_4_4": "no AIMS description yet"}
    resume_with(run_id, person=GOV, code="AAAA-BBBB-CCCC-DDDD", accept_suggestions=True, **typed)
    wait_for_pause(run_id, f"approval-{area4}-round-2")
    code = ui_code(settings, area4, GOV)
    resume_with(run_id, person=GOV, code=code, accept_suggestions=True, **typed)
    area5 = ask_of(settings, f"gap-assessment-{a.id}-5-1-r1")
    wait_for_pause(run_id, f"approval-{area5}-round-1")
    now = gap.get(UnitOfWork(settings), a.id).by_id()
    assert [now[r].status for r in ("4.1", "4.2", "4.3", "4.4")] == [
        "conforming",
        "conforming",
        "partially-conforming",
        "not-conforming",
    ]
    assert now["4.4"].answered_by == GOV

    # The rest from a file, as the assessor: it answers the 16 open asks, the run records them.
    rest = {r.id: "conforming" for r in assessable() if not r.id.startswith("4.")}
    rest["5.2"] = "not-conforming"
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(rest))
    record = ("gap", "record", "--file", str(answers), "--assessment", str(a.id))
    recorded = engine_cli(engine, *record, "--as", GOV)
    assert recorded.exit_code == 0, recorded.output
    assert "answered 16 area(s) through the run's asks" in recorded.output
    assert f"recorded answer by {GOV} on ask {area5}" in recorded.output

    # Approval through the approval service: the assessor may not decide, the CEO does.
    with get_engine(settings.effective_database_url).connect() as conn:
        deadline = time.monotonic() + 60
        while (req := conn.execute(
            select(ApprovalRequest).where(
                ApprovalRequest.idempotency_key == gap.approval_key(a.id)
            )
        ).one_or_none()) is None:  # fmt: skip
            assert time.monotonic() < deadline, "no approval request"
            time.sleep(0.5)
            conn.rollback()
    wait_for_pause(run_id, f"approval-{req.id}-round-1")
    refused = engine_cli(engine, "approve", str(req.id), "--as", GOV)
    assert refused.exit_code == 2 and "cannot decide it" in refused.output
    approved = engine_cli(engine, "approve", str(req.id), "--as", CEO)
    assert approved.exit_code == 0, approved.output

    done = wait_for_state(run_id, {"Completed"})
    t_done = time.monotonic()
    result = done.state.result()
    assert (result.status, result.approvals, result.plan_tasks) == ("approved", [CEO], 3)
    out = gap.get(UnitOfWork(settings), a.id)
    assert out.maturity is not None and out.maturity.levels("clause")["4"] == 3  # 2.5 of 4
    assert out.evidence_id == result.evidence_id is not None
    tasks = plan.list_tasks(UnitOfWork(settings), assessment_id=a.id)
    assert {t.requirement for t in tasks} == {"4.3", "4.4", "5.2"}
    with get_engine(settings.effective_database_url).connect() as conn:
        recorded_as = conn.execute(
            select(AuditEvent.channel, AuditEvent.actor, func.count())
            .where(
                AuditEvent.subject == gap.subject(a.id),
                AuditEvent.action == "gap.recorded",
            )
            .group_by(AuditEvent.channel, AuditEvent.actor)
        ).all()
    # Each area's answer recorded once in the assessor's name, whatever the re-runs.
    assert sorted(map(tuple, recorded_as)) == [("cli", GOV, 16), ("ui", GOV, 1)]

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    assert run.name.startswith("gap assessment 20") and "gap-assessment" in run.tags
    print(f"\ngap e2e: start → completed {t_done - t0:.1f} s")

    # The daily plan-tracking pass (its schedule is served paused), run in process on the
    # session's API: 4.4's task closes on the generic `other` record filed on its own subject;
    # 4.3's, which also names `other`, stays open (a generic record closes only its own task),
    # and so does 5.2's (a policy); the pass says so.
    task = next(t for t in tasks if t.requirement == "4.4")
    ev = evidence.append(
        settings,
        EvidenceIn(subject=plan.subject(task.id), kind=task.evidence_kind, title="AIMS scope",
                   text="The AIMS and its processes, described."),
        Actor(who=GOV, channel="test"),
    )  # fmt: skip
    monkeypatch.setenv("AIMS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("AIMS_DATABASE_URL", settings.effective_database_url)
    report = plan_tracking()
    same_kind = [t.id for t in tasks if t.evidence_kind == task.evidence_kind]
    assert report.closed_ids == [task.id] and len(same_kind) == 2
    assert not report.failures
    APILogHandler().flush()  # the run's logs reach the API before the session's server stops
    assert plan.get_task(UnitOfWork(settings), task.id).evidence_id == ev.id
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])),
            limit=1,
            sort="CREATED_DESC",
        )
    assert f"- **Closed**: {', '.join(f'#{i}' for i in report.closed_ids)}" in str(artifact.data)
