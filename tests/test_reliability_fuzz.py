"""Reliability promise 8, fuzzing bad input: generated, mostly almost-valid input to the CLI, the
CSV/Excel import, `POST /incidents`, `POST /alertmanager`, and gate-policy and playbook YAML (the
loaders, `--file` and the settings that point at an organisation's file) never crashes, never
shows a traceback, is refused with a clear error naming the field or the problem (exit 2, or the
command's documented code; HTTP 4xx) and writes nothing; valid input that comes out of the
generator is accepted.

Each input starts from a valid one and changes one thing (a field's type, an empty, huge,
unicode or control-character value, a negative number, an unknown enum value, a missing or extra
key, a duplicate YAML key, NaN, deep nesting, ...), so the checks behind the parser are reached.
Everything runs in process (typer's CliRunner, FastAPI's TestClient), derandomised so CI sees the
same inputs. The bulk runs on SQLite; PostgreSQL gets a smaller share of the same generators.
"""

from __future__ import annotations

import copy
import functools
import io
import itertools
import json
import math
import os
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import typer.testing
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import text
from test_intake import TOKEN, StartRecorder, alert, webhook

from aims_core.db import get_engine
from aims_core.models import Base, Criticality, RiskTier
from aims_core.rules.gate import GatePolicy, GatePolicyError, parse_policy
from aims_core.rules.playbooks import Playbook, PlaybookError, parse_playbook
from aims_core.settings import Settings
from aims_core.uow import UnitOfWork
from notifications.app import create_app

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
SYSTEMS = ("credit-scoring", "fraud-detection", "cv-screening", "support-chatbot")
CATEGORIES = ("bias", "model-failure", "data-issue", "privacy", "bias-fairness", "safety")
PEOPLE = (
    "credit.owner@northwind.example",
    "ops.owner@northwind.example",
    "governance@northwind.example",
    "ds.lead@northwind.example",
)
ROLES = ("system-owner", "data-scientist", "incident-responder", "governance-lead")
TRAININGS = ("ai-governance-essentials", "responsible-ai-development", "eu-ai-act")
EVIDENCE_KINDS = ("vv-report", "fairness-report", "model-card", "design-doc")


# --- what every target shares: the tally, the footprint, bad values ---------------------------


@dataclass
class Tally:
    """What one fuzz test fed in and saw (recorded as the promise's figures)."""

    inputs: int = 0
    accepted: int = 0
    refused: int = 0
    rows_written_by_refused: int = 0
    by_target: dict[str, int] = field(default_factory=dict)

    def saw(self, target: str, accepted: bool) -> None:
        self.inputs += 1
        self.by_target[target] = self.by_target.get(target, 0) + 1
        if accepted:
            self.accepted += 1
        else:
            self.refused += 1

    def figures(self) -> dict[str, int]:
        return {
            "inputs": self.inputs,
            "refused": self.refused,
            "accepted": self.accepted,
            "crashes": 0,
            "rows_written_by_refused": self.rows_written_by_refused,
            **{f"inputs_{k}": v for k, v in sorted(self.by_target.items())},
        }


#: FUZZ_SCALE=5 runs five times as many inputs (a longer hunt); 0.1 a quick look.
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def examples(settings: Settings, n: int) -> int:
    """The bulk on SQLite; a tenth on PostgreSQL (whose own refusals, e.g. of a NUL in text,
    SQLite does not have)."""
    return n if settings.effective_database_url.startswith("sqlite") else n // 10


def fuzz(n: int) -> fuzz_settings:
    return fuzz_settings(
        max_examples=max(10, round(n * SCALE)),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


def footprint(settings: Settings) -> tuple[int, ...]:
    """Rows in every table (one query), and the files of the data dir besides the database."""
    tables = sorted(Base.metadata.tables)
    sql = "SELECT " + ", ".join(f'(SELECT count(*) FROM "{t}")' for t in tables)
    with get_engine(settings.effective_database_url).connect() as conn:
        rows = tuple(conn.execute(text(sql)).one())
    files = tuple(
        sorted(
            (str(p.relative_to(settings.data_dir)), p.stat().st_size)
            for p in settings.data_dir.rglob("*")
            if p.is_file() and not p.name.startswith("aims.db")
        )
    )
    return (*rows, hash(files))


def changed(before: tuple[int, ...], after: tuple[int, ...]) -> int:
    return sum(abs(a - b) for a, b in zip(before, after, strict=True))


#: Values that break almost-valid input: empty, blank, control characters, NUL, bidi and
#: other unicode, numbers as text, NaN, JSON and SQL fragments, placeholders, paths.
SPECIAL = (
    "",
    " ",
    "\t",
    "\x00",
    "a\x00b",
    "\n",
    "two\nlines",
    "\r\n",
    "\x1b[31mred\x1b[0m",
    "\u202eevil",
    "\u200b",
    "\ufeff",
    "🙂",
    "Ǆǅǆ ß İ ﬀ",
    "日本語",
    "NaN",
    "nan",
    "Infinity",
    "-1",
    "0",
    "-0",
    "1e309",
    "99999999999999999999999999",
    "null",
    "None",
    "true",
    "[]",
    "{}",
    '{"a": 1}',
    "'; DROP TABLE ai_system; --",
    "%s%n%x",
    "{0}",
    "{system}",
    "${HOME}",
    "../../etc/passwd",
    "a" * 121,
    "b" * 301,
    "c" * 2001,
)

bad_text = st.one_of(
    st.sampled_from(SPECIAL),
    st.text(max_size=30),
    st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), min_size=1, max_size=6),
    st.integers(0, 40).map(lambda k: "x" * (2**k % 300_000)),
)


