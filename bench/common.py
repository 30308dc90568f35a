"""What every benchmark shares: figures with their baselines and targets, repeated timings,
cached synthetic organisations, a throw-away Prefect server, and the results file.

A benchmark module exposes `run(ctx: Context) -> list[Figure]` (called by `bench/run_all.py`, i.e.
`make bench`) and a `main()` of its own for running it alone. Timings are medians of several runs
on a 2-core machine; every figure is compared with a baseline measured in the same run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_DIR: Final = ROOT / "bench" / "results"
LATEST: Final = RESULTS_DIR / "latest.json"
# Synthetic organisations are cached here between runs (keyed by size, seed and generator).
CACHE_DIR: Final = ROOT / ".aims" / "bench"
SIZES: Final = {"S": 500, "M": 5_000, "L": 20_000}
SEED: Final = 42
# Fixed "now" for the synthetic data and the review period, so cached organisations stay valid
# and every run prepares the same pack.
NOW: Final = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PERIOD: Final = "2026Q4"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"]))
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_var, None)

console = Console(stderr=True)


# --- figures ---------------------------------------------------------------------------------


class Target(BaseModel):
    """A bound on the figure's value or on its ratio to the baseline."""

    on: Literal["value", "ratio"]
    op: Literal["<=", ">="]
    bound: float

    def holds(self, value: float | None, ratio: float | None) -> bool | None:
        x = value if self.on == "value" else ratio
        if x is None:
            return None
        return x <= self.bound if self.op == "<=" else x >= self.bound

    def text(self, unit: str) -> str:
        sign = "≤" if self.op == "<=" else "≥"
        return f"{sign} {self.bound:g} {unit}" if self.on == "value" else f"{sign} {self.bound:g}×"


class Figure(BaseModel):
    """One measured figure as it goes into latest.json and the README table.

    `ratio` is value / baseline, both in `unit`: for a time lower is better, for a rate higher.
    """

    id: str  # stable key, e.g. "pack.M.sqlite"
    figure: int  # the figure number 1..6
    title: str  # what a reader sees, e.g. "Management review pack, end to end"
    size: str | None = None  # S, M, L
    database: str | None = None  # sqlite, postgresql
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str | None = None
    ratio: float | None = None
    target: Target | None = None
    met: bool | None = None
    runs: list[float] = Field(default_factory=list)  # the individual measurements (value's unit)
    detail: dict[str, Any] = Field(default_factory=dict)  # anything else worth keeping

    @classmethod
    def make(
        cls, *, value: float, baseline: float | None = None, target: Target | None = None, **kw: Any
    ) -> Figure:
        ratio = value / baseline if baseline not in (None, 0) else None
        met = target.holds(value, ratio) if target else None
        return cls(value=value, baseline=baseline, ratio=ratio, target=target, met=met, **kw)


class Results(BaseModel):
    machine: dict[str, Any]
    command: str
    started: datetime
    finished: datetime | None = None
    seconds: float | None = None
    figures: list[Figure] = Field(default_factory=list)
    errors: dict[str, str] = Field(default_factory=dict)  # benchmark -> what stopped it


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    """Nearest rank: the smallest value at or above 95 % of the sample."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 0) -> list[float]:
    """Seconds per call of `fn`, `repeats` times after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(args: list[str], timeout: float = 600) -> dict[str, Any]:
    """Run `python ARGS` in a fresh interpreter (a clean peak RSS) and read the JSON it prints
    on its last stdout line."""
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import sqlite3

    import prefect
    import sqlalchemy

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "prefect": prefect.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- context ---------------------------------------------------------------------------------


@dataclass
class Context:
    """What a run of the benchmarks is asked to do."""

    sizes: list[str] = field(default_factory=lambda: ["S", "M"])
    repeats: int = 3
    decisions: int = 50  # figure 4's N
    postgres_url: str | None = None  # an admin URL; PostgreSQL figures are skipped without it
    prefect_api_url: str | None = None  # a running Prefect API to use instead of starting one
    # The started Prefect server's database: PostgreSQL when there is a server (Prefect's own
    # advice for load; its SQLite answers 503 "database is locked" under the decisions burst).
    prefect_db: str = "postgresql"
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aims-bench-")))

    @property
    def databases(self) -> list[str]:
        return ["sqlite", "postgresql"] if self.postgres_url else ["sqlite"]


