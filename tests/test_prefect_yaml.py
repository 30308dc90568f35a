"""deployments/prefect.yaml (workers) says what deployments/serve.py (`aims up`) serves.

No Prefect server: the file is read and validated with Prefect's own model, its build steps run as
`prefect deploy` runs them, and each deployment is compared with the served one: names,
entrypoints, tags, schedules (with the time zone), concurrency. A deployment added to serve.py
and forgotten in prefect.yaml (or the other way round) fails here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml
from prefect_harness import ROOT

PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"


def _load() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text())


def _served() -> dict[str, Any]:
    """serve.py's deployments by `flow/deployment` name, in the current environment."""
    from deployments.serve import all_deployments

    return {f"{d.flow_name}/{d.name}": d for d in all_deployments()}


def _flow_name(entrypoint: str) -> str:
    """The flow's name, loaded from the entrypoint the way a worker loads it."""
    from prefect.flows import load_flow_from_entrypoint

    return load_flow_from_entrypoint(str(ROOT / entrypoint)).name


def _deployed(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """prefect.yaml's deployments by `flow/deployment` name, templated as `prefect deploy` does
    with the current environment: its build steps run, their outputs applied."""
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
    from prefect.deployments.steps.core import run_steps
    from prefect.utilities.templating import apply_values

    outputs = asyncio.run(run_steps(raw["build"], {}, print_function=lambda *a, **k: None))
    out: dict[str, dict[str, Any]] = {}
    for config in raw["deployments"]:
        config = apply_values(config, outputs)
        config["schedules"] = [
            _schedule_config_to_deployment_schedule(s) for s in config.get("schedules") or []
        ]
        name = f"{_flow_name(config['entrypoint'])}/{config['name']}"
        assert name not in out, f"{name} twice in prefect.yaml"
        out[name] = config
    return out


def test_prefect_accepts_the_file_and_every_deployment_runs_on_the_pool_from_the_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.utilities.templating import apply_values

    raw = _load()
    model = PrefectYamlModel.model_validate(raw)  # what `prefect deploy` checks first
    assert len(model.deployments) == len(raw["deployments"])
    assert raw["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $AIMS_CHECKOUT }}"}}
    ]
    monkeypatch.setenv("AIMS_WORK_POOL", "aims-prod")
    for config in raw["deployments"]:
        assert "pull" not in config and not config.get("parameters"), config["name"]
        pool = apply_values(config["work_pool"], {})
        assert pool["name"] == "aims-prod", config["name"]
        # Runs resume on any worker: results persisted, to storage every worker reads.
        assert pool["job_variables"]["env"] == {
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": "local-file-system/aims-results",
        }


def test_prefect_yaml_lists_exactly_the_served_deployments_with_the_same_entrypoints() -> None:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    served = _served()
    deployed = _deployed(_load())
    missing = sorted(set(served) - set(deployed))
    extra = sorted(set(deployed) - set(served))
    assert not missing, f"served by deployments/serve.py but not in prefect.yaml: {missing}"
    assert not extra, f"in prefect.yaml but not served by deployments/serve.py: {extra}"
    for name, d in served.items():
        entrypoint = deployed[name]["entrypoint"]
        assert entrypoint == d.entrypoint, name
        # What a worker loads from the entrypoint is the flow serve.py deploys: same name, same
        # version (Prefect's hash of its source file), same function, same parameters.
        flow = load_flow_from_entrypoint(str(ROOT / entrypoint))
        assert flow.name == d.flow_name, name
        assert flow.version == d.version, name
        assert flow.fn.__qualname__ == entrypoint.split(":")[1], name
        assert parameter_schema(flow) == d._parameter_openapi_schema, name


def _schedule_key(schedule: Any) -> tuple[Any, ...]:
    """What a schedule means (an interval's anchor is the moment it was built: left out)."""
    if hasattr(schedule, "cron"):
        return ("cron", schedule.cron, schedule.timezone, schedule.day_or)
    return ("interval", schedule.interval, schedule.timezone)


@pytest.mark.parametrize(
    ("timezone", "paused"),
    [(None, None), ("Europe/Berlin", "true")],
    ids=["defaults", "berlin-paused"],
)
def test_tags_schedules_and_concurrency_match_serve(
    monkeypatch: pytest.MonkeyPatch, timezone: str | None, paused: str | None
) -> None:
    """Both read AIMS_TIMEZONE and AIMS_SCHEDULES_PAUSED: compared under the defaults and set."""
    for var, value in (("AIMS_TIMEZONE", timezone), ("AIMS_SCHEDULES_PAUSED", paused)):
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
    served = _served()
    deployed = _deployed(_load())
    assert set(served) == set(deployed)
    for name, d in served.items():
        config = deployed[name]
        assert config["tags"] == d.tags, name
        schedules = config["schedules"]
        assert [_schedule_key(s["schedule"]) for s in schedules] == [
            _schedule_key(s.schedule) for s in d.schedules
        ], name
        # serve pauses a scheduled deployment; a worker deployment has its schedules inactive.
        assert all(s["active"] is not d.paused for s in schedules), name
        limit = config.get("concurrency_limit")
        if d.concurrency_limit is None:
            assert limit is None, name
        else:
            assert limit == {
                "limit": d.concurrency_limit,
                "collision_strategy": d.concurrency_options.collision_strategy.value,
            }, name
    # The schedules really are in the organisation's zone (not only equal to each other).
    zones = {
        s["schedule"].timezone
        for config in deployed.values()
        for s in config["schedules"]
        if hasattr(s["schedule"], "cron")
    }
    assert zones == {timezone or "UTC"}
    assert any(config["schedules"] for config in deployed.values())
