"""Boundary models of the evidence service: what callers send in and get back.

Kept apart from the service so flows, the CLI and the UI can import them without the service's
database code. The subject kinds live here, once: a subject is written `KIND:ID`.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    field_validator,
    model_validator,
)

from aims_core import catalog

#: What evidence can be about: the `KIND` of a `KIND:ID` subject.
SUBJECT_KINDS: Final[tuple[str, ...]] = (
    "system",
    "gate",
    "incident",
    "capa",
    "audit",
    "finding",
    "review",
    "policy",
    "risk",
    "impact-assessment",
    "approval",
    "person",
    "vendor",
    "training",
    "org",
    "soa",
    "plan",
    "gap",
)
SUBJECT_RE: Final = re.compile(r"^[a-z][a-z-]*:[^\s]+$")
SUBJECT_MAX: Final = 200  # Evidence.subject is VARCHAR(200)
TEXT_MAX_BYTES: Final = 1 << 20  # larger content belongs in a file, not in a database row
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def check_subject(value: str) -> str:
    """`KIND:ID` with a known kind; raises ValueError with a message a user can act on."""
    value = value.strip()
    if len(value) > SUBJECT_MAX:
        raise ValueError(f"at most {SUBJECT_MAX} characters")
    if not SUBJECT_RE.match(value):
        raise ValueError(
            f"{value!r} is not KIND:ID (lower-case kind, a colon, an id without spaces), "
            "e.g. system:credit-scoring or gate:42"
        )
    kind = value.split(":", 1)[0]
    if kind not in SUBJECT_KINDS:
        raise ValueError(f"unknown subject kind {kind!r}; use one of: {', '.join(SUBJECT_KINDS)}")
    return value


def check_evidence_kind(value: str) -> str:
    value = value.strip()
    kinds = catalog.evidence_kinds()
    if value not in kinds:
        few = ", ".join(list(kinds)[:8])
        raise ValueError(f"unknown evidence kind {value!r}; valid kinds include {few}, ...")
    return value


class EvidenceIn(BaseModel):
    """One piece of evidence to append. Exactly one content source: `text`, `file` or `data`.

    `text` is stored inline in the database; `file` and `data` go to the content-addressed file
    store. Without `idempotency_key` one is derived from subject, kind and content hash, so a
    retried step that produces the same content never writes twice.
    """

    model_config = ConfigDict(extra="forbid")

    subject: Annotated[str, AfterValidator(check_subject)] = Field(
        description="KIND:ID, e.g. system:credit-scoring"
    )
    kind: Annotated[str, AfterValidator(check_evidence_kind)] = Field(
        description="An evidence kind from the catalog (evidence_kinds.yaml)."
    )
    title: str = Field(min_length=1, max_length=300)
    text: str | None = Field(default=None, min_length=1)
    file: Path | None = None
    data: bytes | None = None
    file_name: str | None = Field(default=None, min_length=1, max_length=300)
    media_type: str | None = Field(
        default=None, max_length=120, pattern=r"^[\w.+-]+/[\w.+-]+(\s*;.*)?$"
    )
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("text")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        # PostgreSQL text cannot hold NUL; binary content belongs in a file anyway.
        if value is not None:
            if "\x00" in value:
                raise ValueError("contains a NUL character: attach binary content as a file")
            if len(value.encode("utf-8")) > TEXT_MAX_BYTES:
                raise ValueError(f"longer than {TEXT_MAX_BYTES} bytes: attach it as a file")
        return value

    @field_validator("file_name", "idempotency_key")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and (_CONTROL_CHARS.search(value) or value != value.strip()):
            raise ValueError("no control characters or surrounding spaces allowed")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [n for n in ("text", "file", "data") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one content source: text, file or data")
        if self.data is not None and self.file_name is None:
            raise ValueError("file_name is required with data")
        return self


class EvidenceOut(BaseModel):
    """A stored evidence record (inline text itself is not repeated here)."""

    id: int
    seq: int
    subject: str
    kind: str
    title: str
    file_name: str | None
    media_type: str
    content_sha256: str
    size: int
    actor: str
    channel: str
    idempotency_key: str
    created_at: datetime
    prev_chain: str
    chain: str
    replayed: bool = Field(
        default=False,
        description="True when this call found the record already there (same idempotency key "
        "and content) and wrote nothing.",
    )


class Anchor(BaseModel):
    """The chain head as last written outside the database."""

    count: int = Field(ge=0)
    head: str = Field(pattern=r"^[0-9a-f]{64}$")
    updated_at: datetime


class VerifyReport(BaseModel):
    """Outcome of `verify`: intact, or the first bad record and why, in plain words."""

    intact: bool
    count: int = Field(description="Records checked and found intact, from seq 1.")
    head_count: int | None = Field(description="What the head row in the database says.")
    anchor_count: int | None = Field(description="What the anchor file says (None: no anchor).")
    anchor_path: str
    first_bad_seq: int | None = None
    first_bad_id: int | None = None
    reason: str | None = None
    warnings: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> str:
        if self.intact:
            return f"evidence chain intact: {self.count} records"
        return f"evidence chain broken: {self.reason}"