def postgres_admin_url() -> str | None:
    return os.environ.get("AIMS_BENCH_POSTGRES_URL") or os.environ.get("AIMS_TEST_POSTGRES_URL")


def postgres_version() -> str | None:
    url = postgres_admin_url()
    if not url:
        return None
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            version = str(conn.execute(text("SHOW server_version")).scalar())
            fsync = str(conn.execute(text("SHOW fsync")).scalar())
        engine.dispose()
    except Exception:
        return None
    return f"{version} (fsync {fsync})"


# --- synthetic organisations -----------------------------------------------------------------


def _synth_key(size: str) -> str:
    digest = hashlib.sha256((ROOT / "bench" / "synth.py").read_bytes())
    for mig in sorted((ROOT / "aims_core" / "migrations").rglob("*.py")):
        digest.update(mig.read_bytes())
    return f"{size}-{SEED}-{digest.hexdigest()[:10]}"


def _run_synth(size: str, data_dir: Path, database_url: str | None) -> float:
    args = [
        sys.executable,
        str(ROOT / "bench" / "synth.py"),
        "--size",
        size,
        "--seed",
        str(SEED),
        "--now",
        NOW.isoformat(),
        "--data-dir",
        str(data_dir),
    ]
    if database_url:
        args += ["--database-url", database_url]
    log = data_dir / "synth.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"[dim]synthesising organisation {size} ({SIZES[size]:,} systems) → {log}[/]")
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"synth {size} failed; see {log}")
    return time.perf_counter() - started


@dataclass(frozen=True)
class Org:
    """A synthesised organisation: its data dir (evidence key, reports) and database URL."""

    size: str
    database: str
    data_dir: Path
    database_url: str
    synth_seconds: float | None  # None when it came from the cache

    def settings(self, **overrides: Any) -> Any:
        from aims_core.settings import Settings

        return Settings(data_dir=self.data_dir, database_url=self.database_url, **overrides)


def organisation(size: str, database: str, ctx: Context) -> Org:
    """The synthetic organisation of `size` on `database`, generated once and then reused.

    Benchmarks that write (evidence appends, decisions) must not use it: they take a fresh
    database of their own. Reading benchmarks (the pack, verify) share it.
    """
    key = _synth_key(size)
    data_dir = CACHE_DIR / f"org-{database}-{key}"
    done = data_dir / "done.json"
    if database == "sqlite":
        url = f"sqlite:///{data_dir / 'aims.db'}"
    else:
        if not ctx.postgres_url:
            raise RuntimeError("no PostgreSQL server (set AIMS_BENCH_POSTGRES_URL)")
        url = _pg_database(ctx.postgres_url, f"bench_org_{key.replace('-', '_').lower()}")
    if (
        done.exists()
        and json.loads(done.read_text()).get("url") == url
        and (database == "sqlite" or _pg_exists(ctx.postgres_url or "", url.rsplit("/", 1)[1]))
    ):
        return Org(size, database, data_dir, url, None)
    for old in CACHE_DIR.glob(f"org-{database}-{size}-*"):
        shutil.rmtree(old, ignore_errors=True)
    if database == "postgresql":
        url = _pg_database(ctx.postgres_url or "", url.rsplit("/", 1)[1], fresh=True)
    seconds = _run_synth(size, data_dir, url if database == "postgresql" else None)
    done.write_text(json.dumps({"url": url, "seconds": seconds, "size": size}))
    return Org(size, database, data_dir, url, seconds)


def _pg_exists(admin_url: str, name: str) -> bool:
    """Whether the cached organisation's database is still there (a new cluster has none)."""
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url)
    with admin.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).first()
    admin.dispose()
    return found is not None


