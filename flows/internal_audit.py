"""One internal audit (ISO/IEC 42001 9.2) as one run, from fieldwork to the approved report.

The run marks the audit in progress, publishes its checklist and waits suspended (no process
kept) for the fieldwork: findings and "fieldwork complete" come from its Prefect UI form or from
`aims audit finding` / `aims audit complete` (which wakes it). Then it makes sure every
nonconformity has its CAPA and starts the CAPA runs not started yet (deployment runs, never
subflows: they wait for people), renders the report (HTML and Markdown, kept as `audit-report`
evidence) and asks for its approval through the shared approval step. Approved: closed.
Rejected: fieldwork opens again, and the next report is a new round with new keys.

A suspended run re-runs from the top on resume: every step before a wait is a persisted task
(or an idempotent service call), and the wait keys come from the database (audit, report round)
plus a round counted per key within the run, so a re-run meets its used waits in order.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import DEFAULT
from prefect.context import FlowRunContext
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field, ValidationError

from aims_core import processes
from aims_core.errors import AimsError, from_validation_error
from aims_core.models import AuditStatus, CapaStatus
from aims_core.services import audits
from aims_core.services import capa as capas
from aims_core.services.audits import AuditOut, AuditRunResult
from aims_core.settings import get_settings
from aims_core.uow import Actor, UnitOfWork
from deployments.prefect_runs import PrefectRuns
from tasks.approval import open_request, request_approval
from tasks.delivery import deliver_afresh
from tasks.run_names import run_name
from tasks.run_tags import tag_this_run

ACTOR = Actor(who="flow:internal-audit", channel="flow")
#: The UI form cannot tell who typed it: what comes from it is recorded as coming from the UI.
UI_ACTOR = Actor(who="prefect-ui", channel="ui")


def _uow() -> UnitOfWork:
    return UnitOfWork(get_settings())


def _get(audit_id: int) -> AuditOut:
    return audits.get_audit(_uow(), audit_id)


class FieldworkForm(RunInput):
    """A finding, and/or "fieldwork complete" (every field blank by default: a wake from the CLI
    sends none)."""

    control: str = Field(default="", description="The requirement (in scope), e.g. A.6.2.4")
    kind: Literal["", "major-nc", "minor-nc", "observation", "opportunity"] = ""
    statement: str = Field(default="", description="What was found, and against what")
    system: str = Field(default="", description="The AI system concerned (optional)")
    complete: bool = Field(default=False, description="Fieldwork is complete: write the report")


def _description(a: AuditOut, refusal: str | None) -> str:
    lines = [
        f"### Audit {a.id}, {a.period}: fieldwork",
        "",
        f"- **scope**: {', '.join(a.scope)}",
        f"- **systems**: {', '.join(a.systems) or '-'} · **auditor**: {a.auditor or '-'}",
    ]
    lines += [
        f"- finding {f.id}: {f.kind.value} on {f.control_id}"
        + (f" (CAPA {f.capa_id})" if f.capa_id else "")
        for f in a.findings
    ]
    if refusal:
        lines.append(f"- **your last input was not recorded**: {refusal}")
    lines += ["", f"Fill in and press Resume, or from a shell: {a.next_step()}."]
    return "\n".join(lines)


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


# The input is the wait's stored answer (immutable once given), so the wait's key alone
# identifies the call: a re-run must not apply it again over later changes from the CLI.
@task(name="record fieldwork input", persist_result=True, cache_policy=DEFAULT - "given")
def record_form_input(audit_id: int, key: str, given: dict[str, Any]) -> str | None:
    """A finding and/or completion typed into the form, through the same service (and checks)
    as the CLI. Returns why it was refused, for the next form to say; never fails the run."""
    uow = _uow()
    try:
        if given.get("statement") or given.get("control"):
            audits.record_finding(
                uow,
                audit_id,
                {k: given.get(k) for k in ("control", "kind", "statement", "system")},
                UI_ACTOR,
            )
        if given.get("complete"):
            audits.complete_fieldwork(uow, audit_id, UI_ACTOR)
    except ValidationError as exc:
        return str(from_validation_error(exc))
    except AimsError as exc:
        get_run_logger().warning("input from the form refused: %s", exc)
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


class Waits:
    """Rounds per wait key prefix within this run (a re-run counts them the same way, meeting
    its used keys in order) and the last refusal, for the next form."""

    def __init__(self) -> None:
        self.rounds: Counter[str] = Counter()
        self.refusal: str | None = None
        context = FlowRunContext.get()
        policy = context.flow_run.empirical_policy if context and context.flow_run else None
        self.used: set[str] = set(policy.pause_keys or ()) if policy else set()

    def next_key(self, prefix: str) -> str:
        self.rounds[prefix] += 1
        return f"{prefix}-r{self.rounds[prefix]}"


def wait_for_fieldwork(a: AuditOut, report_round: int, waits: Waits) -> None:
    key = waits.next_key(f"audit-{a.id}-fieldwork-{report_round}")
    if key not in waits.used:
        get_run_logger().info("audit %d waits for its fieldwork (%s)", a.id, key)
    answer = suspend_flow_run(
        wait_for_input=FieldworkForm.with_initial_data(description=_description(a, waits.refusal)),
        key=key,
        timeout=None,
    )
    given = {name: getattr(answer, name) for name in answer.model_fields_set}
    given = {k: v.strip() if isinstance(v, str) else v for k, v in given.items()}
    given = {k: v for k, v in given.items() if v not in ("", False)}
    waits.refusal = record_form_input(a.id, key, given) if given else None


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
    """Run audit `audit_id`: fieldwork (suspended until complete) → CAPAs for nonconformities →
    report (HTML + Markdown, evidence) → approval → closed."""
    a = begin(audit_id)
    tag_this_run(audits.run_tags(a))  # period and areas, also on runs started from the UI
    publish_checklist(a)
    waits = Waits()
    while (a := _get(audit_id)).status not in (AuditStatus.closed, AuditStatus.cancelled):
        report_round = audits.current_report_round(_uow(), audit_id)
        if a.status is AuditStatus.reporting:
            report_and_ask(a, report_round)
        else:
            deliver_afresh(f"audit-{audit_id}-fieldwork")
            wait_for_fieldwork(a, report_round, waits)
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
