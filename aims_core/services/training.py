"""Training requirements and records (7.2, 7.3, A.4.6)."""

from __future__ import annotations

from typing import Any

from aims_core.uow import Actor, UnitOfWork


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The demo organisation's `training` section (aims_core/data/demo_org.yaml); idempotent."""
    return {}
