"""People, roles, managers, the AI inventory, RACI and the import, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from aims_core.db import get_engine
from aims_core.models import AISystem, AuditEvent, Person, RaciActivity


def count(settings, model) -> int:  # type: ignore[no-untyped-def]
    with get_engine(settings.effective_database_url).connect() as conn:
        return conn.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def org(run_cli):  # type: ignore[no-untyped-def]
    """Two people: an owner and her report."""
    for args in (
        [
            "--email",
            "Ann@Example.org",
            "--name",
            "Ann Owner",
            "--role",
            "system-owner",
            "--slack-id",
            "U0ANN",
        ],
        [
            "--email",
            "bob@example.org",
            "--name",
            "Bob Scientist",
            "--role",
            "data-scientist",
            "--role",
            "incident-responder",
            "--manager",
            "ann@example.org",
        ],
    ):
        result = run_cli("people", "add", *args)
        assert result.exit_code == 0, result.output


def test_people_with_roles_and_manager(run_cli, org) -> None:
    result = run_cli("people", "list", "--json")
    assert result.exit_code == 0, result.output
    people = {p["email"]: p for p in json.loads(result.output)}
    assert people["ann@example.org"]["slack_user_id"] == "U0ANN"
    assert people["bob@example.org"]["roles"] == ["data-scientist", "incident-responder"]
    assert people["bob@example.org"]["manager"] == "ann@example.org"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--email", "not-an-email", "--name", "X"], "email: 'not-an-email' is not an email"),
        (
            ["--email", "x@example.org", "--name", "X", "--role", "wizard"],
            "role: unknown role 'wizard'",
        ),
        (
            ["--email", "x@example.org", "--name", "X", "--manager", "nobody@example.org"],
            "manager: no person with email 'nobody@example.org'",
        ),
        (["--email", "ann@example.org", "--name", "Ann Again"], "email: a person with email"),
        (["--email", "x@example.org", "--name", "X", "--slack-id", "lowercase"], "slack_user_id"),
    ],
)
def test_bad_person_input_is_one_line_exit_2_and_writes_nothing(
    run_cli, settings, org, args, expected
) -> None:
    before = (count(settings, Person), count(settings, AuditEvent))
    result = run_cli("people", "add", *args)
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output
    assert (count(settings, Person), count(settings, AuditEvent)) == before


def test_system_add_show_list_and_audit(run_cli, settings, org) -> None:
    result = run_cli(
        "systems",
        "add",
        "--name",
        "credit-scoring",
        "--owner",
        "ann@example.org",
        "--purpose",
        "Scores loans",
        "--risk-tier",
        "High",
        "--criticality",
        "CRITICAL",
        "--vendor",
        "Acme",
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(run_cli("systems", "show", "credit-scoring", "--json").output)
    assert shown["risk_tier"] == "high"
    assert shown["criticality"] == "critical"
    assert shown["lifecycle_stage"] == "concept"
    assert shown["vendor"] == "Acme"
    assert shown["owner"] == "ann@example.org"
    listed = json.loads(run_cli("systems", "list", "--json").output)
    assert [s["name"] for s in listed] == ["credit-scoring"]
    with get_engine(settings.effective_database_url).connect() as conn:
        actions = conn.execute(
            select(AuditEvent.action, AuditEvent.subject, AuditEvent.channel).order_by(
                AuditEvent.id
            )
        ).all()
    assert ("system.added", "system:credit-scoring", "cli") in actions


def test_unknown_system_and_bad_tier(run_cli, settings, org) -> None:
    result = run_cli("systems", "show", "nope")
    assert result.exit_code == 2
    assert "no AI system named 'nope'" in result.output
    result = run_cli(
        "systems",
        "add",
        "--name",
        "x",
        "--owner",
        "ann@example.org",
        "--purpose",
        "p",
        "--risk-tier",
        "extreme",
        "--criticality",
        "low",
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: risk_tier:")
    assert count(settings, AISystem) == 0


def test_raci_exactly_one_accountable_per_scope(run_cli, settings, org) -> None:
    run_cli(
        "systems",
        "add",
        "--name",
        "fraud",
        "--owner",
        "ann@example.org",
        "--purpose",
        "p",
        "--risk-tier",
        "high",
        "--criticality",
        "high",
    )
    ok = run_cli(
        "raci",
        "set",
        "stage-gate",
        "--responsible",
        "bob@example.org",
        "--accountable",
        "ann@example.org",
        "--informed",
        "bob@example.org",
    )
    assert ok.exit_code == 0, ok.output
    per_system = run_cli(
        "raci",
        "set",
        "stage-gate",
        "--system",
        "fraud",
        "--responsible",
        "ann@example.org",
        "--accountable",
        "bob@example.org",
    )
    assert per_system.exit_code == 0, per_system.output
    two = run_cli(
        "raci",
        "set",
        "incident-response",
        "--responsible",
        "bob@example.org",
        "--accountable",
        "ann@example.org",
        "--accountable",
        "bob@example.org",
    )
    assert two.exit_code == 2
    assert "accountable: exactly one Accountable" in two.output
    unknown = run_cli(
        "raci",
        "set",
        "audit",
        "--responsible",
        "ghost@example.org",
        "--accountable",
        "ann@example.org",
    )
    assert unknown.exit_code == 2
    assert "responsible: no person with email 'ghost@example.org'" in unknown.output
    # Replacing a RACI keeps one row per (activity, scope) and one Accountable.
    again = run_cli(
        "raci",
        "set",
        "stage-gate",
        "--responsible",
        "ann@example.org",
        "--accountable",
        "bob@example.org",
    )
    assert again.exit_code == 0, again.output
    rows = json.loads(run_cli("raci", "show", "--json").output)
    assert count(settings, RaciActivity) == 2
    org_row = next(r for r in rows if r["system"] is None)
    assert org_row == {
        "activity": "stage-gate",
        "system": None,
        "responsible": ["ann@example.org"],
        "accountable": "bob@example.org",
        "consulted": [],
        "informed": [],
    }
    fraud_rows = json.loads(run_cli("raci", "show", "--system", "fraud", "--json").output)
    assert {r["system"] for r in fraud_rows} == {None, "fraud"}


# --- import ------------------------------------------------------------------------------------

GOOD_ROWS = [
    ("credit-scoring", "ann@example.org", "Scores loans", "HIGH", "Critical", ""),
    ("chatbot", " Bob@Example.org ", "Answers customers", "Limited", "medium", "Acme LLM"),
    ("recommender", "ann@example.org", "Suggests products", "minimal", "LOW", "Acme LLM"),
    ("summariser", "bob@example.org", "Summarises documents", "GPAI", "low", ""),
]


def write_csv(path: Path, rows, *, bom: bool, newline: str) -> Path:  # type: ignore[no-untyped-def]
    header = "name,owner,purpose,risk_tier,criticality,vendor"
    lines = [header] + [",".join(f'"{v}"' if "," in v else v for v in r) for r in rows]
    data = newline.join(lines) + newline
    path.write_bytes(("\ufeff" if bom else "").encode() + data.encode("utf-8"))
    return path


def test_good_csv_with_bom_crlf_and_mixed_case_imports_every_row(
    run_cli, settings, org, tmp_path
) -> None:
    f = write_csv(tmp_path / "systems.csv", GOOD_ROWS, bom=True, newline="\r\n")
    result = run_cli("systems", "import", str(f))
    assert result.exit_code == 0, result.output
    assert "imported 4 AI system(s)" in result.output
    listed = {s["name"]: s for s in json.loads(run_cli("systems", "list", "--json").output)}
    assert set(listed) == {"credit-scoring", "chatbot", "recommender", "summariser"}
    assert listed["chatbot"]["owner"] == "bob@example.org"
    assert listed["chatbot"]["risk_tier"] == "limited"
    assert listed["chatbot"]["vendor"] == "Acme LLM"
    assert listed["summariser"]["risk_tier"] == "gpai"
    assert listed["credit-scoring"]["vendor"] is None


@pytest.mark.parametrize("newline", ["\n", "\r"])
def test_csv_without_bom_and_other_line_endings(run_cli, settings, org, tmp_path, newline) -> None:
    f = write_csv(tmp_path / "systems.csv", GOOD_ROWS[:2], bom=False, newline=newline)
    result = run_cli("systems", "import", str(f))
    assert result.exit_code == 0, result.output
    assert count(settings, AISystem) == 2


def test_xlsx_import(run_cli, settings, org, tmp_path) -> None:
    frame = pd.DataFrame(
        GOOD_ROWS, columns=["Name", "Owner", "Purpose", "Risk_Tier", "Criticality", "Vendor"]
    )
    f = tmp_path / "systems.xlsx"
    frame.to_excel(f, index=False)
    result = run_cli("systems", "import", str(f))
    assert result.exit_code == 0, result.output
    assert count(settings, AISystem) == 4


def test_bad_csv_names_every_bad_row_and_writes_nothing(run_cli, settings, org, tmp_path) -> None:
    run_cli(
        "systems",
        "add",
        "--name",
        "existing",
        "--owner",
        "ann@example.org",
        "--purpose",
        "p",
        "--risk-tier",
        "minimal",
        "--criticality",
        "low",
    )
    rows = [
        ("good-one", "ann@example.org", "fine", "high", "low", ""),  # line 2
        ("tiered", "ann@example.org", "p", "very-high", "low", ""),  # line 3: wrong tier
        ("orphan", "ghost@example.org", "p", "high", "low", ""),  # line 4: unknown owner
        ("", "ann@example.org", "p", "high", "low", ""),  # line 5: missing name
        ("good-one", "bob@example.org", "p", "minimal", "low", ""),  # line 6: duplicate in file
        ("existing", "bob@example.org", "p", "minimal", "low", ""),  # line 7: exists already
    ]
    f = write_csv(tmp_path / "bad.csv", rows, bom=False, newline="\n")
    before = (count(settings, AISystem), count(settings, AuditEvent))
    result = run_cli("systems", "import", str(f))
    assert result.exit_code == 2
    out = result.output
    assert "5 bad row(s)" in out
    assert "line 3: risk_tier: 'very-high' is not one of" in out
    assert "line 4: owner: no person with email 'ghost@example.org'" in out
    assert "line 5: name: missing" in out
    # Systems clash on their keys (here each name is its own key), naming both lines.
    assert "line 6: name: duplicate name: key 'good-one' is also the key of line 2" in out
    assert "line 7: name: key 'existing' already exists: it is the key of AI system" in out
    assert "line 2:" not in out
    assert (count(settings, AISystem), count(settings, AuditEvent)) == before


def test_import_missing_column_and_missing_file(run_cli, settings, org, tmp_path) -> None:
    f = tmp_path / "cols.csv"
    f.write_text("name,owner,purpose\nx,ann@example.org,p\n")
    result = run_cli("systems", "import", str(f))
    assert result.exit_code == 2
    assert "columns: missing column(s) risk_tier, criticality" in result.output
    result = run_cli("systems", "import", str(tmp_path / "absent.csv"))
    assert result.exit_code == 2
    assert "file: no such file" in result.output
    assert count(settings, AISystem) == 0


def test_demo_org_loads_once(run_cli, settings) -> None:
    first = run_cli("demo", "load")
    assert first.exit_code == 0, first.output
    assert "added 11 people, 7 AI systems, 7 RACI rows" in first.output
    assert "credit-scoring" in first.output
    second = run_cli("demo", "load")
    assert "added 0 people, 0 AI systems, 0 RACI rows" in second.output
    tiers = {s["risk_tier"] for s in json.loads(run_cli("systems", "list", "--json").output)}
    assert tiers == {"prohibited", "high", "limited", "minimal", "gpai"}
