"""Figure 1 (and the pack half of figure 6): the management review pack, end to end.

    .venv/bin/python -m bench.review_pack [--sizes S,M] [--repeats 3] [--postgres]

What `aims review prepare --period 2026Q4` does (`services.reviews.prepare`: gather the 9.3.2
inputs, draw six charts, render HTML and Markdown, write the workbook, record the review row and
three evidence records), on the synthetic organisation of each size and database.

Each timed run is a fresh interpreter (`python -m bench.review_pack --child pack ...`) on a fresh
writable copy of the cached organisation, so its peak RSS is the pack's own and every run pays
the same imports (the service imports matplotlib and openpyxl lazily: they count, as for a user).
The child wraps the service's phase functions (gather, charts, render, _workbook) to time them;
what is left of `prepare` is the reading of an earlier review and the recording (row, evidence,
audit).

- `pack.<size>.<db>`: seconds of the `prepare` call (the figure; ≤ 5 s at M). Its detail also
  has the child's wall time (interpreter start + imports + pack) and one run of the real CLI
  (`aims review prepare`, wall and peak RSS via /usr/bin/time; at M and L only; that one runs
  on the real clock).
- `pack-rss.<size>.<db>`: the child's peak RSS in MB (≤ 700 MB at M).
- `pack-data.<size>.<db>`: seconds of the data phase (`gather`) against its floor, measured in
  the same run on the same copy: a fresh interpreter running bare `pandas.read_sql` (textual SQL
  over a plain SQLAlchemy engine) of the same tables with the same filters, plus the same
  group-bys in pandas, no AIMS code (target at M: at most twice the floor). Pack and floor alternate
  order per repeat (A B, B A, ...), both on the same copy, so neither always gets the warmer
  cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    NOW,
    PERIOD,
    ROOT,
    Context,
    Figure,
    Org,
    Target,
    add_context_args,
    console,
    context_from_args,
    median,
    organisation,
    peak_rss_mb,
    run_child,
    standalone,
    writable_copy,
)

TARGET_SECONDS_M = 5.0
TARGET_RSS_MB_M = 700.0
TARGET_DATA_RATIO = 2.0
CHILD_TIMEOUT = 300


# --- child: one pack -----------------------------------------------------------------------------


def child_pack(data_dir: str, database_url: str) -> dict[str, Any]:
    """Prepare the pack once (fixed NOW and PERIOD) and time its phases."""
    started = time.perf_counter()
    from aims_core.services import reviews
    from aims_core.settings import Settings
    from aims_core.uow import Actor, UnitOfWork

    imported = time.perf_counter() - started
    rss_after_imports = peak_rss_mb()
    phases: dict[str, float] = {"gather": 0.0, "charts": 0.0, "html": 0.0, "md": 0.0, "xlsx": 0.0}

    def timing(name: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                key = name if isinstance(name, str) else name(*args, **kwargs)
                phases[key] = phases.get(key, 0.0) + time.perf_counter() - t

        return wrapper

    # `prepare` looks these names up in its module (`reviews.pack`) at call time.
    from aims_core.services.reviews import pack

    gather = pack.gather
    pack.gather = timing("gather", gather)  # type: ignore[assignment]
    pack.charts = timing("charts", pack.charts)  # type: ignore[assignment]
    pack.write_workbook = timing("xlsx", pack.write_workbook)  # type: ignore[assignment]
    pack.render = timing(  # type: ignore[assignment]
        lambda template, **_: "html" if template.endswith(".html.j2") else "md", pack.render
    )

    uow = UnitOfWork(Settings(data_dir=Path(data_dir), database_url=database_url))
    t = time.perf_counter()
    out = reviews.prepare(uow, PERIOD, None, Actor.cli(), NOW)
    pack = time.perf_counter() - t
    rss = peak_rss_mb()
    phases["record+checks"] = pack - sum(phases.values())

    # Untimed extras: a second (warm) gather, the figures the floor must reproduce, row counts.
    t = time.perf_counter()
    inputs = gather(uow, PERIOD, NOW)
    warm_gather = time.perf_counter() - t
    perf = inputs.performance
    with uow.read():
        from sqlalchemy import text

        counts = {
            table: int(uow.session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in ("ai_system", "risk", "evidence", "incident", "capa", "training_record")
        }
    files = {ext: path.stat().st_size for ext, path in out.files().items()}
    return {
        "pack_s": pack,
        "imports_s": imported,
        "phases_s": phases,
        "warm_gather_s": warm_gather,
        "peak_rss_mb": rss,
        "rss_after_imports_mb": rss_after_imports,
        "counts": counts,
        "file_bytes": files,
        "evidence_ids": out.pack_evidence_ids,
        "check": dict(
            capas_opened=perf.capas_opened,
            capas_open_at_end=perf.capas_open_at_end,
            incidents=perf.incidents,
            contained=perf.incidents_contained,
            gates=sum(perf.gates_by_outcome.values()),
            open_risks=sum(r.risks for r in perf.risk_posture),
            above_appetite=sum(r.above_appetite for r in perf.residual_by_tier),
            training_current=perf.training_current,
            soa_decided=perf.soa_decided,
            findings=sum(perf.findings_by_kind.values()),
            improvements=len(inputs.improvements),
        ),
    }


# --- child: the data phase's floor ---------------------------------------------------------------


def child_floor(database_url: str, timezone: str, passes: int = 2) -> dict[str, Any]:
    """Bare pandas over the tables `gather` reads, with its filters and group-bys: no AIMS code.
    The first pass is the floor (same footing as the pack's first gather); later passes warm."""
    import pandas as pd
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    sqlite = database_url.startswith("sqlite")
    start, end = _quarter(PERIOD, timezone)
    as_of = min(NOW, end)

    def bind(at: datetime) -> Any:  # SQLite compares the stored text: naive UTC, microseconds
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else at

    p = {"start": bind(start), "end": bind(end), "as_of": bind(as_of)}
    false, true = ("0", "1") if sqlite else ("false", "true")
    times = []
    result: dict[str, int] = {}
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))

        def sql(query: str, dates: tuple[str, ...] = ()) -> pd.DataFrame:
            df = pd.read_sql(text(query), conn, params=p)
            for col in dates:
                df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
            return df

        for _ in range(passes):
            t = time.perf_counter()
            result = _floor_pass(sql, pd, timezone, start, end, as_of, false, true)
            times.append(time.perf_counter() - t)
    engine.dispose()
    return {"floor_s": times[0], "warm_floor_s": times[1:], "check": result}


