"""Policies, versions, periodic reviews and exceptions (5.2, A.2)."""

from __future__ import annotations

from typing import Any

from aims_core.uow import Actor, UnitOfWork


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The demo organisation's `policies` section (aims_core/data/demo_org.yaml); idempotent."""
    return {}
