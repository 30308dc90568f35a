"""The demo organisation for a test, copied from a template made once per session.

Loading the demo organisation (`load_demo`) costs ~1.3 s; some 500 tests start from it. The
session makes it once per database kind (tests/conftest.py: `sqlite_demo_template`,
`pg_demo_template`) and each test gets a copy of it in place of its fresh database.
"""

from __future__ import annotations

import shutil
import uuid
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from aims_core.db import dispose_engine
from aims_core.models import AuditFinding, Capa, Control, ControlKind, Incident, SoaEntry
from aims_core.services import reviews
from aims_core.settings import Settings
from aims_core.uow import UnitOfWork

#: The PostgreSQL template holding the demo organisation (one per session: two runs on one
#: server must not drop each other's).
DEMO_TEMPLATE_DB = f"aims_test_demo_{uuid.uuid4().hex[:8]}"


def with_demo_organisation(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The test's fresh database replaced by a copy of the demo organisation's (the same URL and
    data dir, so every fixture holding `settings` sees it): what `load_demo` would have written,
    at the cost of a file copy or a `CREATE DATABASE ... TEMPLATE`."""
    url = settings.effective_database_url
    dispose_engine(url)
    if url.startswith("sqlite"):
        template = request.getfixturevalue("sqlite_demo_template")
        for leftover in settings.data_dir.glob("aims.db*"):
            leftover.unlink()
    else:
        template = request.getfixturevalue("pg_demo_template")
        name = make_url(url).database
        admin = create_engine(request.getfixturevalue("pg_template"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {DEMO_TEMPLATE_DB}"))
        admin.dispose()
    shutil.copytree(template, settings.data_dir, dirs_exist_ok=True)
    return settings


# --- the review pack's key figures, counted over the tables ------------------------------------


def figures_of(performance: dict[str, Any]) -> dict[str, int]:
    """The key figures of a review pack (its `inputs["performance"]`)."""
    return {
        "incidents": performance["incidents"],
        "capas_opened": performance["capas_opened"],
        "capas_closed": performance["capas_closed"],
        "findings": sum(performance["findings_by_kind"].values()),
        "soa_decided": performance["soa_decided"],
        "soa_controls": performance["soa_controls"],
    }


def figures_counted(uow: UnitOfWork, period: str) -> dict[str, int]:
    """The same figures counted here, independently of the review service, for `period`."""
    start, end = reviews.period_bounds(period, uow.settings.timezone)
    annex = select(Control.id).where(Control.kind == ControlKind.annex_control)
    queries = {
        "incidents": select(func.count())
        .select_from(Incident)
        .where(Incident.aware_at >= start, Incident.aware_at < end, Incident.is_drill.is_(False)),
        "capas_opened": select(func.count())
        .select_from(Capa)
        .where(Capa.created_at >= start, Capa.created_at < end),
        "capas_closed": select(func.count())
        .select_from(Capa)
        .where(Capa.closed_at >= start, Capa.closed_at < end),
        "findings": select(func.count())
        .select_from(AuditFinding)
        .where(AuditFinding.created_at >= start, AuditFinding.created_at < end),
        "soa_decided": select(func.count())
        .select_from(SoaEntry)
        .where(SoaEntry.control_id.in_(annex)),
        "soa_controls": select(func.count()).select_from(annex.subquery()),
    }
    with uow.read():
        return {name: int(uow.session.scalar(q) or 0) for name, q in queries.items()}