def huge(n: int = 200_000) -> str:
    return "y" * n


# --- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The real `aims` command tree, built once for the test instead of on every invoke (typer
    rebuilds it each time: three quarters of an in-process call)."""
    from aims_core.cli import app

    built = typer.main.get_command(app)
    real = typer.testing._get_command
    monkeypatch.setattr(typer.testing, "_get_command", lambda a: built if a is app else real(a))
    return app


slug = st.from_regex(r"\A[a-z][a-z0-9-]{0,15}\Z")
email_case = st.sampled_from(PEOPLE).flatmap(
    lambda e: st.sampled_from([e, e.upper(), f" {e} ", e.title()])
)


def case_of(values: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from(values).flatmap(
        lambda v: st.sampled_from([v, v.upper(), v.title(), f" {v} "])
    )


@dataclass(frozen=True)
class Opt:
    """One option (or positional, when `flag` is None) of a command: how a valid value is
    drawn, the words a refusal of it names, bad values of its own."""

    flag: str | None
    valid: Callable[[int], st.SearchStrategy[str]]
    words: tuple[str, ...]
    required: bool = True
    bad: tuple[str, ...] = ()


def fixed(s: st.SearchStrategy[str]) -> Callable[[int], st.SearchStrategy[str]]:
    return lambda _n: s


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    opts: tuple[Opt, ...]
    ok: tuple[int, ...] = (0,)
    refused: tuple[int, ...] = (2,)


DATES = ("2026-13-01", "2026-02-30", "0000-01-01", "9999-99-99", "2026/01/05", "05.01.2026")
COMMANDS = (
    Command(
        ("systems", "add"),
        (
            Opt("--name", lambda n: slug.map(lambda s: f"{s}-{n}"), ("name",), bad=("a b", "-x")),
            Opt("--owner", fixed(email_case), ("owner",), bad=("nobody@example.org", "x@y")),
            Opt(
                "--purpose",
                # Not blank: a purpose of spaces alone is (rightly) refused as missing.
                fixed(st.text(string.ascii_letters + " ", min_size=1).filter(str.strip)),
                ("purpose",),
            ),
            Opt("--risk-tier", fixed(case_of(tuple(RiskTier))), ("risk_tier", "risk-tier")),
            Opt("--criticality", fixed(case_of(tuple(Criticality))), ("criticality",)),
            Opt(
                "--vendor", fixed(st.sampled_from(["Acme", "TalentSort GmbH"])), ("vendor",), False
            ),
        ),
    ),
    Command(
        ("people", "add"),
        (
            Opt("--email", lambda n: slug.map(lambda s: f"{s}.{n}@example.org"), ("email",)),
            Opt("--name", fixed(st.sampled_from(["Ann Lee", "Zoë Ōta", "B"])), ("name",)),
            Opt("--slack-id", lambda n: st.just(f"U0FUZZ{n}"), ("slack",), False),
            Opt("--role", fixed(case_of(ROLES)), ("role",), False, ("wizard",)),
            Opt("--manager", fixed(email_case), ("manager",), False, ("ghost@example.org",)),
        ),
    ),
    Command(
        ("risks", "add"),
        (
            Opt(None, fixed(st.sampled_from(SYSTEMS)), ("system",), bad=("no-such-system",)),
            Opt("--title", lambda n: st.just(f"Drift {n}"), ("title",)),
            Opt("--likelihood", fixed(st.integers(1, 5).map(str)), ("likelihood",), bad=("6",)),
            Opt("--impact", fixed(st.integers(1, 5).map(str)), ("impact",), bad=("0", "1.5")),
            Opt("--owner", fixed(email_case), ("owner",)),
            Opt("--description", fixed(st.just("Older applicants")), ("description",), False),
        ),
    ),
    Command(
        ("vendor", "add"),
        (
            Opt(None, lambda n: slug.map(lambda s: f"Vendor {s} {n}"), ("name", "vendor")),
            Opt("--criticality", fixed(case_of(tuple(Criticality))), ("criticality",)),
            Opt("--owner", fixed(email_case), ("owner",)),
            Opt("--services", fixed(st.just("Hosted model")), ("services",), False),
            Opt("--contact", fixed(st.just("trust@vendor.example")), ("contact",), False),
        ),
    ),
    Command(
        ("training", "record"),
        (
            Opt(None, fixed(email_case), ("email",)),
            Opt(None, fixed(st.sampled_from(TRAININGS)), ("training",), bad=("juggling",)),
            Opt(
                "--completed",
                fixed(st.dates().map(lambda d: d.replace(year=2025).isoformat())),
                ("completed",),
                bad=DATES,
            ),
            Opt("--note", fixed(st.just("Classroom")), ("note",), False),
        ),
    ),
    Command(
        ("evidence", "add"),
        (
            Opt(
                "--subject",
                fixed(st.sampled_from(SYSTEMS).map(lambda s: f"system:{s}")),
                ("subject",),
                bad=("system", ":x", "system:", "planet:mars", "system:nope"),
            ),
            Opt("--kind", fixed(st.sampled_from(EVIDENCE_KINDS)), ("kind",), bad=("vv-reprot",)),
            Opt("--title", fixed(st.just("Validation report")), ("title",)),
            Opt("--text", lambda n: st.just(f"content {n}"), ("text", "content")),
            Opt("--idempotency-key", lambda n: st.just(f"fuzz-{n}"), ("idempotency",), False),
        ),
    ),
    Command(
        ("raci", "set"),
        (
            Opt(None, fixed(st.sampled_from(["stage-gate", "incident-response"])), ("activity",)),
            Opt("--system", fixed(st.sampled_from(SYSTEMS)), ("system",), False),
            Opt("--responsible", fixed(email_case), ("responsible",)),
            Opt("--accountable", fixed(email_case), ("accountable",)),
            Opt("--informed", fixed(email_case), ("informed",), False),
        ),
    ),
    Command(
        ("incident", "report"),
        (
            Opt("--system", fixed(st.sampled_from(SYSTEMS)), ("system",)),
            Opt("--severity", fixed(case_of(SEVERITIES)), ("severity",), bad=("SEV0", "SEV5")),
            Opt("--category", fixed(st.sampled_from(CATEGORIES)), ("category",), bad=("gremlins",)),
            Opt("--summary", fixed(st.sampled_from(["Skewed", "Parser crash"])), ("summary",)),
            Opt("--title", fixed(st.just("Skewed ranking")), ("title",), False),
            Opt(
                "--aware-at",
                fixed(st.sampled_from(["2026-01-05T09:00:00Z", "2026-01-05T10:00:00+01:00"])),
                ("aware_at", "aware-at"),
                False,
                ("yesterday", "2026-01-05T09:00:00", "2026-02-30T00:00:00Z", "9999-12-31T23:59Z"),
            ),
        ),
    ),
    Command(
        ("gate", "check"),
        (
            Opt(None, fixed(st.sampled_from(SYSTEMS)), ("system",)),
            Opt("--to", fixed(st.just("design")), ("to", "stage")),
        ),
        ok=(0, 1),  # 1: documented, the gate is not ready (evidence missing or refused)
    ),
    Command(
        ("systems", "show"),
        (Opt(None, fixed(st.sampled_from(SYSTEMS)), ("name", "system")),),
    ),
)


@st.composite
def cli_case(draw: st.DrawFn, n: int) -> tuple[Command, list[str], str, tuple[str, ...]]:
    """A command with valid arguments, then one change: (command, argv, what changed, the
    words a refusal must use)."""
    cmd = draw(st.sampled_from(COMMANDS))
    parts: list[tuple[Opt, str]] = [
        (o, draw(o.valid(n))) for o in cmd.opts if o.required or draw(st.booleans())
    ]
    how = draw(
        st.sampled_from(
            ["none", "value", "value", "value", "drop", "dup", "unknown", "bare", "extra"]
        )
    )
    words: tuple[str, ...] = ()
    opt = draw(st.sampled_from([o for o, _ in parts]))
    names = (*opt.words, *((opt.flag,) if opt.flag else ()))
    if how == "dup" and opt.flag is None:
        how = "value"
    if how in ("value", "dup"):
        bad = draw(st.one_of(bad_text, st.sampled_from(opt.bad or ("",))))
        if bad.startswith("-"):
            bad = " " + bad  # else it reads as an option, to any parser
        words = names
        if how == "value":
            parts = [(o, bad if o is opt else v) for o, v in parts]
        else:
            parts.append((opt, bad))
    elif how == "drop" and opt.required:
        parts = [(o, v) for o, v in parts if o is not opt]
        words = (*names, "missing")
    elif how == "drop":
        how = "none"
    positional = [v for o, v in parts if o.flag is None]
    options = [x for o, v in parts if o.flag is not None for x in (o.flag, v)]
    argv = [*cmd.path, *positional, *options]
    if how == "unknown":
        argv += ["--colour", "red"]
        words = ("no such option",)
    elif how == "bare":
        flagged = [o.flag for o, _ in parts if o.flag is not None]
        argv.append(flagged[-1] if flagged else "--json")
        words = (flagged[-1],) if flagged else ()
    elif how == "extra":
        argv.append("surplus")
        words = ("unexpected extra argument",)
    return cmd, argv, how, words


def assert_clean_cli(result: Any, ok: tuple[int, ...], refused: tuple[int, ...]) -> bool:
    """Accepted (True) or refused (False) cleanly: never a crash, never a traceback."""
    out = result.output
    assert "Traceback" not in out, out
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), f"crash: {exc!r}\n{out}"
    assert result.exit_code in (*ok, *refused), f"exit {result.exit_code}: {out}"
    return result.exit_code in ok


def test_fuzzed_cli_arguments_are_refused_cleanly_and_write_nothing(
    org: UnitOfWork,
    settings: Settings,
    cli_app: Any,
    monkeypatch: pytest.MonkeyPatch,
    reliability: Any,
) -> None:
    StartRecorder().patch(monkeypatch)
    runner = typer.testing.CliRunner()
    tally = Tally()
    serial = itertools.count()

    @fuzz(examples(settings, 3000))
    @given(st.data())
    def one(data: st.DataObject) -> None:
        cmd, argv, how, words = data.draw(cli_case(next(serial)))
        before = footprint(settings)
        result = runner.invoke(cli_app, argv)
        accepted = assert_clean_cli(result, cmd.ok, cmd.refused)
        tally.saw("/".join(cmd.path), accepted)
        if how == "none":
            assert accepted, f"valid input refused: {argv}\n{result.output}"
        if accepted:
            return
        out = result.output
        assert out.strip(), "a refusal with no message"
        assert "error" in out.lower(), out
        if words:
            assert any(w.lower() in out.lower() for w in words), f"{argv}: {words} not in {out}"
        tally.rows_written_by_refused += changed(before, footprint(settings))
        assert tally.rows_written_by_refused == 0, f"refused input wrote: {argv}\n{out}"

    one()
    assert tally.refused > 0 and tally.accepted > 0
    reliability.record("fuzzing", **tally.figures())


# --- CSV and Excel import (`aims systems import`) ---------------------------------------------

HEADER = ("name", "owner", "purpose", "risk_tier", "criticality", "vendor")


@st.composite
def import_file(draw: st.DrawFn, n: int) -> tuple[str, bytes, str, tuple[str, ...]]:
    """(suffix, content, what changed, the words a refusal must use) of an import file made of
    one to three valid rows and one change."""
    rows = [
        [
            draw(slug.map(lambda s, i=i: f"{s}-{n}-{i}")),
            draw(email_case),
            draw(st.sampled_from(["Scores loans", "Answers customers", "Ranks, and sorts"])),
            draw(case_of(tuple(RiskTier))),
            draw(case_of(tuple(Criticality))),
            draw(st.sampled_from(["", "Acme LLM Ltd", "New Vendor"])),
        ]
        for i in range(draw(st.integers(1, 3)))
    ]
    header = list(HEADER)
    how = draw(
        st.sampled_from(
            [
                "none",
                "cell",
                "cell",
                "cell",
                "cell",
                "huge",
                "drop-column",
                "extra-column",
                "dup-header",
                "short-row",
                "long-row",
                "dup-name",
                "existing",
                "header-case",
                "empty",
                "header-only",
                "latin-1",
                "nul",
                "quote",
                "junk",
                "suffix",
            ]
        )
    )
    words: tuple[str, ...] = ()
    r = draw(st.integers(0, len(rows) - 1))
    c = draw(st.integers(0, len(HEADER) - 1))
    if how == "cell":
        rows[r][c] = draw(bad_text)
        words = (HEADER[c], "field larger than")
        if any(ch in rows[r][c] for ch in "\r\n"):  # a line break the CSV writer left bare
            words = (*words, "line")
    elif how == "huge":
        rows[r][c] = huge(draw(st.sampled_from([5_000, 140_000, 300_000])))
        words = (HEADER[c], "field larger than")
    elif how == "drop-column":
        header.pop(c)
        for row in rows:
            row.pop(c)
        words = ("columns", HEADER[c])
    elif how == "extra-column":
        header.append(draw(st.sampled_from(["notes", "NAME ", "", "risk_tier"])))
        for row in rows:
            row.append(draw(bad_text))
    elif how == "dup-header":
        header[draw(st.integers(0, len(header) - 1))] = HEADER[c]
    elif how == "short-row":
        rows[r] = rows[r][: draw(st.integers(1, len(HEADER) - 2))]
        words = HEADER[len(rows[r]) : 5] or ("line",)
    elif how == "long-row":
        rows[r] += draw(st.lists(bad_text, min_size=1, max_size=3))
    elif how == "dup-name":
        rows.append([*rows[0]])
        words = ("duplicate name",)
    elif how == "existing":
        rows[r][0] = draw(st.sampled_from(SYSTEMS))
        words = ("already exists",)
    elif how == "header-case":
        header = [draw(st.sampled_from([h.upper(), f" {h} ", h.title()])) for h in header]
    suffix = ".csv"
    buf = io.StringIO()
    writer = __import__("csv").writer(buf, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerows([header, *rows] if how != "header-only" else [header])
    content = buf.getvalue().encode("utf-8")
    if draw(st.booleans()):
        content = b"\xef\xbb\xbf" + content
    if how == "empty":
        content, words = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\n\n", b"  \r\n"])), ()
    elif how == "latin-1":
        content = content.replace(b"Scores", "Scorés".encode("latin-1"), 1) + "é".encode("latin-1")
        words = ("utf-8",)
    elif how == "nul":
        at = draw(st.integers(0, len(content)))
        content = content[:at] + b"\x00" + content[at:]
        words = ()
    elif how == "quote":
        content = content.replace(b"Scores", b'"Scores', 1) + b'"unclosed'
        words = ()
    elif how == "junk":
        content, words = draw(st.binary(max_size=200)), ()
    elif how == "suffix":
        suffix, words = draw(st.sampled_from([".json", ".xls", ".CSV", ".txt", ""])), ()
    if how not in ("empty", "latin-1", "nul", "quote", "junk", "suffix") and draw(
        st.integers(0, 9).map(lambda k: k == 0)
    ):
        suffix, content = ".xlsx", excel(header, rows if how != "header-only" else [])
    elif how == "junk" and draw(st.booleans()):
        suffix, words = ".xlsx", ("workbook", "file")
    return suffix, content, how, words


def excel(header: list[str], rows: list[list[str]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in [header, *rows]:
        sheet.append(
            [
                v if not any(ord(ch) < 32 and ch not in "\t\n\r" for ch in v) else repr(v)
                for v in row
            ]
        )
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_fuzzed_import_files_are_refused_cleanly_and_write_nothing(
    org: UnitOfWork, settings: Settings, cli_app: Any, tmp_path: Path, reliability: Any
) -> None:
    runner = typer.testing.CliRunner()
    tally = Tally()
    serial = itertools.count()

    @fuzz(examples(settings, 900))
    @given(st.data())
    def one(data: st.DataObject) -> None:
        n = next(serial)
        suffix, content, how, words = data.draw(import_file(n))
        path = tmp_path / f"systems-{n}{suffix}"
        path.write_bytes(content)
        before = footprint(settings)
        result = runner.invoke(cli_app, ["systems", "import", str(path)])
        accepted = assert_clean_cli(result, (0,), (2,))
        tally.saw("xlsx" if suffix == ".xlsx" else "csv", accepted)
        if how in ("none", "header-case"):
            assert accepted, f"valid file refused: {content[:500]!r}\n{result.output}"
        if accepted:
            assert "imported" in result.output
            return
        out = result.output
        assert out.startswith("error: "), out
        if words:
            assert any(w.lower() in out.lower() for w in words), f"{how}: {words} not in {out}"
        tally.rows_written_by_refused += changed(before, footprint(settings))
        assert tally.rows_written_by_refused == 0, f"refused file wrote: {content[:500]!r}"

    one()
    assert tally.refused > 0 and tally.accepted > 0
    reliability.record("fuzzing", **tally.figures())


# --- incident intake: POST /incidents and POST /alertmanager ----------------------------------


@pytest.fixture
def intake_client(
    org: UnitOfWork, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The bridge app with an intake token, no Slack (first messages go to the log) and the
    playbook run start recorded instead of asking Prefect."""
    StartRecorder().patch(monkeypatch)
    configured = settings.model_copy(update={"intake_token": SecretStr(TOKEN)})
    app = create_app(configured, resume=lambda *a, **k: None)
    with TestClient(app) as client:
        yield client


