"""An internal audit end to end, on the real engine (Prefect API + served runner + fake Slack).

Must show: `aims audit start` begins the run, which asks the auditor for the fieldwork (an ask,
suspended); in the run's Prefect UI form a finding with a wrong code is refused and the run asks
again, the auditor's code records it (a minor nonconformity: its CAPA opens) in the auditor's
name and the next entry is asked; `aims audit complete --as` the auditor answers that entry and
wakes the run, which starts the CAPA's run, renders the report (HTML and Markdown, kept as
evidence) and asks for its approval; the CEO approves with `aims approve`; the audit is closed,
its finding recorded once across the re-runs. Uses the demo programme's audit of the current
period (the other flow tests do not touch audits).
"""

from __future__ import annotations

import re
import time

from prefect_fixtures import (
    ask_of,
    engine_cli,
    resume_with,
    ui_code,
    wait_for_pause,
    wait_for_state,
)
from sqlalchemy import select

from aims_core.db import get_engine
from aims_core.models import AuditStatus, Evidence
from aims_core.services import audits
from aims_core.services import capa as capas
from aims_core.uow import UnitOfWork

CEO = "ceo@northwind.example"


def ok(engine, *args: str) -> str:  # type: ignore[no-untyped-def]
    """`aims ...` that must succeed; its output."""
    result = engine_cli(engine, *args)
    assert result.exit_code == 0, result.output
    return result.output


def test_audit_run_from_fieldwork_to_approved_report(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = engine.settings
    uow = UnitOfWork(settings)
    t0 = time.monotonic()
    [programme] = audits.list_programmes(uow)  # planned by the demo organisation
    a = programme.audits[0]
    assert a.status is AuditStatus.planned and a.auditor and a.systems
    control, system = a.scope[-1], a.systems[0]

    out = ok(engine, "audit", "start", str(a.id))
    name = f"audit {a.period}: {len(a.scope)} requirements (auditor {a.auditor_name})"
    m = re.search(rf"started run {re.escape(name)} \(([0-9a-f-]{{36}})\)", out)
    assert m, out
    run_id = m.group(1)
    entry1 = ask_of(settings, f"audit-{a.id}-r1-fieldwork-1")
    wait_for_pause(run_id, f"approval-{entry1}-round-1")
    assert audits.get_audit(uow, a.id).status is AuditStatus.in_progress

    # The run's UI form: a wrong code is refused, the run asks again; the auditor's code counts.
    finding = {
        "control": control,
        "kind": "minor-nc",
        "statement": "Monitoring alerts are not reviewed weekly as the procedure says",
        "evidence": "Alert log of the last quarter; no review entries",
        "system": system,
    }
    resume_with(run_id, person=a.auditor, code="AAAA-BBBB-CCCC-DDDD", **finding)
    wait_for_pause(run_id, f"approval-{entry1}-round-2")
    assert not audits.get_audit(uow, a.id).findings
    resume_with(run_id, person=a.auditor, code=ui_code(settings, entry1, a.auditor), **finding)
    entry2 = ask_of(settings, f"audit-{a.id}-r1-fieldwork-2")
    wait_for_pause(run_id, f"approval-{entry2}-round-1")
    [f] = audits.get_audit(uow, a.id).findings
    assert (f.control_id, f.recorded_by) == (control, a.auditor) and f.capa_id
    capa_id = f.capa_id
    out = ok(engine, "audit", "complete", str(a.id), "--as", a.auditor)
    assert f"recorded answer by {a.auditor} on ask {entry2}" in out and "resumed" in out, out

    # The run starts the CAPA's run, records the report and waits for its approval.
    deadline = time.monotonic() + 90
    while (request_id := audits.get_audit(uow, a.id).request_id) is None:
        assert time.monotonic() < deadline, "no approval request for the report"
        time.sleep(0.5)
    wait_for_pause(run_id, f"approval-{request_id}-round-1")
    reporting = audits.get_audit(uow, a.id)
    assert reporting.status is AuditStatus.reporting and reporting.report_evidence_id
    written = audits.reports_dir(settings) / f"audit-{a.id}-r1"
    assert {p.name for p in written.iterdir()} == {
        f"audit-{a.id}-report.html",
        f"audit-{a.id}-report.md",
    }
    assert "minor-nc (1)" in (written / f"audit-{a.id}-report.md").read_text()
    c = capas.get_capa(uow, capa_id)
    assert (c.source, c.control_id, c.system) == ("audit-finding", control, system)
    assert c.flow_run_id  # the CAPA's own deployment run, started by the audit run

    ok(engine, "approve", str(request_id), "--as", CEO)
    done = wait_for_state(run_id, {"Completed"})
    result = done.state.result()
    assert (result.status, result.capa_ids, result.approvals) == ("closed", [capa_id], [CEO])
    closed = audits.get_audit(uow, a.id)
    assert closed.status is AuditStatus.closed and closed.request_id == request_id
    assert [x.id for x in closed.findings] == [f.id]  # recorded once, whatever the re-runs
    with get_engine(settings.effective_database_url).connect() as conn:
        kinds = sorted(
            conn.scalars(select(Evidence.kind).where(Evidence.subject == f"audit:{a.id}"))
        )
    assert kinds == ["audit-report", "audit-report", "decision"]

    # The report on demand, with the approval's outcome.
    out = ok(engine, "audit", "report", str(a.id), "--output", str(tmp_path))
    html = (tmp_path / f"audit-{a.id}-report.html").read_text()
    assert "approved by ceo@northwind.example" in html and "Monitoring alerts" in html
    assert (tmp_path / f"audit-{a.id}-report.md").is_file()
    print(f"audit e2e: {time.monotonic() - t0:.1f} s")


def test_monthly_planning_pass_runs_as_a_deployment(engine) -> None:  # type: ignore[no-untyped-def]
    """The scheduled pass (served paused in tests), started by hand: it finds the demo's
    programme covering this cycle and publishes what it did as a table."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.deployments import run_deployment

    run = run_deployment("audit-planning/audit-planning", timeout=0)
    done = wait_for_state(run.id, {"Completed"})
    report = done.state.result()
    [programme] = audits.list_programmes(UnitOfWork(engine.settings))
    assert report.programme == programme.name and not report.programme_created
    assert done.name.startswith("audit planning ")
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["audit-planning"])),
            limit=1,
        )
    assert artifact.type == "table" and artifact.description == report.summary()
