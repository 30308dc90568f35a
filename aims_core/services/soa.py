"""Statement of Applicability (ISO/IEC 42001 6.1.3 d): a decision and reason per Annex A control.

Every one of the 38 controls appears in the SoA; a control nobody has decided on yet is shown as
"undecided" rather than silently left out, so gaps are visible to an auditor.
"""

from __future__ import annotations

import enum
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from aims_core import catalog
from aims_core.errors import Conflict, InvalidInput, NotFound
from aims_core.models import Control, ControlKind, SoaEntry, utcnow
from aims_core.uow import Actor, UnitOfWork, locked

SHEET = "Statement of Applicability"
# Cells wrap, so long text needs no more than 60 characters; short columns get room to be read.
WIDTH_FLOOR = {"justification": 40, "updated_by": 16, "updated_at": 20, "value": 16}
COLUMNS = ("control", "objective", "title", "status", "justification", "updated_by", "updated_at")


class SoaStatus(enum.StrEnum):
    applicable = "applicable"
    not_applicable = "not applicable"
    undecided = "undecided"


class SoaDecision(BaseModel):
    """One applicability decision as it comes in from any channel (CLI, Slack, UI)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    control_id: str = Field(min_length=1, max_length=40)
    applicable: bool
    justification: str = Field(default="", max_length=4000)

    @field_validator("control_id")
    @classmethod
    def _canonical_id(cls, value: str) -> str:
        # Catalog ids are "A.<digits>..." so upper-casing is the whole normalisation.
        return value.upper()


class SoaRow(BaseModel):
    control: str
    objective: str
    objective_title: str
    title: str
    status: SoaStatus
    justification: str
    updated_by: str | None
    updated_at: datetime | None


class SoaSummary(BaseModel):
    applicable: int
    not_applicable: int
    undecided: int
    total: int

    def line(self) -> str:
        return (
            f"{self.applicable} applicable, {self.not_applicable} not applicable, "
            f"{self.undecided} undecided of {self.total}"
        )


class SoaSetResult(BaseModel):
    row: SoaRow
    changed: bool


class SoaExport(BaseModel):
    path: Path
    summary: SoaSummary
    undecided: list[str]


def _as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes, PostgreSQL aware ones; we store UTC on both."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row(control: Control, objective: Control | None, entry: SoaEntry | None) -> SoaRow:
    if entry is None:
        status, justification, by, at = SoaStatus.undecided, "", None, None
    else:
        status = SoaStatus.applicable if entry.applicable else SoaStatus.not_applicable
        justification, by, at = entry.justification, entry.updated_by, _as_utc(entry.updated_at)
    return SoaRow(
        control=control.id,
        objective=objective.id if objective else (control.parent_id or ""),
        objective_title=objective.title if objective else "",
        title=control.title,
        status=status,
        justification=justification,
        updated_by=by,
        updated_at=at,
    )


def _annex_control(uow: UnitOfWork, control_id: str) -> Control:
    """The Annex A control, row-locked so concurrent decisions on it serialise (PostgreSQL)."""
    s = uow.session
    control = locked(s, Control, control_id)
    if control is None:
        hint = "`aims catalog list --kind annex-control` lists the 38 Annex A controls"
        guess = f"A.{control_id}"
        if s.scalar(
            select(Control.id).where(Control.id == guess, Control.kind == ControlKind.annex_control)
        ):
            hint = f"did you mean {guess}?"
        raise NotFound(f"{control_id} not found; {hint}", field="control")
    if control.kind is ControlKind.clause:
        raise InvalidInput(f"{control_id} is a clause, not an Annex A control", field="control")
    if control.kind is ControlKind.annex_objective:
        members = s.scalars(
            select(Control.id).where(Control.parent_id == control.id).order_by(Control.position)
        )
        raise InvalidInput(
            f"{control_id} is an Annex A objective, not a control; its controls: "
            f"{', '.join(members)}",
            field="control",
        )
    return control


def set_applicability(
    uow: UnitOfWork, decision: SoaDecision, actor: Actor, *, at: datetime | None = None
) -> SoaSetResult:
    """Record whether an Annex A control applies; excluding one needs a reason (6.1.3 d).
    `at`: when it was decided (a past business date); default now."""
    if not decision.applicable and not decision.justification.strip():
        raise InvalidInput(
            f"{decision.control_id} is not applicable: say why (the SoA must "
            "justify every exclusion)",
            field="justification",
        )
    with uow:
        s = uow.session
        control = _annex_control(uow, decision.control_id)
        entry = s.get(SoaEntry, control.id)
        old = (
            None
            if entry is None
            else {"applicable": entry.applicable, "justification": entry.justification}
        )
        new = {"applicable": decision.applicable, "justification": decision.justification}
        changed = old != new
        if changed:  # repeating the same decision is a no-op, not another audit event
            if entry is None:
                entry = SoaEntry(control_id=control.id)
                s.add(entry)
            entry.applicable, entry.justification = decision.applicable, decision.justification
            entry.updated_by, entry.updated_at = actor.who, _as_utc(at) if at else utcnow()
            s.flush()
            uow.audit(actor, "soa.set", f"control:{control.id}", old=old, new=new)
        objective = s.get(Control, control.parent_id) if control.parent_id else None
        result = SoaSetResult(row=_row(control, objective, entry), changed=changed)
        uow.commit()
    return result


def soa_rows(uow: UnitOfWork) -> list[SoaRow]:
    """Every Annex A control in catalog order, decided or not."""
    with uow:
        s = uow.session
        objectives = {
            o.id: o
            for o in s.scalars(select(Control).where(Control.kind == ControlKind.annex_objective))
        }
        pairs = s.execute(
            select(Control, SoaEntry)
            .outerjoin(SoaEntry, SoaEntry.control_id == Control.id)
            .where(Control.kind == ControlKind.annex_control)
            .order_by(Control.position)
        ).all()
        rows = [_row(c, objectives.get(c.parent_id or ""), e) for c, e in pairs]
    missing = [r.id for r in catalog.annex_a_controls() if r.id not in {x.control for x in rows}]
    if missing:
        raise Conflict(
            f"the database lacks Annex A controls {', '.join(missing)}; run `aims init` "
            "to load the catalog",
            field="catalog",
        )
    return rows


def summarise(rows: list[SoaRow]) -> SoaSummary:
    count = {status: sum(r.status is status for r in rows) for status in SoaStatus}
    return SoaSummary(
        applicable=count[SoaStatus.applicable],
        not_applicable=count[SoaStatus.not_applicable],
        undecided=count[SoaStatus.undecided],
        total=len(rows),
    )


def export_xlsx(uow: UnitOfWork, path: Path) -> SoaExport:
    """Write the SoA workbook for auditors; refuses rather than export an unjustified exclusion.

    The workbook is written to a temporary file and moved into place, so a refusal or a failure
    never leaves a half-written file at `path`.
    """
    if path.suffix.lower() != ".xlsx":
        raise InvalidInput(f"{path} must end in .xlsx", field="xlsx")
    if not path.parent.is_dir():
        raise InvalidInput(f"directory {path.parent} does not exist", field="xlsx")
    rows = soa_rows(uow)
    unjustified = [
        r.control
        for r in rows
        if r.status is SoaStatus.not_applicable and not r.justification.strip()
    ]
    if unjustified:
        raise Conflict(
            f"not applicable without a justification: {', '.join(unjustified)}; set one "
            "with `aims soa set CONTROL --not-applicable --justification TEXT`; "
            "nothing written",
            field="soa",
        )
    summary = summarise(rows)
    _write_workbook(path, rows, summary)
    undecided = [r.control for r in rows if r.status is SoaStatus.undecided]
    return SoaExport(path=path, summary=summary, undecided=undecided)


def _write_workbook(path: Path, rows: list[SoaRow], summary: SoaSummary) -> None:
    import pandas as pd  # lazily: pandas costs about a second at import, `aims --help` must not
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    # Excel has no time zones: times are written as naive UTC, which the Summary sheet says.
    records = [
        {
            "control": r.control,
            "objective": f"{r.objective} {r.objective_title}".strip(),
            "title": r.title,
            "status": r.status.value,
            "justification": r.justification,
            "updated_by": r.updated_by or "",
            "updated_at": r.updated_at.astimezone(UTC).replace(tzinfo=None)
            if r.updated_at
            else None,
        }
        for r in rows
    ]
    soa = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    info = pd.DataFrame(
        [
            ("standard", "ISO/IEC 42001:2023, Annex A"),
            ("controls", summary.total),
            ("applicable", summary.applicable),
            ("not applicable", summary.not_applicable),
            ("undecided", summary.undecided),
            ("exported at (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")),
            ("updated_at time zone", "UTC"),
        ],
        columns=["item", "value"],
    )
    # Beside the target (same file system, so the rename is atomic); opened normally so the
    # workbook gets the usual umask permissions.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            soa.to_excel(writer, sheet_name=SHEET, index=False)
            info.to_excel(writer, sheet_name="Summary", index=False)
            for name, frame in ((SHEET, soa), ("Summary", info)):
                ws = writer.sheets[name]
                ws.freeze_panes = "A2"
                for cell in ws[1]:
                    cell.font = Font(bold=True)
                for i, col in enumerate(frame.columns, start=1):
                    longest = max([len(str(col)), *(len(str(v)) for v in frame[col] if v)])
                    width = min(max(longest + 2, WIDTH_FLOOR.get(col, 8)), 60)
                    ws.column_dimensions[get_column_letter(i)].width = width
            ws = writer.sheets[SHEET]
            at_col = COLUMNS.index("updated_at") + 1
            for row in ws.iter_rows(min_row=2):
                for cell in row:
                    cell.alignment = Alignment(vertical="top", wrap_text=True)
                row[at_col - 1].number_format = "yyyy-mm-dd hh:mm:ss"
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