#: JSON values of every type, for a field that wants another.
bad_json: st.SearchStrategy[Any] = st.one_of(
    bad_text,
    st.integers(-(2**70), 2**70),
    st.sampled_from([-1, 0, 2**63, math.nan, math.inf, -math.inf, 1e308, -0.0]),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(["SEV1", "bias", 1, None]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "system", ""]), st.sampled_from(["x", 1]), max_size=2),
    st.integers(1, 60).map(lambda d: json.loads("[" * d + "]" * d)),
)


def nested(key: str, depth: int) -> bytes:
    return b'{"' + key.encode() + b'": ' + b"[" * depth + b"]" * depth + b"}"


@st.composite
def json_change(
    draw: st.DrawFn, body: dict[str, Any], keys: tuple[str, ...], extra_ok: bool
) -> tuple[bytes, str, tuple[str, ...]]:
    """One change to a valid JSON body: (raw body, what changed, words a refusal must use)."""
    how = draw(
        st.sampled_from(
            [
                "none",
                "value",
                "value",
                "value",
                "value",
                "drop",
                "extra",
                "dup-key",
                "deep",
                "not-object",
                "truncated",
                "not-utf8",
                "empty",
                "nan",
            ]
        )
    )
    key = draw(st.sampled_from(keys))
    words: tuple[str, ...] = (key,)
    if how == "value":
        body[key] = draw(bad_json)
    elif how == "drop":
        body.pop(key, None)
    elif how == "extra":
        extra = draw(st.sampled_from(["colour", "System", "", "__proto__", "aware-at"]))
        body[extra] = draw(bad_json)
        words = ("extra", extra) if not extra_ok else ()
    elif how == "nan":
        body[key] = math.nan
    raw = json.dumps(body, allow_nan=True).encode()
    if how == "dup-key":  # the last one wins in JSON, as in Python: a bad value after a good one
        raw = raw[:-1] + b', "' + key.encode() + b'": ' + json.dumps(draw(bad_json)).encode() + b"}"
    elif how == "deep":
        depth = draw(st.sampled_from([10, 100, 5_000, 200_000]))
        raw, words = nested(key, depth), ("json", key)
    elif how == "not-object":
        raw = draw(st.sampled_from([b"[]", b"null", b"1", b'"x"', b"[{}]", b"true"]))
        words = ("object",)
    elif how == "truncated":
        raw, words = raw[: draw(st.integers(0, max(0, len(raw) - 1)))], ("json",)
    elif how == "not-utf8":
        raw, words = raw.replace(b'"', b'"\xff', 1), ("utf-8", "json")
    elif how == "empty":
        raw, words = b"", ("json",)
    return raw, how, words


