"""One internal audit (ISO/IEC 42001 9.2) as one run, from fieldwork to the approved report.

The run marks the audit in progress, publishes its checklist and asks its auditor for the
fieldwork, one entry at a time (an ask: Slack, the run's Prefect UI form with the auditor's
personal code, or `aims audit finding|complete --as`): a finding, "fieldwork complete", or both.
Only the auditor answers; people whose own work is audited are refused (9.2.2). Each answer is
recorded once, in the auditor's name, then the next entry is asked. Then it makes sure every
nonconformity has its CAPA and starts the CAPA runs not started yet (deployment runs, never
subflows: they wait for people), renders the report (HTML and Markdown, kept as `audit-report`
evidence) and asks for its approval through the shared approval step. Approved: closed.
Rejected: fieldwork opens again, and the next report is a new round with new keys.

A suspended run re-runs from the top on resume: every step before a wait is a persisted task
(or an idempotent service call), and the asks' keys come from the database (audit, report round,
entry), so a re-run meets its answered asks in order and records nothing twice.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.runtime import flow_run

from aims_core import processes
from aims_core.errors import AimsError
from aims_core.models import AuditStatus, CapaStatus
from aims_core.services import audits
from aims_core.services import capa as capas
from aims_core.services.audits import AuditOut, AuditRunResult
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from deployments.prefect_runs import PrefectRuns
from tasks.approval import open_request, request_approval
from tasks.asks import AskOutcome, ask
from tasks.run_names import run_name
from tasks.run_tags import tag_this_run

ACTOR = Actor(who="flow:internal-audit", channel="flow")


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


def _get(audit_id: int) -> AuditOut:
    return audits.get_audit(_uow(), audit_id)


# --- tasks (persisted: a re-run after a resume gets them back cached) ---------------------------


@task(name="start the audit", persist_result=True)
def begin(audit_id: int) -> AuditOut:
    """In progress, this run attached, the checklist's records refreshed (idempotent)."""
    return audits.start_audit(_uow(), audit_id, str(flow_run.id), ACTOR)


@task(name="publish checklist", persist_result=True)
def publish_checklist(a: AuditOut) -> None:
    create_table_artifact(
        key=f"audit-{a.id}-checklist",
        table=[
            {
                "requirement": f"{i['control']} {i['title']}",
                "question": i["question"],
                "look for": "; ".join(i["look_for"]),
                "records held": "; ".join(i["records"]) or "-",
                "why in scope": a.scope_reasons.get(i["control"], ""),
            }
            for i in a.checklist
        ],
        description=f"Checklist of audit {a.id} ({a.period}), auditor {a.auditor or '-'}",
    )


@task(name="record fieldwork answer", persist_result=True)
def record_fieldwork_answer(audit_id: int, outcome: AskOutcome) -> str | None:
    """The answered entry (a finding and/or completion), applied once in the name of the auditor
    who answered, through the audit service. Returns why it could not be recorded (the next
    entry says so); never fails the run."""
    answer = outcome.answer
    actor = Actor(who=str(answer["answered_by"]), channel=str(answer["answered_in"]))
    try:
        audits.apply_fieldwork_answer(_uow(), audit_id, outcome.request_id, answer, actor)
    except AimsError as exc:
        get_run_logger().warning("fieldwork entry %d not recorded: %s", outcome.request_id, exc)
        return str(exc)
    return None


@task(name="open CAPAs", persist_result=True)
def open_capas(audit_id: int, round_: int) -> list[int]:
    """Every nonconformity has its CAPA (normally opened when it was recorded)."""
    return audits.ensure_capas(_uow(), audit_id, ACTOR)


@task(name="start CAPA runs", persist_result=True)
def start_capa_runs(audit_id: int, round_: int) -> list[str]:
    """A `capa` deployment run for each CAPA of this audit that no run follows yet (never a
    subflow: the CAPA's run waits for people, it suspends)."""
    runs = PrefectRuns(check_health=False)
    started = []
    for capa_id in audits.ensure_capas(_uow(), audit_id, ACTOR):
        c = capas.get_capa(_uow(), capa_id)
        if c.flow_run_id or c.status is CapaStatus.closed:
            continue
        run = runs.start(
            processes.CAPA.id,
            {"capa_id": c.id},
            name=capas.run_name(c),
            tags=[*capas.run_tags(c), f"audit-{audit_id}"],
        )
        capas.attach_run(_uow(), c.id, str(run.id), ACTOR)
        started.append(f"CAPA {c.id}: run {run.id}")
    return started