def _floor_pass(
    sql: Callable[..., Any],
    pd: Any,
    timezone: str,
    start: datetime,
    end: datetime,
    as_of: datetime,
    false: str,
    true: str,
) -> dict[str, int]:
    t_start, t_end, t_as_of = pd.Timestamp(start), pd.Timestamp(end), pd.Timestamp(as_of)

    def within(col: Any) -> Any:
        return (col >= t_start) & (col < t_end)

    # d) CAPAs: monthly trend, opened / closed in the period, open at the end.
    capa = sql("SELECT id, created_at, closed_at FROM capa", ("created_at", "closed_at"))
    capa["created_at"].dt.tz_convert(timezone).dt.strftime("%Y-%m").value_counts()
    capa["closed_at"].dropna().dt.tz_convert(timezone).dt.strftime("%Y-%m").value_counts()
    open_at_end = (capa["created_at"] < t_end) & (
        capa["closed_at"].isna() | (capa["closed_at"] >= t_end)
    )
    in_period = f"aware_at >= :start AND aware_at < :end AND is_drill = {false}"
    inc = sql(
        f"SELECT id, severity, category, aware_at FROM incident WHERE {in_period}", ("aware_at",)
    )
    inc["severity"].value_counts()
    inc["category"].value_counts()
    events = sql(
        "SELECT e.incident_id, e.at, e.data FROM incident_event e JOIN incident "
        f"ON incident.id = e.incident_id WHERE e.kind = 'status' AND {in_period}",
        ("at",),
    )
    to = events["data"].map(lambda d: (json.loads(d) if isinstance(d, str) else d or {}).get("to"))
    first = events[to == "contained"].groupby("incident_id")["at"].min()
    hours = (first - inc.set_index("id")["aware_at"].reindex(first.index)).dt.total_seconds()
    hours.mean()
    gates = sql("SELECT status FROM gate_review WHERE created_at >= :start AND created_at < :end")
    gates["status"].value_counts()
    appr = sql(
        "SELECT deadline, decided_at FROM approval_request WHERE deadline >= :start "
        "AND deadline < :as_of",
        ("deadline", "decided_at"),
    )
    (appr["decided_at"].isna() | (appr["decided_at"] > appr["deadline"])).sum()
    # Risk posture at the end: tier x band, residual by tier (bands and appetite of the policy).
    risk = sql(
        "SELECT s.risk_tier AS tier, r.score, r.residual_score FROM risk r JOIN ai_system s "
        "ON s.id = r.system_id WHERE r.status != 'closed' AND r.created_at < :end"
    )
    risk["band"] = pd.cut(risk["score"], [-1, 4, 9, 16, 10**9], labels=["l", "m", "h", "c"])
    risk.groupby(["tier", "band"], observed=True).size()
    risk["effective"] = risk["residual_score"].fillna(risk["score"])
    by_tier = risk.groupby("tier").agg(
        risks=("score", "size"),
        with_residual=("residual_score", "count"),
        mean_residual=("residual_score", "mean"),
        above=("effective", lambda s: int((s > 9).sum())),
    )
    # Training: required (person, training) pairs, newest record per pair still valid.
    pairs = sql(
        "SELECT DISTINCT pr.person_id, tr.training FROM person_role pr JOIN training_requirement "
        "tr ON tr.role_id = pr.role_id JOIN person ON person.id = pr.person_id "
        f"WHERE person.active = {true}"
    ).drop_duplicates()
    records = sql(
        "SELECT person_id, training, completed_at, expires_at, id FROM training_record "
        "WHERE completed_at <= :as_of",
        ("completed_at", "expires_at"),
    )
    newest = records.sort_values(["completed_at", "id"]).groupby(["person_id", "training"]).last()
    valid = newest[newest["expires_at"] > t_as_of].index
    current = int(pairs.set_index(["person_id", "training"]).index.isin(valid).sum())
    # SoA, audits, findings.
    controls = sql("SELECT id FROM control WHERE kind = 'annex-control'")
    soa = sql("SELECT control_id, applicable FROM soa_entry")
    soa = soa[soa["control_id"].isin(controls["id"])]
    soa["applicable"].astype(bool).sum()
    sql(
        "SELECT * FROM audit WHERE status = 'closed' AND completed_at >= :start "
        "AND completed_at < :end ORDER BY completed_at"
    )
    findings = sql(
        "SELECT kind FROM audit_finding WHERE created_at >= :start AND created_at < :end"
    )
    findings["kind"].value_counts()
    # a) earlier reviews' actions, b) c) e) context entries, e) improvements.
    sql(
        "SELECT a.*, m.period, p.email FROM review_action a JOIN management_review m "
        "ON m.id = a.review_id JOIN person p ON p.id = a.owner_id "
        "WHERE m.period_start < :start ORDER BY m.period_start, a.id"
    )
    ctx = sql(
        "SELECT * FROM context_entry WHERE recorded_at >= :start AND recorded_at < :end "
        "ORDER BY recorded_at, id"
    )
    opportunities = sql(
        "SELECT * FROM audit_finding WHERE kind = 'opportunity' AND created_at >= :start "
        "AND created_at < :end ORDER BY id"
    )
    lessons = sql(
        f"SELECT * FROM incident WHERE lessons != '' AND is_drill = {false} AND "
        "((aware_at >= :start AND aware_at < :end) OR (closed_at >= :start AND closed_at < :end))"
        " ORDER BY id"
    )
    capas = sql("SELECT * FROM capa ORDER BY id")
    ineffective = 0
    for v in capas["verification"]:
        for r in (json.loads(v) if isinstance(v, str) else v or {}).get("results", []):
            at = datetime.fromisoformat(r["at"])
            ineffective += not r.get("effective", True) and start <= at < end
    return dict(
        capas_opened=int(within(capa["created_at"]).sum()),
        capas_open_at_end=int(open_at_end.sum()),
        incidents=len(inc),
        contained=len(first),
        gates=len(gates),
        open_risks=len(risk),
        above_appetite=int(by_tier["above"].sum()),
        training_current=current,
        soa_decided=len(soa),
        findings=len(findings),
        improvements=len(opportunities)
        + int((ctx["kind"] == "improvement").sum())
        + len(lessons)
        + ineffective,
    )


