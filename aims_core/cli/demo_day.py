"""`aims demo run`: the engine up with the demo organisation and a scripted day to watch in the
Prefect UI — a gate waiting for its approvers, an incident from a monitoring alert running its
playbook, the quarter's management review pack prepared.

The day goes through the same doors a real one does: evidence through the evidence service, the
gate through `start_run` (as `aims gate request`), the alert as an Alertmanager v4 POST to the
HTTP app, the review as a deployment run. Run it twice and it carries on from where the last
day left the organisation (a gate already waiting is shown, not asked again).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import typer

from aims_core import processes
from aims_core.models import GateStatus, LifecycleStage
from aims_core.services import approvals, demo, evidence, gates, reviews
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

DEMO_SYSTEM = "credit-scoring"
ALERT_SYSTEM = "cv-screening"
#: The data scientist (Responsible) asks; the owner (Accountable) and compliance approve.
REQUESTER = "ds.lead@northwind.example"
ACTOR = Actor(who="demo-day", channel="demo")
WAITING = {"Suspended", "Paused"}


@dataclass
class DayRun:
    what: str
    run_id: str
    expect: set[str]  # the state names that show this step did what it should
    name: str = ""
    state: str = "?"
    final: bool = False


@dataclass
class DemoDay:
    settings: Settings
    http_url: str
    stopped: Callable[[], bool]
    say: Callable[[str], None] = typer.echo
    runs: list[DayRun] = field(default_factory=list)
    pack: dict[str, str] = field(default_factory=dict)

    # --- the day ---------------------------------------------------------------------------

    def run(self) -> bool:
        """The scripted day; True when every step shows in Prefect as it should."""
        steps = (self.gate, self.incident, self.management_review)
        for step in steps:
            if self.stopped():
                return False
            step()
        self.summary()
        return self.succeeded()

    def gate(self) -> None:
        uow = UnitOfWork(self.settings)
        waiting = [
            r
            for r in gates.list_reviews(uow, system=DEMO_SYSTEM)
            if r.status is GateStatus.waiting and r.flow_run_id
        ]
        if waiting:
            review = waiting[0]
            self.say(f"\n09:00  {DEMO_SYSTEM}: gate {review.checklist.gate} is still waiting")
            self._track("gate waiting for approval", review.flow_run_id or "", WAITING)
            self._how_to_approve(review.request_id)
            return
        to = _next_stage(uow, DEMO_SYSTEM)
        checklist = gates.check_gate(uow, DEMO_SYSTEM, to)
        self.say(
            f"\n09:00  Mei Chen (data science lead) files what the gate {DEMO_SYSTEM} "
            f"{checklist.from_stage.value}→{to.value} asks for and requests it"
        )
        for kind in checklist.missing:
            out = evidence.append(
                uow,
                {
                    "subject": f"system:{DEMO_SYSTEM}",
                    "kind": kind,
                    "title": f"{kind.replace('-', ' ').capitalize()} for {DEMO_SYSTEM} (demo)",
                    "text": f"# {kind} — {DEMO_SYSTEM}\n\nWritten by the demo day.\n",
                    "idempotency_key": f"demo-day:{DEMO_SYSTEM}:{to.value}:{kind}",
                },
                ACTOR,
            )
            self.say(f"       evidence #{out.id} {kind}")
        from aims_core.cli.engine import start_run

        run_id, name, url = start_run(
            processes.STAGE_GATE.id,
            {"system": DEMO_SYSTEM, "to_stage": to.value, "requester": REQUESTER},
            name=gates.gate_run_name(uow, DEMO_SYSTEM, to),
            tags=["gate", DEMO_SYSTEM, f"tier:{checklist.tier.value}", "demo"],
        )
        self.say(f"       started {name}\n       {url}")
        day_run = self._track("gate waiting for approval", run_id, WAITING)
        self._wait(day_run, 120)
        review = next(
            (r for r in gates.list_reviews(uow, system=DEMO_SYSTEM) if r.flow_run_id == run_id),
            None,
        )
        self._how_to_approve(review.request_id if review else None)

    def incident(self) -> None:
        fingerprint = f"demo-{datetime.now(UTC):%Y%m%d}"
        self.say(
            f"\n10:30  the fairness monitor fires for {ALERT_SYSTEM}: Alertmanager posts to "
            f"{self.http_url}/alertmanager"
        )
        response = httpx.post(
            f"{self.http_url}/alertmanager",
            json=_alert(fingerprint),
            headers={"Authorization": f"Bearer {self._intake_token()}"},
            timeout=60,
        )
        if response.status_code >= 300:
            self.say(f"       intake answered {response.status_code}: {response.text[:300]}")
            return
        for item in response.json()["incidents"]:
            note = item.get("notification") or {}
            self.say(
                f"       opened incident {item['incident_id']}; first message "
                f"{note.get('state', '-')}"
                if item["created"]
                else f"       repeats open incident {item['incident_id']}: added to its timeline"
            )
            run_id = (item.get("run") or {}).get("id") or self._incident_run(item["incident_id"])
            if run_id:
                from aims_core.cli.engine import run_url

                self.say(f"       playbook run {run_url(run_id)}")
                day_run = self._track(
                    "incident response", run_id, {"Running", *WAITING, "Completed"}
                )
                self._wait(day_run, 90)

    def _intake_token(self) -> str:
        assert self.settings.intake_token is not None, "the demo sets one when none is configured"
        return self.settings.intake_token.get_secret_value()

    def _incident_run(self, incident_id: int) -> str | None:
        """The run of an incident the alert attached to (a demo day run twice on one day)."""
        from aims_core.services.incidents import get_incident

        return get_incident(UnitOfWork(self.settings), incident_id).flow_run_id

    def management_review(self) -> None:
        from aims_core.cli.engine import start_run

        period = reviews.default_period(None, self.settings.timezone)
        self.say(f"\n16:00  the management review of {period} is prepared for top management")
        existing = reviews.find_review(UnitOfWork(self.settings), period)
        if existing is not None and existing.flow_run_id:
            self._track("management review pack", existing.flow_run_id, {*WAITING, "Completed"})
        else:
            run_id, name, url = start_run(
                processes.MANAGEMENT_REVIEW.id,
                {"period": period},
                name=f"management review {period}",
                tags=["management-review", period, "demo"],
            )
            self.say(f"       started {name}\n       {url}")
            self._wait(self._track("management review pack", run_id, {*WAITING, "Completed"}), 180)
        found = reviews.find_review(UnitOfWork(self.settings), period)
        if found is not None:
            self.pack = {ext: str(path) for ext, path in found.files().items()}
            self.say("       the review pack is written:")
            for ext, path in self.pack.items():
                self.say(f"         {ext:8} {path}")

    # --- watching the runs -------------------------------------------------------------------

    def _track(self, what: str, run_id: str, expect: set[str]) -> DayRun:
        day_run = DayRun(what, run_id, expect)
        self.runs.append(day_run)
        return day_run

    def _wait(self, day_run: DayRun, timeout: float) -> None:
        """Until the run reaches a state that shows its step, ends, or time runs out."""
        deadline = time.monotonic() + timeout
        while not self.stopped():
            self._refresh(day_run)
            if day_run.state in day_run.expect or day_run.final:
                break
            if time.monotonic() > deadline:
                self.say(f"       (still {day_run.state} after {timeout:.0f} s)")
                break
            time.sleep(1)
        self.say(f"       → {day_run.name}: {day_run.state}")

    def _refresh(self, day_run: DayRun) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(day_run.run_id)  # type: ignore[arg-type]
        day_run.name = run.name
        day_run.state = run.state.name if run.state else "?"
        day_run.final = bool(run.state and run.state.is_final())

    def _how_to_approve(self, request_id: int | None) -> None:
        if request_id is None:
            return
        req = approvals.get_request(UnitOfWork(self.settings), request_id)
        self.say(
            f"       approval request {req.id}: {req.quorum} of {', '.join(req.approvers)}\n"
            f"       approve it: `aims approve {req.id} --as {req.approvers[0]}`"
            + (
                ""
                if self.settings.slack_bot_token
                else " (no Slack configured), or in the Prefect UI: the run's Resume button, with "
                "the approver's personal code from their message (`aims notifications list`)"
            )
        )

    def summary(self) -> None:
        for day_run in self.runs:
            self._refresh(day_run)
        self.say("\nThe day in the Prefect API:")
        width = max((len(r.name) for r in self.runs), default=10)
        for r in self.runs:
            mark = "ok " if r.state in r.expect else "!! "
            self.say(f"  {mark}{r.name:<{width}}  {r.state:<10}  {r.what}")
        if self.pack:
            self.say(f"  review pack: {self.pack.get('html', next(iter(self.pack.values())))}")

    def succeeded(self) -> bool:
        whats = {r.what for r in self.runs if r.state in r.expect}
        pack_written = all(_exists(p) for p in self.pack.values()) and bool(self.pack)
        return {
            "gate waiting for approval",
            "incident response",
            "management review pack",
        } <= whats and pack_written


def _exists(path: str) -> bool:
    return Path(path).is_file()


def _next_stage(uow: UnitOfWork, system: str) -> LifecycleStage:
    from aims_core.services.systems import get_system

    order = list(LifecycleStage)
    with uow.read():
        current = get_system(uow.session, system).lifecycle_stage
    index = order.index(current)
    return order[min(index + 1, len(order) - 2)]  # never asks to decommission the demo's system


def _alert(fingerprint: str) -> dict[str, Any]:
    """What Alertmanager (webhook v4) sends when the fairness monitor's rule fires."""
    from notifications.intake import firing_webhook

    labels = {
        "alertname": "FairnessDisparateImpactLow",
        "ai_system": ALERT_SYSTEM,
        "severity": "high",
        "category": "bias",
        "job": "fairness-monitor",
    }
    annotations = {
        "summary": f"{ALERT_SYSTEM}: selection-rate ratio for applicants over 50 is 0.61",
        "description": "Below the 0.8 four-fifths threshold for 30 minutes.",
    }
    return firing_webhook(
        labels,
        annotations,
        fingerprint,
        starts_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        source="http://prometheus.demo:9090/graph?g0.expr=fairness",
    )


def load_organisation(settings: Settings) -> None:
    from aims_core import database

    database.initialise(settings, ACTOR)
    added = demo.load_demo(UnitOfWork(settings), ACTOR, history=True)
    new = ", ".join(f"{n} {label}" for label, n in added.items() if n)
    org = demo.demo_org().organisation
    typer.echo(f"{org}: " + (f"added {new}" if new else "already loaded"))
