"""The benchmarks' bookkeeping (not the benchmarks, which never run in tests): targets judge
their figures, the scaling curve's exponent and verdict, and the README's table is the one
generated from the published results."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from bench.common import Figure, Results, Target
from bench.readme_table import PUBLISHED, README, render, splice
from bench.run_all import scaling


@pytest.mark.parametrize(
    ("target", "value", "baseline", "met"),
    [
        (Target(on="value", op="<=", bound=5), 4.9, None, True),
        (Target(on="value", op="<=", bound=5), 5.1, None, False),
        (Target(on="ratio", op=">=", bound=0.2), 300.0, 1000.0, True),
        (Target(on="ratio", op=">=", bound=0.2), 150.0, 1000.0, False),
        (Target(on="ratio", op="<=", bound=1.25), 1.3, 1.0, False),
        (Target(on="ratio", op="<=", bound=1.25), 1.2, None, None),  # no baseline: not judged
    ],
)
def test_target_judges_value_or_ratio(target, value, baseline, met) -> None:
    f = Figure.make(
        id="x", figure=1, title="x", value=value, unit="s", baseline=baseline, target=target
    )
    assert f.met is met
    assert f.ratio == (value / baseline if baseline else None)


def _pack(size: str, systems: int, seconds: float) -> Figure:
    return Figure.make(
        id=f"pack.{size}.sqlite",
        figure=1,
        title="pack",
        size=size,
        database="sqlite",
        value=seconds,
        unit="s",
        detail={"systems": systems},
    )


def test_scaling_exponent_and_verdict() -> None:
    linear = scaling([_pack("S", 500, 1.0), _pack("M", 5000, 10.0), _pack("L", 20000, 40.0)])
    assert [f.id for f in linear] == ["scaling.pack.sqlite"]
    assert math.isclose(linear[0].value, 1.0, abs_tol=1e-3)
    assert linear[0].detail["verdict"] == "linear" and linear[0].met is True
    quadratic = scaling([_pack("S", 500, 1.0), _pack("M", 5000, 100.0)])[0]
    assert math.isclose(quadratic.value, 2.0, abs_tol=1e-3)
    assert quadratic.detail["verdict"] == "super-linear" and quadratic.met is False
    assert scaling([_pack("S", 500, 1.0)]) == []  # one point is no curve


def test_render_marks_missed_targets() -> None:
    results = Results(
        machine={"cpu": "test", "cores": 2, "sizes": ["S"], "repeats": 3},
        command="make bench",
        started=datetime(2026, 11, 24, tzinfo=UTC),
        seconds=60.0,
        figures=[
            _pack("S", 500, 1.0).model_copy(
                update={"target": Target(on="value", op="<=", bound=0.5), "met": False}
            )
        ],
    )
    block = render(results)
    assert "| 1 | pack | S | sqlite | 1.00 s |" in block and "**no**" in block
    assert "0 of 1 targets met" in block
    assert splice(f"a\n{block}\nb", block) == f"a\n{block}\nb"


def test_readme_table_is_generated_from_published_results() -> None:
    results = Results.model_validate_json(PUBLISHED.read_text())
    assert results.figures, "published.json holds no figures"
    assert splice(README.read_text(), render(results)) == README.read_text(), (
        "README.md's benchmark table was edited by hand or not regenerated: run `make bench-readme`"
    )
