"""Schema migrations (Alembic, shipped inside the package) and database initialisation."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from aims_core.db import get_engine
from aims_core.settings import Settings
from aims_core.uow import Actor

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings) -> str:
    """Apply every migration; returns the revision the database is at."""
    url = settings.effective_database_url
    settings.ensure_data_dir()
    command.upgrade(alembic_config(url), "head")
    return current_revision(url) or "base"


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None  # the package always ships its migrations
    return head


def initialise(settings: Settings, actor: Actor) -> dict[str, object]:
    """`aims init`: data dir, evidence key, schema at head, catalogs loaded. Safe to repeat."""
    from aims_core.services.catalogs import load_catalogs
    from aims_core.uow import UnitOfWork

    settings.ensure_data_dir()
    key_created = settings.ensure_evidence_key()
    revision = upgrade(settings)
    counts = load_catalogs(UnitOfWork(settings), actor)
    return {"revision": revision, "evidence_key_created": key_created, **counts}
