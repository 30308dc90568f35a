"""Reading the AIMS database straight, as a test checks what a step wrote (or did not)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from aims_core.db import get_engine
from aims_core.settings import Settings


def count(settings: Settings, model: Any, *where: Any) -> int:
    """Rows of `model` (matching `where`), counted with SQL, not through a service."""
    with get_engine(settings.effective_database_url).connect() as conn:
        return conn.scalar(select(func.count()).select_from(model).where(*where)) or 0
