"""Playbooks as data and their hooks, without Prefect.

The packaged playbooks load and cover every category of the classification; a broken playbook is
refused with every problem named (with its line); an organisation's file overrides. A hook fires
at most once per key, whatever re-runs or concurrent callers do (the row is committed before it
fires), and a dry run records what it would call and touches nothing.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from aims_core.cli import drill_cmd
from aims_core.cli._base import AimsGroup
from aims_core.db import session_factory
from aims_core.models import HookRun
from aims_core.rules.playbooks import (
    PLACEHOLDERS,
    PlaybookError,
    ShellHook,
    Situation,
    check_playbooks,
    load_playbook,
    parse_playbook,
    playbook_files,
    render,
    response_run,
)
from aims_core.services import hooks, incidents
from aims_core.services.demo import load_demo
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

ACTOR = Actor(who="tester@example.org", channel="test")
CATEGORIES = ("bias", "model-failure", "adversarial-attack", "data-issue", "privacy", "safety")

MINIMAL = """
title: Minimal
steps:
  - {id: look, phase: triage, title: Look at it, instructions: Look.}
notify:
  - {audience: on-call, roles: [incident-responder]}
closure: {roles: [governance-lead]}
"""


def situation(**overrides: Any) -> Situation:
    base: dict[str, Any] = {
        "incident_id": 7,
        "system": "credit-scoring",
        "tier": "high",
        "stage": "operation",
        "severity": "SEV2",
        "category": "bias-fairness",
        "playbook": "bias",
    }
    return Situation(**{**base, **overrides})


def problems_of(text: str, playbook_id: str = "test") -> list[str]:
    with pytest.raises(PlaybookError) as info:
        parse_playbook(text, playbook_id, "test.yaml", severities=("SEV1", "SEV2", "SEV3"))
    return info.value.problems


# --- the packaged playbooks ----------------------------------------------------------------------


def test_packaged_playbooks_load_and_cover_every_category(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    good, problems = check_playbooks(settings)
    assert problems == []
    ids = {b.id for b in good}
    assert {"bias", "model-failure", "adversarial-attack", "data-issue", "privacy"} <= ids
    assert {"safety", "misuse"} <= ids
    for book in good:
        assert book.notify_rules("on-call", "SEV4"), book.id
        assert any(s.phase == "containment" for s in book.steps), book.id
        assert book.source.startswith("packaged playbooks/")


def test_a_rollback_of_a_high_risk_system_in_production_needs_two_approvers(
    tmp_path: Path,
) -> None:
    bias = load_playbook(Settings(data_dir=tmp_path), "bias")
    rollback = next(s for s in bias.steps if s.id == "rollback-model")
    assert rollback.action == "rollback-model" and rollback.hook is not None
    approval = rollback.approval_for(situation())
    assert approval is not None and approval.quorum == 2
    assert rollback.approval_for(situation(stage="validation")) is None
    assert rollback.approval_for(situation(tier="minimal")) is None
    # The fallback only at SEV1; the triage and rollback at any severity.
    assert [s.id for s in bias.steps_for(situation(severity="SEV3"))] == [
        "confirm-disparity",
        "rollback-model",
        "review-affected-decisions",
    ]
    assert "switch-to-fallback" in [s.id for s in bias.steps_for(situation(severity="SEV1"))]
    # Regulator rules exist; the flow uses them only for a confirmed serious incident.
    assert bias.notify_rules("regulator", "SEV3")
    assert not bias.notify_rules("internal-escalation", "SEV3")


# --- validation: every problem named, with its line ---------------------------------------------


BROKEN = """\
title: Broken
steps:
  - id: look
    phase: triage
    title: Look
  - id: look
    phase: containment
    title: Roll back
    when: {tiers: [hihg], stages: [production], severities: [SEV9]}
    approval: {roles: [complaince-officer], quorum: 0}
    hook: {kind: shell, command: ["rollback", "{system}", "{title}"], env_from: [BAD-NAME]}
  - id: call
    phase: containment
    title: Call
    hook: {kind: http, url: "ftp://x/{incident}", headers: {"Bad Header": "x"}}
  - id: run
    phase: recovery
    title: Run
    hook: {kind: deployment, deployment: no-slash, parameters: {a: "{severity!r}"}}
  - id: odd
    phase: containment
    title: Odd
    hook: {kind: carrier-pigeon}
  - id: Bad_Id
    phase: cleanup
    title: Bad
    colour: red