def assert_clean_http(response: Any) -> bool:
    """Accepted (True) or refused with a 4xx and a message (False); never a 5xx."""
    assert response.status_code < 500, f"{response.status_code}: {response.text[:2000]}"
    assert response.status_code in (200, 201, 202, 400, 413, 422), response.text[:2000]
    body = response.json()
    if response.status_code >= 400:
        assert body["ok"] is False and body["error"].strip(), body
        assert "Traceback" not in response.text
        return False
    assert body["ok"] is True, body
    return True


def check_intake(
    client: TestClient,
    settings: Settings,
    tally: Tally,
    path: str,
    change: tuple[bytes, str, tuple[str, ...]],
) -> None:
    raw, how, words = change
    before = footprint(settings)
    response = client.post(path, content=raw, headers=AUTH)
    accepted = assert_clean_http(response)
    tally.saw(path.strip("/"), accepted)
    if how == "none":
        assert accepted, f"valid body refused: {raw[:2000]!r}: {response.text[:2000]}"
    if accepted:
        return
    said = json.dumps(response.json()).lower()
    if words:
        assert any(w.lower() in said for w in words), f"{how}: {words} not in {said[:2000]}"
    tally.rows_written_by_refused += changed(before, footprint(settings))
    assert tally.rows_written_by_refused == 0, f"refused body wrote: {raw[:2000]!r}"


