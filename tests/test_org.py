"""The organisation as code: `aims org apply` / `aims org export`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from aims_core.db import dispose_engine, get_engine
from aims_core.models import AISystem, AuditEvent, Person, RaciActivity, TrainingRequirement
from aims_core.services import people, raci, systems
from aims_core.settings import Settings
from aims_core.uow import UnitOfWork

DEMO_FILE = Path(str(resources.files("aims_core.data").joinpath("demo_org.yaml")))

#: Every table an organisation file writes, and the audit trail.
TABLES = ("person", "person_role", "ai_system", "vendor", "raci_activity", "raci_member")


def counts(settings: Settings) -> dict[str, int]:
    with get_engine(settings.effective_database_url).connect() as conn:
        out = {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) or 0 for t in TABLES}
        out["audit_event"] = conn.scalar(select(func.count()).select_from(AuditEvent)) or 0
        out["training_requirement"] = (
            conn.scalar(select(func.count()).select_from(TrainingRequirement)) or 0
        )
    return out


def snapshot(settings: Settings) -> dict[str, object]:
    """People with roles and managers, RACI and systems, as the services show them."""
    uow = UnitOfWork(settings)
    return {
        "people": sorted(
            (p.email, p.name, p.slack_user_id, tuple(p.roles), p.manager, p.active)
            for p in people.list_people(uow)
        ),
        "raci": sorted(json.dumps(r.model_dump(), sort_keys=True) for r in raci.show_raci(uow)),
        "systems": sorted(
            json.dumps(s.model_dump(mode="json", exclude={"id"}), sort_keys=True)
            for s in systems.list_systems(uow)
        ),
    }


def test_demo_file_applied_to_an_empty_database_is_the_demo_organisation(
    run_cli, settings: Settings, sqlite_demo_template: Path, tmp_path: Path
) -> None:
    result = run_cli("org", "apply", str(DEMO_FILE))
    assert result.exit_code == 0, result.output
    assert "+ person ceo@northwind.example" in result.output
    assert "+ system credit-scoring" in result.output
    applied = snapshot(settings)
    # `aims demo load`'s organisation: the session's demo template, made by `load_demo`.
    copy = tmp_path / "demo-copy"
    shutil.copytree(sqlite_demo_template, copy)
    demo = Settings(data_dir=copy, database_url=f"sqlite:///{copy / 'aims.db'}")
    try:
        assert applied == snapshot(demo)
    finally:
        dispose_engine(demo.effective_database_url)
    assert len(applied["people"]) == 11 and len(applied["systems"]) == 7


def test_applied_twice_the_second_run_changes_and_writes_nothing(run_cli, settings) -> None:
    assert run_cli("org", "apply", str(DEMO_FILE)).exit_code == 0
    before = counts(settings)
    result = run_cli("org", "apply", str(DEMO_FILE))
    assert result.exit_code == 0, result.output
    assert "no change" in result.output
    assert counts(settings) == before  # not even an audit event


def test_dry_run_shows_the_changes_and_writes_nothing(run_cli, settings) -> None:
    before = counts(settings)
    result = run_cli("org", "apply", str(DEMO_FILE), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "+ person governance@northwind.example" in result.output
    assert "nothing written" in result.output
    assert counts(settings) == before


BROKEN = """\
organisation: Broken Ltd
people:
  - {email: ann@example.org, name: Ann, roles: [system-owner]}
  - {email: not-an-email, name: Bob}
  - {email: cy@example.org, name: Cy, roles: [astronaut]}
systems:
  - {name: scorer, owner: ann@example.org, purpose: Scores, risk_tier: high, criticality: high}
raci:
  - activity: stage-gate
    system: no-such-system
    responsible: [ann@example.org]
    accountable: ann@example.org
