"""Reliability suite, issue 9, promise 9 (tampering), on SQLite and PostgreSQL.

An attacker who can write the database (SQL) but has neither the evidence key nor the data dir
edits, deletes, inserts, reorders and re-hashes evidence rows, deletes the newest records, and
replaces stored evidence files: a systematic matrix over many positions of one chain (first,
second, middle, last but one, last and seeded random ones). After each case `aims evidence
verify` (the CLI, in process) must exit 1 naming the first bad record, or the missing tail; the
chain is then restored and must verify intact again, so every case stands on its own.
tests/test_evidence.py holds the single, explained cases; this is the sweep.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, text, update
from test_evidence import _add, _chains, _sql

from aims_core.db import get_engine
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import Evidence, EvidenceHead
from aims_core.services import evidence as ev
from aims_core.settings import Settings
from aims_core.uow import Actor

RECORDS = 24
FILE_SEQS = (3, 12, 24)  # records whose evidence is a stored file


@dataclass(frozen=True)
class Case:
    name: str
    tamper: Callable[[Settings], None]
    expect: tuple[str, ...]  # phrases the CLI's answer must contain (they name the record)


class Chain:
    """The evidence of one test, as written, so that each case can be undone exactly."""

    def __init__(self, settings: Settings, actor: Actor, tmp: Path) -> None:
        self.settings = settings
        for seq in range(1, RECORDS + 1):
            if seq in FILE_SEQS:
                doc = tmp / f"report-{seq}.md"
                doc.write_text(f"# Fairness report {seq}\nparity gap 0.0{seq % 10}\n")
                ev.append(
                    settings,
                    EvidenceIn(
                        subject="system:credit", kind="fairness-report", title="FR", file=doc
                    ),
                    actor,
                )
            else:
                _add(settings, actor, 1, subject=f"system:s{seq}")
        with get_engine(settings.effective_database_url).connect() as conn:
            self.rows = [dict(r) for r in conn.execute(select(Evidence.__table__)).mappings()]
            self.head = dict(conn.execute(select(EvidenceHead.__table__)).mappings().one())
        self.by_seq = {r["seq"]: r for r in self.rows}
        self.anchor = settings.evidence_anchor_path.read_bytes()
        self.files = {
            seq: (path, path.read_bytes())
            for seq in FILE_SEQS
            for path in [ev.store_path(settings, self.by_seq[seq]["content_sha256"])]
        }

    def restore(self) -> None:
        with get_engine(self.settings.effective_database_url).begin() as conn:
            conn.execute(delete(Evidence))
            conn.execute(insert(Evidence), self.rows)
            conn.execute(update(EvidenceHead).values(**self.head))
        self.settings.evidence_anchor_path.write_bytes(self.anchor)
        for path, data in self.files.values():
            if path.exists():
                path.chmod(0o644)
            path.write_bytes(data)


def _edit(seq: int, column: str, value: str) -> Callable[[Settings], None]:
    return lambda s: _sql(
        s, f"UPDATE evidence SET {column} = :v WHERE seq = :seq", v=value, seq=seq
    )


def _edit_and_rehash(chain: Chain, seq: int, rechain: bool) -> Callable[[Settings], None]:
    """New content with its SHA-256 and size fixed; with `rechain`, every chain value from there
    on and the head row recomputed as an unkeyed SHA-256 chain (what can be done without the
    key)."""

    def tamper(s: Settings) -> None:
        forged = f"run {seq}: every fairness threshold met"
        with get_engine(s.effective_database_url).begin() as conn:
            conn.execute(
                update(Evidence)
                .where(Evidence.seq == seq)
                .values(
                    content=forged,
                    content_sha256=hashlib.sha256(forged.encode()).hexdigest(),
                    size=len(forged.encode()),
                )
            )
            if not rechain:
                return
            rows = conn.execute(
                select(Evidence).where(Evidence.seq >= seq).order_by(Evidence.seq)
            ).mappings()
            prev = chain.by_seq[seq - 1]["chain"] if seq > 1 else ev.GENESIS
            for row in list(rows):
                value = hashlib.sha256((prev + row["content_sha256"]).encode()).hexdigest()
                conn.execute(
                    update(Evidence)
                    .where(Evidence.id == row["id"])
                    .values(prev_chain=prev, chain=value)
                )
                prev = value
            conn.execute(update(EvidenceHead).values(head=prev))

    return tamper


def _renumber(s: Settings, where: str, to: str) -> None:
    """`seq = to` for rows `where`, in two steps (a unique column cannot shift in place)."""
    _sql(s, f"UPDATE evidence SET seq = -({to}) WHERE {where}")
    _sql(s, "UPDATE evidence SET seq = -seq WHERE seq < 0")


def _insert_after(chain: Chain, seq: int) -> Callable[[Settings], None]:
    """A made-up record slipped in after `seq`, linked to it, the rest shifted up by one."""

    def tamper(s: Settings) -> None:
        _renumber(s, f"seq > {seq}", "seq + 1")
        model = dict(chain.by_seq[seq])
        forged = "approved by the board"
        model |= {
            "id": max(chain.by_seq[n]["id"] for n in chain.by_seq) + 1,
            "seq": seq + 1,
            "idempotency_key": f"forged-{seq}",
            "content": forged,
            "file_name": None,
            "content_sha256": hashlib.sha256(forged.encode()).hexdigest(),
            "size": len(forged),
            "prev_chain": model["chain"],
            "chain": hashlib.sha256(forged.encode() + model["chain"].encode()).hexdigest(),
        }
        with get_engine(s.effective_database_url).begin() as conn:
            conn.execute(insert(Evidence), [model])
            conn.execute(update(EvidenceHead).values(count=RECORDS + 1))

    return tamper


def _delete_tail(chain: Chain, k: int, rewind_head: bool) -> Callable[[Settings], None]:
    def tamper(s: Settings) -> None:
        _sql(s, "DELETE FROM evidence WHERE seq > :n", n=RECORDS - k)
        if rewind_head:
            last = chain.by_seq[RECORDS - k]["chain"]
            _sql(s, "UPDATE evidence_head SET count = :n, head = :h", n=RECORDS - k, h=last)

    return tamper


def _replace_file(chain: Chain, seq: int, how: str) -> Callable[[Settings], None]:
    def tamper(s: Settings) -> None:
        path, data = chain.files[seq]
        path.chmod(0o644)
        if how == "missing":
            path.unlink()
        elif how == "same-size":
            path.write_bytes(data[:-2] + b"9\n")
        else:
            path.write_bytes(data + b"reviewed: no issues\n")

    return tamper


def cases(chain: Chain, rng: random.Random) -> list[Case]:
    n = RECORDS
    positions = sorted({1, 2, n // 2, n - 1, n, *rng.sample(range(3, n - 1), 9)})
    out: list[Case] = []
    for p in positions:
        label = f"(seq {p})"
        if p not in FILE_SEQS:  # a file record's content column is not its content
            out.append(
                Case(
                    f"edit content @{p}",
                    _edit(p, "content", "all tests passed"),
                    (f"{label}: content edited (hash mismatch)",),
                )
            )
        out += [
            Case(f"edit title @{p}", _edit(p, "title", "Approved"), (f"chain broken at seq {p} ",)),
            Case(f"edit actor @{p}", _edit(p, "actor", "ceo@x"), (f"chain broken at seq {p} ",)),
            Case(
                f"edit + unkeyed hashes @{p}",
                _edit_and_rehash(chain, p, rechain=False),
                (f"chain broken at seq {p} ", "recomputed HMAC differs"),
            ),
            Case(
                f"edit + unkeyed chain and head @{p}",
                _edit_and_rehash(chain, p, rechain=True),
                (f"chain broken at seq {p} ",),
            ),
            Case(
                f"insert after @{p}",
                _insert_after(chain, p),
                (f"chain broken at seq {p + 1} ",),
            ),
        ]
        if p < n:
            out += [
                Case(
                    f"delete @{p}",
                    lambda s, p=p: _sql(s, "DELETE FROM evidence WHERE seq = :p", p=p),
                    (f"record missing at seq {p}",),
                ),
                Case(
                    f"swap with next @{p}",
                    lambda s, p=p: _renumber(
                        s,
                        f"seq IN ({p}, {p + 1})",
                        f"CASE WHEN seq = {p} THEN {p + 1} ELSE {p} END",
                    ),
                    (f"chain broken at seq {p} ", "does not link"),
                ),
            ]
        if 1 < p < n:
            out.append(
                Case(
                    f"move to the end @{p}",
                    lambda s, p=p: _renumber(s, f"seq = {p}", str(n + 1)),
                    (f"record missing at seq {p}",),
                )
            )
    for k in (1, 2, 3, 5, 8, n - 1):
        for rewind in (False, True):
            out.append(
                Case(
                    f"delete newest{' and rewind the head' if rewind else ''} @{k}",
                    _delete_tail(chain, k, rewind),
                    ("missing at the end", f"says {n}, the database has {n - k}"),
                )
            )
    for seq in FILE_SEQS:
        for how, phrase in (
            ("same-size", "stored file altered (hash mismatch)"),
            ("longer", "stored file"),
            ("missing", "stored file missing"),
        ):
            out.append(
                Case(
                    f"file {how} @{seq}",
                    _replace_file(chain, seq, how),
                    (f"(seq {seq}): {phrase}",),
                )
            )
    return out


def test_every_tampering_is_caught_naming_the_first_bad_record(
    settings: Settings, actor: Actor, run_cli: Any, tmp_path: Path, reliability: Any
) -> None:
    chain = Chain(settings, actor, tmp_path)
    assert run_cli("evidence", "verify").exit_code == 0
    assert _chains(settings)[RECORDS] == chain.head["head"]
    matrix = cases(chain, random.Random(9))
    missed: list[str] = []

    for case in matrix:
        case.tamper(settings)
        result = run_cli("evidence", "verify")
        said = result.output.strip()
        if result.exit_code != 1 or not all(phrase in said for phrase in case.expect):
            missed.append(f"{case.name}: exit {result.exit_code}: {said[:200]}")
        chain.restore()
        report = ev.verify(settings, hash_files=False)  # the restored chain is whole again
        assert report.intact and report.count == RECORDS, (case.name, report.reason)

    assert len(matrix) >= 100
    assert missed == []
    assert run_cli("evidence", "verify").exit_code == 0  # and the real thing still verifies
    with get_engine(settings.effective_database_url).connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM evidence")) == RECORDS
    reliability.record(
        "tampering",
        cases=len(matrix),
        caught=len(matrix) - len(missed),
        named_right_record=len(matrix) - len(missed),
        records_in_chain=RECORDS,
        kinds=len({c.name.split(" @")[0] for c in matrix}),
    )