INCIDENT_KEYS = ("system", "severity", "category", "title", "summary", "aware_at", "fingerprint")


@st.composite
def incident_body(draw: st.DrawFn, n: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "system": draw(st.sampled_from(SYSTEMS)),
        "severity": draw(st.sampled_from(["SEV1", "SEV2", "sev3", "SEV4"])),
        "category": draw(st.sampled_from(CATEGORIES)),
        "title": draw(st.sampled_from(["Skewed ranking", "Ünïcode títle 🙂", "x" * 300])),
    }
    if draw(st.booleans()):
        body["summary"] = draw(st.sampled_from(["", "Older applicants missing", "y" * 20_000]))
    if draw(st.booleans()):
        body["aware_at"] = draw(
            st.sampled_from(["2026-01-05T09:00:00Z", "2025-12-31T23:59:59+14:00"])
        )
    if draw(st.integers(0, 9)) > 0:  # a repeat attaches (cheap); a new incident costs 0.1 s
        body["fingerprint"] = f"fuzz-{n % 7}"
    if draw(st.booleans()):
        body["harm"] = draw(st.sampled_from([[], ["health"], ["fundamental-rights", "property"]]))
    return body


def test_fuzzed_incident_webhook_bodies_are_refused_with_a_4xx_and_write_nothing(
    intake_client: TestClient, settings: Settings, reliability: Any
) -> None:
    tally = Tally()
    serial = itertools.count()

    @fuzz(examples(settings, 900))
    @given(st.data())
    def one(data: st.DataObject) -> None:
        body = data.draw(incident_body(next(serial)))
        change = data.draw(json_change(body, (*INCIDENT_KEYS, "harm"), extra_ok=False))
        check_intake(intake_client, settings, tally, "/incidents", change)

    one()
    assert tally.refused > 0 and tally.accepted > 0
    reliability.record("fuzzing", **tally.figures())


