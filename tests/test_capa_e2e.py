"""A CAPA end to end, on the real engine (Prefect API + served runner + fake Slack).

Must show: a CAPA whose effectiveness check fails returns to root cause (the run asks for a new
root cause, attempt 2), and a passing one closes after approval. Every human step is an ask: the
containment through the run's Prefect UI form (a claim without the owner's personal code refused,
the run waiting again, then the code), attempt 1 from the CLI (`--as`: each answer resumes the
run), attempt 2 through the UI forms with personal codes (the plan's rule, one action per answer
until one says the plan is complete, is shown in tests/test_asks_capa.py). Then the tracker's
tick wakes a run sleeping until its verification date. `--verify-after-days 0` (and a due date
moved for the tick): nothing waits for real time. Uses fraud-detection (other flow tests use
other systems).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta

from prefect_fixtures import (
    ask_of,
    engine_cli,
    resume_with,
    ui_code,
    wait_for_pause,
    wait_for_state,
)
from sqlalchemy import select, update

from aims_core.db import get_engine
from aims_core.models import ApprovalRequest, AuditEvent, Capa, CapaStatus, Evidence
from aims_core.services import capa as capas
from aims_core.services.capa import CapaActionOut
from aims_core.uow import UnitOfWork
from deployments.prefect_runs import PrefectRuns

SYSTEM = "fraud-detection"
D = "@northwind.example"
OWNER, GOV, AUDITOR, DS = (f"{n}{D}" for n in ("ops.owner", "governance", "auditor", "ds.lead"))
DUE = str(date.today() + timedelta(days=7))


def ok(engine, *args: str, wakes: bool = True) -> str:  # type: ignore[no-untyped-def]
    result = engine_cli(engine, *args)
    assert result.exit_code == 0, result.output
    if wakes:
        assert re.search(r"flow run \S+: resumed", result.output), result.output
    return result.output


def planned(settings, capa_id: int, n: int) -> list[CapaActionOut]:  # type: ignore[no-untyped-def]
    """The attempt's actions once the run has applied the plan's answers (`n` of them)."""
    deadline = time.monotonic() + 60
    while len(actions := capas.get_capa(UnitOfWork(settings), capa_id).current_actions) < n:
        assert time.monotonic() < deadline, f"CAPA {capa_id}: {len(actions)} actions, not {n}"
        time.sleep(0.3)
    return actions


def open_capa(engine, title: str, *extra: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    out = ok(
        engine,
        "capa",
        "open",
        "--title",
        title,
        "--owner",
        OWNER,
        "--system",
        SYSTEM,
        *extra,
        wakes=False,
    )
    capa_id = int(re.search(r"opened CAPA (\d+):", out).group(1))  # type: ignore[union-attr]
    run_id = re.search(r"started run capa \d+: .+ \(([0-9a-f-]{36})\)", out).group(1)  # type: ignore[union-attr]
    return capa_id, run_id


def test_failed_verification_returns_to_root_cause_and_a_passing_one_closes_after_approval(
    engine,  # type: ignore[no-untyped-def]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.input.run_input import keyset_from_paused_state

    settings = engine.settings
    title = "Card-testing bursts not flagged"
    t0 = time.monotonic()
    capa_id, run_id = open_capa(engine, title, "--verify-after-days", "0")
    key = f"capa-{capa_id}"

    # Containment, asked of the owner (and the stand-in): in the UI form, a claim without the
    # owner's code is refused and the run waits again; with their code it is recorded.
    contain = ask_of(settings, f"{key}-a1-containment-1")
    run = wait_for_pause(run_id, f"approval-{contain}-round-1")
    t_suspended = time.monotonic()
    with get_client(sync_client=True) as client:
        keyset = keyset_from_paused_state(run.state)
        description = client.read_flow_run_input(run.id, keyset["description"])
    assert f"### CAPA containment: Contain CAPA {capa_id}: {title}" in description
    assert f"**who may answer**: {GOV}, {OWNER}" in description
    text = "Rule-based fallback switched on for card payments"
    resume_with(run_id, person=OWNER, code="", containment=text)
    wait_for_pause(run_id, f"approval-{contain}-round-2")
    resume_with(run_id, person=OWNER, code=ui_code(settings, contain, OWNER), containment=text)

    # Attempt 1 from the CLI, as the owner (and the action's owner): each answer resumes the run.
    wait_for_pause(run_id, f"approval-{ask_of(settings, f'{key}-a1-root-cause-1')}-round-1")
    why = ("--why", "Bursts were rare in training data", "--why", "Sampling dropped them")
    rca = ("capa", "rca", str(capa_id), *why, "--root-cause", "Training sample drops bursts")
    refused = engine_cli(engine, *rca)
    assert refused.exit_code == 2 and "give --as EMAIL" in refused.output, refused.output
    ok(engine, *rca, "--as", OWNER)
    wait_for_pause(run_id, f"approval-{ask_of(settings, f'{key}-a1-plan-1')}-round-1")
    action = ("--title", "Keep bursts in the sample", "--owner", DS, "--due", DUE)
    ok(engine, "capa", "action", str(capa_id), *action, "--as", OWNER)
    [first] = planned(settings, capa_id, 1)
    done = ask_of(settings, f"{key}-a1-action-{first.id}-done-1")
    wait_for_pause(run_id, f"approval-{done}-round-1")
    ok(engine, "capa", "done", str(first.id), "--evidence", "PR 42 merged", "--as", DS)
    # The effectiveness check is an ask to the verifiers, never the owner.
    ask1 = ask_of(settings, f"{key}-a1-v1-verification")
    wait_for_pause(run_id, f"approval-{ask1}-round-1")
    verify = ("capa", "verify", str(capa_id), "--ineffective", "--evidence", "Two bursts missed")
    refused = engine_cli(engine, *verify, "--as", OWNER)
    assert refused.exit_code == 2 and f"owns CAPA {capa_id}" in refused.output, refused.output

    # It fails: back to root cause, attempt 2, a new ask.
    out = ok(engine, *verify[:-1], "Two bursts missed last week", "--as", AUDITOR)
    assert f"recorded answer by {AUDITOR} on ask {ask1}" in out
    rca2 = ask_of(settings, f"{key}-a2-root-cause-1")
    run = wait_for_pause(run_id, f"approval-{rca2}-round-1")
    t_failed = time.monotonic()
    c = capas.get_capa(UnitOfWork(settings), capa_id)
    assert (c.status, c.attempt, c.current_actions, c.root_cause) == (
        CapaStatus.root_cause,
        2,
        [],
        None,
    )
    with get_client(sync_client=True) as client:
        keyset = keyset_from_paused_state(run.state)
        description = client.read_flow_run_input(run.id, keyset["description"])
    assert f"Root cause of CAPA {capa_id} (attempt 2)" in description
    assert "verification 1 (attempt 1): not effective, Two bursts missed last week" in description

    # Attempt 2 through the UI forms, each with the answerer's code.
    def ui(ask_id: int, email: str, **answer: object) -> None:
        wait_for_pause(run_id, f"approval-{ask_id}-round-1")
        resume_with(run_id, person=email, code=ui_code(settings, ask_id, email), **answer)

    ui(
        rca2,
        OWNER,
        method="fishbone",
        data=["Bursts never labelled"],
        process=["No review"],
        root_cause="Bursts are not labelled as fraud",
    )
    plan = {"title": "Label bursts", "owner": DS, "due": DUE, "plan_complete": True}
    ui(ask_of(settings, f"{key}-a2-plan-1"), OWNER, **plan)
    [second] = planned(settings, capa_id, 1)
    ui(ask_of(settings, f"{key}-a2-action-{second.id}-done-1"), DS, evidence="Labelling job live")
    ask2 = ask_of(settings, f"{key}-a2-v2-verification")
    wait_for_pause(run_id, f"approval-{ask2}-round-1")
    # The UI form: a wrong code for the auditor is refused; the run waits again; the auditor's
    # code is then accepted.
    answer = {"result": "effective", "evidence": "No burst missed since"}
    resume_with(run_id, person=AUDITOR, code="AAAA-BBBB-CCCC-DDDD", **answer)
    wait_for_pause(run_id, f"approval-{ask2}-round-2")
    resume_with(run_id, person=AUDITOR, code=ui_code(settings, ask2, AUDITOR), **answer)

    # Closure approval: the owner may not approve it, the governance lead does.
    with get_engine(settings.effective_database_url).connect() as conn:
        deadline = time.monotonic() + 60
        while (
            req := conn.execute(
                select(ApprovalRequest).where(
                    ApprovalRequest.idempotency_key == capas.closure_key(capa_id, 2)
                )
            ).one_or_none()
        ) is None:
            assert time.monotonic() < deadline, "no closure request"
            time.sleep(0.5)
            conn.rollback()
    wait_for_pause(run_id, f"approval-{req.id}-round-1")
    assert capas.get_capa(UnitOfWork(settings), capa_id).status is CapaStatus.awaiting_closure
    t_approval = time.monotonic()
    refused = engine_cli(engine, "approve", str(req.id), "--as", OWNER)
    assert refused.exit_code == 2
    assert "cannot decide it" in refused.output
    ok(engine, "approve", str(req.id), "--as", GOV)

    done = wait_for_state(run_id, {"Completed"})
    t_done = time.monotonic()
    result = done.state.result()
    assert (result.status, result.attempts, result.approvals) == ("closed", 2, [GOV])
    c = capas.get_capa(UnitOfWork(settings), capa_id)
    assert (c.status, c.closure_request_id) == (CapaStatus.closed, req.id)
    assert [(v.attempt, v.effective, v.verifier) for v in c.verifications] == [
        (1, False, AUDITOR),
        (2, True, AUDITOR),
    ]
    assert [r.method for r in c.root_causes] == ["5-whys", "fishbone"]

    # Evidence for each step, and each answer recorded once, in its answerer's name, whatever
    # the re-runs.
    with get_engine(settings.effective_database_url).connect() as conn:
        kinds = list(
            conn.scalars(
                select(Evidence.kind)
                .where(Evidence.subject == f"capa:{capa_id}")
                .order_by(Evidence.id)
            )
        )
        steps = conn.execute(
            select(AuditEvent.action, AuditEvent.actor, AuditEvent.channel)
            .where(AuditEvent.subject == f"capa:{capa_id}")
            .where(AuditEvent.action.startswith("capa."), AuditEvent.channel != "flow")
            .where(AuditEvent.action.not_in(["capa.opened", "capa.run-attached"]))
            .order_by(AuditEvent.id)
        ).all()
    assert kinds.count("root-cause-analysis") == 2
    assert kinds.count("capa-record") == 7  # opened, containment, 2 actions, 2 checks, closed
    assert [tuple(s) for s in steps] == [
        ("capa.contained", OWNER, "ui"),
        ("capa.root-cause", OWNER, "cli"),
        ("capa.action-added", OWNER, "cli"),
        ("capa.action-done", DS, "cli"),
        ("capa.verification-scheduled", DS, "cli"),
        ("capa.verified-ineffective", AUDITOR, "cli"),
        ("capa.root-cause", OWNER, "ui"),
        ("capa.action-added", OWNER, "ui"),
        ("capa.action-done", DS, "ui"),
        ("capa.verification-scheduled", DS, "ui"),
        ("capa.verified-effective", AUDITOR, "ui"),
    ]

    # Name, tags and the checklist/timeline artifact, read back through the Prefect API.
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"capa-{capa_id}"]))
        )
    assert run.name == f"capa {capa_id}: {title}"
    assert {"capa", SYSTEM, "manual"} <= set(run.tags)
    latest = max(artifacts, key=lambda a: a.created)  # type: ignore[arg-type, return-value]
    assert latest.flow_run_id == run.id
    assert f"## CAPA {capa_id}: {title} — CLOSED" in latest.data  # type: ignore[operator]
    assert "| verified-ineffective |" in latest.data  # type: ignore[operator]
    print(
        f"\ncapa e2e: open→suspended {t_suspended - t0:.1f} s, attempt 1 (2 forms + 5 CLI) "
        f"{t_failed - t_suspended:.1f} s, attempt 2 (5 forms)→approval wait "
        f"{t_approval - t_failed:.1f} s, approve→completed {t_done - t_approval:.1f} s, "
        f"total {t_done - t0:.1f} s"
    )


def test_the_tick_wakes_a_run_sleeping_until_its_verification_is_due(engine) -> None:  # type: ignore[no-untyped-def]
    settings = engine.settings
    capa_id, run_id = open_capa(
        engine,
        "Drift alert acknowledged late",
        "--verify-after-days",
        "3",
        "--containment",
        "Alert routing fixed by hand",
    )
    key = f"capa-{capa_id}"
    wait_for_pause(run_id, f"approval-{ask_of(settings, f'{key}-a1-root-cause-1')}-round-1")
    as_owner = ("--as", OWNER)
    ok(engine, "capa", "rca", str(capa_id), "--root-cause", "Pager rota gap", *as_owner)
    wait_for_pause(run_id, f"approval-{ask_of(settings, f'{key}-a1-plan-1')}-round-1")
    fix = ("--title", "Fix rota", "--owner", OWNER, "--due", DUE)
    ok(engine, "capa", "action", str(capa_id), *fix, *as_owner)
    [action] = planned(settings, capa_id, 1)
    done = ask_of(settings, f"{key}-a1-action-{action.id}-done-1")
    wait_for_pause(run_id, f"approval-{done}-round-1")
    ok(engine, "capa", "done", str(action.id), "--evidence", "Rota fixed", *as_owner)
    wait_for_pause(run_id, f"{key}-a1-v1-until-due-r1")  # asleep, no form, for three days

    early = capas.wake_due_verifications(settings, runs=PrefectRuns())
    assert capa_id not in early.woken_ids + early.announced_ids
    # Three days pass (the run reads the real clock, so the due date is moved instead).
    with get_engine(settings.effective_database_url).begin() as conn:
        conn.execute(
            update(Capa)
            .where(Capa.id == capa_id)
            .values(verification_due_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    report = capas.wake_due_verifications(settings, runs=PrefectRuns())
    assert capa_id in report.announced_ids and capa_id in report.woken_ids, report
    ask = ask_of(settings, f"{key}-a1-v1-verification")  # awake, now asking the verifiers
    wait_for_pause(run_id, f"approval-{ask}-round-1")
    again = capas.wake_due_verifications(settings, runs=PrefectRuns())
    assert capa_id not in again.woken_ids + again.announced_ids
