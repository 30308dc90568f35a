"""Fire a playbook hook at most once per incident and step.

The HookRun row is committed *before* the hook fires, under a unique idempotency key: a flow that
suspended and re-runs from the top, a retried task, or a second run of the same incident finds
the row and fires nothing, even if Prefect's result cache were lost. The price is that a crash
between the commit and the hook's end leaves the row `started` with no outcome: it is reported as
such (someone checks the target by hand) and still never fired again; for containment actions a
double rollback or isolation is worse than a missing one the on-call is told about.

Dry run (drills) records `rehearsed` with what would have been called, and touches nothing.

A hook gets only what the playbook says: a shell command runs without a shell, with PATH, LANG,
HOME, the AIMS_HOOK_* facts of the incident and the variables the playbook names; an HTTP call
goes to the playbook's URL without following redirects; a deployment run is started with
`as_subflow=False` (Prefect is imported only then), so it is never a subflow of the caller.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from aims_core.models import HookRun, as_utc
from aims_core.ports import Runs
from aims_core.rules.playbooks import (
    DeploymentHook,
    HookResult,
    HookStatus,
    HttpHook,
    ShellHook,
    render,
)
from aims_core.uow import Actor, UnitOfWork

__all__ = ["HookResult", "fire_once", "hook_runs", "target_of"]

OUTPUT_MAX: Final = 4000  # characters of a hook's output kept (the end: errors come last)

AnyHook = ShellHook | HttpHook | DeploymentHook


def _result(row: HookRun, fired_now: bool) -> HookResult:
    return HookResult(
        key=row.idempotency_key,
        incident_id=row.incident_id,
        step=row.step,
        kind=row.kind,
        target=row.target,
        status=row.status,  # type: ignore[arg-type]
        output=row.output,
        dry_run=row.dry_run,
        fired_now=fired_now,
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
    )


def target_of(hook: AnyHook, values: dict[str, Any]) -> str:
    """What the hook calls, placeholders filled: the text recorded and shown to people."""
    if isinstance(hook, ShellHook):
        return shlex.join(str(a) for a in render(list(hook.command), values))
    if isinstance(hook, HttpHook):
        return f"{hook.method} {render(hook.url, values)}"
    parameters = json.dumps(render(hook.parameters, values), sort_keys=True, default=str)
    return f"{hook.deployment} {parameters}"


def hook_runs(uow: UnitOfWork, incident_id: int) -> list[HookResult]:
    """Every hook recorded for an incident, in the order they were started."""
    with uow.read():
        rows = uow.session.scalars(
            select(HookRun).where(HookRun.incident_id == incident_id).order_by(HookRun.id)
        )
        return [_result(r, fired_now=False) for r in rows]


def fire_once(
    uow: UnitOfWork,
    *,
    key: str,
    incident_id: int,
    step: str,
    hook: AnyHook,
    values: dict[str, Any],
    dry_run: bool,
    actor: Actor,
    runs: Runs | None = None,
) -> HookResult:
    """Record, then fire (or rehearse) the hook, unless `key` was recorded before. A
    `deployment` hook starts its run through `runs` (the flow gives the Prefect adapter)."""
    target = target_of(hook, values)
    subject = f"incident:{incident_id}"
    now = datetime.now(UTC)
    try:
        with uow:
            existing = uow.session.scalar(select(HookRun).where(HookRun.idempotency_key == key))
            if existing is not None:
                return _result(existing, fired_now=False)
            row = HookRun(
                idempotency_key=key,
                incident_id=incident_id,
                step=step,
                kind=hook.kind,
                target=target,
                dry_run=dry_run,
                status="rehearsed" if dry_run else "started",
                output=f"would call: {target}" if dry_run else "",
                started_at=now,
                finished_at=now if dry_run else None,
            )
            uow.session.add(row)
            uow.session.flush()
            uow.audit(
                actor,
                "hook.rehearsed" if dry_run else "hook.started",
                subject,
                key=key,
                step=step,
                kind=hook.kind,
                target=target,
            )
            uow.commit()
            row_id = row.id
            if dry_run:
                return _result(row, fired_now=True)
    except IntegrityError:  # a concurrent caller recorded the same key first: it fires, not us
        with uow.read():
            row = uow.session.scalars(select(HookRun).where(HookRun.idempotency_key == key)).one()
            return _result(row, fired_now=False)

    status, output = _fire(hook, values, runs)
    with uow:
        row = uow.session.get_one(HookRun, row_id)
        row.status = status
        row.output = output[-OUTPUT_MAX:]
        row.finished_at = datetime.now(UTC)
        uow.audit(actor, f"hook.{status}", subject, key=key, step=step, kind=hook.kind)
        uow.commit()
        return _result(row, fired_now=True)


# --- firing ------------------------------------------------------------------------------------


def _fire(hook: AnyHook, values: dict[str, Any], runs: Runs | None) -> tuple[HookStatus, str]:
    """Run the hook; never raises (a failure is an outcome to record, not a crash)."""
    try:
        if isinstance(hook, ShellHook):
            return _shell(hook, values)
        if isinstance(hook, HttpHook):
            return _http(hook, values)
        return _deployment(hook, values, runs)
    except Exception as exc:  # anything the target throws at us is the hook's outcome
        return "failed", f"{type(exc).__name__}: {exc}"


def _shell(hook: ShellHook, values: dict[str, Any]) -> tuple[HookStatus, str]:
    argv = [str(a) for a in render(list(hook.command), values)]
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": os.environ.get("HOME", "/"),
        **{f"AIMS_HOOK_{k.upper()}": str(v) for k, v in values.items()},
    }
    missing = [name for name in hook.env_from if name not in os.environ]
    if missing:
        return "failed", f"not run: variable(s) {', '.join(missing)} not set in the engine"
    env.update({name: os.environ[name] for name in hook.env_from})
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=hook.timeout_s,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = _text(exc.stdout) + _text(exc.stderr)
        return "failed", f"timed out after {hook.timeout_s:g} s\n{out}"
    except OSError as exc:
        return "failed", f"cannot run {argv[0]}: {exc.strerror or exc}"
    status: HookStatus = "succeeded" if done.returncode == 0 else "failed"
    return status, f"exit {done.returncode}\n{done.stdout}{done.stderr}"


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def _http(hook: HttpHook, values: dict[str, Any]) -> tuple[HookStatus, str]:
    import httpx

    headers = {name: str(render(v, values)) for name, v in hook.headers.items()}
    missing = [env for env in hook.headers_from_env.values() if env not in os.environ]
    if missing:
        return "failed", f"not called: variable(s) {', '.join(missing)} not set in the engine"
    headers.update({name: os.environ[env] for name, env in hook.headers_from_env.items()})
    body = render(hook.body, values) if hook.body is not None else None
    response = httpx.request(
        hook.method,
        render(hook.url, values),
        headers=headers,
        json=body,
        timeout=hook.timeout_s,
        follow_redirects=False,
    )
    status: HookStatus = "succeeded" if response.status_code < 400 else "failed"
    return status, f"HTTP {response.status_code}\n{response.text[:OUTPUT_MAX]}"


def _deployment(
    hook: DeploymentHook, values: dict[str, Any], runs: Runs | None
) -> tuple[HookStatus, str]:
    if runs is None:
        return "failed", "not called: no run orchestrator given to this step"
    run = runs.start(
        hook.deployment,
        render(hook.parameters, values),
        name=render(hook.run_name, values) if hook.run_name else None,
        tags=[str(t) for t in render(list(hook.tags), values)],
        wait_s=hook.wait_s,
    )
    line = f"flow run {run.id} ({run.name})"
    state = run.state
    if hook.wait_s and state is not None and state.final:
        status: HookStatus = "succeeded" if state.completed else "failed"
        return status, f"{line}: {state.name} {state.message or ''}".rstrip()
    waited = f"still {state.name if state else 'scheduled'} after {hook.wait_s:g} s"
    return "succeeded", f"{line}: {'started' if not hook.wait_s else waited}"
