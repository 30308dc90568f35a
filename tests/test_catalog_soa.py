"""`aims catalog list`, the Statement of Applicability service and `aims soa set/show/export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest
from sqlalchemy import func, select, text

from aims_core.db import get_engine, is_sqlite
from aims_core.errors import InvalidInput, NotFound
from aims_core.models import AuditEvent, SoaEntry
from aims_core.services.soa import SoaDecision, set_applicability
from aims_core.settings import Settings
from aims_core.uow import UnitOfWork

# Written out from ISO/IEC 42001:2023 on purpose, not read from the catalog file under test.
ANNEX_A_CONTROLS = [
    "A.2.2", "A.2.3", "A.2.4",
    "A.3.2", "A.3.3",
    "A.4.2", "A.4.3", "A.4.4", "A.4.5", "A.4.6",
    "A.5.2", "A.5.3", "A.5.4", "A.5.5",
    "A.6.1.2", "A.6.1.3", "A.6.2.2", "A.6.2.3", "A.6.2.4", "A.6.2.5", "A.6.2.6", "A.6.2.7",
    "A.6.2.8",
    "A.7.2", "A.7.3", "A.7.4", "A.7.5", "A.7.6",
    "A.8.2", "A.8.3", "A.8.4", "A.8.5",
    "A.9.2", "A.9.3", "A.9.4",
    "A.10.2", "A.10.3", "A.10.4",
]  # fmt: skip
CLAUSES = [
    "4", "4.1", "4.2", "4.3", "4.4",
    "5", "5.1", "5.2", "5.3",
    "6", "6.1", "6.1.1", "6.1.2", "6.1.3", "6.1.4", "6.2", "6.3",
    "7", "7.1", "7.2", "7.3", "7.4", "7.5", "7.5.1", "7.5.2", "7.5.3",
    "8", "8.1", "8.2", "8.3", "8.4",
    "9", "9.1", "9.2", "9.2.1", "9.2.2", "9.3", "9.3.1", "9.3.2", "9.3.3",
    "10", "10.1", "10.2",
]  # fmt: skip


def _counts(settings: Settings) -> tuple[int, int]:
    with get_engine(settings.effective_database_url).connect() as conn:
        entries = conn.scalar(select(func.count()).select_from(SoaEntry))
        events = conn.scalar(select(func.count()).select_from(AuditEvent))
    return entries or 0, events or 0


def _soa_events(settings: Settings) -> list[dict[str, Any]]:
    """The `soa.set` audit events as plain dicts (the unit of work expires its objects on exit)."""
    with UnitOfWork(settings, write=False) as uow:
        events = uow.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "soa.set").order_by(AuditEvent.id)
        )
        return [{"subject": e.subject, "channel": e.channel, "details": e.details} for e in events]


# --- catalog ---------------------------------------------------------------------------------


def test_catalog_list_json_holds_every_clause_and_annex_a_control(run_cli) -> None:
    assert len(ANNEX_A_CONTROLS) == 38
    result = run_cli("catalog", "list", "--json")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert all(set(e) == {"id", "kind", "title", "parent"} for e in entries)
    by_kind: dict[str, list[str]] = {}
    for e in entries:
        by_kind.setdefault(e["kind"], []).append(e["id"])
    assert by_kind["annex-control"] == ANNEX_A_CONTROLS
    assert by_kind["clause"] == CLAUSES
    assert by_kind["annex-objective"] == [
        "A.2",
        "A.3",
        "A.4",
        "A.5",
        "A.6.1",
        "A.6.2",
        "A.7",
        "A.8",
        "A.9",
        "A.10",
    ]
    parent = {e["id"]: e["parent"] for e in entries}
    assert parent["A.6.2.4"] == "A.6.2"
    assert parent["6.1.2"] == "6.1"
    assert parent["9.3.3"] == "9.3"
    assert parent["10"] is None
    assert all(e["title"].strip() for e in entries)


def test_catalog_list_filters_by_kind_and_needs_no_database(cli, tmp_path, monkeypatch) -> None:
    from aims_core.cli import app

    monkeypatch.setenv("AIMS_DATA_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("AIMS_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/nowhere")
    result = cli.invoke(app, ["catalog", "list", "--kind", "annex-control", "--json"])
    assert result.exit_code == 0, result.output
    assert [e["id"] for e in json.loads(result.output)] == ANNEX_A_CONTROLS

    table = cli.invoke(app, ["catalog", "list"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    # Indented by level: a sub-sub-clause sits deeper than its clause.
    assert any("│ 6 " in line for line in lines)
    assert any("│     6.1.2 " in line for line in lines)
    assert any("│   A.6.2.4 " in line for line in lines)
    assert not (tmp_path / "absent").exists()

    bad = cli.invoke(app, ["catalog", "list", "--kind", "annex"])
    assert bad.exit_code == 2


# --- soa set ---------------------------------------------------------------------------------


def test_soa_set_applicable_and_not_applicable(run_cli, settings) -> None:
    result = run_cli("soa", "set", "a.6.2.4", "--applicable", "--justification", "We ship models")
    assert result.exit_code == 0, result.output
    assert "A.6.2.4 set: applicable" in result.output
    result = run_cli("soa", "set", "A.7.3", "--not-applicable", "-j", "No data is acquired")
    assert result.exit_code == 0, result.output

    with get_engine(settings.effective_database_url).connect() as conn:
        rows = {r.control_id: r for r in conn.execute(select(SoaEntry.__table__))}
    assert set(rows) == {"A.6.2.4", "A.7.3"}
    assert rows["A.6.2.4"].applicable is True
    assert rows["A.7.3"].applicable is False
    assert rows["A.7.3"].justification == "No data is acquired"
    assert rows["A.7.3"].updated_by.startswith("os:")

    # Changing a decision updates the row and the audit event keeps old and new values.
    result = run_cli("soa", "set", "A.7.3", "--applicable", "-j", "We now buy data")
    assert result.exit_code == 0, result.output
    events = _soa_events(settings)
    assert [e["subject"] for e in events] == ["control:A.6.2.4", "control:A.7.3", "control:A.7.3"]
    assert events[0]["details"] == {
        "old": None,
        "new": {"applicable": True, "justification": "We ship models"},
    }
    assert events[2]["details"] == {
        "old": {"applicable": False, "justification": "No data is acquired"},
        "new": {"applicable": True, "justification": "We now buy data"},
    }
    assert events[2]["channel"] == "cli"
    assert _counts(settings)[0] == 2


def test_not_applicable_without_justification_is_refused(run_cli, settings) -> None:
    before = _counts(settings)
    for extra in ([], ["--justification", "   "]):
        result = run_cli("soa", "set", "A.7.3", "--not-applicable", *extra)
        assert result.exit_code == 2, result.output
        assert "justification:" in result.output
        assert "Traceback" not in result.output
    assert _counts(settings) == before


def test_unknown_control_clause_and_objective_are_refused(run_cli, settings) -> None:
    before = _counts(settings)
    result = run_cli("soa", "set", "A.99.1", "--applicable")
    assert result.exit_code == 2, result.output
    assert "control:" in result.output
    assert "not found" in result.output
    result = run_cli("soa", "set", "6.2.4", "--applicable")
    assert result.exit_code == 2
    assert "did you mean A.6.2.4?" in result.output
    result = run_cli("soa", "set", "6.1.2", "--applicable")
    assert result.exit_code == 2
    assert "is a clause, not an Annex A control" in result.output
    result = run_cli("soa", "set", "A.6.2", "--applicable")
    assert result.exit_code == 2
    assert "objective" in result.output
    result = run_cli("soa", "set", "A.6.2.4")
    assert result.exit_code == 2
    assert "--applicable or --not-applicable" in result.output
    assert _counts(settings) == before


def test_service_errors_name_the_field_and_repeats_are_no_ops(settings, actor) -> None:
    with pytest.raises(InvalidInput) as exc:
        set_applicability(
            UnitOfWork(settings), SoaDecision(control_id="A.7.3", applicable=False), actor
        )
    assert exc.value.field == "justification"
    with pytest.raises(NotFound) as nf:
        set_applicability(
            UnitOfWork(settings), SoaDecision(control_id="A.1.1", applicable=True), actor
        )
    assert nf.value.field == "control"

    decision = SoaDecision(control_id=" a.10.3 ", applicable=False, justification="No suppliers")
    first = set_applicability(UnitOfWork(settings), decision, actor)
    assert first.changed
    assert first.row.control == "A.10.3"
    assert first.row.objective == "A.10"
    assert first.row.updated_by == actor.who
    assert first.row.updated_at is not None
    again = set_applicability(UnitOfWork(settings), decision, actor)
    assert not again.changed
    assert len(_soa_events(settings)) == 1


# --- soa show --------------------------------------------------------------------------------


def test_soa_show_lists_all_38_with_a_summary(run_cli) -> None:
    assert run_cli("soa", "set", "A.2.2", "--applicable").exit_code == 0
    assert run_cli("soa", "set", "A.10.4", "--not-applicable", "-j", "No customers").exit_code == 0
    result = run_cli("soa", "show")
    assert result.exit_code == 0, result.output
    assert "1 applicable, 1 not applicable, 36 undecided of 38" in result.output

    rows = json.loads(run_cli("soa", "show", "--json").output)
    assert [r["control"] for r in rows] == ANNEX_A_CONTROLS
    status = {r["control"]: r["status"] for r in rows}
    assert status["A.2.2"] == "applicable"
    assert status["A.10.4"] == "not applicable"
    assert sum(s == "undecided" for s in status.values()) == 36
    assert next(r for r in rows if r["control"] == "A.10.4")["justification"] == "No customers"


# --- soa export ------------------------------------------------------------------------------


def test_soa_export_writes_every_control(run_cli, tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    decisions = {
        "A.6.2.4": ("--applicable", "Models are validated before release"),
        "A.7.3": ("--not-applicable", "No third-party data is acquired"),
        "A.10.4": ("--not-applicable", "No external customers"),
    }
    for control, (flag, why) in decisions.items():
        assert run_cli("soa", "set", control, flag, "-j", why).exit_code == 0
    out = exports / "soa.xlsx"
    result = run_cli("soa", "export", "--xlsx", str(out))
    assert result.exit_code == 0, result.output
    assert "warning: 35 control(s) undecided" in result.output
    assert "1 applicable, 2 not applicable, 35 undecided of 38" in result.output

    frame = pd.read_excel(out, sheet_name="Statement of Applicability", keep_default_na=False)
    assert list(frame.columns) == [
        "control", "objective", "title", "status", "justification", "updated_by", "updated_at",
    ]  # fmt: skip
    assert len(frame) == 38
    assert list(frame["control"]) == ANNEX_A_CONTROLS
    by_id = frame.set_index("control")
    assert by_id.loc["A.6.2.4", "status"] == "applicable"
    assert by_id.loc["A.6.2.4", "justification"] == "Models are validated before release"
    assert by_id.loc["A.7.3", "status"] == "not applicable"
    assert by_id.loc["A.7.3", "justification"] == "No third-party data is acquired"
    assert by_id.loc["A.10.4", "status"] == "not applicable"
    assert by_id.loc["A.10.4", "objective"].startswith("A.10 ")
    assert by_id.loc["A.7.3", "updated_by"].startswith("os:")
    assert (frame["status"] == "undecided").sum() == 35
    assert by_id.loc["A.2.2", "justification"] == ""

    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["Statement of Applicability", "Summary"]
    ws = wb["Statement of Applicability"]
    assert ws.freeze_panes == "A2"
    assert all(cell.font.b for cell in ws[1])
    assert ws.column_dimensions["E"].width >= 40
    summary = dict(wb["Summary"].iter_rows(min_row=2, values_only=True))
    assert summary["controls"] == 38
    assert summary["not applicable"] == 2
    assert summary["undecided"] == 35
    assert [p.name for p in exports.iterdir()] == ["soa.xlsx"]  # no temporary file left


def test_soa_export_refuses_unjustified_exclusion(run_cli, settings, tmp_path: Path) -> None:
    """The database CHECK normally prevents this row; the export must not trust that alone."""
    url = settings.effective_database_url
    with get_engine(url).begin() as conn:
        if is_sqlite(url):
            conn.exec_driver_sql("PRAGMA ignore_check_constraints = ON")
        else:
            conn.exec_driver_sql(
                "ALTER TABLE soa_entry DROP CONSTRAINT ck_soa_entry_not_applicable_justified"
            )
        conn.execute(
            text(
                "INSERT INTO soa_entry (control_id, applicable, justification, updated_by, "
                "updated_at) VALUES ('A.5.5', false, '  ', 'someone', CURRENT_TIMESTAMP)"
            )
        )
        if is_sqlite(url):
            conn.exec_driver_sql("PRAGMA ignore_check_constraints = OFF")
    exports = tmp_path / "exports"
    exports.mkdir()
    out = exports / "soa.xlsx"
    result = run_cli("soa", "export", "--xlsx", str(out))
    assert result.exit_code == 2, result.output
    assert "A.5.5" in result.output
    assert "nothing written" in result.output
    assert list(exports.iterdir()) == []


def test_soa_export_rejects_a_bad_path(run_cli, tmp_path: Path) -> None:
    result = run_cli("soa", "export", "--xlsx", str(tmp_path / "soa.csv"))
    assert result.exit_code == 2
    assert "xlsx:" in result.output
    result = run_cli("soa", "export", "--xlsx", str(tmp_path / "missing" / "soa.xlsx"))
    assert result.exit_code == 2
    assert "does not exist" in result.output
