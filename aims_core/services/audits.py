"""The internal audit programme, audits and findings (9.2)."""

from __future__ import annotations

from typing import Any

from aims_core.uow import Actor, UnitOfWork


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The demo organisation's `audits` section (aims_core/data/demo_org.yaml); idempotent."""
    return {}
