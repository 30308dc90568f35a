"""An AI system's key: the short name commands, run names, tags and evidence subjects use.

A system is shown to people by its display name (any text: `Évaluation crédit`, `信用スコア`)
and named in commands by its key, derived from that name where none is given. One rule, here:

- NFKD, then combining marks dropped where their base letter is Latin (`é` → `e`), kept on
  every other script (Greek `ό` keeps its tonos, Japanese `ガ` its voicing mark) and recomposed
  with NFC, so a key reads as the name does;
- lowercase (`str.lower`, which keeps the Greek final sigma; `casefold` would not);
- letters and digits of any script, `.` and `_` are kept; every run of anything else (spaces,
  punctuation, symbols, `-` itself) becomes one `-`; `-`, `.` and `_` are trimmed from both ends;
- at most 120 characters.

Keys valid before display names existed (`credit-scoring`, `model_v1.2`) derive to themselves.
A given key must already be in this form: it equals its own derivation.
"""

from __future__ import annotations

import unicodedata
from typing import Final

KEY_MAX: Final = 120
#: What a key may contain, in words (messages never show a regular expression).
KEY_RULE: Final = (
    "a key is lowercase letters (any script), digits, '-', '_' and '.', "
    f"starting and ending with a letter or digit, at most {KEY_MAX} characters"
)
_KEPT: Final = "._"
_TRIM: Final = "-._"


def _is_latin(ch: str) -> bool:
    return unicodedata.name(ch, "").startswith("LATIN ")


def _strip_latin_marks(text: str) -> str:
    """NFKD, without the combining marks that sit on a Latin letter; NFC again."""
    out: list[str] = []
    on_latin = False
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch):
            if on_latin:
                continue
        else:
            on_latin = _is_latin(ch)
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _is_word(ch: str) -> bool:
    """A letter, a digit, or a mark that belongs to one (Devanagari vowel signs stay combined)."""
    return ch.isalnum() or unicodedata.category(ch).startswith("M") or ch in _KEPT


def derive_key(name: str) -> str:
    """The key a display name gives: `Évaluation crédit` → `evaluation-credit`; '' when the name
    has no letter or digit (`!!!`), which the caller refuses, asking for a key."""
    text = _strip_latin_marks(name).lower()
    out: list[str] = []
    for ch in text:
        if _is_word(ch):
            out.append(ch)
        elif out and out[-1] != "-":
            out.append("-")
    key = "".join(out).strip(_TRIM)
    # A mark cannot start a key (nothing to sit on).
    while key and unicodedata.category(key[0]).startswith("M"):
        key = key[1:].lstrip(_TRIM)
    return key[:KEY_MAX].rstrip(_TRIM)


def key_problem(key: str) -> str | None:
    """Why `key` is not a key, in words, with the key it would make; None when it is one."""
    if not key:
        return "a key cannot be empty"
    if len(key) > KEY_MAX:
        return f"{len(key)} characters is too long: {KEY_RULE}"
    derived = derive_key(key)
    if derived == key:
        return None
    hint = f" ('{derived}' would do)" if derived else ""
    return f"'{key}' is not a key{hint}: {KEY_RULE}"


def text_problem(value: str) -> str | None:
    """Why `value` cannot be a display name: a control character (a tab, a line break) or a
    line/paragraph separator would break a table row, a Slack card and a run name."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return f"contains a control character (U+{ord(ch):04X}): a name is one line of text"
    return None


def label(key: str, display_name: str) -> str:
    """How a system is shown where a command may need its key: `Évaluation crédit
    (evaluation-credit)`, or just the key when the name is the key."""
    return key if display_name in ("", key) else f"{display_name} ({key})"
