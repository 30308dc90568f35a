"""The competence matrix as an Excel workbook (pandas and openpyxl load only when one is made)."""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from aims_core.errors import InvalidInput
from aims_core.models import Role
from aims_core.services.training.days import now_utc
from aims_core.services.training.queries import rows as matrix_rows
from aims_core.services.training.schemas import MatrixRow, Status
from aims_core.uow import UnitOfWork

__all__ = ["SUMMARY_SHEET", "export_xlsx"]

SUMMARY_SHEET: Final = "Summary"

_COLUMNS: Final = (
    "person",
    "name",
    "training",
    "title",
    "status",
    "completed",
    "expires",
    "days_left",
    "roles",
)


def export_xlsx(uow: UnitOfWork, path: Path, *, now: datetime | None = None) -> list[MatrixRow]:
    """The competence matrix as a workbook: a Summary sheet (per role: people and how many
    required trainings are current / expiring / expired / missing) and one sheet per role.
    Written to a temporary file and moved into place, so a failure leaves no half file."""
    if path.suffix.lower() != ".xlsx":
        raise InvalidInput(f"{path} must end in .xlsx", "xlsx")
    if not path.parent.is_dir():
        raise InvalidInput(f"directory {path.parent} does not exist", "xlsx")
    at = now_utc(now)
    with uow.read():
        s = uow.session
        rows = matrix_rows(s, uow.settings, at)
        titles = {role_id: title for role_id, title in s.execute(select(Role.id, Role.title))}
    import pandas as pd  # lazily: pandas costs about a second at import, `aims --help` must not

    by_role: dict[str, list[MatrixRow]] = {}
    for r in rows:
        for role in r.roles:
            by_role.setdefault(role, []).append(r)

    def frame(items: list[MatrixRow]) -> Any:
        return pd.DataFrame(
            [
                (
                    r.email,
                    r.name,
                    r.training,
                    r.title,
                    r.status.value,
                    r.completed_on,
                    r.expires_on,
                    r.days_left,
                    ", ".join(r.roles),
                )
                for r in items
            ],
            columns=list(_COLUMNS),
        )

    def counts(items: list[MatrixRow]) -> list[int]:
        return [sum(1 for r in items if r.status is st) for st in Status]

    summary = pd.DataFrame(
        [
            (role, titles.get(role, role), len({r.email for r in items}), *counts(items))
            for role, items in sorted(by_role.items())
        ]
        + [("all", "every required training", len({r.email for r in rows}), *counts(rows))],
        columns=["role", "title", "people", *(st.value for st in Status)],
    )
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            summary.to_excel(writer, sheet_name=SUMMARY_SHEET, index=False)
            for role, items in sorted(by_role.items()):
                frame(items).to_excel(writer, sheet_name=role[:31], index=False)
            for ws in writer.sheets.values():
                ws.freeze_panes = "A2"
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return rows
