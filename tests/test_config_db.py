"""Settings, `aims config show`, `aims init`, migrations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from aims_core.database import head_revision
from aims_core.db import get_engine
from aims_core.models import Control, Role


def test_config_show_masks_every_secret(run_cli, monkeypatch) -> None:
    monkeypatch.setenv("AIMS_SLACK_BOT_TOKEN", "xoxb-very-secret")
    monkeypatch.setenv("AIMS_SLACK_SIGNING_SECRET", "sign-very-secret")
    monkeypatch.setenv("AIMS_EVIDENCE_KEY", "key-very-secret")
    monkeypatch.setenv("AIMS_DATABASE_URL", "postgresql+psycopg://aims:pw-very-secret@db/aims")
    result = run_cli("config", "show", "--json")
    assert result.exit_code == 0, result.output
    assert "very-secret" not in result.output
    shown = json.loads(result.output)
    assert shown["slack_bot_token"] == "****** (set)"
    assert shown["slack_app_token"] == "(not set)"
    assert shown["database_url"] == "postgresql+psycopg://aims:***@db/aims"


def test_init_is_repeatable_and_loads_catalogs(run_cli, settings) -> None:
    for _ in range(2):
        result = run_cli("init")
        assert result.exit_code == 0, result.output
    with get_engine(settings.effective_database_url).connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Role)) == 13
        assert conn.scalar(select(func.count()).select_from(Control)) == 91


def test_migrations_match_the_models(settings) -> None:
    """A model change without its migration fails here, on both backends."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from aims_core.models import Base

    with get_engine(settings.effective_database_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_db_upgrade_on_an_empty_database(cli, tmp_path, monkeypatch) -> None:
    from aims_core.cli import app

    monkeypatch.setenv("AIMS_DATA_DIR", str(tmp_path / "fresh"))
    result = cli.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"database at revision {head_revision()}" in result.output
    result = cli.invoke(app, ["db", "current"])
    assert f"database: {head_revision()}; newest: {head_revision()}" in result.output
    assert (tmp_path / "fresh" / "aims.db").exists()


def test_init_generates_the_evidence_key_once(cli, tmp_path, monkeypatch) -> None:
    from aims_core.cli import app

    data = tmp_path / "fresh"
    monkeypatch.setenv("AIMS_DATA_DIR", str(data))
    first = cli.invoke(app, ["init"])
    assert first.exit_code == 0, first.output
    assert "evidence key generated" in first.output
    key = (data / "evidence.key").read_text()
    assert len(key.strip()) == 64
    assert (data / "evidence.key").stat().st_mode & 0o077 == 0
    second = cli.invoke(app, ["init"])
    assert "evidence key generated" not in second.output
    assert (data / "evidence.key").read_text() == key


def test_a_command_on_a_database_never_initialised_says_run_aims_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from aims_core.cli import app

    monkeypatch.setenv("AIMS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("AIMS_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["systems", "list"])
    assert result.exit_code == 2, result.output
    assert "run `aims init`" in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_sqlite_writers_of_one_process_queue_on_a_lock_that_every_ending_releases(
    settings, actor
) -> None:
    """Threads of one process wait for each other on a Python lock, not in SQLite's sleeping
    busy handler; commit, rollback, an exception and a read-only unit of work all leave it
    free, and a waiting writer goes after the holder's commit, not beside it."""
    import threading

    from aims_core.db import sqlite_writer_lock
    from aims_core.models import AuditEvent
    from aims_core.uow import UnitOfWork

    lock = sqlite_writer_lock(settings.effective_database_url)

    def write(subject: str) -> None:
        with UnitOfWork(settings) as uow:
            uow.audit(actor, "lock.test", subject)
            uow.commit()

    with UnitOfWork(settings) as uow:
        assert lock.locked()
        uow.commit()
    assert not lock.locked()
    with UnitOfWork(settings):
        pass  # left without commit: rolled back
    assert not lock.locked()
    with pytest.raises(RuntimeError), UnitOfWork(settings):
        raise RuntimeError("a service failed mid-transaction")
    assert not lock.locked()
    with UnitOfWork(settings).read():
        assert not lock.locked()

    started = threading.Event()
    with UnitOfWork(settings) as holder:
        waiter = threading.Thread(target=lambda: (started.set(), write("waiter")))
        waiter.start()
        assert started.wait(5)
        waiter.join(0.5)
        assert waiter.is_alive(), "the second writer must wait for the first"
        holder.audit(actor, "lock.test", "holder")
        holder.commit()
    waiter.join(10)
    assert not waiter.is_alive() and not lock.locked()
    with UnitOfWork(settings).read() as uow:
        subjects = uow.session.scalars(
            select(AuditEvent.subject)
            .where(AuditEvent.action == "lock.test")
            .order_by(AuditEvent.id)
        ).all()
    assert subjects == ["holder", "waiter"]