def _pg_database(admin_url: str, name: str, fresh: bool = False) -> str:
    """The URL of database `name` on the admin URL's server; `fresh` drops and creates it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if fresh:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_database(ctx: Context, database: str, prefix: str) -> Iterator[tuple[Path, str]]:
    """An empty AIMS database (data dir, URL) for a benchmark that writes; removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=ctx.work))
    if database == "sqlite":
        url = f"sqlite:///{data_dir / 'aims.db'}"
        try:
            yield data_dir, url
        finally:
            from aims_core.db import dispose_engine

            dispose_engine(url)
            shutil.rmtree(data_dir, ignore_errors=True)
        return
    if not ctx.postgres_url:
        raise RuntimeError("no PostgreSQL server (set AIMS_BENCH_POSTGRES_URL)")
    name = f"{prefix.replace('-', '_')}_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    url = _pg_database(ctx.postgres_url, name, fresh=True)
    try:
        yield data_dir, url
    finally:
        from aims_core.db import dispose_engine

        dispose_engine(url)
        _drop_database(ctx.postgres_url, name)
        shutil.rmtree(data_dir, ignore_errors=True)


def _drop_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


# --- Prefect ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _talking_to(api_url: str) -> Iterator[None]:
    """This process's Prefect clients and events on `api_url`. Prefect reads its settings once,
    at import: a PREFECT_API_URL exported later is not seen, and a client would start a
    temporary server of its own instead. (Child processes get the exported variable.)"""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


@contextlib.contextmanager
def prefect_api(ctx: Context) -> Iterator[str]:
    """A Prefect API URL: the context's, or a server started here on 127.0.0.1 for the run.

    The URL is also exported as PREFECT_API_URL so in-process Prefect clients use it.
    """
    if ctx.prefect_api_url:
        os.environ["PREFECT_API_URL"] = ctx.prefect_api_url
        with _talking_to(ctx.prefect_api_url):
            yield ctx.prefect_api_url
        return
    from sqlalchemy.engine import make_url

    from deployments.local_engine import PrefectServer, free_port

    home = Path(tempfile.mkdtemp(prefix="prefect-", dir=ctx.work))
    env: dict[str, str] = {}
    name = f"bench_prefect_{os.getpid()}"
    if ctx.prefect_db == "postgresql":
        if not ctx.postgres_url:
            raise RuntimeError("--prefect-db postgresql: no PostgreSQL server (--postgres)")
        url = make_url(_pg_database(ctx.postgres_url, name, fresh=True))
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = url.set(
            drivername="postgresql+asyncpg"
        ).render_as_string(hide_password=False)
    server = PrefectServer(free_port(), home, env_extra=env)
    console.print(f"[dim]starting a Prefect server on 127.0.0.1 ({ctx.prefect_db}) …[/]")
    server.start()
    previous = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
    os.environ["PREFECT_API_URL"] = server.api_url
    os.environ["PREFECT_HOME"] = str(home)
    ctx.prefect_api_url = server.api_url
    try:
        with _talking_to(server.api_url):
            yield server.api_url
    finally:
        ctx.prefect_api_url = None
        server.stop()
        if ctx.prefect_db == "postgresql" and ctx.postgres_url:
            _drop_database(ctx.postgres_url, name)
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- output ----------------------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return f"{text} {unit}".strip()


def print_figures(figures: list[Figure]) -> None:
    table = Table(title="AIMS Flow benchmarks", show_lines=False)
    for col in ("#", "figure", "size", "db", "value", "baseline", "ratio", "target", "met"):
        table.add_column(col, justify="right" if col in ("value", "baseline", "ratio") else "left")
    for f in figures:
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "–"}[f.met]
        table.add_row(
            str(f.figure),
            f.title,
            f.size or "",
            f.database or "",
            fmt(f.value, f.unit),
            fmt(f.baseline, f.unit),
            fmt(f.ratio, "×") if f.ratio is not None else "–",
            f.target.text(f.unit) if f.target else "–",
            met,
        )
    Console(width=max(Console().width, 150)).print(table)  # what each baseline is: the JSON