"""


def test_a_file_with_three_mistakes_names_each_with_its_line(run_cli, settings, tmp_path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(BROKEN)
    before = counts(settings)
    result = run_cli("org", "apply", str(path))
    assert result.exit_code == 2, result.output
    assert "3 problem(s)" in result.output, result.output
    assert "line 4: people[1].email: 'not-an-email' is not an email address" in result.output
    assert "line 5: people[2].roles[0]: unknown role 'astronaut'" in result.output
    assert "line 10: raci[0].system: no AI system 'no-such-system'" in result.output
    assert counts(settings) == before


def test_schema_and_reference_mistakes_are_all_named_at_once(run_cli, settings, tmp_path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(
        "organisation: X\n"
        "people:\n"
        "  - {email: a@example.org, name: A, manager: nobody@example.org}\n"
        "  - {email: a@example.org, name: A again}\n"
        "  - {email: b@example.org, name: B, colour: blue}\n"
    )
    result = run_cli("org", "apply", str(path))
    assert result.exit_code == 2, result.output
    assert "3 problem(s)" in result.output, result.output
    assert "line 5: people[2].colour: Extra inputs are not permitted" in result.output
    assert "line 3: people[0].manager: no person 'nobody@example.org'" in result.output
    assert "line 4: people[1]: email 'a@example.org' is also on line 3" in result.output
    assert counts(settings)["person"] == 0


def test_changes_are_applied_in_place_audited_and_absent_people_reported(
    run_cli, settings, tmp_path
) -> None:
    assert run_cli("org", "apply", str(DEMO_FILE)).exit_code == 0
    text_ = DEMO_FILE.read_text("utf-8")
    changed = text_.replace(
        "name: Mei Chen, slack_id: U0DEMO006, roles: [data-scientist], "
        "manager: credit.owner@northwind.example",
        "name: Mei Chen, slack_id: U0DEMO006, roles: [data-scientist, risk-manager], "
        "manager: governance@northwind.example",
    )
    changed = "\n".join(
        line for line in changed.splitlines() if "procurement@northwind.example, name" not in line
    )
    changed = changed.replace("procurement@northwind.example", "ops.owner@northwind.example")
    assert changed != text_
    path = tmp_path / "org.yaml"
    path.write_text(changed)
    result = run_cli("org", "apply", str(path))
    assert result.exit_code == 0, result.output
    assert (
        "~ person ds.lead@northwind.example: roles: +risk-manager; "
        "manager: credit.owner@northwind.example → governance@northwind.example"
    ) in result.output
    assert "? person procurement@northwind.example: not in the file" in result.output
    mei = next(p for p in people.list_people(UnitOfWork(settings)) if p.name == "Mei Chen")
    assert mei.roles == ["data-scientist", "risk-manager"]
    assert mei.manager == "governance@northwind.example"
    with get_engine(settings.effective_database_url).connect() as conn:
        actions = list(
            conn.scalars(
                select(AuditEvent.action).where(
                    AuditEvent.subject == "person:ds.lead@northwind.example"
                )
            )
        )
        still_active = conn.scalar(
            select(Person.active).where(Person.email == "procurement@northwind.example")
        )
    assert actions[-1] == "person.updated"
    assert still_active  # reported, not deactivated without --prune


def test_export_is_a_file_apply_takes_back_without_a_change(run_cli, org, settings, tmp_path):
    out = tmp_path / "exported.yaml"
    result = run_cli("org", "export", "--output", str(out), "--organisation", "Northwind Lending")
    assert result.exit_code == 0, result.output
    text_ = out.read_text("utf-8")
    assert "organisation: Northwind Lending" in text_ and "Tomás Ruiz" in text_
    before = counts(settings)
    result = run_cli("org", "apply", str(out))
    assert result.exit_code == 0, result.output
    assert "no change" in result.output, result.output
    assert counts(settings) == before
    with get_engine(settings.effective_database_url).connect() as conn:
        assert conn.scalar(select(func.count()).select_from(AISystem)) == 7
        assert conn.scalar(select(func.count()).select_from(RaciActivity)) == 7


def test_missing_file_and_bad_yaml_are_clear_errors(run_cli, tmp_path) -> None:
    result = run_cli("org", "apply", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "no such file" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("organisation: X\npeople: [\n")
    result = run_cli("org", "apply", str(bad))
    assert result.exit_code == 2 and "not valid YAML" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_prune_deactivates_absent_people_only_when_their_work_is_reassigned(
    run_cli, settings, tmp_path
) -> None:
    assert run_cli("org", "apply", str(DEMO_FILE)).exit_code == 0
    kept = [
        line
        for line in DEMO_FILE.read_text("utf-8").splitlines()
        if "email: credit.owner@northwind.example" not in line
    ]
    path = tmp_path / "org.yaml"
    path.write_text("\n".join(kept))
    # Priya still owns systems the file gives her: the file itself is inconsistent.
    result = run_cli("org", "apply", str(path), "--prune")
    assert result.exit_code == 2, result.output
    assert "credit.owner@northwind.example" in result.output
    assert "system credit-scoring" in result.output and "vendor TalentSort GmbH" in result.output
    before = counts(settings)
    moved = "\n".join(kept).replace(
        "owner: credit.owner@northwind.example", "owner: ops.owner@northwind.example"
    )
    moved = moved.replace(
        "accountable: credit.owner@northwind.example", "accountable: governance@northwind.example"
    )
    moved = moved.replace(", manager: credit.owner@northwind.example", "")
    path.write_text(moved)
    result = run_cli("org", "apply", str(path), "--prune", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "- person credit.owner@northwind.example" in result.output
    assert counts(settings) == before
    result = run_cli("org", "apply", str(path), "--prune")
    assert result.exit_code == 0, result.output
    with get_engine(settings.effective_database_url).connect() as conn:
        assert not conn.scalar(
            select(Person.active).where(Person.email == "credit.owner@northwind.example")
        )
    result = run_cli("org", "apply", str(path), "--prune")
    assert "no change" in result.output, result.output
