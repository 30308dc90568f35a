"""Append-only, tamper-evident evidence: a keyed hash chain, anchored outside the database.

Anyone who can write the database can recompute a plain hash chain and cut its tail. So each
record's `chain` is HMAC-SHA256 under a key kept outside the database (AIMS_EVIDENCE_KEY or the key
file in the data dir), and after every append the head (count + chain value) is written to an
anchor file outside the database: `verify` then catches edits, re-hashed edits, removed or
reordered records, and deleted tails even when the head row was rewound to match.

Files are stored by content hash under the data dir, before the database transaction: an orphan
file after a failed transaction is harmless, a record without its file is not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import io
import json
import logging
import mimetypes
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from pydantic import ValidationError
from sqlalchemy import DateTime, Row, bindparam, func, insert, select, type_coerce, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aims_core import fault_points
from aims_core.db import get_engine, is_sqlite
from aims_core.errors import AimsError, Conflict, InvalidInput
from aims_core.evidence_schemas import (
    SUBJECT_KINDS,
    Anchor,
    EvidenceIn,
    EvidenceOut,
    VerifyReport,
)
from aims_core.models import Evidence, EvidenceHead
from aims_core.services.inputs import validated
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

__all__ = [
    "GENESIS",
    "SUBJECT_KINDS",
    "Anchor",
    "EvidenceIn",
    "EvidenceOut",
    "VerifyReport",
    "append",
    "append_in",
    "canonical_bytes",
    "chain_value",
    "count_evidence",
    "evidence_key",
    "list_evidence",
    "read_anchor",
    "store_path",
    "sync_anchor",
    "verify",
]

log = logging.getLogger(__name__)

GENESIS: Final = "0" * 64
HEAD_ID: Final = 1
VERIFY_BATCH: Final = 1000  # rows per round trip while streaming; memory stays flat
MAX_FILE_SIZE: Final = 2**31 - 1  # Evidence.size is a 32-bit INTEGER on PostgreSQL
TEXT_MEDIA_TYPE: Final = "text/plain"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20

#: The record fields the chain covers, in the order `verify` selects them.
CHAINED_FIELDS: Final = (
    "seq",
    "subject",
    "kind",
    "title",
    "content_sha256",
    "size",
    "media_type",
    "file_name",
    "actor",
    "channel",
    "idempotency_key",
    "created_at",
)

Progress = Callable[[int, int], None]


# --- the chain -------------------------------------------------------------------------------


def evidence_key(settings: Settings) -> bytes:
    """The HMAC key; without it nothing can be appended or verified."""
    key = settings.evidence_key_bytes()
    if not key:
        raise AimsError(
            "no evidence key configured: run `aims init` (it creates one in the data dir "
            f"{settings.data_dir}) or set AIMS_EVIDENCE_KEY",
            field="evidence_key",
        )
    return key


def utc_iso(value: datetime) -> str:
    """One spelling for both backends: SQLite returns naive UTC, PostgreSQL aware datetimes.

    `YYYY-MM-DDTHH:MM:SS.ffffffZ`. isoformat() spells it ~4x faster than strftime (verify calls
    this once per record); strftime stays for years below 1000, which it does not zero-pad.
    """
    utc = value if value.tzinfo is None else value.astimezone(UTC)  # naive is UTC (as_utc)
    if utc.year < 1000:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = utc.isoformat(timespec="microseconds")
    return (text if utc.tzinfo is None else text[:-6]) + "Z"  # without the "+00:00"


# json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False), without building
# a new encoder per call: the same bytes.
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical_doc(doc: dict[str, Any]) -> bytes:
    if isinstance(doc["created_at"], datetime):
        doc["created_at"] = utc_iso(doc["created_at"])
    return _CANONICAL.encode(doc).encode()


def canonical_bytes(fields: Mapping[str, Any]) -> bytes:
    """The chained fields as compact, key-sorted JSON: the exact bytes the HMAC covers."""
    return _canonical_doc({name: fields[name] for name in CHAINED_FIELDS})


def _mac(key: bytes, prev_chain: str, canonical: bytes) -> str:
    # One-shot HMAC over the concatenation: the same value as new(prev) + update(canonical).
    return hmac.digest(key, str(prev_chain).encode() + canonical, "sha256").hex()


def chain_value(key: bytes, prev_chain: str, fields: Mapping[str, Any]) -> str:
    """HMAC-SHA256(key, prev_chain || canonical record); prev_chain is fixed-length hex."""
    return _mac(key, prev_chain, canonical_bytes(fields))


# --- the file store --------------------------------------------------------------------------


def store_path(settings: Settings, sha256: str) -> Path:
    """Where content with this SHA-256 lives: `<store>/ab/abcdef...`."""
    return settings.evidence_store_dir / sha256[:2] / sha256


@dataclass(frozen=True)
class _Content:
    sha256: str
    size: int
    media_type: str
    file_name: str | None
    text: str | None


def _store_stream(settings: Settings, source: IO[bytes]) -> tuple[str, int]:
    """Copy into the store while hashing: temp file, fsync, rename. Returns (sha256, size)."""
    store = settings.evidence_store_dir
    store.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=store, prefix=".incoming-")
    tmp = Path(tmp_name)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_CHUNK):
                size += len(chunk)
                if size > MAX_FILE_SIZE:
                    raise InvalidInput(f"larger than {MAX_FILE_SIZE} bytes", field="file")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        target = store_path(settings, sha)
        if target.is_file() and target.stat().st_size == size:
            tmp.unlink()  # already stored (content-addressed): nothing to write
        else:
            target.parent.mkdir(exist_ok=True)
            tmp.chmod(0o444)
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        return sha, size
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _guess_media_type(file_name: str | None) -> str:
    guessed = mimetypes.guess_type(file_name)[0] if file_name else None
    return guessed or "application/octet-stream"


def _prepare_content(settings: Settings, data: EvidenceIn) -> _Content:
    """Hash the content and, for files, store it; runs before any database transaction."""
    if data.text is not None:
        raw = data.text.encode("utf-8")
        return _Content(
            sha256=hashlib.sha256(raw).hexdigest(),
            size=len(raw),
            media_type=data.media_type or TEXT_MEDIA_TYPE,
            file_name=data.file_name,
            text=data.text,
        )
    if data.data is not None:
        sha, size = _store_stream(settings, io.BytesIO(data.data))
        name = data.file_name
    else:
        assert data.file is not None  # EvidenceIn guarantees exactly one source
        path = data.file.expanduser()
        name = data.file_name or path.name
        if len(name) > 300:
            raise InvalidInput("file name longer than 300 characters", field="file")
        try:
            with path.open("rb") as fh:
                sha, size = _store_stream(settings, fh)
        except FileNotFoundError:
            raise InvalidInput(f"no such file: {path}", field="file") from None
        except IsADirectoryError:
            raise InvalidInput(f"not a file: {path}", field="file") from None
        except PermissionError:
            raise InvalidInput(f"cannot read {path}: permission denied", field="file") from None
    return _Content(
        sha256=sha,
        size=size,
        media_type=data.media_type or _guess_media_type(name),
        file_name=name,
        text=None,
    )


# --- append ----------------------------------------------------------------------------------


def _out(row: Evidence | Row[Any], *, replayed: bool = False) -> EvidenceOut:
    created = row.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return EvidenceOut(
        id=row.id,
        seq=row.seq,
        subject=row.subject,
        kind=row.kind,
        title=row.title,
        file_name=row.file_name,
        media_type=row.media_type,
        content_sha256=row.content_sha256,
        size=row.size,
        actor=row.actor,
        channel=row.channel,
        idempotency_key=row.idempotency_key,
        created_at=created.astimezone(UTC),
        prev_chain=row.prev_chain,
        chain=row.chain,
        replayed=replayed,
    )


# Statements built once: an append runs four of them, and building them per call cost more than
# running them on SQLite. Core on the session's connection (same transaction), no ORM flushes.
_LOCK_HEAD: Final = (
    update(EvidenceHead)
    .where(EvidenceHead.id == HEAD_ID)
    .values(count=EvidenceHead.count)
    .returning(EvidenceHead.count, EvidenceHead.head)
)
_MOVE_HEAD: Final = (
    update(EvidenceHead)
    .where(EvidenceHead.id == HEAD_ID)
    .values(count=bindparam("new_count"), head=bindparam("new_head"))
)
_OUT_COLUMNS: Final = tuple(
    getattr(Evidence, name) for name in ("id", *EvidenceOut.model_fields) if name != "replayed"
)
_BY_IDEMPOTENCY_KEY: Final = select(*_OUT_COLUMNS).where(
    Evidence.idempotency_key == bindparam("idem")
)
_INSERT: Final = insert(Evidence).returning(Evidence.id)


def _lock_head(session: Session) -> tuple[int, str]:
    """Take the head row lock and read it in one statement (UPDATE ... RETURNING): concurrent
    appenders queue here, never fork."""
    head = session.connection().execute(_LOCK_HEAD).one_or_none()
    if head is None:
        raise AimsError(
            "the evidence head row is missing: is the database initialised? Run `aims init`."
        )
    return head.count, head.head


def _append_locked(
    uow: UnitOfWork, data: EvidenceIn, content: _Content, actor: Actor, key: bytes
) -> EvidenceOut:
    session = uow.session
    conn = session.connection()
    count, head = _lock_head(session)
    idem = (
        data.idempotency_key
        or hashlib.sha256(f"{data.subject}|{data.kind}|{content.sha256}".encode()).hexdigest()
    )
    existing = conn.execute(_BY_IDEMPOTENCY_KEY, {"idem": idem}).one_or_none()
    if existing is not None:
        same = (existing.subject, existing.kind, existing.content_sha256) == (
            data.subject,
            data.kind,
            content.sha256,
        )
        if not same:
            raise Conflict(
                f"{idem!r} already names evidence {existing.id} (seq {existing.seq}) with a "
                "different subject, kind or content",
                field="idempotency_key",
            )
        return _out(existing, replayed=True)

    fields: dict[str, Any] = {
        "seq": count + 1,
        "subject": data.subject,
        "kind": data.kind,
        "title": data.title,
        "content_sha256": content.sha256,
        "size": content.size,
        "media_type": content.media_type,
        "file_name": content.file_name,
        "actor": actor.who,
        "channel": actor.channel,
        "idempotency_key": idem,
        "created_at": datetime.now(UTC),  # microseconds: what both backends keep exactly
    }
    chain = chain_value(key, head, fields)
    try:
        new_id = conn.execute(
            _INSERT, {**fields, "content": content.text, "prev_chain": head, "chain": chain}
        ).scalar_one()
    except IntegrityError:
        raise AimsError(
            f"cannot append at seq {fields['seq']}: it is already taken, so the evidence head "
            "row disagrees with the records (tampering?); run `aims evidence verify`"
        ) from None
    conn.execute(_MOVE_HEAD, {"new_count": fields["seq"], "new_head": chain})
    uow.audit(
        actor,
        "evidence.appended",
        data.subject,
        evidence_id=new_id,
        seq=fields["seq"],
        kind=data.kind,
        content_sha256=content.sha256,
        idempotency_key=idem,
    )
    session.flush()
    if fault_points.ARMED:  # test-only (aims_core/fault_points.py); never set outside the suite
        fault_points.reached("evidence-before-commit")
    return EvidenceOut(id=new_id, **fields, prev_chain=head, chain=chain)


def append(
    target: Settings | UnitOfWork, data: EvidenceIn | Mapping[str, Any], actor: Actor
) -> EvidenceOut:
    """Append one record in its own transaction, then move the anchor forward.

    `target` is Settings or an unopened UnitOfWork (like the other services). A repeat with the
    same idempotency key and content returns the existing record (`replayed=True`) and writes
    nothing; the same key with other content raises Conflict.
    """
    data = validated(EvidenceIn, data)
    uow = target if isinstance(target, UnitOfWork) else UnitOfWork(target)
    settings = uow.settings
    key = evidence_key(settings)
    content = _prepare_content(settings, data)
    with uow:
        out = _append_locked(uow, data, content, actor, key)
        if not out.replayed:
            uow.commit()
    if fault_points.ARMED:  # test-only, as above
        fault_points.reached("evidence-before-anchor")
    # A replay re-anchors too: it heals a crash between an earlier commit and its anchor write.
    _advance_anchor(settings, out.seq, out.chain)
    return out


def append_in(uow: UnitOfWork, data: EvidenceIn | Mapping[str, Any], actor: Actor) -> EvidenceOut:
    """Append inside the caller's open, writing unit of work, atomically with its other writes.

    Does not commit. After committing, the caller calls `sync_anchor(uow.settings)`; until then
    the anchor lags the database, which `verify` accepts.
    """
    data = validated(EvidenceIn, data)
    key = evidence_key(uow.settings)
    content = _prepare_content(uow.settings, data)
    return _append_locked(uow, data, content, actor, key)


# --- the anchor outside the database ---------------------------------------------------------


class AnchorUnreadable(AimsError):
    pass


def read_anchor(settings: Settings) -> Anchor | None:
    """The anchor file, or None if none was written yet; AnchorUnreadable if it is damaged."""
    path = settings.evidence_anchor_path
    try:
        raw = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    try:
        return Anchor.model_validate_json(raw)
    except ValidationError as exc:
        raise AnchorUnreadable(
            f"the anchor file {path} is damaged: {exc.errors()[0]['msg']}"
        ) from None


@contextlib.contextmanager
def _anchor_lock(settings: Settings) -> Iterator[None]:
    path = settings.evidence_anchor_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _advance_anchor(settings: Settings, count: int, head: str) -> bool:
    """Write (count, head) if it is ahead of the anchor; never moves it back. True if written."""
    path = settings.evidence_anchor_path
    try:
        with _anchor_lock(settings):
            try:
                current = read_anchor(settings)
            except AnchorUnreadable as exc:
                # Keep a damaged anchor as it is: it may be evidence itself; verify reports it.
                log.warning("%s; not overwritten", exc)
                return False
            if current is not None and current.count >= count:
                return False
            doc = Anchor(count=count, head=head, updated_at=datetime.now(UTC))
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".anchor-")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(doc.model_dump_json() + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
            _fsync_dir(path.parent)
            return True
    except OSError as exc:
        raise AimsError(
            f"evidence seq {count} is committed, but the anchor {path} could not be written "
            f"({exc}); fix that and repeat the command (the repeat writes no second record)"
        ) from exc


def sync_anchor(settings: Settings) -> Anchor | None:
    """Move the anchor up to the committed head row (after `append_in` + commit); the anchor."""
    with UnitOfWork(settings, write=False) as uow:
        row = uow.session.execute(
            select(EvidenceHead.count, EvidenceHead.head).where(EvidenceHead.id == HEAD_ID)
        ).one_or_none()
    if row is not None and row.count > 0:
        _advance_anchor(settings, row.count, row.head)
    return read_anchor(settings)


# --- read ------------------------------------------------------------------------------------


def list_evidence(
    settings: Settings,
    *,
    subject: str | None = None,
    kind: str | None = None,
    limit: int | None = None,
) -> list[EvidenceOut]:
    """Records for a subject and/or kind, oldest first."""
    stmt = select(Evidence).order_by(Evidence.seq)
    if subject is not None:
        stmt = stmt.where(Evidence.subject == subject.strip())
    if kind is not None:
        stmt = stmt.where(Evidence.kind == kind.strip())
    if limit is not None:
        stmt = stmt.limit(limit)
    with UnitOfWork(settings, write=False) as uow:
        return [_out(row) for row in uow.session.scalars(stmt)]


def count_evidence(settings: Settings) -> int:
    with UnitOfWork(settings, write=False) as uow:
        return uow.session.scalar(select(func.count()).select_from(Evidence)) or 0


# --- verify ----------------------------------------------------------------------------------


def _records(n: int) -> str:
    return f"{n} record{'s' if n != 1 else ''}"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _content_problem(settings: Settings, row: Row[Any], hash_files: bool) -> str | None:
    """Why the content does not match its recorded hash and size, or None."""
    if row.content is not None:
        raw = str(row.content).encode("utf-8")
        if hashlib.sha256(raw).hexdigest() != row.content_sha256:
            return "content edited (hash mismatch)"
        if len(raw) != row.size:
            return f"size edited (content is {len(raw)} bytes, the record says {row.size})"
        return None
    sha = str(row.content_sha256)
    if not _HEX64.match(sha):
        return "content hash edited (not a SHA-256)"
    path = store_path(settings, sha)
    if not path.is_file():
        return f"stored file missing ({path})"
    if path.stat().st_size != row.size:
        return "stored file altered (size differs)"
    if hash_files and _file_sha256(path) != sha:
        return "stored file altered (hash mismatch)"
    return None


_COLUMNS = (
    Evidence.id,
    Evidence.content,
    Evidence.prev_chain,
    Evidence.chain,
    *(
        # created_at without UTCDateTime's per-row as_utc: utc_iso normalises it anyway.
        type_coerce(Evidence.created_at, DateTime(timezone=True)).label(name)
        if name == "created_at"
        else getattr(Evidence, name)
        for name in CHAINED_FIELDS
    ),
)
# Positions in a `_COLUMNS` row: verify reads them by index (faster than by name, per record).
_CONTENT, _PREV, _CHAIN, _FIELDS = 1, 2, 3, 4
_SEQ, _SHA, _SIZE = 4, 4 + CHAINED_FIELDS.index("content_sha256"), 4 + CHAINED_FIELDS.index("size")


def _label(row: Row[Any]) -> str:
    return f"record {row.id} (seq {row.seq})"


def _text_intact(row: Row[Any]) -> bool:
    """Inline text whose hash and size match the record (the fast path of `_content_problem`)."""
    content = row[_CONTENT]
    if content is None:
        return False
    raw = str(content).encode("utf-8")
    return len(raw) == row[_SIZE] and hashlib.sha256(raw).hexdigest() == row[_SHA]


def verify(
    settings: Settings, *, hash_files: bool = True, progress: Progress | None = None
) -> VerifyReport:
    """Walk the chain from seq 1 and report it intact or name the first bad record.

    Streams rows (constant memory for millions of records) inside one consistent snapshot. The
    anchor is read first: it is only ever written after a commit, so a snapshot taken after it
    can be ahead of it (accepted) but never legitimately behind it.
    """
    key = evidence_key(settings)
    anchor_path = str(settings.evidence_anchor_path)
    warnings: list[str] = []
    try:
        anchor = read_anchor(settings)
    except AnchorUnreadable as exc:
        return VerifyReport(
            intact=False,
            count=0,
            head_count=None,
            anchor_count=None,
            anchor_path=anchor_path,
            reason=str(exc),
        )
    if anchor is None:
        warnings.append(f"no anchor file at {anchor_path}: deleted tails cannot be detected")

    count = 0
    prev = GENESIS
    head_count: int | None = None

    def report(reason: str | None, seq: int | None = None, rid: int | None = None) -> VerifyReport:
        return VerifyReport(
            intact=reason is None,
            count=count,
            head_count=head_count,
            anchor_count=anchor.count if anchor else None,
            anchor_path=anchor_path,
            first_bad_seq=seq,
            first_bad_id=rid,
            reason=reason,
            warnings=warnings,
        )

    url = settings.effective_database_url
    options: dict[str, Any] = {} if is_sqlite(url) else {"isolation_level": "REPEATABLE READ"}
    # One snapshot for the head row and every record (SQLite: a read transaction already is one).
    with get_engine(url).connect().execution_options(**options) as conn, conn.begin():
        head = conn.execute(
            select(EvidenceHead.count, EvidenceHead.head).where(EvidenceHead.id == HEAD_ID)
        ).one_or_none()
        if head is None:
            return report("the evidence head row is missing from the database")
        head_count = head.count
        rows = conn.execute(
            select(*_COLUMNS).order_by(Evidence.seq).execution_options(yield_per=VERIFY_BATCH)
        )
        try:
            for row in rows:
                expected = count + 1
                if row[_SEQ] != expected:
                    label = _label(row)
                    if isinstance(row.seq, int) and row.seq > expected:
                        gap = row.seq - expected
                        where = f"seq {expected}" if gap == 1 else f"seq {expected}-{row.seq - 1}"
                        lost = "record missing" if gap == 1 else f"{gap} records missing"
                        return report(f"{lost} at {where}", expected)
                    return report(
                        f"{label}: out of place, expected seq {expected} (renumbered)",
                        expected,
                        row.id,
                    )
                if not _text_intact(row):  # the common case first; else say what is wrong
                    problem = _content_problem(settings, row, hash_files)
                    if problem:
                        return report(f"{_label(row)}: {problem}", row.seq, row.id)
                if row[_PREV] != prev:
                    return report(
                        f"chain broken at seq {row.seq} ({_label(row)}): it does not link to the "
                        "record before it (records removed, inserted or reordered)",
                        row.seq,
                        row.id,
                    )
                canonical = _canonical_doc(dict(zip(CHAINED_FIELDS, row[_FIELDS:], strict=True)))
                if not hmac.compare_digest(_mac(key, prev, canonical), str(row[_CHAIN])):
                    return report(
                        f"chain broken at seq {row.seq} ({_label(row)}): recomputed HMAC differs "
                        "(edited, reordered, or re-hashed without the key)",
                        row.seq,
                        row.id,
                    )
                if anchor is not None and row.seq == anchor.count and row.chain != anchor.head:
                    return report(
                        f"{_label(row)} differs from the anchor outside the database (rewritten "
                        "with the key, or the database was restored from an older backup)",
                        row.seq,
                        row.id,
                    )
                prev = row[_CHAIN]
                count = expected
                if progress is not None and count % VERIFY_BATCH == 0:
                    progress(count, max(head_count, count))
        except (ValueError, TypeError) as exc:  # a value edited into something unreadable
            return report(f"record after seq {count} is unreadable ({exc})", count + 1)

    if progress is not None:
        progress(count, max(head_count, count))
    if anchor is not None:
        if anchor.count > count:
            lost = anchor.count - count
            return report(
                f"{_records(lost)} missing at the end: the anchor outside the database says "
                f"{anchor.count}, the database has {count}",
                count + 1,
            )
        if anchor.count == 0 and anchor.head != GENESIS:
            return report("the anchor outside the database is inconsistent (count 0, head set)")
    if head.count != count or head.head != prev:
        if head.count > count:
            return report(
                f"{_records(head.count - count)} missing at the end: the head row says "
                f"{head.count}, the database has {count}",
                count + 1,
            )
        return report(
            f"the head row (count {head.count}) does not match the last record (seq {count}): "
            "head row edited or rewound",
            count,
        )
    return report(None)
