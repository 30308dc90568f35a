"""Unicode system names: a display name (any text) and a key derived from it, on SQLite and
PostgreSQL — the key rule, the inventory import and its clashes, lookups, and the migration."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from alembic import command
from sqlalchemy import func, inspect, select

from aims_core.database import alembic_config
from aims_core.db import get_engine
from aims_core.errors import Conflict, ImportRejected, InvalidInput, NotFound
from aims_core.importing import RawRow
from aims_core.models import AISystem, AuditEvent, Person
from aims_core.schemas import SystemIn
from aims_core.services import incidents, status, systems
from aims_core.system_keys import derive_key, key_problem
from aims_core.uow import Actor, UnitOfWork

ACTOR = Actor(who="test", channel="cli")

# --- the key rule (no database) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Évaluation crédit", "evaluation-credit"),
        ("Crème brûlée — v2.0!", "creme-brulee-v2.0"),
        ("Αξιολόγηση Πίστωσης", "αξιολόγηση-πίστωσης"),  # Greek keeps its accents, final ς
        ("信用スコア", "信用スコア"),
        ("ｼﾝﾖｳ ｽｺｱ ガイド", "シンヨウ-スコア-ガイド"),  # half-width kana: NFKD, voicing kept
        ("Straße Łódź", "straße-łodz"),
        ("  --a - b__ ", "a-b"),
        ("🙂 bot", "bot"),
        ("!!!", ""),
    ],
)
def test_a_name_derives_its_key(name: str, key: str) -> None:
    assert derive_key(name) == key


def test_every_existing_name_is_its_own_key() -> None:
    """Keys valid before display names existed stay valid: the demo's and the tests' systems."""
    demo = Path(__file__).parents[1] / "aims_core" / "data" / "demo_org.yaml"
    names = [s["name"] for s in yaml.safe_load(demo.read_text())["systems"]]
    names += ["credit-scoring", "fraud", "model_v1.2", "x", "good-one", "chatbot", "summariser"]
    assert len(names) > 7
    for name in names:
        assert derive_key(name) == name
        assert key_problem(name) is None


def test_a_bad_key_is_explained_in_words() -> None:
    problem = key_problem("Credit Scoring")
    assert problem is not None
    assert problem.startswith("'Credit Scoring' is not a key ('credit-scoring' would do): a key is")
    assert "lowercase letters (any script), digits, '-', '_' and '.'" in problem
    assert not any(c in problem for c in "^$[]*\\"), problem  # no regular expression
    assert "too long" in (key_problem("k" * 121) or "")


def test_a_name_is_stored_composed_whatever_keyboard_typed_it() -> None:
    typed_on_a_mac = unicodedata.normalize("NFD", "Évaluation crédit")
    data = SystemIn(
        name=typed_on_a_mac, owner="a@b.example", purpose="p", risk_tier="high", criticality="low"
    )
    assert (data.name, data.key) == ("Évaluation crédit", "evaluation-credit")
    assert data.name != typed_on_a_mac


# --- import, on both databases ------------------------------------------------------------------

OWNER = "credit.owner@northwind.example"


def row(line: int, name: str, key: str = "", **more: str) -> RawRow:
    values = {
        "name": name,
        "owner": OWNER,
        "purpose": "p",
        "risk_tier": "high",
        "criticality": "low",
        "vendor": "",
        "key": key,
    }
    return RawRow(line=line, values={**values, **more})


def write_csv(path: Path, rows: list[tuple[str, ...]]) -> Path:
    lines = ["name,key,owner,purpose,risk_tier,criticality"]
    lines += [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def counts(settings) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with get_engine(settings.effective_database_url).connect() as conn:
        return (
            conn.scalar(select(func.count()).select_from(AISystem)) or 0,
            conn.scalar(select(func.count()).select_from(AuditEvent)) or 0,
        )


def test_latin_greek_and_japanese_names_import_each_with_its_key(
    run_cli, org, settings, tmp_path
) -> None:
    f = write_csv(
        tmp_path / "inventory.csv",
        [
            ("Évaluation crédit", "", OWNER, "Scores loans", "high", "critical"),
            ("Αξιολόγηση Πίστωσης", "", OWNER, "Scores loans (GR)", "high", "high"),
            ("信用スコア", "", OWNER, "Scores loans (JP)", "limited", "medium"),
            ("Détection de fraude", "fraude-fr", OWNER, "Flags fraud", "high", "high"),
        ],
    )
    result = run_cli("systems", "import", str(f))
    assert result.exit_code == 0, result.output
    assert "imported 4 AI system(s) from inventory.csv, each as key: name" in result.output
    for shown in (
        "  evaluation-credit: Évaluation crédit",
        "  αξιολόγηση-πίστωσης: Αξιολόγηση Πίστωσης",
        "  信用スコア: 信用スコア",
        "  fraude-fr: Détection de fraude",
    ):
        assert shown in result.output
    listed = {s["name"]: s for s in json.loads(run_cli("systems", "list", "--json").output)}
    assert listed["evaluation-credit"]["display_name"] == "Évaluation crédit"
    assert listed["fraude-fr"]["display_name"] == "Détection de fraude"
    assert listed["credit-scoring"]["display_name"] == "credit-scoring"  # a demo system
    # Commands take the key, the name as shown, or the key in another case; each its own row.
    for typed in (
        "evaluation-credit",
        "Évaluation crédit",
        "EVALUATION-CREDIT",
        "evaluation credit",
    ):
        shown = json.loads(run_cli("systems", "show", typed, "--json").output)
        assert shown["name"] == "evaluation-credit", typed
    table = run_cli("systems", "show", "αξιολόγηση-πίστωσης").output
    assert "Αξιολόγηση Πίστωσης" in table and "key" in table
    raci = run_cli(
        "raci", "set", "stage-gate", "--system", "信用スコア",
        "--responsible", OWNER, "--accountable", OWNER,
    )  # fmt: skip
    assert raci.exit_code == 0, raci.output
    with get_engine(settings.effective_database_url).connect() as conn:
        subjects = set(conn.scalars(select(AuditEvent.subject)))
    assert {"system:evaluation-credit", "system:信用スコア", "system:fraude-fr"} <= subjects
    # An incident reported against the name as shown runs on the key; `aims status` shows both.
    incident = incidents.report(
        org,
        {
            "system": "Αξιολόγηση Πίστωσης",
            "title": "Scores drift",
            "severity": "SEV4",
            "category": "model-failure",
            "aware_at": datetime.now(UTC) - timedelta(hours=1),
        },
        ACTOR,
        notify=False,
    ).incident
    assert incident.system == "αξιολόγηση-πίστωσης"
    incidents.confirm_serious(org, incident.id, "death", ACTOR)
    (clock,) = status.snapshot(org).clocks
    assert (clock.system, clock.system_name) == ("αξιολόγηση-πίστωσης", "Αξιολόγηση Πίστωσης")
    shown = run_cli("status")
    assert shown.exit_code == 0, shown.output
    # The clock's system cell, wrapped in the table: the name people know, then the key.
    assert "│ Αξιολόγηση Πίστωσης " in shown.output
    assert "│ (αξιολόγηση-πίστωσης) " in shown.output


def test_two_names_with_one_key_are_refused_naming_both_lines(org, settings) -> None:
    uow = UnitOfWork(settings)
    before = counts(settings)
    rows = [
        row(2, "Évaluation crédit"),  # evaluation-credit: first
        row(3, "Scoring", key="Credit Scoring"),  # a given key not in key form
        row(4, "Evaluation credit"),  # evaluation-credit again
        row(5, "Crédit", key="credit-scoring"),  # an existing (demo) system's key
        row(6, "???"),  # nothing to make a key from
        row(7, "Evaluation-Credit", risk_tier="very-high"),  # bad tier, and its key clashes too
        row(8, "two\nlines"),  # a control character
        row(9, "信用スコア"),  # fine
    ]
    with pytest.raises(ImportRejected) as caught:
        systems.import_systems(uow, rows, ACTOR, source="inventory.csv")
    problems = caught.value.problems
    assert problems == [
        "line 3: key: 'Credit Scoring' is not a key ('credit-scoring' would do): a key is "
        "lowercase letters (any script), digits, '-', '_' and '.', starting and ending with a "
        "letter or digit, at most 120 characters",
        "line 4: name: duplicate name: key 'evaluation-credit' (from 'Evaluation credit') is "
        "also the key of line 2 ('Évaluation crédit')",
        "line 5: key: 'credit-scoring' already exists: it is the key of AI system 'credit-scoring'",
        "line 6: key: the name '???' has no letter or digit to make a key of: give a key",
        f"line 7: risk_tier: 'very-high' is not one of {problems[4].split('one of ')[1]}",
        "line 7: name: duplicate name: key 'evaluation-credit' (from 'Evaluation-Credit') is "
        "also the key of line 2 ('Évaluation crédit')",
        "line 8: name: contains a control character (U+000A): a name is one line of text",
    ]
    assert str(caught.value) == "inventory.csv: 6 bad row(s), 7 problem(s); nothing imported"
    assert counts(settings) == before


def test_add_refuses_a_taken_key_and_a_lookup_that_names_two(org, settings) -> None:
    uow = UnitOfWork(settings)
    base = {"owner": OWNER, "purpose": "p", "risk_tier": "minimal", "criticality": "low"}
    one = systems.add_system(uow, SystemIn(name="Chatbot", key="chatbot-eu", **base), ACTOR)
    assert (one.name, one.display_name) == ("chatbot-eu", "Chatbot")
    before = counts(settings)
    # A clash is blamed on what the person gave: the key, or the name the key came from.
    taken = "already exists: it is the key of AI system 'Chatbot'; give another name or key"
    with pytest.raises(Conflict, match=f"^key: 'chatbot-eu' {taken}$"):
        systems.add_system(uow, SystemIn(name="Chatbot Europe", key="chatbot-eu", **base), ACTOR)
    with pytest.raises(Conflict, match=r"^name: key 'fraud-detection' \(from 'Fraud Detection'\)"):
        systems.add_system(uow, SystemIn(name="Fraud Detection", **base), ACTOR)
    assert counts(settings) == before
    systems.add_system(uow, SystemIn(name="Chatbot", key="chatbot-us", **base), ACTOR)
    with pytest.raises(
        InvalidInput, match="'Chatbot' could name AI systems chatbot-eu, chatbot-us"
    ):
        systems.show_system(uow, "Chatbot")
    with pytest.raises(NotFound, match="no AI system named 'chatbot'"):
        systems.show_system(uow, "chatbot")  # a name derives no key that exists
    # A key from before the rule (capitals) is still found, exactly and in another case; a row
    # written without a display name (by code that predates it) shows its key.
    with uow:
        owner = uow.session.scalar(select(Person).where(Person.email == OWNER))
        uow.session.add(AISystem(name="Legacy-Model", purpose="p", owner=owner, **base_enums()))
        uow.commit()
    assert systems.show_system(uow, "legacy-model").display_name == "Legacy-Model"
    assert systems.show_system(uow, "Legacy-Model").name == "Legacy-Model"


def base_enums() -> dict[str, object]:
    from aims_core.models import Criticality, RiskTier

    return {"risk_tier": RiskTier.minimal, "criticality": Criticality.low}


def test_migration_backfills_the_display_name_from_the_key(settings) -> None:
    """0008 on a database with systems: each one's display name is its key, and required."""
    url = settings.effective_database_url
    cfg = alembic_config(url)
    command.downgrade(cfg, "0007")
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO person (email, name, active, created_at) "
            "VALUES ('o@example.org', 'O', true, CURRENT_TIMESTAMP)"
        )
        conn.exec_driver_sql(
            "INSERT INTO ai_system (name, purpose, owner_id, risk_tier, criticality, "
            "lifecycle_stage, created_at, updated_at) SELECT 'model_v1.2', 'p', id, 'high', "
            "'low', 'concept', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM person"
        )
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert conn.execute(select(AISystem.name, AISystem.display_name)).all() == [
            ("model_v1.2", "model_v1.2")
        ]
        nullable = {c["name"]: c["nullable"] for c in inspect(conn).get_columns("ai_system")}
    assert nullable["display_name"] is False