evidence:
  - {kind: fairness-reprot, title: Fairness}
notify:
  - {audience: internal-escalation, roles: [governance-lead], channel: "#general"}
  - {audience: regulator, severities: [SEV1], message: "file it {deadline}"}
closure: {roles: [top-management, cfo]}
"""


def test_a_broken_playbook_names_every_problem_with_its_line() -> None:
    # Structure first: every structural problem of the file at once.
    assert problems_of(BROKEN) == [
        "line 10: steps[1].approval.quorum: Input should be greater than or equal to 1",
        "line 23: steps[4].hook: unknown hook kind (one of: shell, http, deployment)",
        "line 24: steps[5].id: String should match pattern '^[a-z][a-z0-9-]{0,39}$'",
        "line 25: steps[5].phase: Input should be 'triage', 'containment' or 'recovery'",
        "line 27: steps[5]: unknown field 'colour'",
    ]
    fixed = (
        BROKEN.replace("quorum: 0", "quorum: 1")
        .replace("{kind: carrier-pigeon}", "{kind: shell, command: []}")
        .replace("  - id: Bad_Id\n    phase: cleanup\n    title: Bad\n    colour: red\n", "")
    )
    assert problems_of(fixed) == [
        "line 23: steps[4].hook.command: Tuple should have at least 1 item after validation, not 0"
    ]

    # The structure fixed: every other problem comes out, each with its place.
    problems = problems_of(fixed.replace("command: []", "command: [x]"))
    placeholders = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
    assert problems == [
        "line 6: steps[1].id: step id 'look' also names steps[0]",
        "line 9: steps[1].when.tiers[0]: unknown risk tier 'hihg' (did you mean 'high'?)",
        "line 9: steps[1].when.stages[0]: unknown stage 'production' (one of: concept, design, "
        "development, validation, deployment, operation, decommission)",
        "line 9: steps[1].when.severities[0]: unknown severity 'SEV9' (did you mean 'SEV3'?)",
        "line 10: steps[1].approval.roles[0]: unknown role 'complaince-officer' (did you mean "
        "'compliance-officer'?)",
        "line 11: steps[1].hook.env_from[0]: 'BAD-NAME' is not a variable name",
        f"line 11: steps[1].hook.command[2]: unknown placeholder '{{title}}' in '{{title}}' "
        f"(placeholders: {placeholders})",
        "line 15: steps[2].hook.url: 'ftp://x/{incident}': an http:// or https:// URL with a host",
        "line 15: steps[2].hook.headers.Bad Header: 'Bad Header' is not a header name",
        f"line 15: steps[2].hook.url: unknown placeholder '{{incident}}' in 'ftp://x/{{incident}}' "
        f"(placeholders: {placeholders})",
        "line 19: steps[3].hook.deployment: 'no-slash': write FLOW/DEPLOYMENT",
        "line 19: steps[3].hook.parameters.a: '{severity}' in '{severity!r}': no conversions or "
        "format specs",
        "line 25: evidence[0].kind: unknown evidence kind 'fairness-reprot' (did you mean "
        "'fairness-report'?)",
        "line 26: notify: no `audience: on-call` rule: someone must be told at once",
        "line 27: notify[0].channel: '#general' is not a Slack channel id",
        "line 28: notify[1]: tells nobody: give roles, system_owner: true or a channel",
        f"line 28: notify[1].message: unknown placeholder '{{deadline}}' in 'file it {{deadline}}' "
        f"(placeholders: {placeholders})",
        "line 29: closure.roles[1]: unknown role 'cfo' (one of: top-management, governance-lead, "
        "compliance-officer, system-owner, data-scientist, legal, ethics-committee, security, "
        "privacy, internal-auditor, incident-responder, risk-manager, procurement)",
    ]
    # A containment step that neither has a hook nor says what to do by hand.
    manual = MINIMAL.replace(
        "phase: triage, title: Look at it, instructions: Look.", "phase: containment, title: C"
    )
    assert problems_of(manual) == [
        "line 4: steps[0]: a containment step needs a hook or instructions"
    ]


def test_yaml_and_top_level_mistakes_are_named() -> None:
    assert problems_of("title: [unclosed")[0].startswith("line 1: not valid YAML")
    assert problems_of("- just a list") == [
        "the file must be a mapping (title, steps, notify, ...)"
    ]
    assert problems_of("title: T\n") == [
        "line 1: (top): missing field 'steps'",
        "line 1: (top): missing field 'notify'",
        "line 1: (top): missing field 'closure'",
    ]
    assert problems_of(MINIMAL, playbook_id="Not An Id")[0].startswith("'Not An Id' is not")


# --- the organisation's playbooks ---------------------------------------------------------------


def test_an_organisation_file_overrides_and_problems_across_files_are_listed(
    tmp_path: Path,
) -> None:
    books = tmp_path / "books"
    books.mkdir()
    settings = Settings(data_dir=tmp_path, playbooks_dir=books)
    (books / "bias.yaml").write_text(MINIMAL)
    (books / "extra.yaml").write_text(MINIMAL.replace("Minimal", "Extra"))
    assert load_playbook(settings, "bias").title == "Minimal"
    assert load_playbook(settings, "bias").source == str(books / "bias.yaml")
    assert load_playbook(settings, "extra").title == "Extra"
    assert playbook_files(settings)["privacy"].source == "packaged playbooks/privacy.yaml"

    (books / "privacy.yaml").write_text(MINIMAL.replace("[governance-lead]", "[nobody]"))
    (books / "Bad Name.yaml").write_text(MINIMAL)
    (books / "safety.yml").write_text(MINIMAL)
    good, problems = check_playbooks(settings)
    assert "privacy" not in {b.id for b in good}
    assert (
        f"{books / 'privacy.yaml'}: line 7: closure.roles[0]: unknown role 'nobody'"
        in (problems[2])
    )
    assert problems[0].startswith(f"{books / 'Bad Name.yaml'}: not used")
    assert problems[1].startswith(f"{books / 'safety.yml'}: not used")
    with pytest.raises(PlaybookError, match="unknown role 'nobody'"):
        load_playbook(settings, "privacy")

    # The default place is `playbooks` in the data dir.
    other = tmp_path / "data"
    (other / "playbooks").mkdir(parents=True)
    (other / "playbooks" / "misuse.yaml").write_text(MINIMAL)
    assert load_playbook(Settings(data_dir=other), "misuse").title == "Minimal"


def test_the_playbooks_command_lists_and_checks(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app = typer.Typer(cls=AimsGroup)
    app.command("playbooks")(drill_cmd.playbooks)
    app.command("resume")(drill_cmd.resume)
    books = tmp_path / "books"
    books.mkdir()
    monkeypatch.setenv("AIMS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AIMS_PLAYBOOKS_DIR", str(books))
    listed = CliRunner().invoke(app, ["playbooks"])
    assert listed.exit_code == 0, listed.output
    assert "rollback-model" in listed.output and "packaged playbooks/bias.yaml" in listed.output

    (books / "bias.yaml").write_text(BROKEN.replace("quorum: 0", "quorum: 1"))
    broken = CliRunner().invoke(app, ["playbooks"])
    assert broken.exit_code == 1
    assert "unknown hook kind" in broken.output

    good = tmp_path / "mine.yaml"
    good.write_text(MINIMAL)
    checked = CliRunner().invoke(app, ["playbooks", "--file", str(good)])
    assert checked.exit_code == 0, checked.output
    assert "playbook mine is valid (1 steps)" in checked.output
    bad = CliRunner().invoke(app, ["playbooks", "--file", str(books / "bias.yaml")])
    assert bad.exit_code == 2 and "invalid playbook" in bad.output


# --- templating --------------------------------------------------------------------------------


def test_placeholders_fill_strings_and_keep_the_type_of_a_lone_placeholder() -> None:
    values = situation().values("rollback-model")
    assert values["drill"] == "false" and values["step"] == "rollback-model"
    assert render("https://ml/{system}/rollback?i={incident_id}", values) == (
        "https://ml/credit-scoring/rollback?i=7"
    )
    assert render({"id": "{incident_id}", "tags": ["{severity}", 3]}, values) == {
        "id": 7,
        "tags": ["SEV2", 3],
    }
    assert render("{{literal}} {tier}", values) == "{literal} high"


def test_the_response_run_is_named_and_tagged_for_the_ui() -> None:
    run = response_run(
        12,
        system="credit-scoring",
        tier="high",
        severity="SEV2",
        category="bias-fairness",
        playbook="bias",
    )
    assert run.name == "incident 12 SEV2 bias: credit-scoring"
    assert run.tags == ["incident", "credit-scoring", "high", "SEV2", "bias-fairness"]
    assert run.parameters == {"incident_id": 12}
    drill = response_run(
        13,
        system="credit-scoring",
        tier="high",
        severity="SEV3",
        category="adversarial-attack/poisoning",
        playbook="adversarial-attack",
        drill=True,
    )
    assert drill.name == "drill 13 SEV3 adversarial-attack: credit-scoring"
    assert drill.tags[-2:] == ["adversarial-attack", "drill"]
    assert drill.parameters == {"incident_id": 13, "drill": True, "unattended": False}


# --- hooks: at most once, dry runs touch nothing ------------------------------------------------


@pytest.fixture
def incident_id(settings: Settings) -> int:
    load_demo(UnitOfWork(settings), ACTOR)
    result = incidents.report(
        UnitOfWork(settings),
        incidents.IncidentIn(
            system="credit-scoring", title="Score gap", severity="SEV3", category="bias"
        ),
        ACTOR,
        notify=False,
    )
    return result.incident.id


def appender(path: Path, *extra: str) -> ShellHook:
    """A hook whose side effect can be counted: one line per firing."""
    script = 'import sys; open(sys.argv[1], "a").write(" ".join(sys.argv[2:]) + "\\n")'
    return ShellHook(
        kind="shell",
        command=(sys.executable, "-c", script, str(path), "{incident_id}", "{step}", *extra),
    )


def fire(settings: Settings, incident_id: int, hook: Any, key: str = "k", **kw: Any):  # type: ignore[no-untyped-def]
    return hooks.fire_once(
        UnitOfWork(settings),
        key=f"{key}-{incident_id}",
        incident_id=incident_id,
        step="rollback-model",
        hook=hook,
        values=situation(incident_id=incident_id).values("rollback-model"),
        dry_run=kw.pop("dry_run", False),
        actor=ACTOR,
    )


def test_a_hook_fires_once_whatever_repeats_it(
    settings: Settings, incident_id: int, tmp_path: Path
) -> None:
    side_effect = tmp_path / "fired.log"
    first = fire(settings, incident_id, appender(side_effect))
    assert (first.status, first.fired_now, first.dry_run) == ("succeeded", True, False)
    assert first.output.startswith("exit 0")
    assert first.target.endswith(f"{side_effect} {incident_id} rollback-model")
    # A task retry, a re-run after a resume with the cache lost, another run: nothing fires.
    for _ in range(3):
        again = fire(settings, incident_id, appender(side_effect))
        assert (again.status, again.fired_now) == ("succeeded", False)
    assert side_effect.read_text() == f"{incident_id} rollback-model\n"
    [row] = hooks.hook_runs(UnitOfWork(settings), incident_id)
    assert (row.key, row.kind, row.status) == (f"k-{incident_id}", "shell", "succeeded")


def test_concurrent_callers_fire_a_hook_once(
    settings: Settings, incident_id: int, tmp_path: Path
) -> None:
    side_effect = tmp_path / "fired.log"
    results: list[Any] = []

    def call() -> None:
        results.append(fire(settings, incident_id, appender(side_effect), key="race"))

    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert side_effect.read_text().count("\n") == 1
    assert sum(r.fired_now for r in results) == 1


def test_a_hook_that_started_and_never_finished_is_not_fired_again(
    settings: Settings, incident_id: int, tmp_path: Path
) -> None:
    with session_factory(settings.effective_database_url)() as s:  # a crash after the commit
        s.add(
            HookRun(
                idempotency_key=f"k-{incident_id}",
                incident_id=incident_id,
                step="rollback-model",
                kind="shell",
                target="rollback",
                status="started",
            )
        )
        s.commit()
    side_effect = tmp_path / "fired.log"
    result = fire(settings, incident_id, appender(side_effect))
    assert (result.status, result.fired_now) == ("started", False)
    assert "check the target by hand" in result.line()
    assert not side_effect.exists()


def test_a_dry_run_records_what_it_would_call_and_touches_nothing(
    settings: Settings, incident_id: int, tmp_path: Path
) -> None:
    side_effect = tmp_path / "fired.log"
    result = fire(settings, incident_id, appender(side_effect), dry_run=True)
    assert (result.status, result.dry_run, result.fired_now) == ("rehearsed", True, True)
    assert result.output == f"would call: {result.target}"
    assert "rehearsed (drill: not fired)" in result.line()
    assert not side_effect.exists()
    # Rehearsed once is rehearsed for good: the key is used.
    assert fire(settings, incident_id, appender(side_effect)).status == "rehearsed"
    assert not side_effect.exists()


def test_a_failing_or_hanging_command_is_a_recorded_failure(
    settings: Settings, incident_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = ShellHook(kind="shell", command=(sys.executable, "-c", "import sys; sys.exit(3)"))
    assert fire(settings, incident_id, failing, key="fail").status == "failed"
    hanging = ShellHook(
        kind="shell", command=(sys.executable, "-c", "import time; time.sleep(5)"), timeout_s=0.5
    )
    result = fire(settings, incident_id, hanging, key="hang")
    assert result.status == "failed" and "timed out after 0.5 s" in result.output
    missing = ShellHook(kind="shell", command=("/nonexistent/rollback",))
    assert (
        "cannot run /nonexistent/rollback" in fire(settings, incident_id, missing, key="m").output
    )


def test_a_command_gets_only_what_the_playbook_names(
    settings: Settings, incident_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_TOKEN", "t0ken")
    monkeypatch.setenv("AIMS_SLACK_BOT_TOKEN", "xoxb-secret")
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    hook = ShellHook(kind="shell", command=(sys.executable, "-c", dump), env_from=("ML_TOKEN",))
    result = fire(settings, incident_id, hook, key="env")
    env = json.loads(result.output.split("\n", 1)[1])
    assert env["ML_TOKEN"] == "t0ken"
    assert env["AIMS_HOOK_SYSTEM"] == "credit-scoring"
    assert env["AIMS_HOOK_INCIDENT_ID"] == str(incident_id)
    assert "AIMS_SLACK_BOT_TOKEN" not in env and "AIMS_DATABASE_URL" not in env
    unset = ShellHook(kind="shell", command=("true",), env_from=("NOT_SET_ANYWHERE",))
    assert "NOT_SET_ANYWHERE not set" in fire(settings, incident_id, unset, key="u").output


class _Recorder(BaseHTTPRequestHandler):
    calls: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.calls.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        status = 500 if self.path.endswith("/broken") else 202
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b'{"accepted": true}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_target() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.calls = []
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_an_http_hook_calls_the_playbook_url_once(
    settings: Settings, incident_id: int, http_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aims_core.rules.playbooks import HttpHook

    monkeypatch.setenv("ML_AUTH", "Bearer abc")
    hook = HttpHook(
        kind="http",
        url=http_target + "/models/{system}/rollback",
        headers_from_env={"Authorization": "ML_AUTH"},
        body={"incident": "{incident_id}", "why": "incident {incident_id}"},
    )
    result = fire(settings, incident_id, hook, key="http")
    assert result.status == "succeeded" and result.output.startswith("HTTP 202")
    assert result.target == f"POST {http_target}/models/credit-scoring/rollback"
    fire(settings, incident_id, hook, key="http")
    [call] = _Recorder.calls
    assert call["path"] == "/models/credit-scoring/rollback"
    assert call["auth"] == "Bearer abc"
    assert json.loads(call["body"]) == {"incident": incident_id, "why": f"incident {incident_id}"}
    broken = HttpHook(kind="http", url=http_target + "/broken")
    assert fire(settings, incident_id, broken, key="b").status == "failed"


def test_a_drill_of_an_unknown_playbook_or_severity_records_nothing(settings: Settings) -> None:
    app = typer.Typer(cls=AimsGroup)
    app.command("drill")(drill_cmd.drill)
    app.command("resume")(drill_cmd.resume)  # two commands: typer keeps the subcommand name
    load_demo(UnitOfWork(settings), ACTOR)
    unknown = CliRunner().invoke(app, ["drill", "--playbook", "nope"])
    assert unknown.exit_code == 2
    assert "error: playbook: no playbook 'nope' (playbooks: adversarial-attack, bias" in (
        unknown.output
    )
    bad_system = CliRunner().invoke(app, ["drill", "--playbook", "bias", "--system", "nope"])
    assert bad_system.exit_code == 2
    assert "error: system: no AI system named 'nope'" in bad_system.output
    assert incidents.list_incidents(UnitOfWork(settings)) == []
