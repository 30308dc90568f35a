"""An impact assessment end to end, on the real engine (Prefect API + served runner + fake Slack).

`aims impact start` → the run asks the assessor every section (one ask each) and waits on the
first → section 1 through the Prefect UI form (a wrong code refused, the run waits again; the
assessor's code accepted), the rest with `aims impact answer --file --as` (answering the open
asks) → approval requested → the assessor may not approve, an ethics committee member does with
`aims approve` → the record is evidence, the run is named, tagged, and publishes its summary.
Uses support-chatbot (other flow tests use other systems).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

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
from aims_core.models import ApprovalRequest, AuditEvent, Evidence
from aims_core.rules.impact_questionnaire import QuestionKind, questionnaire
from aims_core.services import evidence, impact
from aims_core.uow import UnitOfWork

SYSTEM = "support-chatbot"
ASSESSOR = "ops.owner@northwind.example"  # owns support-chatbot
ETHICS = "ethics@northwind.example"

SECTION_1 = {
    "intended_purpose": "Answers customer questions about accounts and loans on the website.",
    "deployment_context": "Public website chat, EU, English and German, ~40,000 chats a month.",
    "human_oversight": "human-on-the-loop",
    "decision_significance": 2,
}


def rest_of_answers() -> dict[str, Any]:
    """Every other question, with answers a test can find again."""
    out: dict[str, Any] = {}
    for q in questionnaire().questions.values():
        if q.id in SECTION_1:
            continue
        if q.kind is QuestionKind.choice:
            out[q.id] = q.options[0]
        elif q.kind is QuestionKind.scale:
            out[q.id] = 3
        else:
            out[q.id] = f"E2E answer about {q.id} <for support & chat>"
    return out


def test_impact_assessment_through_form_cli_and_approval(engine, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.input.run_input import keyset_from_paused_state

    settings = engine.settings
    t0 = time.monotonic()
    started = engine_cli(engine, "impact", "start", SYSTEM, "--assessor", ASSESSOR)
    assert started.exit_code == 0, started.output
    assert f"started run impact assessment {SYSTEM} (" in started.output
    run_id = started.output.split("(", 1)[1].split(")", 1)[0]
    assert f"/runs/flow-run/{run_id}" in started.output

    # Waiting for answers: every section asked of the assessor, the run waits on the first.
    wait_for_state(run_id, {"Suspended"})
    t_suspended = time.monotonic()
    [a] = [x for x in impact.list_assessments(UnitOfWork(settings), system=SYSTEM)
           if x.flow_run_id == run_id]  # fmt: skip
    assert a.assessor == ASSESSOR
    first = ask_of(settings, f"impact-assessment-{a.id}-intended-use-1-r1")
    run = wait_for_pause(run_id, f"approval-{first}-round-1")
    with get_client(sync_client=True) as client:
        keyset = keyset_from_paused_state(run.state)
        description = client.read_flow_run_input(run.id, keyset["description"])
        schema = client.read_flow_run_input(run.id, keyset["schema"])
    assert f"Impact assessment #{a.id} of {SYSTEM}: section 1 of 6" in description
    assert f"aims impact answer {a.id} --file answers.yaml --as EMAIL" in description
    assert set(json.loads(schema)["properties"]) == {*SECTION_1, "person", "code"}

    # Section 1 through the UI form: a wrong code is refused and the run waits again; the
    # assessor's own code is accepted, and the run waits on the next section's ask.
    resume_with(run_id, person=ASSESSOR, code="AAAA-BBBB-CCCC-DDDD", **SECTION_1)
    wait_for_pause(run_id, f"approval-{first}-round-2")
    assert impact.get(UnitOfWork(settings), a.id).answers == {}
    resume_with(run_id, person=ASSESSOR, code=ui_code(settings, first, ASSESSOR), **SECTION_1)
    second = ask_of(settings, f"impact-assessment-{a.id}-individuals-1-r1")
    wait_for_pause(run_id, f"approval-{second}-round-1")
    assert impact.get(UnitOfWork(settings), a.id).answers == SECTION_1

    # The rest from a file answers the open asks (as the assessor; without --as: refused).
    answers_file = tmp_path / "answers.yaml"
    answers_file.write_text(yaml.safe_dump(rest_of_answers()))
    answer = ("impact", "answer", str(a.id), "--file", str(answers_file))
    unnamed = engine_cli(engine, *answer)
    assert unnamed.exit_code == 2 and "give --as EMAIL" in unnamed.output, unnamed.output
    answered = engine_cli(engine, *answer, "--as", ASSESSOR)
    assert answered.exit_code == 0, answered.output
    assert f"recorded answer by {ASSESSOR} on ask {second}" in answered.output
    assert "through the run's asks" in answered.output

    # Approval: requested from the questionnaire's roles, the assessor excluded.
    key = impact.approval_key(a.id)
    with get_engine(settings.effective_database_url).connect() as conn:
        deadline = time.monotonic() + 60
        while (req := conn.execute(
            select(ApprovalRequest).where(ApprovalRequest.idempotency_key == key)
        ).one_or_none()) is None:  # fmt: skip
            assert time.monotonic() < deadline, "no approval request"
            time.sleep(0.5)
            conn.rollback()
    wait_for_pause(run_id, f"approval-{req.id}-round-1")
    t_approval = time.monotonic()
    refused = engine_cli(engine, "approve", str(req.id), "--as", ASSESSOR)
    assert refused.exit_code == 2
    assert "cannot decide it" in refused.output
    approved = engine_cli(engine, "approve", str(req.id), "--as", ETHICS)
    assert approved.exit_code == 0, approved.output
    assert f"flow run {run_id}: resumed" in approved.output

    done = wait_for_state(run_id, {"Completed"})
    t_done = time.monotonic()
    result = done.state.result()
    assert (result.status, result.approvals) == ("approved", [ETHICS])

    # The record is evidence: Markdown on the system, HTML on the assessment; both hold answers.
    out = impact.get(UnitOfWork(settings), a.id)
    assert (out.evidence_id, out.html_evidence_id) == (result.evidence_id, result.html_evidence_id)
    on_system = evidence.list_evidence(settings, subject=f"system:{SYSTEM}")
    assert [(e.id, e.kind) for e in on_system] == [(out.evidence_id, "impact-assessment")]
    [html_record] = evidence.list_evidence(settings, subject=f"impact-assessment:{a.id}")
    html = evidence.store_path(settings, html_record.content_sha256).read_text("utf-8")
    with get_engine(settings.effective_database_url).connect() as conn:
        md = conn.scalar(select(Evidence.content).where(Evidence.id == out.evidence_id))
        recorded = conn.execute(
            select(AuditEvent.channel, AuditEvent.actor, func.count())
            .where(
                AuditEvent.subject == f"impact-assessment:{a.id}",
                AuditEvent.action == "impact.answered",
            )
            .group_by(AuditEvent.channel, AuditEvent.actor)
        ).all()
    # Each ask's answer recorded once in the assessor's name, whatever the re-runs.
    assert sorted(map(tuple, recorded)) == [("cli", ASSESSOR, 5), ("ui", ASSESSOR, 1)]
    for qid, value in {**SECTION_1, **rest_of_answers()}.items():
        if isinstance(value, int):
            assert f"`{qid}`" in md
            continue
        assert value.replace("<", "&lt;") in md
        assert value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in html
    assert f"approve by Amara Diallo <{ETHICS}> via cli" in md

    # Name, tags and artifact, read back through the Prefect API.
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"impact-assessment-{a.id}"])
            )
        )
    assert run.name == f"impact assessment {SYSTEM}"
    assert {"impact-assessment", SYSTEM, "limited"} <= set(run.tags)
    [artifact] = artifacts
    assert artifact.flow_run_id == run.id
    assert f"Impact assessment #{a.id} of {SYSTEM}: APPROVED" in artifact.data
    assert f"#{out.evidence_id} (Markdown, on `system:{SYSTEM}`)" in artifact.data
    print(
        f"\nimpact e2e: start→suspended {t_suspended - t0:.1f} s, answers→approval wait "
        f"{t_approval - t_suspended:.1f} s, approve→completed {t_done - t_approval:.1f} s, "
        f"total {t_done - t0:.1f} s"
    )
