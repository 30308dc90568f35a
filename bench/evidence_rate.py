"""Benchmark (not a test): evidence appends and `aims evidence verify`, each against a raw baseline.

    .venv/bin/python -m bench.evidence_rate [--sizes S,M] [--repeats 3] [--postgres] [--no-1m]

Figure 2 of issue 8 (and the verify half of figure 6):

- append.<db>: `evidence.append` (what `aims evidence add` calls: the keyed chain under the
  head-row lock, the audit event, one commit, then the anchor file written and fsynced outside the
  database) into a fresh initialised database, vs RAW: plain sqlite3 (or psycopg) + hashlib/hmac,
  the same payload and the same chain (HMAC of the previous chain + the canonical record), one
  commit each, into a plain table beside it. Like for like, each append is on disk when it
  returns: the service commits with the product's synchronous=FULL (one WAL fsync) and then
  fsyncs its anchor; raw commits with WAL, synchronous=FULL (one fsync each).
  append.nosync.sqlite compares the same service blocks with raw commits that do not fsync
  (synchronous=NORMAL): what the service's Python costs over a bare insert. Blocks of APPENDS
  records, interleaved service / raw / raw-durable, repeated; records/s, median of the blocks.
- verify.<size>.<db>: `evidence.verify` (what `aims evidence verify` calls; the CLI adds only a
  progress bar) over the cached synthetic organisation's chain, vs RAW: the same rows copied into
  a plain table, read back with sqlite3/psycopg and the chain recomputed in plain Python (content
  hash and size, link to the previous record, HMAC). Records/s; detail has seconds, records and
  systems (figure 6: is verify time linear in S, M, L?).
- verify.1M.sqlite: the same at exactly 1,000,000 records, on a chain built once by
  `bench/synth.py`'s own bulk chain writer and cached under .aims/bench; detail has the database
  size on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from bench.common import (
    CACHE_DIR,
    NOW,
    SEED,
    SIZES,
    Context,
    Figure,
    Target,
    _synth_key,
    add_context_args,
    console,
    context_from_args,
    median,
    organisation,
    scratch_database,
    standalone,
)

APPENDS: Final = 1_000  # records per timed block
WARMUP: Final = 20  # untimed appends per writer before the first block
ONE_MILLION: Final = 1_000_000
APPEND_TARGET: Final = Target(on="ratio", op=">=", bound=0.2)
VERIFY_TARGET: Final = Target(on="ratio", op=">=", bound=0.5)
GENESIS: Final = "0" * 64
MEDIA_TYPE: Final = "text/plain"
# The raw tables: the evidence record's columns, nothing else (seq is the primary key).
RAW_COLUMNS: Final = (
    "seq",
    "subject",
    "kind",
    "title",
    "content",
    "content_sha256",
    "size",
    "media_type",
    "file_name",
    "actor",
    "channel",
    "idempotency_key",
    "created_at",
    "prev_chain",
    "chain",
)
_SQL_TYPES: Final = {"seq": "INTEGER PRIMARY KEY", "size": "INTEGER"}
_ENCODER: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _raw_ddl(table: str) -> str:
    cols = ", ".join(f"{c} {_SQL_TYPES.get(c, 'TEXT')}" for c in RAW_COLUMNS)
    return f"CREATE TABLE {table} ({cols})"


def _libpq(url: str) -> str:
    """A SQLAlchemy postgresql+psycopg URL as a libpq connection string for plain psycopg."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# --- the raw chain (plain Python: hashlib, hmac, json) ------------------------------------------


def raw_chain(key: bytes, prev: str, record: dict[str, Any]) -> str:
    """HMAC-SHA256(key, previous chain || canonical JSON of the record's chained fields)."""
    return hmac.digest(key, prev.encode() + _ENCODER.encode(record).encode(), "sha256").hex()


@dataclass
class Payload:
    """The n-th record every writer appends: the same subject, kind, title and text."""

    who: str = "bench@aims.local"
    channel: str = "test"

    def fields(self, n: int) -> tuple[str, str, str, str]:
        subject = f"system:bench-{n % 50}"
        title = f"Bench record {n}"
        text = f"# {title}\n\nSubject {subject}. Appended by the evidence benchmark, record {n}.\n"
        return subject, "other", title, text