def save(results: Results, path: Path = LATEST) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results.model_dump_json(indent=2) + "\n")


def standalone(name: str, run: Callable[[Context], list[Figure]], ctx: Context) -> int:
    """A benchmark run alone: its figures printed and written to bench/results/NAME.json."""
    results = Results(machine=machine(), command=" ".join(sys.argv), started=datetime.now(UTC))
    results.machine["prefect_server_database"] = (
        "external" if ctx.prefect_api_url else ctx.prefect_db
    )
    started = time.perf_counter()
    try:
        results.figures = run(ctx)
    finally:
        shutil.rmtree(ctx.work, ignore_errors=True)
    results.finished = datetime.now(UTC)
    results.seconds = round(time.perf_counter() - started, 1)
    print_figures(results.figures)
    save(results, RESULTS_DIR / f"{name}.json")
    console.print(f"written {RESULTS_DIR / f'{name}.json'}")
    return 0


def add_context_args(parser: Any) -> None:
    """The options every benchmark's own `main()` takes (argparse)."""
    parser.add_argument("--sizes", default="S,M", help="comma-separated sizes: S, M, L")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median)")
    parser.add_argument(
        "--decisions", type=int, default=50, help="figure 4's N (200: --decisions 200)"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also on PostgreSQL (AIMS_BENCH_POSTGRES_URL or AIMS_TEST_POSTGRES_URL: an admin URL)",
    )
    parser.add_argument(
        "--prefect-db",
        choices=["postgresql", "sqlite"],
        default="postgresql",
        help="the started Prefect server's database (postgresql needs --postgres; default "
        "postgresql with --postgres, else sqlite)",
    )


def context_from_args(args: Any) -> Context:
    sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"error: --sizes: unknown size {unknown[0]!r} (S, M or L)")
    pg = postgres_admin_url() if args.postgres else None
    if args.postgres and not pg:
        raise SystemExit("error: --postgres: set AIMS_BENCH_POSTGRES_URL to a PostgreSQL admin URL")
    return Context(
        sizes=sizes,
        repeats=args.repeats,
        decisions=args.decisions,
        postgres_url=pg,
        prefect_db=args.prefect_db if pg else "sqlite",
    )


@contextlib.contextmanager
def writable_copy(org: Org, ctx: Context) -> Iterator[Org]:
    """A throw-away copy of a cached organisation, for a benchmark that writes to it (the pack
    records its review and evidence): a file copy on SQLite, `CREATE DATABASE … TEMPLATE` on
    PostgreSQL. The evidence key travels with the data dir."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"org-{org.size}-", dir=ctx.work))
    if org.database == "sqlite":
        import sqlite3

        with contextlib.closing(sqlite3.connect(org.data_dir / "aims.db")) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(
        org.data_dir,
        data_dir,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("aims.db-wal", "aims.db-shm", "*.lock", "synth.log"),
    )
    if org.database == "sqlite":
        url = f"sqlite:///{data_dir / 'aims.db'}"
        copy = Org(org.size, org.database, data_dir, url, None)
        try:
            yield copy
        finally:
            from aims_core.db import dispose_engine

            dispose_engine(url)
            shutil.rmtree(data_dir, ignore_errors=True)
        return
    from sqlalchemy import create_engine, text

    from aims_core.db import dispose_engine

    source = org.database_url.rsplit("/", 1)[1]
    name = f"{source}_copy_{os.getpid()}"
    dispose_engine(org.database_url)  # no session may hold the template open
    admin = create_engine(ctx.postgres_url or "", isolation_level="AUTOCOMMIT")
    for attempt in range(20):  # PostgreSQL refuses a template another session is connected to
        try:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {source}"))
            break
        except Exception as exc:
            if "being accessed by other users" not in str(exc) or attempt == 19:
                raise
            time.sleep(1.5)
    url = org.database_url.rsplit("/", 1)[0] + "/" + name
    try:
        yield Org(org.size, org.database, data_dir, url, None)
    finally:
        dispose_engine(url)
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
        shutil.rmtree(data_dir, ignore_errors=True)
