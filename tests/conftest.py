"""Shared fixtures.

`settings` gives each test a fresh, initialised AIMS database and data dir, once on SQLite and
once on PostgreSQL (the same test, parametrised). The PostgreSQL half needs a server URL in
AIMS_TEST_POSTGRES_URL (`.ci/run` starts a throw-away cluster and sets it); without it that half
is skipped with a reason, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from demo_org import DEMO_TEMPLATE_DB, with_demo_organisation
from prefect_harness import free_port
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from aims_core.database import initialise
from aims_core.db import dispose_engine, get_engine
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

pytest_plugins = ["prefect_fixtures", "reliability"]

PG_ENV = "AIMS_TEST_POSTGRES_URL"
# One template per session: two test runs on one PostgreSQL server must not drop each other's.
TEMPLATE_DB = f"aims_test_template_{uuid.uuid4().hex[:8]}"
TEST_ACTOR = Actor(who="tester@example.org", channel="test")

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The session's Prefect API (started lazily by flow tests) is fixed before Prefect is imported,
# so every client in this process and in the runner's flow runs talks to it, never to a default.
# Under pytest-xdist each worker is a session of its own, with its own API (the variables the
# controller set are inherited: a worker that sees another process's choice makes its own).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
if os.environ.get("AIMS_TEST_PREFECT_WORKER") != _WORKER:
    os.environ["AIMS_TEST_PREFECT_WORKER"] = _WORKER
    os.environ["AIMS_TEST_PREFECT_PORT"] = str(free_port())
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="aims-prefect-")
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{os.environ['AIMS_TEST_PREFECT_PORT']}/api"
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_var, None)
# Tests never read a developer's .env or settings from the shell.
for _var in [
    v
    for v in os.environ
    if v.startswith("AIMS_")
    and v not in (PG_ENV, "AIMS_TEST_PREFECT_PORT", "AIMS_TEST_PREFECT_WORKER")
]:
    os.environ.pop(_var)


def _pg_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {PG_ENV} is not set: the PostgreSQL half must run in CI")
        pytest.skip(f"PostgreSQL half skipped: set {PG_ENV} (`.ci/run` does) to run it")
    return url


@contextmanager
def scratch_database(admin_url: str, prefix: str, driver: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for a test that runs servers of its own (its URL with
    `driver`, e.g. psycopg for AIMS, asyncpg for a Prefect server); dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = make_url(admin_url).set(drivername=f"postgresql+{driver}", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        if driver == "psycopg":
            dispose_engine(url.render_as_string(hide_password=False))
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised SQLite database, made once per session and copied for each test."""
    data = tmp_path_factory.mktemp("sqlite-template")
    s = Settings(data_dir=data, database_url=f"sqlite:///{data / 'aims.db'}")
    initialise(s, TEST_ACTOR)
    with get_engine(s.effective_database_url).connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    dispose_engine(s.effective_database_url)
    return data / "aims.db"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """An initialised PostgreSQL template; each test gets `CREATE DATABASE ... TEMPLATE` of it."""
    admin_url = _pg_url()
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}"))
        conn.execute(text(f"CREATE DATABASE {TEMPLATE_DB}"))
    url = make_url(admin_url).set(database=TEMPLATE_DB).render_as_string(hide_password=False)
    initialise(Settings(data_dir=Path("/nonexistent-unused"), database_url=url), TEST_ACTOR)
    dispose_engine(url)
    yield admin_url
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)"))
    admin.dispose()


def _demo_data_dir(data: Path, url: str) -> None:
    """Load the demo organisation into `url` once, with `data` as its data dir (its evidence key,
    anchor and file store: the chain of the demo's evidence is keyed and anchored there)."""
    data.mkdir(exist_ok=True)
    (data / "evidence.key").write_text("test-key-" + uuid.uuid4().hex + "\n")
    from aims_core.services.demo import load_demo

    load_demo(UnitOfWork(Settings(data_dir=data, database_url=url)), TEST_ACTOR)
    dispose_engine(url)


@pytest.fixture(scope="session")
def sqlite_demo_template(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding the demo organisation (Northwind Lending) on SQLite, made once per
    session: loading it costs ~1.3 s, which ~500 tests would otherwise each pay."""
    data = tmp_path_factory.mktemp("sqlite-demo-template") / "data"
    data.mkdir()
    shutil.copy(sqlite_template, data / "aims.db")
    url = f"sqlite:///{data / 'aims.db'}"
    _demo_data_dir(data, url)
    with get_engine(url).connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    dispose_engine(url)
    return data


@pytest.fixture(scope="session")
def pg_demo_template(pg_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo organisation on PostgreSQL (DEMO_TEMPLATE_DB) and its data dir, made once."""
    admin = create_engine(pg_template, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {DEMO_TEMPLATE_DB} TEMPLATE {TEMPLATE_DB}"))
    url = make_url(pg_template).set(database=DEMO_TEMPLATE_DB).render_as_string(hide_password=False)
    data = tmp_path_factory.mktemp("pg-demo-template") / "data"
    _demo_data_dir(data, url)
    yield data
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {DEMO_TEMPLATE_DB} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """A fresh initialised AIMS database and data dir; also exported as AIMS_* for the CLI."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "evidence.key").write_text("test-key-" + uuid.uuid4().hex + "\n")
    dropper = None
    if request.param == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), data_dir / "aims.db")
        url = f"sqlite:///{data_dir / 'aims.db'}"
    else:
        admin_url = request.getfixturevalue("pg_template")
        name = f"aims_t_{uuid.uuid4().hex[:12]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"))
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

        def dropper() -> None:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            admin.dispose()

    monkeypatch.setenv("AIMS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("AIMS_DATABASE_URL", url)
    yield Settings(data_dir=data_dir, database_url=url)
    dispose_engine(url)
    if dropper:
        dropper()


@pytest.fixture
def actor() -> Actor:
    return TEST_ACTOR


@pytest.fixture
def org(request: pytest.FixtureRequest, settings: Settings) -> UnitOfWork:
    """The demo organisation (Northwind Lending) in the test's database."""
    return UnitOfWork(with_demo_organisation(request, settings))


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture
def run_cli(cli: CliRunner, settings: Settings):  # type: ignore[no-untyped-def]
    """Invoke `aims ...` in process against the test's database; returns the click Result."""
    from aims_core.cli import app

    def invoke(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        return cli.invoke(app, list(args), input=input)

    return invoke


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`), every test on the session's engine (a Prefect API
    and a served runner: ~22 s to start, ~300 MB) runs in one worker, so one engine is started
    for the whole suite while the other workers take the service-level tests."""
    for item in items:
        if "engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("engine"))
