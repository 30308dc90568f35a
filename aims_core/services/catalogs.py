"""Load the shipped catalogs (roles, ISO/IEC 42001 requirements) into the database."""

from __future__ import annotations

from sqlalchemy import select

from aims_core import catalog
from aims_core.models import Control, Role
from aims_core.uow import Actor, UnitOfWork


def load_catalogs(uow: UnitOfWork, actor: Actor) -> dict[str, int]:
    """Insert or update every role and requirement; idempotent, so `aims init` can run again."""
    with uow:
        s = uow.session
        roles = {r.id: r for r in s.scalars(select(Role))}
        for spec in catalog.roles():
            row = roles.get(spec.id) or Role(id=spec.id)
            row.title, row.description = spec.title, spec.description
            s.add(row)
        controls = {c.id: c for c in s.scalars(select(Control))}
        for req in catalog.requirements():  # parents come first in the catalog's order
            row = controls.get(req.id) or Control(id=req.id)
            row.kind, row.title, row.parent_id, row.position = (
                req.kind,
                req.title,
                req.parent,
                req.position,
            )
            s.add(row)
            s.flush()
        counts = {"roles": len(catalog.roles()), "requirements": len(catalog.requirements())}
        uow.audit(actor, "catalogs.loaded", "catalog:iso42001", **counts)
        uow.commit()
    return counts
