"""The architecture holds: the import contract (pyproject's [tool.importlinter]) is kept, it
fails when the domain imports Prefect, every domain module is placed in a layer, and importing
a flow or the CLI loads only what its work needs (each run is a fresh interpreter)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aims_core", "notifications", "flows", "tasks", "deployments")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contract_is_kept() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_contract_fails_when_a_service_imports_prefect(tmp_path: Path) -> None:
    """A copy of the code with `import prefect` added to one service breaks the domain
    contract, and the report names the module (the check can fail)."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "data", "templates"),
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    service = tmp_path / "aims_core" / "services" / "evidence.py"
    text = service.read_text()
    service.write_text(
        text.replace(
            "from __future__ import annotations\n",
            "from __future__ import annotations\n\nimport prefect  # noqa: F401\n",
            1,
        )
    )
    assert "import prefect" in service.read_text()

    done = lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout
    assert "aims_core.services.evidence -> prefect" in done.stdout, done.stdout
    assert "1 broken" in done.stdout, done.stdout


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["id"] == "layers"]
    return [m.strip() for layer in layers for m in layer.replace("|", ":").split(":")]


def test_every_domain_module_has_its_place_in_the_layers() -> None:
    """A module added to aims_core and not placed in the layers would escape the contract."""
    placed = set(_layers())
    domain = {
        f"aims_core.{p.stem if p.is_file() else p.name}"
        for p in (ROOT / "aims_core").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert domain - placed == set(), "place these modules in pyproject's layers contract"


def _loaded(statement: str) -> set[str]:
    """Top-level packages a fresh interpreter has loaded after `statement`."""
    code = f"{statement}\nimport sys\nprint(' '.join({{m.split('.')[0] for m in sys.modules}}))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("flow", ["stage_gate", "incident_response", "management_review"])
def test_a_flow_module_loads_no_report_or_slack_library(flow: str) -> None:
    heavy = {"pandas", "matplotlib", "openpyxl", "jinja2", "slack_sdk"}
    assert _loaded(f"import flows.{flow}") & heavy == set()


def test_the_cli_loads_no_engine_report_or_slack_library() -> None:
    heavy = {"prefect", "pandas", "alembic", "matplotlib", "slack_sdk"}
    assert _loaded("import aims_core.cli") & heavy == set()


def test_aims_help_lists_every_topic_and_imports_none() -> None:
    """`aims --help` reads each topic's help from its source: no service module is imported."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from aims_core.cli import app\n"
        "from aims_core.cli.topics import TOPICS\n"
        "out = CliRunner().invoke(app, ['--help']).output\n"
        "missing = [n for n, t in TOPICS.items() if f' {n} ' not in out or not t.help]\n"
        "loaded = [m for m in sys.modules if m.startswith('aims_core.services')]\n"
        "print(missing, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "[] []", done.stdout + done.stderr
