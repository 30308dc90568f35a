"""Engines and sessions for the AIMS database (SQLite embedded default, PostgreSQL scale-out)."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

_ENGINES: dict[str, Engine] = {}
_FACTORIES: dict[str, sessionmaker[Session]] = {}
#: How long a SQLite writer waits for the write lock before "database is locked".
SQLITE_BUSY_S = 30
_HOLDS_WRITER = "aims_holds_writer_lock"
_WRITERS: dict[str, threading.Lock] = {}


def get_engine(url: str) -> Engine:
    """One engine per URL per process. SQLite gets WAL, foreign keys and a busy timeout."""
    if url not in _ENGINES:
        _ENGINES[url] = _create(url)
    return _ENGINES[url]


def dispose_engine(url: str) -> None:
    """Close the pooled connections of one database (before it is dropped or copied)."""
    _FACTORIES.pop(url, None)
    engine = _ENGINES.pop(url, None)
    if engine is not None:
        engine.dispose()
        _WRITERS.pop(engine.url.render_as_string(), None)


def _create(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_S})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not pysqlite, emit BEGIN (SQLAlchemy's documented pysqlite workaround),
        # so a transaction really starts where the service starts it.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_S * 1000}")
        # FULL: a commit is on disk when it returns (in WAL mode, one fsync of the log). With
        # NORMAL a power loss could drop commits whose evidence anchor, fsynced after the
        # commit, already names them: a false tamper alarm, and lost decisions.
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    # This process's writers queue here before they ask SQLite. SQLite's busy handler sleeps
    # 1, 2, 5, 10, ... 100 ms between tries, so threads of one process (the bridge's clicks and
    # their follow-ups) waiting on each other through it wake late: a click's acknowledgement
    # had a 130-160 ms tail behind a 30 ms median. A lock hands over the moment it is released.
    # Other processes still meet at SQLite's lock.
    writer = _WRITERS[engine.url.render_as_string()] = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # A writing unit of work takes SQLite's write lock up front: a deferred transaction that
        # read first fails at once with SQLITE_BUSY when another process committed meanwhile.
        write = conn.get_execution_options().get("aims_write", False)
        held = conn.info.get(_HOLDS_WRITER, False)  # a finished transaction on this connection
        if held and not write:
            _release(conn.info)
        elif write and not held:
            if not writer.acquire(timeout=SQLITE_BUSY_S):
                raise OperationalError("BEGIN IMMEDIATE", None, Exception("database is locked"))
            conn.info[_HOLDS_WRITER] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        except BaseException:
            _release(conn.info)
            raise

    def _release(info) -> None:  # type: ignore[no-untyped-def]
        if info.pop(_HOLDS_WRITER, False):
            writer.release()

    # Released when the connection goes back to the pool, i.e. after its COMMIT or ROLLBACK has
    # run (the engine's commit event fires before the COMMIT), or when it is discarded.
    event.listen(engine.pool, "checkin", lambda _dbapi, record: _release(record.info))
    event.listen(engine.pool, "invalidate", lambda _dbapi, record, _exc: _release(record.info))


def session_factory(url: str) -> sessionmaker[Session]:
    """One per URL: every sessionmaker is a new Session subclass whose event dispatch SQLAlchemy
    builds on first use (~0.5 ms, half of an empty unit of work; bench/evidence_rate.py)."""
    if url not in _FACTORIES:
        _FACTORIES[url] = sessionmaker(bind=get_engine(url), expire_on_commit=False)
    return _FACTORIES[url]


def sqlite_writer_lock(url: str) -> threading.Lock:
    """The lock this process's writers to a SQLite database queue on (see `_configure_sqlite`)."""
    return _WRITERS[get_engine(url).url.render_as_string()]


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"