class RawAppender:
    """Plain driver + hashlib: the chained record into a plain table, one commit each."""

    def __init__(self, execute: Callable[[tuple[Any, ...]], None], key: bytes, pay: Payload):
        self.execute, self.key, self.pay = execute, key, pay
        self.seq, self.prev = 0, GENESIS

    def append(self, n: int) -> None:
        subject, kind, title, text = self.pay.fields(n)
        raw = text.encode()
        sha = hashlib.sha256(raw).hexdigest()
        self.seq += 1
        record = {
            "seq": self.seq,
            "subject": subject,
            "kind": kind,
            "title": title,
            "content_sha256": sha,
            "size": len(raw),
            "media_type": MEDIA_TYPE,
            "file_name": None,
            "actor": self.pay.who,
            "channel": self.pay.channel,
            "idempotency_key": hashlib.sha256(f"{subject}|{kind}|{sha}".encode()).hexdigest(),
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        chain = raw_chain(self.key, self.prev, record)
        self.execute(
            tuple(
                {**record, "content": text, "prev_chain": self.prev, "chain": chain}[c]
                for c in RAW_COLUMNS
            )
        )
        self.prev = chain


def _sqlite_raw(path: Path, table: str, synchronous: str) -> tuple[sqlite3.Connection, Callable]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(_raw_ddl(table))
    sql = f"INSERT INTO {table} VALUES ({', '.join('?' * len(RAW_COLUMNS))})"

    def execute(row: tuple[Any, ...]) -> None:
        conn.execute("BEGIN")
        conn.execute(sql, row)
        conn.execute("COMMIT")

    return conn, execute


def _pg_raw(url: str, table: str) -> tuple[Any, Callable]:
    import psycopg

    conn = psycopg.connect(_libpq(url))
    conn.execute(_raw_ddl(table))
    conn.commit()
    sql = f"INSERT INTO {table} VALUES ({', '.join(['%s'] * len(RAW_COLUMNS))})"

    def execute(row: tuple[Any, ...]) -> None:
        conn.execute(sql, row)
        conn.commit()

    return conn, execute


def raw_verify(rows: Iterator[tuple[Any, ...]], key: bytes) -> int:
    """Recompute the chain over plain rows (RAW_COLUMNS order, created_at as canonical text)."""
    prev, count = GENESIS, 0
    for row in rows:
        (seq, subject, kind, title, content, sha, size, media_type, file_name, actor, channel,
         idem, created_at, prev_chain, chain) = row  # fmt: skip
        count += 1
        if seq != count:
            raise AssertionError(f"raw verify: seq {seq} where {count} was expected")
        raw = content.encode()
        if hashlib.sha256(raw).hexdigest() != sha or len(raw) != size:
            raise AssertionError(f"raw verify: content of seq {seq} differs from its hash")
        if prev_chain != prev:
            raise AssertionError(f"raw verify: seq {seq} does not link to the record before it")
        record = {
            "seq": seq,
            "subject": subject,
            "kind": kind,
            "title": title,
            "content_sha256": sha,
            "size": size,
            "media_type": media_type,
            "file_name": file_name,
            "actor": actor,
            "channel": channel,
            "idempotency_key": idem,
            "created_at": created_at,
        }
        if not hmac.compare_digest(raw_chain(key, prev, record), chain):
            raise AssertionError(f"raw verify: HMAC of seq {seq} differs")
        prev = chain
    return count


# --- the raw copies of a chain, for the verify baseline ------------------------------------------

_SELECT_SQLITE: Final = ", ".join(
    "replace(created_at, ' ', 'T') || 'Z'" if c == "created_at" else c for c in RAW_COLUMNS
)
_SELECT_PG: Final = ", ".join(
    """to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
    if c == "created_at"
    else c
    for c in RAW_COLUMNS
)


def copy_sqlite(source_db: Path, raw_db: Path, table: str) -> int:
    """The source's evidence rows into a plain table of raw_db (created_at as canonical text);
    a table already there (the cached 1M copy) is kept."""
    with contextlib.closing(sqlite3.connect(raw_db, isolation_level=None)) as conn:
        exists = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
        if conn.execute(exists, (table,)).fetchone()[0]:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("ATTACH DATABASE ? AS src", (str(source_db),))
        conn.execute(_raw_ddl(table))
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO {table} SELECT {_SELECT_SQLITE} FROM src.evidence ORDER BY seq")
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE src")
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def copy_pg(source_url: str, target_url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(_libpq(source_url)) as src, psycopg.connect(_libpq(target_url)) as dst:
        dst.execute(_raw_ddl(table))
        out_sql = f"COPY (SELECT {_SELECT_PG} FROM evidence ORDER BY seq) TO STDOUT"
        with src.cursor().copy(out_sql) as out, dst.cursor().copy(f"COPY {table} FROM STDIN") as w:
            for data in out:
                w.write(data)
        dst.commit()
        n = dst.execute(f"SELECT count(*) FROM {table}").fetchone()
        dst.execute(f"ANALYZE {table}")
        dst.commit()
        return int(n[0]) if n else 0


def raw_verify_sqlite(raw_db: Path, table: str, key: bytes) -> int:
    with contextlib.closing(sqlite3.connect(raw_db)) as conn:
        cur = conn.execute(f"SELECT {', '.join(RAW_COLUMNS)} FROM {table} ORDER BY seq")
        return raw_verify(iter(cur), key)


def raw_verify_pg(url: str, table: str, key: bytes) -> int:
    import psycopg

    with psycopg.connect(_libpq(url)) as conn, conn.transaction():
        cur = conn.cursor(name="raw_verify")  # server-side: streamed like the service's verify
        cur.itersize = 1000
        cur.execute(f"SELECT {', '.join(RAW_COLUMNS)} FROM {table} ORDER BY seq")
        return raw_verify(iter(cur), key)


# --- appends -------------------------------------------------------------------------------------


class AnchorClock:
    """Seconds spent in the anchor write (file + directory fsync) during the service blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from aims_core.services import evidence

        original = evidence._advance_anchor

        def timed_anchor(*args: Any, **kw: Any) -> bool:
            started = time.perf_counter()
            try:
                return original(*args, **kw)
            finally:
                self.seconds += time.perf_counter() - started

        evidence._advance_anchor = timed_anchor  # type: ignore[assignment]
        try:
            yield
        finally:
            evidence._advance_anchor = original  # type: ignore[assignment]


def _rate(fn: Callable[[int], None], start: int, n: int) -> float:
    started = time.perf_counter()
    for i in range(start, start + n):
        fn(i)
    return n / (time.perf_counter() - started)


def measure_appends(ctx: Context, database: str) -> list[Figure]:
    from aims_core.database import initialise
    from aims_core.evidence_schemas import EvidenceIn
    from aims_core.services import evidence
    from aims_core.settings import Settings
    from aims_core.uow import Actor

    pay = Payload()
    actor = Actor(who=pay.who, channel="test")
    with scratch_database(ctx, database, "ev") as (data_dir, url):
        settings = Settings(data_dir=data_dir, database_url=url)
        initialise(settings, actor)
        key = evidence.evidence_key(settings)

        def service(n: int) -> None:
            subject, kind, title, text = pay.fields(n)
            evidence.append(
                settings, EvidenceIn(subject=subject, kind=kind, title=title, text=text), actor
            )

        raws: dict[str, RawAppender] = {}
        closers: list[Any] = []
        if database == "sqlite":
            conn, ex = _sqlite_raw(data_dir / "raw.db", "raw_evidence", "NORMAL")
            raws["raw"] = RawAppender(ex, key, pay)
            durable, ex_d = _sqlite_raw(data_dir / "raw-durable.db", "raw_evidence", "FULL")
            raws["raw_durable"] = RawAppender(ex_d, key, pay)
            closers += [conn, durable]
        else:
            conn, ex = _pg_raw(url, "raw_evidence")
            raws["raw"] = RawAppender(ex, key, pay)
            closers.append(conn)
        try:
            n = 0
            for fn in (service, *(r.append for r in raws.values())):
                _rate(fn, n, WARMUP)
            n += WARMUP
            runs: dict[str, list[float]] = {"service": [], **{k: [] for k in raws}}
            anchor = AnchorClock()
            for _ in range(ctx.repeats):  # interleaved: service, raw, raw durable, service, ...
                with anchor.installed():
                    runs["service"].append(_rate(service, n, APPENDS))
                for name, r in raws.items():
                    runs[name].append(_rate(r.append, n, APPENDS))
                n += APPENDS
            report = evidence.verify(settings)
            if not report.intact or report.count != n:
                raise RuntimeError(f"append benchmark left a broken chain: {report.summary}")
        finally:
            for c in closers:
                c.close()

    value = median(runs["service"])
    total = ctx.repeats * APPENDS
    anchor_ms = anchor.seconds / total * 1000
    service_ms = 1000 / value
    detail: dict[str, Any] = {
        "appends_per_block": APPENDS,
        "blocks": ctx.repeats,
        "service_ms_per_append": round(service_ms, 3),
        "anchor_ms_per_append": round(anchor_ms, 3),
        "service_rate_without_anchor": round(1000 / max(service_ms - anchor_ms, 1e-6), 1),
        "raw_runs": [round(x, 1) for x in runs["raw"]],
        "entry_point": "aims_core.services.evidence.append (aims evidence add)",
    }
    durable_label = (
        "raw sqlite3 + hmac, WAL, synchronous=FULL"
        if database == "sqlite"
        else "raw psycopg + hmac, same server"
    )
    # The headline compares like with like: each append is on disk when it returns, in the
    # service (the product's synchronous=FULL commit, then the fsynced anchor) and in the raw
    # baseline (one fsynced commit). The raw baseline without fsync (synchronous=NORMAL) shows
    # what the service's Python costs over a bare insert.
    figures = [
        Figure.make(
            id=f"append.{database}",
            figure=2,
            title="Evidence append, full service vs raw durable inserts (one commit each)",
            database=database,
            value=value,
            unit="records/s",
            baseline=median(runs["raw_durable"] if "raw_durable" in runs else runs["raw"]),
            baseline_label=durable_label,
            target=APPEND_TARGET,
            runs=runs["service"],
            detail=detail,
        )
    ]
    if "raw_durable" in runs:
        detail["raw_durable_runs"] = [round(x, 1) for x in runs["raw_durable"]]
        figures.append(
            Figure.make(
                id="append.nosync.sqlite",
                figure=2,
                title="Evidence append, full service vs raw inserts without fsync",
                database=database,
                value=value,
                unit="records/s",
                baseline=median(runs["raw"]),
                baseline_label="raw sqlite3 + hmac, WAL, synchronous=NORMAL",
                target=APPEND_TARGET,
                runs=runs["service"],
                detail=detail,
            )
        )
    return figures


# --- verify --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    """A chain to verify: its settings (data dir with key + anchor, database) and its size."""

    label: str  # S, M, L, 1M
    database: str
    settings: Any
    systems: int | None


def measure_verify(ctx: Context, chain: Chain, raw_place: tuple[Path, str], repeats: int) -> Figure:
    """Service verify vs raw verify of a plain copy of the same rows, interleaved."""
    from aims_core.services import evidence

    settings = chain.settings
    key = evidence.evidence_key(settings)
    table = f"raw_verify_{chain.label.lower()}"
    raw_dir, raw_url = raw_place
    started = time.perf_counter()
    if chain.database == "sqlite":
        db_file = Path(settings.effective_database_url.removeprefix("sqlite:///"))
        raw_db = raw_dir / "raw-verify.db"
        copied = copy_sqlite(db_file, raw_db, table)

        def raw() -> int:
            return raw_verify_sqlite(raw_db, table, key)
    else:
        db_file = None
        copied = copy_pg(settings.effective_database_url, raw_url, table)

        def raw() -> int:
            return raw_verify_pg(raw_url, table, key)

    copy_s = time.perf_counter() - started
    service_s: list[float] = []
    raw_s: list[float] = []
    records = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        report = evidence.verify(settings)
        service_s.append(time.perf_counter() - t0)
        if not report.intact:
            raise RuntimeError(f"verify {chain.label}/{chain.database}: {report.summary}")
        records = report.count
        t0 = time.perf_counter()
        n = raw()
        raw_s.append(time.perf_counter() - t0)
        if n != records:
            raise RuntimeError(f"raw verify saw {n} records, the service {records}")
    rates = [records / s for s in service_s]
    detail: dict[str, Any] = {
        "seconds": round(median(service_s), 3),
        "records": records,
        "systems": chain.systems,
        "raw_seconds": round(median(raw_s), 3),
        "raw_runs": [round(records / s, 1) for s in raw_s],
        "raw_copy_seconds": round(copy_s, 2),
        "copied": copied,
        "entry_point": "aims_core.services.evidence.verify (aims evidence verify)",
    }
    if db_file is not None:
        detail["db_bytes"] = sum(
            p.stat().st_size for p in db_file.parent.glob(db_file.name + "*") if p.is_file()
        )
    return Figure.make(
        id=f"verify.{chain.label}.{chain.database}",
        figure=2,
        title="Evidence verify, whole chain (records/s)",
        size=chain.label,
        database=chain.database,
        value=median(rates),
        unit="records/s",
        baseline=median([records / s for s in raw_s]),
        baseline_label="raw driver + plain-Python chain recompute, same rows",
        target=VERIFY_TARGET,
        runs=rates,
        detail=detail,
    )


# --- the 1,000,000-record chain ------------------------------------------------------------------


def million_chain(records: int = ONE_MILLION) -> Path:
    """A SQLite data dir holding exactly `records` evidence records on a valid keyed chain, built
    once with bench/synth.py's bulk chain writer (`Synth.gen_evidence`) and cached."""
    data_dir = CACHE_DIR / f"chain-sqlite-{_synth_key('1M')}-{records}"
    done = data_dir / "done.json"
    if done.exists():
        return data_dir
    for old in CACHE_DIR.glob("chain-sqlite-*"):
        import shutil

        shutil.rmtree(old, ignore_errors=True)
    from rich.progress import Progress

    from aims_core.database import initialise
    from aims_core.settings import Settings
    from bench import synth

    class ChainOnly(synth.Synth):
        """Only the evidence phase, for `records` records spread over systems of 50."""

        def evidence_specs(self) -> Iterator[tuple[str, str, str, datetime]]:
            kinds = ("risk-assessment", "vv-report", "decision", "other", "monitoring-report")
            start = self.now - timedelta(days=3 * 365)
            step = (self.now - start) / records
            for i in range(records):
                system = f"system:synthetic-{i // synth.EVIDENCE_PER_SYSTEM:05d}"
                kind = kinds[i % len(kinds)]
                yield system, kind, f"{kind} #{i}: {system}", start + step * i

    console.print(f"[dim]building a {records:,}-record evidence chain → {data_dir}[/]")
    started = time.perf_counter()
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'aims.db'}")
    initialise(settings, synth.ACTOR)
    gen = ChainOnly(
        settings,
        records // synth.EVIDENCE_PER_SYSTEM,
        SEED,
        NOW,
        synth.Meter(Progress(disable=True)),
    )
    gen.tag = "1m"
    gen.gen_evidence()
    from aims_core.db import dispose_engine

    dispose_engine(settings.effective_database_url)
    seconds = time.perf_counter() - started
    done.write_text(json.dumps({"records": records, "seconds": seconds}))
    console.print(f"[dim]built in {seconds:.0f} s[/]")
    return data_dir


# --- run -----------------------------------------------------------------------------------------


def run(ctx: Context, *, one_million: bool = True) -> list[Figure]:
    from aims_core.settings import Settings

    figures: list[Figure] = []
    for database in ctx.databases:
        figures += measure_appends(ctx, database)
        with scratch_database(ctx, database, "ev-raw") as (raw_dir, raw_url):
            for size in ctx.sizes:
                org = organisation(size, database, ctx)
                chain = Chain(size, database, org.settings(), SIZES[size])
                figures.append(measure_verify(ctx, chain, (raw_dir, raw_url), ctx.repeats))
    if one_million:
        data_dir = million_chain()
        settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'aims.db'}")
        chain = Chain("1M", "sqlite", settings, ONE_MILLION // 50)
        # Its raw copy is cached beside it (copied on the first run only): one run each, to keep
        # the measured part within a minute.
        fig = measure_verify(ctx, chain, (data_dir, ""), 1)
        fig.title = "Evidence verify at 1,000,000 records (records/s)"
        figures.append(fig)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.evidence_rate", description=__doc__.split("\n")[0])
    add_context_args(parser)
    parser.add_argument("--no-1m", action="store_true", help="skip the 1,000,000-record figure")
    args = parser.parse_args(argv)
    ctx = context_from_args(args)
    return standalone("evidence_rate", lambda c: run(c, one_million=not args.no_1m), ctx)


if __name__ == "__main__":
    sys.exit(main())
