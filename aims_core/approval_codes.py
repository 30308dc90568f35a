"""Personal codes for the Prefect UI's forms: the proof of who answers an ask there.

Prefect OSS has no users: whoever opens a resume form can type any person's email. An answer made
there counts only with that person's personal code for that ask. The code is derived — HMAC with
the evidence key (kept outside the database) over the ask, the person and the person's code
counter for the ask — so nothing stored in the database (not even a hash) lets anyone check a
guess offline. The counter advances each time a form naming the person is read, right or wrong,
so a code typed into a form (Prefect keeps run inputs) is dead once read.
"""

from __future__ import annotations

import base64
import hmac

_ALPHABET_FIX = str.maketrans({"0": "O", "1": "I", "8": "B"})
#: 16 base32 characters: 80 bits.
CODE_CHARS = 16


def personal_code(key: bytes, request_id: int, person_id: int, counter: int) -> str:
    """`ABCD-EFGH-IJKL-MNOP`: 80 bits from HMAC(key, ask, person, counter), easy to read."""
    message = f"ask-code:{request_id}:{person_id}:{counter}".encode()
    text = base64.b32encode(hmac.new(key, message, "sha256").digest()).decode()[:CODE_CHARS]
    return "-".join(text[i : i + 4] for i in range(0, CODE_CHARS, 4))


def normalise(code: str) -> str:
    """Forgive case, spaces, dashes, and 0/1/8 typed for O/I/B."""
    return "".join(code.split()).replace("-", "").upper().translate(_ALPHABET_FIX)


def code_matches(code: str, key: bytes, request_id: int, person_id: int, counter: int) -> bool:
    """Constant-time comparison with the code the counter stands at now."""
    expected = normalise(personal_code(key, request_id, person_id, counter))
    return hmac.compare_digest(normalise(code).encode(), expected.encode())
