"""Evidence: append-only, idempotent, tamper-evident (keyed chain + anchor outside the database).

Each tampering test plays an attacker who can write the database (SQL) but has no key and
cannot touch the data dir, then checks that verify fails and names the first bad record.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text, update

from aims_core.db import get_engine
from aims_core.errors import AimsError, Conflict, InvalidInput
from aims_core.evidence_schemas import SUBJECT_KINDS, EvidenceIn
from aims_core.models import AuditEvent, Evidence, EvidenceHead
from aims_core.services import evidence as ev
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork


def _add(settings: Settings, actor: Actor, n: int, subject: str = "system:credit") -> list[Any]:
    return [
        ev.append(
            settings,
            EvidenceIn(subject=subject, kind="vv-report", title=f"V&V run {i}", text=f"run {i}"),
            actor,
        )
        for i in range(1, n + 1)
    ]


def _sql(settings: Settings, statement: str, **params: object) -> None:
    with get_engine(settings.effective_database_url).begin() as conn:
        conn.execute(text(statement), params)


def _state(settings: Settings) -> tuple[int, int, int, int]:
    """(evidence rows, evidence audit events, files in the store, head count)."""
    with get_engine(settings.effective_database_url).connect() as conn:
        rows = conn.scalar(select(func.count()).select_from(Evidence))
        audits = conn.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "evidence.appended")
        )
        head = conn.scalar(select(EvidenceHead.count))
    store = settings.evidence_store_dir
    files = sum(1 for p in store.rglob("*") if p.is_file()) if store.exists() else 0
    return rows or 0, audits or 0, files, head or 0


def _chains(settings: Settings) -> dict[int, str]:
    with get_engine(settings.effective_database_url).connect() as conn:
        return {r.seq: r.chain for r in conn.execute(select(Evidence.seq, Evidence.chain))}


def _broken(settings: Settings, seq: int, *phrases: str) -> ev.VerifyReport:
    report = ev.verify(settings)
    assert not report.intact, report
    assert report.first_bad_seq == seq, report.reason
    for phrase in phrases:
        assert phrase in (report.reason or ""), report.reason
    return report


# --- append and verify -------------------------------------------------------------------------


def test_append_and_verify_intact(settings: Settings, actor: Actor) -> None:
    out = _add(settings, actor, 3)
    odd = ev.append(
        settings,
        EvidenceIn(
            subject="gate:42",
            kind="decision",
            title="Freigabe \u2013 genehmigt \u2713",
            text="Entscheidung: ja\nÜberprüft",
        ),
        actor,
    )
    assert [o.seq for o in out] == [1, 2, 3] and odd.seq == 4
    assert out[0].prev_chain == ev.GENESIS and out[1].prev_chain == out[0].chain
    assert odd.actor == actor.who and odd.channel == "test" and odd.media_type == "text/plain"
    assert odd.content_sha256 == hashlib.sha256("Entscheidung: ja\nÜberprüft".encode()).hexdigest()
    report = ev.verify(settings)
    assert report.intact and report.count == 4 and report.head_count == 4, report
    assert report.anchor_count == 4 and report.warnings == []
    assert report.summary == "evidence chain intact: 4 records"
    anchor = json.loads(settings.evidence_anchor_path.read_text())
    assert anchor["count"] == 4 and anchor["head"] == odd.chain
    assert _state(settings) == (4, 4, 0, 4)


def test_chain_is_an_hmac_under_the_key_over_canonical_fields(
    settings: Settings, actor: Actor
) -> None:
    (rec,) = _add(settings, actor, 1)
    fields = rec.model_dump()
    expected = ev.chain_value(ev.evidence_key(settings), ev.GENESIS, fields)
    assert rec.chain == expected
    assert rec.chain != ev.chain_value(b"another key", ev.GENESIS, fields)
    # Naive (SQLite) and aware (PostgreSQL, any zone) datetimes serialise the same.
    aware = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    berlin = aware.astimezone(timezone(timedelta(hours=1)))
    assert ev.utc_iso(aware) == ev.utc_iso(berlin) == ev.utc_iso(aware.replace(tzinfo=None))
    assert ev.utc_iso(aware) == "2026-01-02T03:04:05.678901Z"


def test_file_evidence_is_stored_by_content_hash(
    settings: Settings, actor: Actor, tmp_path: Path
) -> None:
    report_pdf = tmp_path / "vv-report.pdf"
    report_pdf.write_bytes(b"%PDF-1.7 pretend report")
    out = ev.append(
        settings,
        EvidenceIn(subject="system:credit", kind="vv-report", title="V&V", file=report_pdf),
        actor,
    )
    stored = ev.store_path(settings, out.content_sha256)
    assert stored == settings.evidence_store_dir / out.content_sha256[:2] / out.content_sha256
    assert stored.read_bytes() == b"%PDF-1.7 pretend report"
    assert (out.file_name, out.media_type, out.size) == ("vv-report.pdf", "application/pdf", 23)
    assert not [p for p in settings.evidence_store_dir.rglob(".incoming-*")]  # no temp left
    by_data = ev.append(
        settings,
        EvidenceIn(
            subject="system:credit",
            kind="data-sheet",
            title="Data",
            data=b"a,b\n1,2\n",
            file_name="data.csv",
        ),
        actor,
    )
    assert by_data.media_type == "text/csv" and ev.store_path(settings, by_data.content_sha256)
    assert ev.verify(settings).intact


def test_list_filters_by_subject_and_kind(settings: Settings, actor: Actor) -> None:
    _add(settings, actor, 2, subject="system:credit")
    _add(settings, actor, 1, subject="system:chatbot")
    ev.append(
        settings,
        {"subject": "system:credit", "kind": "decision", "title": "Go", "text": "approved"},
        actor,
    )
    assert [r.seq for r in ev.list_evidence(settings, subject="system:credit")] == [1, 2, 4]
    assert [r.seq for r in ev.list_evidence(settings, kind="vv-report")] == [1, 2, 3]
    only = ev.list_evidence(settings, subject="system:credit", kind="decision")
    assert [(r.seq, r.title) for r in only] == [(4, "Go")]
    assert ev.list_evidence(settings, subject="system:none") == []
    assert len(ev.list_evidence(settings, limit=2)) == 2


def test_append_in_joins_the_callers_transaction(settings: Settings, actor: Actor) -> None:
    data = EvidenceIn(subject="gate:7", kind="decision", title="Go", text="approved")
    with UnitOfWork(settings) as uow:
        ev.append_in(uow, data, actor)  # left without commit: rolled back with the caller
    assert _state(settings)[0] == 0
    with UnitOfWork(settings) as uow:
        out = ev.append_in(uow, data, actor)
        uow.commit()
    assert ev.read_anchor(settings) is None  # the caller has not synced the anchor yet
    assert ev.verify(settings).intact  # anchor behind the database is fine
    anchor = ev.sync_anchor(settings)
    assert anchor is not None and (anchor.count, anchor.head) == (1, out.chain)


# --- idempotency -------------------------------------------------------------------------------


def test_idempotent_repeat_writes_nothing(settings: Settings, actor: Actor) -> None:
    data = EvidenceIn(subject="gate:3", kind="decision", title="Approved", text="yes")
    first = ev.append(settings, data, actor)
    before = _state(settings)
    again = ev.append(settings, data, actor)
    assert again.replayed and not first.replayed
    assert (again.id, again.seq, again.chain) == (first.id, first.seq, first.chain)
    assert _state(settings) == before == (1, 1, 0, 1)
    keyed = data.model_copy(update={"idempotency_key": "flow-run-9:gate-3"})
    one = ev.append(settings, keyed, actor)
    two = ev.append(settings, keyed.model_copy(update={"title": "Approved (retry)"}), actor)
    assert two.replayed and two.id == one.id and _state(settings)[0] == 2


def test_replay_heals_a_missing_anchor(settings: Settings, actor: Actor) -> None:
    data = EvidenceIn(subject="gate:3", kind="decision", title="Approved", text="yes")
    first = ev.append(settings, data, actor)
    settings.evidence_anchor_path.unlink()  # as if the process died between commit and anchor
    assert ev.append(settings, data, actor).replayed
    anchor = ev.read_anchor(settings)
    assert anchor is not None and (anchor.count, anchor.head) == (1, first.chain)


def test_same_key_with_other_content_is_refused(
    settings: Settings, actor: Actor, run_cli: Any
) -> None:
    base = {"subject": "gate:3", "kind": "decision", "title": "t", "idempotency_key": "k-1"}
    ev.append(settings, {**base, "text": "yes"}, actor)
    before = _state(settings)
    with pytest.raises(Conflict) as err:
        ev.append(settings, {**base, "text": "no"}, actor)
    assert err.value.field == "idempotency_key"
    result = run_cli(
        "evidence",
        "add",
        "--subject",
        "gate:3",
        "--kind",
        "decision",
        "--title",
        "t",
        "--text",
        "no",
        "--idempotency-key",
        "k-1",
    )
    assert result.exit_code == 2 and "idempotency_key:" in result.output
    assert _state(settings) == before


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--subject", "system:x", "--kind", "bogus-kind", "--text", "x"], "kind: unknown"),
        (["--subject", "credit scoring", "--kind", "vv-report", "--text", "x"], "subject:"),
        (["--subject", "planet:x", "--kind", "vv-report", "--text", "x"], "unknown subject kind"),
        (["--subject", "system:x", "--kind", "vv-report", "--file", "MISSING"], "no such file"),
        (["--subject", "system:x", "--kind", "vv-report"], "give --text or --file"),
        (["--subject", "system:" + "x" * 200, "--kind", "vv-report", "--text", "x"], "subject:"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    settings: Settings, actor: Actor, run_cli: Any, tmp_path: Path, args: list[str], expected: str
) -> None:
    _add(settings, actor, 1)
    before = _state(settings)
    args = [str(tmp_path / "missing.pdf") if a == "MISSING" else a for a in args]
    result = run_cli("evidence", "add", "--title", "t", *args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output  # one line, no traceback
    assert _state(settings) == before


def test_service_rejects_bad_input_naming_the_field(settings: Settings, actor: Actor) -> None:
    good = {"subject": "system:x", "kind": "vv-report", "title": "t", "text": "x"}
    for change, field in [
        ({"kind": "nope"}, "kind"),
        ({"subject": "x"}, "subject"),
        ({"title": "  "}, "title"),
        ({"text": "a\x00b"}, "text"),
    ]:
        with pytest.raises(InvalidInput) as err:
            ev.append(settings, {**good, **change}, actor)
        assert err.value.field == field, err.value
    with pytest.raises(InvalidInput) as err:
        ev.append(settings, {**good, "kind": "nope"}, actor)
    assert "impact-assessment" in str(err.value)  # lists valid kinds
    assert "system" in SUBJECT_KINDS and "impact-assessment" in SUBJECT_KINDS
    assert _state(settings) == (0, 0, 0, 0)


def test_no_key_is_a_clear_error(settings: Settings, actor: Actor, tmp_path: Path) -> None:
    keyless = Settings(data_dir=tmp_path / "nokey", database_url=settings.effective_database_url)
    data = EvidenceIn(subject="system:x", kind="other", title="t", text="x")
    for call in (lambda: ev.append(keyless, data, actor), lambda: ev.verify(keyless)):
        with pytest.raises(AimsError) as err:
            call()
        assert "aims init" in str(err.value) and "AIMS_EVIDENCE_KEY" in str(err.value)
    assert _state(settings)[0] == 0


# --- tampering: each must be caught, naming the first bad record ---------------------------------


def test_edited_content_is_caught(settings: Settings, actor: Actor) -> None:
    _add(settings, actor, 6)
    _sql(settings, "UPDATE evidence SET content = 'run 4 passed' WHERE seq = 4")
    report = _broken(settings, 4, "record 4 (seq 4): content edited (hash mismatch)")
    assert report.first_bad_id == 4 and report.count == 3


def test_edited_title_is_caught(settings: Settings, actor: Actor) -> None:
    _add(settings, actor, 6)
    _sql(settings, "UPDATE evidence SET title = 'Approved by CEO' WHERE seq = 3")
    _broken(settings, 3, "chain broken at seq 3", "recomputed HMAC differs")


def test_deleted_record_in_the_middle_is_caught(settings: Settings, actor: Actor) -> None:
    _add(settings, actor, 8)
    _sql(settings, "DELETE FROM evidence WHERE seq = 5")
    report = _broken(settings, 5, "record missing at seq 5")
    assert report.count == 4


def test_deleted_tail_with_rewound_head_is_caught_by_the_anchor(
    settings: Settings, actor: Actor
) -> None:
    _add(settings, actor, 12)
    chains = _chains(settings)
    _sql(settings, "DELETE FROM evidence WHERE seq > 10")
    _sql(settings, "UPDATE evidence_head SET count = 10, head = :h WHERE id = 1", h=chains[10])
    report = _broken(
        settings,
        11,
        "2 records missing at the end: the anchor outside the database says 12, the database "
        "has 10",
    )
    assert report.count == 10 and report.head_count == 10


def test_deleted_tail_without_rewinding_the_head_is_caught(
    settings: Settings, actor: Actor
) -> None:
    _add(settings, actor, 5)
    settings.evidence_anchor_path.unlink()  # even with no anchor, the head row disagrees
    _sql(settings, "DELETE FROM evidence WHERE seq = 5")
    _broken(settings, 5, "1 record missing at the end: the head row says 5, the database has 4")


@pytest.mark.parametrize("how", ["seq", "fields"])
def test_swapped_records_are_caught(settings: Settings, actor: Actor, how: str) -> None:
    _add(settings, actor, 6)
    if how == "seq":
        _sql(settings, "UPDATE evidence SET seq = -3 WHERE seq = 3")
        _sql(settings, "UPDATE evidence SET seq = 3 WHERE seq = 4")
        _sql(settings, "UPDATE evidence SET seq = 4 WHERE seq = -3")
        _broken(settings, 3, "chain broken at seq 3 (record 4 (seq 3))", "does not link")
    else:
        with get_engine(settings.effective_database_url).begin() as conn:
            cols = (Evidence.title, Evidence.content, Evidence.content_sha256, Evidence.size)
            a, b = (conn.execute(select(*cols).where(Evidence.seq == s)).one() for s in (3, 4))
            for seq, row in ((3, b), (4, a)):
                conn.execute(
                    update(Evidence)
                    .where(Evidence.seq == seq)
                    .values(
                        title=row.title,
                        content=row.content,
                        content_sha256=row.content_sha256,
                        size=row.size,
                    )
                )
        _broken(settings, 3, "chain broken at seq 3", "recomputed HMAC differs")


@pytest.mark.parametrize("attacker", ["plain-sha256", "guessed-key"])
def test_edit_rehashed_without_the_key_is_caught(
    settings: Settings, actor: Actor, attacker: str
) -> None:
    """The attacker edits seq 4, fixes its content hash, recomputes every later chain value and
    the head row, but without the key: the HMAC check fails at the edited record."""
    _add(settings, actor, 7)

    def forge(prev: str, fields: dict[str, Any]) -> str:
        if attacker == "plain-sha256":
            return hashlib.sha256(prev.encode() + ev.canonical_bytes(fields)).hexdigest()
        return ev.chain_value(b"aims-evidence-key", prev, fields)

    forged = "run 4 passed all fairness thresholds"
    with get_engine(settings.effective_database_url).begin() as conn:
        rows = conn.execute(select(Evidence).order_by(Evidence.seq)).mappings().all()
        prev = rows[2]["chain"]
        for row in rows[3:]:
            fields = dict(row)
            if row["seq"] == 4:
                fields["content"] = forged
                fields["content_sha256"] = hashlib.sha256(forged.encode()).hexdigest()
                fields["size"] = len(forged.encode())
            chain = forge(prev, fields)
            conn.execute(
                update(Evidence)
                .where(Evidence.id == row["id"])
                .values(
                    content=fields["content"],
                    content_sha256=fields["content_sha256"],
                    size=fields["size"],
                    prev_chain=prev,
                    chain=chain,
                )
            )
            prev = chain
        conn.execute(update(EvidenceHead).where(EvidenceHead.id == 1).values(count=7, head=prev))
    report = _broken(
        settings,
        4,
        "chain broken at seq 4 (record 4 (seq 4))",
        "recomputed HMAC differs (edited, reordered, or re-hashed without the key)",
    )
    assert report.first_bad_id == 4


def test_append_refuses_to_overwrite_when_the_head_row_was_rewound(
    settings: Settings, actor: Actor
) -> None:
    out = _add(settings, actor, 3)
    _sql(settings, "UPDATE evidence_head SET count = 2, head = :h WHERE id = 1", h=out[1].chain)
    with pytest.raises(AimsError) as err:
        _add(settings, actor, 1, subject="system:other")
    assert "seq 3" in str(err.value) and "aims evidence verify" in str(err.value)
    assert _state(settings)[:2] == (3, 3)


def test_altered_or_missing_stored_file_is_caught(
    settings: Settings, actor: Actor, tmp_path: Path
) -> None:
    _add(settings, actor, 2)
    src = tmp_path / "card.md"
    src.write_text("# Model card\nAUC 0.81\n")
    out = ev.append(
        settings,
        EvidenceIn(subject="system:credit", kind="model-card", title="Card", file=src),
        actor,
    )
    stored = ev.store_path(settings, out.content_sha256)
    stored.chmod(0o644)
    stored.write_text("# Model card\nAUC 0.97\n")  # same size, different bytes
    _broken(settings, 3, "record 3 (seq 3): stored file altered (hash mismatch)")
    assert ev.verify(settings, hash_files=False).intact  # the quick mode checks size only
    stored.unlink()
    _broken(settings, 3, "record 3 (seq 3): stored file missing")


# --- the anchor --------------------------------------------------------------------------------


def _write_anchor(settings: Settings, count: int, head: str) -> None:
    settings.evidence_anchor_path.write_text(
        json.dumps({"count": count, "head": head, "updated_at": "2026-01-01T00:00:00Z"})
    )


def test_anchor_behind_the_database_is_accepted_and_catches_up(
    settings: Settings, actor: Actor
) -> None:
    out = _add(settings, actor, 5)
    _write_anchor(settings, 3, out[2].chain)  # a crash after commit left the anchor behind
    report = ev.verify(settings)
    assert report.intact and report.anchor_count == 3 and report.count == 5
    anchor = ev.sync_anchor(settings)
    assert anchor is not None and (anchor.count, anchor.head) == (5, out[4].chain)


def test_anchor_never_moves_backwards(settings: Settings, actor: Actor) -> None:
    out = _add(settings, actor, 4)
    assert not ev._advance_anchor(settings, 2, out[1].chain)
    anchor = ev.read_anchor(settings)
    assert anchor is not None and (anchor.count, anchor.head) == (4, out[3].chain)


def test_chain_differing_from_the_anchor_is_caught(settings: Settings, actor: Actor) -> None:
    out = _add(settings, actor, 5)
    _write_anchor(settings, 3, out[1].chain)  # e.g. the database restored from an older backup
    _broken(settings, 3, "record 3 (seq 3) differs from the anchor outside the database")


def test_missing_or_damaged_anchor(settings: Settings, actor: Actor) -> None:
    _add(settings, actor, 2)
    settings.evidence_anchor_path.unlink()
    report = ev.verify(settings)
    assert report.intact and report.anchor_count is None
    assert report.warnings and "deleted tails cannot be detected" in report.warnings[0]
    settings.evidence_anchor_path.write_text("{not json")
    report = ev.verify(settings)
    assert not report.intact and "anchor file" in (report.reason or "")
    assert "damaged" in (report.reason or "")


# --- scale: streamed in batches ----------------------------------------------------------------


def test_verify_streams_in_batches_with_progress(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are inserted in bulk with valid chains, then verified 100 rows per round trip."""
    n = 2500
    key = ev.evidence_key(settings)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    rows, prev = [], ev.GENESIS
    for seq in range(1, n + 1):
        body = f"bulk {seq}".encode()
        fields: dict[str, Any] = {
            "seq": seq,
            "subject": "system:bulk",
            "kind": "other",
            "title": f"bulk {seq}",
            "content_sha256": hashlib.sha256(body).hexdigest(),
            "size": len(body),
            "media_type": "text/plain",
            "file_name": None,
            "actor": "bulk",
            "channel": "test",
            "idempotency_key": f"bulk-{seq}",
            "created_at": created + timedelta(microseconds=seq),
        }
        chain = ev.chain_value(key, prev, fields)
        rows.append({**fields, "content": body.decode(), "prev_chain": prev, "chain": chain})
        prev = chain
    with UnitOfWork(settings) as uow:
        uow.session.execute(insert(Evidence), rows)
        uow.session.execute(update(EvidenceHead).values(count=n, head=prev))
        uow.commit()
    ev.sync_anchor(settings)
    monkeypatch.setattr(ev, "VERIFY_BATCH", 100)
    seen: list[tuple[int, int]] = []
    report = ev.verify(settings, progress=lambda done, total: seen.append((done, total)))
    assert report.intact and report.count == n, report
    assert len(seen) == n // 100 + 1 and seen[0] == (100, n) and seen[-1] == (n, n)


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_add_list_verify(settings: Settings, run_cli: Any, tmp_path: Path) -> None:
    result = run_cli(
        "evidence",
        "add",
        "--subject",
        "system:credit",
        "--kind",
        "vv-report",
        "--title",
        "V&V",
        "--text",
        "all tests passed",
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("evidence 1 (seq 1) appended: sha256 ")
    plan = tmp_path / "plan.txt"
    plan.write_text("deploy on Monday")
    result = run_cli(
        "evidence",
        "add",
        "--subject",
        "system:credit",
        "--kind",
        "deployment-plan",
        "--title",
        "Plan",
        "--file",
        str(plan),
        "--json",
    )
    assert result.exit_code == 0, result.output
    added = json.loads(result.output)
    assert (added["seq"], added["file_name"], added["channel"]) == (2, "plan.txt", "cli")
    again = run_cli(
        "evidence",
        "add",
        "--subject",
        "system:credit",
        "--kind",
        "vv-report",
        "--title",
        "V&V",
        "--text",
        "all tests passed",
    )
    assert again.exit_code == 0 and "evidence 1 (seq 1) already recorded" in again.output

    listed = run_cli("evidence", "list", "--subject", "system:credit", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["kind"] for r in json.loads(listed.output)] == ["vv-report", "deployment-plan"]
    table = run_cli("evidence", "list", "--kind", "deployment-plan")
    assert table.exit_code == 0 and "plan.txt" in table.output and "V&V" not in table.output

    ok = run_cli("evidence", "verify")
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip() == "evidence chain intact: 2 records"

    _sql(settings, "UPDATE evidence SET content = 'some tests passed' WHERE seq = 1")
    bad = run_cli("evidence", "verify")
    assert bad.exit_code == 1, bad.output
    assert "record 1 (seq 1): content edited (hash mismatch)" in bad.output
    as_json = run_cli("evidence", "verify", "--json")
    assert as_json.exit_code == 1
    doc = json.loads(as_json.output)
    assert (doc["intact"], doc["first_bad_seq"], doc["count"]) == (False, 1, 0)


def test_cli_store_has_no_leftovers_after_a_failed_append(
    settings: Settings, run_cli: Any, tmp_path: Path
) -> None:
    """A file is stored before the transaction; a refused append leaves only that orphan."""
    doc = tmp_path / "doc.txt"
    doc.write_text("x")
    result = run_cli(
        "evidence",
        "add",
        "--subject",
        "system:x",
        "--kind",
        "other",
        "--title",
        "t",
        "--file",
        str(doc),
        "--idempotency-key",
        "k",
    )
    assert result.exit_code == 0
    doc.write_text("y")
    result = run_cli(
        "evidence",
        "add",
        "--subject",
        "system:x",
        "--kind",
        "other",
        "--title",
        "t",
        "--file",
        str(doc),
        "--idempotency-key",
        "k",
    )
    assert result.exit_code == 2 and "idempotency_key" in result.output
    files = sorted(p.name for p in settings.evidence_store_dir.rglob("*") if p.is_file())
    assert files == sorted(hashlib.sha256(b).hexdigest() for b in (b"x", b"y"))
    assert _state(settings)[0] == 1
    assert all(
        os.stat(settings.evidence_store_dir / f[:2] / f).st_mode & 0o222 == 0 for f in files
    )  # stored read-only
