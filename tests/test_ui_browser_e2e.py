"""The operator's path through the Prefect UI, in a real browser (issue 7, point 5).

A stage gate waits for approval on the session engine (real Prefect API with its UI, served
runner, demo database); headless Chromium (Debian's, driven by Playwright) opens that run's page
and the test asserts on what a person would read there: the run's name, "Suspended" and a Resume
button whose form says what is decided. The full-page screenshot's path is printed.

Uses doc-summariser, which no other flow test touches. Without chromium or Playwright the test is
skipped with a reason, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prefect_fixtures import engine_cli, wait_for_state
from test_stage_gate_e2e import add_evidence, request_for, review_of

if TYPE_CHECKING:
    from playwright.sync_api import Browser

SYSTEM = "doc-summariser"  # gpai, at concept: its design gate asks one of governance, compliance
REQUESTER = "ops.owner@northwind.example"  # owns doc-summariser
APPROVER = "governance@northwind.example"
RUN_NAME = f"gate {SYSTEM}: concept→design"
ARTIFACTS = Path(__file__).resolve().parents[1] / ".aims" / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, with Playwright importable: checked before the engine starts (a session
    fixture named first is set up first), so a skip costs nothing."""
    path = shutil.which("chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "playwright (pip install -e '.[dev]')"
    else:
        missing = "" if path else "chromium (apt-get install chromium)"
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {missing} is missing: the browser check must run in CI")
        pytest.skip(f"browser check skipped: {missing} is missing")
    assert path is not None
    return path


@contextmanager
def headless(chromium: str) -> Iterator[Browser]:
    """Headless Chromium. Playwright's sync API runs an event loop in this thread while open, which
    turns Prefect's sync calls (run_deployment, resume) into coroutines: open it after them."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def chromium_memory_mb() -> float:
    """Proportional set size of this process's chromium descendants (browser, renderer, GPU...)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name_end = stat.rindex(")")
        names[int(entry.name)] = stat[stat.index("(") + 1 : name_end]
        parents[int(entry.name)] = int(stat[name_end + 2 :].split()[1])

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    kb = 0
    for pid, name in names.items():
        if "chrom" in name and descends(pid):
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            kb += next(
                int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")
            )
    return kb / 1024


def screenshot(page, name: str, capsys) -> Path:  # type: ignore[no-untyped-def]
    """A full-page PNG under .aims/test-artifacts/, its path printed at once (even with -q, and
    before an assertion can fail)."""
    path = ARTIFACTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=True)
    with capsys.disabled():
        print(f"\nscreenshot: {path}")
    return path


def test_a_gate_waiting_for_approval_shows_in_the_prefect_ui(  # type: ignore[no-untyped-def]
    chromium, engine, capsys
) -> None:
    from playwright.sync_api import expect

    started = time.monotonic()
    add_evidence(engine, SYSTEM, "requirements-spec")
    out = engine_cli(engine, "gate", "request", SYSTEM, "--to", "design", "--requester", REQUESTER)
    assert out.exit_code == 0, out.output
    run_id = out.output.split("(", 1)[1].split(")", 1)[0]
    wait_for_state(run_id, {"Suspended"})
    request = request_for(engine, review_of(engine, run_id).id)
    assert request is not None
    suspended = time.monotonic()

    shots: list[Path] = []
    server_errors: list[str] = []
    with headless(chromium) as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.on(
            "response",
            lambda r: server_errors.append(f"{r.status} {r.url}") if r.status >= 500 else None,
        )
        page.goto(f"http://127.0.0.1:{engine.server.port}/runs/flow-run/{run_id}")
        resume = page.get_by_role("button", name="Resume")
        expect(resume).to_be_visible()  # the page has rendered the run, not just the app shell
        expect(page.get_by_text("Suspended", exact=True).first).to_be_visible()
        # The run's logs load on their own: wait for the last one before reading the page.
        expect(page.get_by_text(f"waiting for {request.subject} (round 1)")).to_be_visible()
        text = page.inner_text("body")
        shots.append(screenshot(page, "ui-gate-suspended.png", capsys))
        memory = chromium_memory_mb()

        # What a person reads: the run by its name and tags, waiting, and the way to answer.
        assert RUN_NAME in text
        assert {"gate", SYSTEM, "tier:gpai"} <= set(text.splitlines())
        assert "Suspended" in text.splitlines()
        assert f"waiting for {request.subject} (round 1): 0 of 1 approvals" in text

        # The Resume form says what is decided and asks for the approver's claim; not submitted.
        resume.click()
        expect(page.get_by_text("Resume Flow Run")).to_be_visible()
        # The form's description (markdown from the run's input) arrives after the dialog opens.
        expect(
            page.get_by_role("heading", name="Gate doc-summariser: concept→design")
        ).to_be_visible()
        form = page.inner_text("body").split("Resume Flow Run", 1)[1]
        shots.append(screenshot(page, "ui-gate-resume-form.png", capsys))
        assert "Gate doc-summariser: concept→design" in form
        assert f"subject: {request.subject}" in form
        assert "eligible approvers: governance@northwind.example" in form
        assert f"aims approve {request.id} --as EMAIL" in form
        for label in ("Approver", "Decision", "Code", "Comment"):
            assert label in form
        assert "Submit" in form
    browsed = time.monotonic()
    assert server_errors == []

    for path in shots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        assert path.stat().st_size > 20_000, f"screenshot looks empty: {path}"
    with capsys.disabled():
        print(
            f"ui browser check: gate suspended in {suspended - started:.1f} s, browser "
            f"{browsed - suspended:.1f} s, chromium {memory:.0f} MB (PSS)"
        )

    # The run shown was the real one: answered from the CLI, it goes on and passes.
    approved = engine_cli(engine, "approve", str(request.id), "--as", APPROVER)
    assert approved.exit_code == 0, approved.output
    wait_for_state(run_id, {"Approved"})
