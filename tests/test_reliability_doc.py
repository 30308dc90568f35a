"""RELIABILITY.md is generated from the suite's own published results, and every promise of
issue 9 has a passing test there; the results file and its recorder behave."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import reliability
from reliability import PROMISES, PUBLISHED, Recorder, missing, render


def test_reliability_md_is_the_one_generated_from_the_published_results() -> None:
    data = json.loads(PUBLISHED.read_text())
    assert reliability.DOCUMENT.read_text() == render(data), (
        "RELIABILITY.md was edited by hand or not republished: run `make reliability-doc`"
    )


def test_every_promise_has_a_passing_test_with_figures_in_the_published_results() -> None:
    data = json.loads(PUBLISHED.read_text())
    assert missing(data) == []
    for p in PROMISES:
        passed = [
            v for v in data["tests"].values() if v["promise"] == p.key and v["outcome"] == "passed"
        ]
        assert any(v["figures"] for v in passed), f"{p.key}: no figures recorded"


def test_every_published_test_still_exists() -> None:
    """A renamed or deleted test must not keep vouching for a promise."""
    data = json.loads(PUBLISHED.read_text())
    root = reliability.ROOT
    for nodeid in data["tests"]:
        path, _, name = nodeid.partition("::")
        function = name.split("[")[0]
        source = (root / path).read_text()
        assert f"def {function}(" in source, f"{nodeid} is published but no longer exists"


def test_recorder_merges_figures_and_refuses_unknown_promises_and_values(tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    r = Recorder("tests/x.py::test_y[sqlite]", path)
    r.record("forged-slack", requests=10)
    r.record("forged-slack", refused=10)
    entry = json.loads(path.read_text())["tests"]["tests/x.py::test_y[sqlite]"]
    assert entry["figures"] == {"requests": 10, "refused": 10}
    assert entry["outcome"] == "running"
    with pytest.raises(KeyError, match="unknown promise"):
        r.record("no-such-promise", n=1)
    with pytest.raises(ValueError, match="already records"):
        r.record("secrets", n=1)
    with pytest.raises(TypeError, match="must be a number"):
        Recorder("tests/x.py::test_z", path).record("secrets", leaks=[1])


def test_render_marks_unrecorded_and_failed_promises() -> None:
    data = {
        "tests": {
            "tests/a.py::test_a": {
                "promise": "tampering",
                "outcome": "failed",
                "figures": {"cases": 3},
                "seconds": 1.0,
            }
        }
    }
    text = render(data)
    assert "| 9 | **Tampering** | 1 | 0/1 | **no passing test** |" in text
    assert "| `tests/a.py::test_a` | failed | 1 | cases 3 |" in text
    assert "_No test has recorded this promise yet._" in text
    assert "tampering" in missing(data)
