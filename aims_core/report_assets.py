"""Charts and workbook sheets shared by the generated reports (review pack, gap report).

matplotlib is used without pyplot (no global state, no display) and imported lazily, like pandas
(`aims --help` must not pay for either). Charts come back as PNG bytes; `embed` writes them
beside a report and gives the templates what they show (file name for Markdown, base64 for a
self-contained HTML page).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    import pandas as pd


def figure(size: tuple[float, float] = (6.4, 3.4)) -> Any:
    """A figure and its one axes (Agg canvas)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    return fig, fig.add_subplot()


def png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def bars(title: str, counts: Mapping[str, float], ylabel: str, color: str) -> bytes:
    """A labelled bar chart of counts (says so when all are zero)."""
    fig, ax = figure()
    labels = list(counts) or ["(none)"]
    values = list(counts.values()) or [0]
    drawn = ax.bar(labels, values, color=color)
    ax.bar_label(drawn, fmt="%g")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max([*values, 1]) * 1.2)
    if not any(values):
        ax.text(0.5, 0.5, "none in the period", transform=ax.transAxes, ha="center")
    return png(fig)


def embed(drawn: Mapping[str, tuple[str, bytes]], out_dir: Path, base: str) -> list[dict[str, str]]:
    """Write each chart as `<base>-<name>.png`; what a template needs to show it."""
    images = []
    for name, (caption, data) in drawn.items():
        file = out_dir / f"{base}-{name}.png"
        file.write_bytes(data)
        images.append(
            {
                "name": name,
                "caption": caption,
                "file": file.name,
                "b64": base64.b64encode(data).decode("ascii"),
            }
        )
    return images


def naive(df: pd.DataFrame) -> pd.DataFrame:
    """Excel has no time zones: aware timestamps become naive UTC."""
    import pandas as pd

    for col in df.columns:
        if isinstance(df[col].dtype, pd.DatetimeTZDtype):
            df[col] = df[col].dt.tz_convert("UTC").dt.tz_localize(None)
        elif df[col].map(lambda v: isinstance(v, datetime)).any():
            df[col] = pd.to_datetime(df[col], utc=True).dt.tz_localize(None)
    return df


def frame(items: Sequence[BaseModel], columns: list[str]) -> pd.DataFrame:
    """One row per model, these columns, times naive UTC."""
    import pandas as pd

    return naive(pd.DataFrame([i.model_dump() for i in items], columns=columns))


def kv(rows: list[tuple[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows, columns=["figure", "value"])
