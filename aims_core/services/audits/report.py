"""The audit report: its content, rendered as HTML and Markdown, kept as evidence once per
report round. Jinja2 loads only when a report is rendered."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aims_core.errors import Conflict
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import ApprovalRequest, ApprovalStatus, AuditStatus, FindingKind
from aims_core.rules.audit import audit_policy
from aims_core.services import capa as capas
from aims_core.services import evidence
from aims_core.services.approvals import get_request
from aims_core.services.audits.periods import _tz
from aims_core.services.audits.queries import _load, _out, get_audit, subject
from aims_core.services.audits.schemas import AuditOut, FindingOut
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

_FINDING_ORDER: Final = {k: i for i, k in enumerate(FindingKind)}


def report_round(session: Session, audit_id: int) -> int:
    """1 + the report approvals already refused (a rejected report is written and asked anew)."""
    refused = session.scalar(
        select(func.count())
        .select_from(ApprovalRequest)
        .where(
            ApprovalRequest.idempotency_key.startswith(f"audit-{audit_id}-report-"),
            ApprovalRequest.status.in_([ApprovalStatus.rejected, ApprovalStatus.cancelled]),
        )
    )
    return 1 + (refused or 0)


def current_report_round(uow: UnitOfWork, audit_id: int) -> int:
    """The audit's report round, read in a unit of work of its own (the internal-audit flow keys
    its report tasks and waits by it: a rejected report is written and asked anew)."""
    with uow.read():
        return report_round(uow.session, audit_id)


def _result_of(findings: list[FindingOut], completed: bool) -> str:
    if findings:
        worst = min(findings, key=lambda f: _FINDING_ORDER[f.kind])
        return worst.kind.value
    return "conforming" if completed else "not yet audited"


def _conclusion(a: AuditOut) -> str:
    counts = Counter(f.kind for f in a.findings)
    if a.completed_at is None:
        return "Fieldwork is not complete: this is a draft."
    if counts[FindingKind.major]:
        return (
            f"The AIMS does not conform in the audited scope: {counts[FindingKind.major]} major "
            f"and {counts[FindingKind.minor]} minor nonconformit(ies), each with a CAPA."
        )
    if counts[FindingKind.minor]:
        return (
            f"The AIMS conforms in the audited scope except for {counts[FindingKind.minor]} minor "
            "nonconformit(ies), each with a CAPA."
        )
    return "The AIMS conforms to ISO/IEC 42001 in the audited scope; no nonconformity was found."


def report_context(uow: UnitOfWork, audit_id: int, *, approval: bool = True) -> dict[str, Any]:
    """What the report templates show. `approval` False leaves out the approval's outcome and
    the CAPAs' progress: the version kept as evidence depends on the fieldwork alone."""
    a = get_audit(uow, audit_id)
    by_control: dict[str, list[FindingOut]] = defaultdict(list)
    for f in a.findings:
        by_control[f.control_id].append(f)
    done = a.completed_at is not None
    checklist = [
        {**item, "result": _result_of(by_control.get(item["control"], []), done)}
        for item in a.checklist
    ]
    capa_rows = []
    for f in a.nonconformities:
        if f.capa_id is None:
            continue
        c = capas.get_capa(uow, f.capa_id)
        capa_rows.append(
            {
                "id": c.id,
                "finding": f.id,
                "control": c.control_id,
                "system": c.system,
                "owner": c.owner,
                "title": c.title,
                "status": c.status.value if approval else None,
            }
        )
    decision = None
    if approval and a.request_id is not None:
        r = get_request(uow, a.request_id)
        decision = {
            "id": r.id,
            "status": str(r.status),
            "approvals": r.approvals,
            "rejections": r.rejections,
        }
    return {
        "audit": a.model_dump(),
        "checklist": checklist,
        "groups": [
            {"kind": k.value, "findings": [f.model_dump() for f in a.findings if f.kind is k]}
            for k in FindingKind
        ],
        "capas": capa_rows,
        "conclusion": _conclusion(a),
        "approval": decision,
        "live": approval,  # CAPA progress shown (not in the version kept as evidence)
    }


def render_report(
    uow: UnitOfWork, audit_id: int, out_dir: Path, *, approval: bool = True
) -> tuple[Path, Path]:
    """Write `audit-<id>-report.html` and `.md` into `out_dir`; returns their paths."""
    from aims_core import reports  # Jinja2: loaded only when a report is rendered

    context = report_context(uow, audit_id, approval=approval)
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / f"audit-{audit_id}-report.html"
    md = out_dir / f"audit-{audit_id}-report.md"
    html.write_text(reports.render("audit_report.html.j2", **context), "utf-8")
    md.write_text(reports.render("audit_report.md.j2", **context), "utf-8")
    return html, md


def reports_dir(settings: Settings) -> Path:
    return settings.data_dir / "audit-reports"


def record_report(uow: UnitOfWork, audit_id: int, actor: Actor) -> AuditOut:
    """Write the report of a completed fieldwork and keep it as `audit-report` evidence (HTML
    and Markdown), once per report round."""
    settings = uow.settings
    with uow.read():
        row = _load(uow.session, audit_id)
        if row.status is not AuditStatus.reporting:
            raise Conflict(
                f"audit {row.id} is {row.status.value}: the report is recorded after fieldwork",
                "audit",
            )
        n = report_round(uow.session, audit_id)
    html, md = render_report(
        uow, audit_id, reports_dir(settings) / f"audit-{audit_id}-r{n}", approval=False
    )
    with uow:
        row = _load(uow.session, audit_id, lock=True)
        title = f"Internal audit report {row.period} (audit {row.id})"
        ev_html = evidence.append_in(
            uow,
            EvidenceIn(
                subject=subject(row.id),
                kind="audit-report",
                title=title,
                data=html.read_bytes(),
                file_name=html.name,
                media_type="text/html; charset=utf-8",
                idempotency_key=f"audit-{row.id}-report-r{n}-html",
            ),
            actor,
        )
        ev_md = evidence.append_in(
            uow,
            EvidenceIn(
                subject=subject(row.id),
                kind="audit-report",
                title=f"{title} (Markdown)",
                text=md.read_text("utf-8"),
                media_type="text/markdown; charset=utf-8",
                idempotency_key=f"audit-{row.id}-report-r{n}-md",
            ),
            actor,
        )
        if row.report_evidence_id != ev_html.id:
            row.report_evidence_id = ev_html.id
            uow.audit(
                actor,
                "audit.report-recorded",
                subject(row.id),
                round=n,
                evidence_ids=[ev_html.id, ev_md.id],
                files=[str(html), str(md)],
            )
        uow.session.flush()
        out = _out(uow.session, row, audit_policy(settings), _tz(settings))
        uow.commit()
    evidence.sync_anchor(settings)
    return out