def _quarter(period: str, timezone: str) -> tuple[datetime, datetime]:
    from zoneinfo import ZoneInfo

    year, q = int(period[:4]), int(period[-1])
    zone = ZoneInfo(timezone)
    start = datetime(year, 3 * q - 2, 1, tzinfo=zone)
    end = datetime(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


# --- the parent ----------------------------------------------------------------------------------


def _pack_child(copy: Org) -> dict[str, Any]:
    started = time.perf_counter()
    out = run_child(
        ["-m", "bench.review_pack", "--child", "pack", "--data-dir", str(copy.data_dir),
         "--database-url", copy.database_url],
        timeout=CHILD_TIMEOUT,
    )  # fmt: skip
    out["child_wall_s"] = time.perf_counter() - started
    return out


def _floor_child(copy: Org, timezone: str) -> dict[str, Any]:
    return run_child(
        ["-m", "bench.review_pack", "--child", "floor", "--database-url", copy.database_url,
         "--timezone", timezone],
        timeout=CHILD_TIMEOUT,
    )  # fmt: skip


def _cli_run(copy: Org) -> dict[str, Any]:
    """The real command once (wall clock and peak RSS by /usr/bin/time), on the real clock."""
    aims = Path(sys.executable).parent / "aims"
    cmd = [str(aims), "review", "prepare", "--period", PERIOD]
    if Path("/usr/bin/time").exists():
        cmd = ["/usr/bin/time", "-f", "TIME %e %M", *cmd]
    env = {
        **os.environ,
        "AIMS_DATA_DIR": str(copy.data_dir),
        "AIMS_DATABASE_URL": copy.database_url,
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # prepare needs no engine: never look for one
    }
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"error": proc.stderr[-500:]}
    out: dict[str, Any] = {"wall_s": round(wall, 3)}
    for line in proc.stderr.splitlines():
        if line.startswith("TIME "):
            _, _elapsed, kib = line.split()
            out["peak_rss_mb"] = round(int(kib) / 1024, 1)
    return out