@task(name="record the report", persist_result=True)
def record_report(audit_id: int, round_: int) -> AuditOut:
    """HTML and Markdown written under the data dir and kept as `audit-report` evidence."""
    a = audits.record_report(_uow(), audit_id, ACTOR)
    md = audits.reports_dir(get_settings()) / f"audit-{a.id}-r{round_}" / f"audit-{a.id}-report.md"
    create_markdown_artifact(
        key=f"audit-{a.id}-report",
        markdown=md.read_text("utf-8"),
        description=f"Internal audit report {a.period} (round {round_})",
    )
    html = md.with_suffix(".html").resolve()
    create_link_artifact(
        key=f"audit-{a.id}-report-file",
        link=html.as_uri(),
        link_text=str(html),
        description=f"Internal audit report {a.period} (round {round_}): the HTML file",
    )
    return a


@task(name="link approval request", persist_result=True)
def link_request(audit_id: int, request_id: int) -> None:
    audits.link_request(_uow(), audit_id, request_id, ACTOR)


@task(name="record report decision", persist_result=True)
def record_decision(audit_id: int, request_id: int) -> AuditOut:
    """Approved: closed. Rejected: fieldwork again, the auditor told why."""
    return audits.record_report_decision(_uow(), audit_id, request_id, ACTOR)


# --- the waits ---------------------------------------------------------------------------------


def fieldwork(a: AuditOut) -> None:
    """Ask the auditor entry after entry (each an ask, keyed by report round and entry) until
    an answer completes fieldwork. A re-run meets the answered entries again, cached."""
    entry, refusal = 0, None
    while _get(a.id).status is AuditStatus.in_progress:
        entry += 1
        spec = audits.fieldwork_spec(
            _uow(), a.id, entry, refusal=refusal, flow_run_id=str(flow_run.id)
        )
        outcome = ask(spec)
        refusal = record_fieldwork_answer(a.id, outcome) if outcome.answers else None


def report_and_ask(a: AuditOut, report_round: int) -> None:
    open_capas(a.id, report_round)
    for line in start_capa_runs(a.id, report_round):
        get_run_logger().info(line)
    record_report(a.id, report_round)
    spec = audits.report_approval_spec(_uow(), a.id, flow_run_id=str(flow_run.id))
    link_request(a.id, open_request(spec))
    outcome = request_approval(spec)
    record_decision(a.id, outcome.request_id)


# --- the flow ----------------------------------------------------------------------------------


@flow(
    name="internal-audit",
    # An unknown audit (or no database): the first step says so clearly.
    flow_run_name=run_name(
        lambda p: audits.run_name(_get(int(p["audit_id"]))), lambda p: f"audit {p['audit_id']}"
    ),
    log_prints=True,
)
def internal_audit(audit_id: int) -> AuditRunResult:
    """Run audit `audit_id`: fieldwork (asks to the auditor until complete) → CAPAs for
    nonconformities → report (HTML + Markdown, evidence) → approval → closed."""
    a = begin(audit_id)
    tag_this_run(audits.run_tags(a))  # period and areas, also on runs started from the UI
    publish_checklist(a)
    while (a := _get(audit_id)).status not in (AuditStatus.closed, AuditStatus.cancelled):
        report_round = audits.current_report_round(_uow(), audit_id)
        if a.status is AuditStatus.reporting:
            report_and_ask(a, report_round)
        else:
            fieldwork(a)
    approvals: list[str] = []
    if a.request_id is not None:
        from aims_core.services.approvals import get_request

        approvals = get_request(_uow(), a.request_id).approvals
    return AuditRunResult(
        audit_id=a.id,
        status=a.status.value,
        findings=len(a.findings),
        capa_ids=[f.capa_id for f in a.findings if f.capa_id],
        report_evidence_id=a.report_evidence_id,
        request_id=a.request_id,
        approvals=approvals,
    )
