"""Personal approval codes for the Prefect UI's resume form.

Prefect OSS has no users: whoever opens the resume form can type any approver's name. A decision
made there counts only with that approver's personal code for that request. The code is derived
from the evidence key (kept outside the database), so it can be re-sent in a reminder without
storing it, and someone who can read the database cannot compute it; the database keeps its hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_ALPHABET_FIX = str.maketrans({"0": "O", "1": "I"})


def personal_code(key: bytes, request_id: int, person_id: int) -> str:
    """`ABCDE-FGHIJ`: 50 bits from HMAC(key, request, person), easy to read and type."""
    digest = hmac.new(key, f"approval-code:{request_id}:{person_id}".encode(), "sha256").digest()
    text = base64.b32encode(digest).decode()[:10]
    return f"{text[:5]}-{text[5:]}"


def normalise(code: str) -> str:
    """Forgive case, spaces, dashes, and 0/1 typed for O/I."""
    return "".join(code.split()).replace("-", "").upper().translate(_ALPHABET_FIX)


def code_hash(code: str) -> str:
    return hashlib.sha256(normalise(code).encode()).hexdigest()


def code_matches(code: str, stored_hash: str) -> bool:
    return hmac.compare_digest(code_hash(code), stored_hash)