def measure(org: Org, ctx: Context) -> list[Figure]:
    """The three figures of one organisation (size, database)."""
    timezone = org.settings().timezone
    packs: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    for i in range(ctx.repeats):
        with writable_copy(org, ctx) as copy:
            if i % 2 == 0:
                packs.append(_pack_child(copy))
                floors.append(_floor_child(copy, timezone))
            else:
                floors.append(_floor_child(copy, timezone))
                packs.append(_pack_child(copy))
        last, floor = packs[-1], floors[-1]["floor_s"]
        console.print(
            f"[dim]pack {org.size}/{org.database} run {i + 1}: {last['pack_s']:.2f} s (gather "
            f"{last['phases_s']['gather']:.2f} s, floor {floor:.2f} s), "
            f"peak {last['peak_rss_mb']:.0f} MB[/]"
        )
    cli: dict[str, Any] = {"skipped": "run at M and L only"}
    if org.size != "S":
        with writable_copy(org, ctx) as copy:
            cli = _cli_run(copy)

    first = packs[0]
    pack_runs = [r["pack_s"] for r in packs]
    rss_runs = [r["peak_rss_mb"] for r in packs]
    gather_runs = [r["phases_s"]["gather"] for r in packs]
    floor_runs = [r["floor_s"] for r in floors]
    phases = {k: round(median([r["phases_s"][k] for r in packs]), 3) for k in first["phases_s"]}
    mismatched = {
        k: (first["check"][k], floors[0]["check"].get(k))
        for k in first["check"]
        if first["check"][k] != floors[0]["check"].get(k)
    }
    at_m = org.size == "M"
    common: dict[str, Any] = {"size": org.size, "database": org.database, "runs": []}
    systems = first["counts"]["ai_system"]
    detail = {
        "systems": systems,
        "rows": first["counts"],
        "phases_s_median": phases,
        "imports_s_median": round(median([r["imports_s"] for r in packs]), 3),
        "child_wall_s_median": round(median([r["child_wall_s"] for r in packs]), 3),
        "cli": cli,
        "file_bytes": first["file_bytes"],
        "period": PERIOD,
        "now": NOW.isoformat(),
        "synth_seconds": org.synth_seconds,
    }
    return [
        Figure.make(
            **common | {"runs": pack_runs},
            id=f"pack.{org.size}.{org.database}",
            figure=1,
            title="Management review pack, end to end",
            value=median(pack_runs),
            unit="s",
            target=Target(on="value", op="<=", bound=TARGET_SECONDS_M) if at_m else None,
            detail=detail,
        ),
        Figure.make(
            **common | {"runs": rss_runs},
            id=f"pack-rss.{org.size}.{org.database}",
            figure=1,
            title="Management review pack, peak RSS",
            value=median(rss_runs),
            unit="MB",
            target=Target(on="value", op="<=", bound=TARGET_RSS_MB_M) if at_m else None,
            detail={
                "systems": systems,
                "max_mb": max(rss_runs),
                "after_imports_mb_median": round(
                    median([r["rss_after_imports_mb"] for r in packs]), 1
                ),
                "cli_peak_rss_mb": cli.get("peak_rss_mb"),
            },
        ),
        Figure.make(
            **common | {"runs": gather_runs},
            id=f"pack-data.{org.size}.{org.database}",
            figure=1,
            title="Management review pack, data phase vs bare pandas",
            value=median(gather_runs),
            unit="s",
            baseline=median(floor_runs),
            baseline_label="pandas.read_sql + group-bys",
            target=Target(on="ratio", op="<=", bound=TARGET_DATA_RATIO) if at_m else None,
            detail={
                "systems": systems,
                "floor_runs": floor_runs,
                "warm_gather_s_median": round(median([r["warm_gather_s"] for r in packs]), 3),
                "warm_floor_s_median": round(
                    median([w for r in floors for w in r["warm_floor_s"]]), 3
                ),
                "figures_match_floor": not mismatched,
                "mismatched": mismatched,
            },
        ),
    ]


def run(ctx: Context) -> list[Figure]:
    figures: list[Figure] = []
    for size in ctx.sizes:
        for database in ctx.databases:
            figures += measure(organisation(size, database, ctx), ctx)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_context_args(parser)
    parser.add_argument("--child", choices=["pack", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--timezone", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "pack":
        print(json.dumps(child_pack(args.data_dir, args.database_url)))
        return 0
    if args.child == "floor":
        print(json.dumps(child_floor(args.database_url, args.timezone)))
        return 0
    return standalone("review_pack", run, context_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
