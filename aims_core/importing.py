"""Reading tabular import files (CSV or Excel) into rows a service validates.

CSV: UTF-8 with or without BOM, any line ending (LF, CRLF, CR), quoted fields. Excel: the first
sheet, via pandas. Header names are trimmed and lower-cased; values trimmed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aims_core.errors import InvalidInput


@dataclass(frozen=True)
class RawRow:
    """One data row of an import file, with the line number a person sees in their editor."""

    line: int
    values: dict[str, str]


def read_rows(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> list[RawRow]:
    if not path.is_file():
        raise InvalidInput(f"no such file: {path}", field="file")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        header, rows = _read_excel(path)
    elif suffix in (".csv", ".txt", ""):
        header, rows = _read_csv(path)
    else:
        raise InvalidInput(f"'{suffix}' files are not supported: use .csv or .xlsx", field="file")
    missing = [c for c in required if c not in header]
    if missing:
        raise InvalidInput(
            f"missing column(s) {', '.join(missing)}; expected {', '.join([*required, *optional])}",
            field="columns",
        )
    known = set(required) | set(optional)
    out = []
    for line, values in rows:
        record = {h: v.strip() for h, v in zip(header, values, strict=False) if h in known}
        if not any(record.values()):
            continue  # blank lines are not rows
        out.append(RawRow(line=line, values=record))
    return out


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"not UTF-8 text (byte {exc.start}): save the file as UTF-8", field="file"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = [h.strip().lower() for h in next(reader)]
        start = reader.line_num + 1
        for values in reader:
            rows.append((start, values))
            start = reader.line_num + 1
    except StopIteration:
        raise InvalidInput("the file is empty", field="file") from None
    except csv.Error as exc:  # e.g. a field past the csv module's limit (128 KiB)
        raise InvalidInput(f"line {reader.line_num}: not readable as CSV: {exc}", "file") from None
    return header, rows


def _read_excel(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    import pandas as pd

    try:
        frame = pd.read_excel(path, dtype=str, keep_default_na=False, header=None)
    except Exception as exc:  # a corrupt or password-protected workbook
        raise InvalidInput(f"cannot read the workbook: {exc}", field="file") from None
    if frame.empty:
        raise InvalidInput("the workbook's first sheet is empty", field="file")
    header = [str(h).strip().lower() for h in frame.iloc[0]]
    rows = [(i + 1, [str(v) for v in frame.iloc[i]]) for i in range(1, len(frame))]
    return header, rows
