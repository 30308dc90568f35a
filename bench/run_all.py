"""`make bench`: every benchmark at sizes S and M (SQLite, and PostgreSQL when given), one table,
one JSON file (bench/results/latest.json), the scaling curve (figure 6) built from the others.

    .venv/bin/python -m bench.run_all [--sizes S,M] [--repeats 3] [--decisions 50] [--postgres]
                                      [--only pack,evidence,...]

Results are saved after each benchmark, so an interrupted run keeps what it measured. A benchmark
that fails is reported (and the exit code is 1); the others still run.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import math
import shutil
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any, Final

from bench.common import (
    LATEST,
    SIZES,
    Context,
    Figure,
    Results,
    Target,
    add_context_args,
    console,
    context_from_args,
    machine,
    organisation,
    prefect_api,
    print_figures,
    save,
)

# name -> module, in the order they run (the read-only ones first, on a quiet server).
BENCHMARKS: Final = {
    "pack": "bench.review_pack",
    "evidence": "bench.evidence_rate",
    "orchestration": "bench.orchestration",
    "decisions": "bench.decisions_load",
    "intake": "bench.intake_latency",
}
# Growth exponent k in time ∝ systems^k between consecutive sizes: ≤ this counts as linear.
LINEAR: Final = 1.15


def exponent(a: dict[str, Any], b: dict[str, Any]) -> float:
    """k in t ∝ n^k between two points of the curve."""
    return math.log(b["seconds"] / a["seconds"]) / math.log(b["systems"] / a["systems"])


def scaling(figures: list[Figure]) -> list[Figure]:
    """Figure 6: pack time and evidence verify time at each size, and how they grow.

    The value is the growth exponent k between the smallest and largest size measured
    (t ∝ n^k: 1 is linear, below 1 the fixed costs still dominate, above 1 it grows faster).
    """
    series = {
        "pack": ("Review pack time vs size", "pack", lambda f: f.value),
        "verify": ("Evidence verify time vs size", "verify", lambda f: f.detail.get("seconds")),
    }
    out = []
    for database in ("sqlite", "postgresql"):
        for key, (title, prefix, seconds_of) in series.items():
            points = []
            for size in SIZES:
                fig = next((f for f in figures if f.id == f"{prefix}.{size}.{database}"), None)
                if fig is None or seconds_of(fig) is None or not fig.detail.get("systems"):
                    continue
                systems = int(fig.detail["systems"])
                secs = float(seconds_of(fig))
                points.append(
                    {
                        "size": size,
                        "systems": systems,
                        "seconds": round(secs, 3),
                        "ms_per_system": round(secs * 1000 / systems, 3),
                        "records": fig.detail.get("records"),
                    }
                )
            if len(points) < 2:
                continue
            k = exponent(points[0], points[-1])
            steps = [round(exponent(a, b), 2) for a, b in itertools.pairwise(points)]
            verdict = (
                "sub-linear (fixed costs still dominate)"
                if k < 0.85
                else "linear"
                if k <= LINEAR
                else "super-linear"
            )
            out.append(
                Figure.make(
                    id=f"scaling.{key}.{database}",
                    figure=6,
                    title=f"{title} ({'→'.join(p['size'] for p in points)}): growth exponent",
                    database=database,
                    value=round(k, 3),
                    unit="k",
                    target=Target(on="value", op="<=", bound=LINEAR),
                    detail={"points": points, "step_exponents": steps, "verdict": verdict},
                )
            )
    return out


def prepare_organisations(ctx: Context) -> dict[str, float]:
    """Synthesise (or find cached) every organisation the benchmarks read, before timing starts."""
    made = {}
    for database in ctx.databases:
        for size in ctx.sizes:
            org = organisation(size, database, ctx)
            if org.synth_seconds is not None:
                made[f"{size}.{database}"] = round(org.synth_seconds, 1)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    add_context_args(parser)
    parser.add_argument(
        "--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)} (default: all)"
    )
    args = parser.parse_args(argv)
    ctx = context_from_args(args)
    chosen = list(BENCHMARKS) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmark {unknown[0]!r} (one of {', '.join(BENCHMARKS)})")

    results = Results(
        machine=machine(),
        command="make bench" + (f" BENCH_ARGS='{' '.join(argv or sys.argv[1:])}'"),
        started=datetime.now(UTC),
    )
    started = time.perf_counter()
    results.machine["sizes"] = ctx.sizes
    results.machine["repeats"] = ctx.repeats
    results.machine["prefect_server_database"] = (
        "external" if ctx.prefect_api_url else ctx.prefect_db
    )
    try:
        with console.status("synthetic organisations"):
            results.machine["synthesised"] = prepare_organisations(ctx)
        with prefect_api(ctx):
            for name in chosen:
                console.rule(f"[bold]{name}")
                began = time.perf_counter()
                try:
                    module = importlib.import_module(BENCHMARKS[name])
                    figures = module.run(ctx)
                except Exception as exc:  # one benchmark's failure must not lose the others
                    results.errors[name] = f"{type(exc).__name__}: {exc}"
                    console.print(f"[red]{name} failed[/]\n{traceback.format_exc()}")
                    figures = []
                results.figures.extend(figures)
                console.print(
                    f"{name}: {len(figures)} figures in {time.perf_counter() - began:.0f} s"
                )
                save(results)
        results.figures.extend(scaling(results.figures))
    finally:
        results.finished = datetime.now(UTC)
        results.seconds = round(time.perf_counter() - started, 1)
        save(results)
        shutil.rmtree(ctx.work, ignore_errors=True)

    print_figures(results.figures)
    judged = [f for f in results.figures if f.met is not None]
    met = sum(1 for f in judged if f.met)
    console.print(
        f"{met} of {len(judged)} targets met; {len(results.figures)} figures in "
        f"{results.seconds / 60:.1f} min → {LATEST}"
        + (f"; failed: {', '.join(results.errors)}" if results.errors else "")
    )
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