ALERT_KEYS = (
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
)
LABELS = ("ai_system", "severity", "category", "harm", "alertname")
TOP_KEYS = (
    "version",
    "status",
    "receiver",
    "groupKey",
    "truncatedAlerts",
    "alerts",
    "commonLabels",
)


@st.composite
def alertmanager_change(draw: st.DrawFn, n: int) -> tuple[bytes, str, tuple[str, ...]]:
    """A real Alertmanager v4 body (one to three alerts), changed at the top, in an alert or
    in an alert's labels."""
    alerts = [
        alert(
            f"fuzz{n % 5:02d}{i:02d}",
            status=draw(st.sampled_from(["firing", "firing", "resolved"])),
            system=draw(st.sampled_from(SYSTEMS)),
            severity=draw(st.sampled_from(["critical", "high", "warning", "info", "SEV2", "Sev4"])),
            category=draw(st.sampled_from([None, "bias", "data-issue", "privacy"])),
        )
        for i in range(draw(st.integers(1, 3)))
    ]
    body = webhook(*alerts)
    where = draw(st.sampled_from(["top", "alert", "alert", "label", "label"]))
    i = draw(st.integers(0, len(alerts) - 1))
    if where == "top":
        raw, how, words = draw(json_change(body, TOP_KEYS, extra_ok=True))
    elif where == "alert":
        raw, how, words = draw(json_change(alerts[i], ALERT_KEYS, extra_ok=True))
        if how in ("value", "drop", "extra", "nan", "none"):
            raw = json.dumps(body, allow_nan=True).encode()
            words = (*words, f"alerts[{i}]")
    else:
        raw, how, words = draw(json_change(alerts[i]["labels"], LABELS, extra_ok=True))
        if how in ("value", "drop", "extra", "nan", "none"):
            raw = json.dumps(body, allow_nan=True).encode()
            words = (*words, f"alerts[{i}]")
    if where != "top" and how not in ("value", "drop", "extra", "nan", "none"):
        words = ("json", "object", "field required")  # the whole body was replaced
    return raw, how, words


def test_fuzzed_alertmanager_bodies_are_refused_with_a_4xx_and_write_nothing(
    intake_client: TestClient, settings: Settings, reliability: Any
) -> None:
    tally = Tally()
    serial = itertools.count()

    @fuzz(examples(settings, 800))
    @given(st.data())
    def one(data: st.DataObject) -> None:
        check_intake(
            intake_client,
            settings,
            tally,
            "/alertmanager",
            data.draw(alertmanager_change(next(serial))),
        )

    one()
    assert tally.refused > 0 and tally.accepted > 0
    reliability.record("fuzzing", **tally.figures())


# --- gate-policy and playbook YAML ------------------------------------------------------------

Path_ = tuple[str | int, ...]


def places(doc: Any, here: Path_ = ()) -> Iterator[Path_]:
    """Every place in a loaded YAML document (mapping keys and list indexes)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*here, k)
            yield from places(v, (*here, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*here, i)
            yield from places(v, (*here, i))


Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@functools.cache
def loaded(text_: str) -> Any:
    return yaml.safe_load(text_)


bad_yaml_value: st.SearchStrategy[Any] = st.one_of(
    bad_json,
    st.sampled_from(["~", "yes", "no", "0x1F", "1_000", ".inf", "2026-01-05", "!!binary", "*x"]),
    st.lists(bad_text, max_size=3),
)


@st.composite
def yaml_change(draw: st.DrawFn, text_: str) -> tuple[str, str, tuple[str, ...]]:
    """One change to a valid YAML file: (text, what changed, words a refusal must use)."""
    doc = copy.deepcopy(loaded(text_))
    how = draw(
        st.sampled_from(
            [
                "none",
                "value",
                "value",
                "value",
                "value",
                "drop",
                "drop",
                "extra",
                "rename",
                "dup-key",
                "deep",
                "tab",
                "syntax",
                "not-mapping",
                "empty",
                "tag",
                "anchor",
            ]
        )
    )
    place = draw(st.sampled_from(list(places(doc))))
    parent: Any = doc
    for part in place[:-1]:
        parent = parent[part]
    last = place[-1]
    words: tuple[str, ...] = tuple(str(p) for p in place if isinstance(p, str))
    if how == "value":
        parent[last] = draw(bad_yaml_value)
    elif how == "drop":
        parent.pop(last)
    elif how == "extra":
        target = parent if isinstance(parent, dict) else doc
        extra = draw(st.sampled_from(["colour", "quorom", "Gates", "approver", "stpes"]))
        target[extra] = draw(bad_yaml_value)
        words = (extra,)
    elif how == "rename" and isinstance(last, str):
        new = draw(st.sampled_from([last.upper(), last + "x", last[:-1], f" {last}", "x"]))
        parent[new] = parent.pop(last)
        words = (new.strip(), last)
    out = yaml.dump(doc, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=10_000)
    if how == "dup-key":  # a second top-level key of the same name, as an edit might leave
        key = draw(st.sampled_from([k for k in doc if isinstance(k, str)]))
        out += f"{key}: {json.dumps(draw(bad_yaml_value))}\n"
        words = ("duplicate", key)
    elif how == "deep":
        depth = draw(st.sampled_from([50, 300, 1_000, 5_000]))
        out += draw(
            st.sampled_from(["deep:\n  " + "- " * depth + "x\n", "deep: " + "[" * 50 + "]" * 50])
        )
        words = ("deep", "yaml")
    elif how == "tab":
        out, words = out.replace("  ", "\t", 1), ("yaml",)
    elif how == "syntax":
        at = draw(st.integers(0, len(out)))
        out = (
            out[:at]
            + draw(st.sampled_from([": :", "]", "{", "'", '"', "- ", "&", "*nope"]))
            + out[at:]
        )
        words = ()
    elif how == "not-mapping":
        out, words = draw(st.sampled_from(["- a\n- b\n", "just text\n", "42\n", "[]\n"])), ()
    elif how == "empty":
        out, words = draw(st.sampled_from(["", "\n", "# nothing\n", "---\n", "~\n"])), ()
    elif how == "tag":
        out += "evil: !!python/object/apply:os.system ['true']\n"
        words = ("yaml", "python")
    elif how == "anchor":  # aliases a few levels deep (shared, not copied, by the loader)
        out += "x1: &a [1, 2]\nx2: &b [*a, *a]\nx3: &c [*b, *b]\nx4: [*c, *c]\n"
        words = ("x1", "x2", "x3", "x4")
    return out, how, words


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir for the CLI; policy files need no database (so no SQLite/PostgreSQL halves)."""
    monkeypatch.setenv("AIMS_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


#: How a policy file reaches its loader: directly, `--file`, or the setting naming it.
VIA = {"parse": "loader", "--file": "cli_file", "AIMS_GATE_POLICY_FILE": "setting"}
VIA["AIMS_PLAYBOOKS_DIR"] = "setting"

GATE_POLICY = resources.files("aims_core.data").joinpath("gate_policy.yaml").read_text("utf-8")


def test_fuzzed_gate_policy_yaml_is_refused_with_every_problem_named(
    data_dir: Path, cli_app: Any, tmp_path: Path, reliability: Any
) -> None:
    runner = typer.testing.CliRunner()
    tally = Tally()
    serial = itertools.count()

    @fuzz(2300)
    @given(st.data())
    def one(data: st.DataObject) -> None:
        n = next(serial)
        text_, how, words = data.draw(yaml_change(GATE_POLICY))
        via = data.draw(st.sampled_from(["parse"] * 8 + ["--file", "AIMS_GATE_POLICY_FILE"]))
        if via == "parse":
            try:
                policy: GatePolicy | None = parse_policy(text_, "fuzz.yaml")
            except GatePolicyError as exc:
                policy, said = None, str(exc)
                assert exc.problems and all(p.strip() for p in exc.problems), exc.problems
            accepted = policy is not None
        else:
            path = tmp_path / f"policy-{n}.yaml"  # a new file each time: no stale cache
            if data.draw(st.integers(0, 20).map(lambda k: k == 0)):
                text_, how, words = "gates:\n  design: \udcff\n", "not-utf8", ("utf-8",)
            path.write_bytes(text_.encode("utf-8", "surrogateescape"))
            if via == "--file":
                argv, env = ["gate", "policy", "--file", str(path), "--check"], {}
            else:
                argv, env = ["gate", "policy", "--json"], {"AIMS_GATE_POLICY_FILE": str(path)}
            result = runner.invoke(cli_app, argv, env=env)
            accepted = assert_clean_cli(result, (0,), (2,))
            said = result.output
        tally.saw(f"gate_policy_{VIA[via]}", accepted)
        if how == "none":
            assert accepted, f"the valid policy was refused: {said}"
        if accepted:
            return
        if words:
            assert any(w.lower() in said.lower() for w in words), f"{how}: {words} not in {said}"

    one()
    assert tally.refused > 0 and tally.accepted > 0
    reliability.record("fuzzing", **tally.figures())


PLAYBOOKS = {
    name: resources.files("aims_core.data").joinpath(f"playbooks/{name}.yaml").read_text("utf-8")
    for name in ("bias", "model-failure", "privacy", "data-issue")
}


def test_fuzzed_playbook_yaml_is_refused_with_every_problem_named(
    data_dir: Path, cli_app: Any, tmp_path: Path, reliability: Any
) -> None:
    runner = typer.testing.CliRunner()
    tally = Tally()
    serial = itertools.count()

    @fuzz(2300)
    @given(st.data())
    def one(data: st.DataObject) -> None:
        n = next(serial)
        book = data.draw(st.sampled_from(sorted(PLAYBOOKS)))
        text_, how, words = data.draw(yaml_change(PLAYBOOKS[book]))
        via = data.draw(st.sampled_from(["parse"] * 8 + ["--file", "AIMS_PLAYBOOKS_DIR"]))
        if via == "parse":
            try:
                parsed: Playbook | None = parse_playbook(
                    text_, book, "fuzz.yaml", severities=SEVERITIES
                )
            except PlaybookError as exc:
                parsed, said = None, str(exc)
                assert exc.problems and all(p.strip() for p in exc.problems), exc.problems
            accepted = parsed is not None
        else:
            folder = tmp_path / f"books-{n}"
            folder.mkdir()
            name = data.draw(st.sampled_from([book] * 6 + ["Bad Name", "x" * 50]))
            if name != book:
                how, words = "file-name", ("playbook id", "not used")
            (folder / f"{name}.yaml").write_text(text_, "utf-8")
            if via == "--file":
                argv, env = ["incident", "playbooks", "--file", str(folder / f"{name}.yaml")], {}
                refused = (2,)
            else:
                argv, env = ["incident", "playbooks"], {"AIMS_PLAYBOOKS_DIR": str(folder)}
                refused = (1,)  # documented: every problem of every playbook listed, exit 1
            result = runner.invoke(cli_app, argv, env=env)
            accepted = assert_clean_cli(result, (0,), refused)
            said = result.output
        tally.saw(f"playbook_{VIA[via]}", accepted)
        if how == "none":
            assert accepted, f"the valid playbook was refused: {said}"
        if accepted:
            return
        if words:
            assert any(w.lower() in said.lower() for w in words), f"{how}: {words} not in {said}"

    one()
    assert tally.refused > 0 and tally.accepted > 0
    reliability.record("fuzzing", **tally.figures())
