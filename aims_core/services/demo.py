"""The demo organisation, loaded through the same services a user's commands use.

Its structure (people, roles, managers, vendors, systems, RACI, required trainings) is an
organisation file (aims_core/data/demo_org.yaml) applied as `aims org apply` applies any; what
it has done before the load (trainings completed, context, vendor assessments, policies, the
audit programme) is in aims_core/data/demo_activity.yaml, each section loaded by its service.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module, resources
from typing import Any

from aims_core.rules.loading import load_located
from aims_core.services import org as org_files
from aims_core.uow import Actor, UnitOfWork

ORG_FILE = "demo_org.yaml"
ACTIVITY_FILE = "demo_activity.yaml"

#: Demo activity section -> the service module whose `load_demo(uow, actor, section)` loads it
#: and returns what it added (label -> count). Each is idempotent, like the organisation file.
SECTIONS: dict[str, str] = {
    "training": "aims_core.services.training.demo",
    "vendors": "aims_core.services.demo_sections.vendors",
    "policies": "aims_core.services.policies.demo",
    "context": "aims_core.services.demo_sections.context",
    "audit": "aims_core.services.audits.demo",
    "history": "aims_core.services.demo_sections.history",  # its own file: demo_history.yaml
}

#: Change kind in the organisation file -> the count `load_demo` reports.
_ADDED = {
    "person": "people",
    "system": "systems",
    "raci": "raci",
    "vendor": "vendors",
    "training": "training requirements",
}


def _text(name: str) -> str:
    return resources.files("aims_core.data").joinpath(name).read_text("utf-8")


def demo_document() -> org_files.OrgDocument:
    return org_files.parse_org(_text(ORG_FILE), f"aims_core/data/{ORG_FILE}")


def demo_org() -> org_files.OrgFile:
    """The demo organisation's file (its people, systems, RACI, ...)."""
    return demo_document().org


def demo_activity() -> dict[str, Any]:
    data, _root = load_located(_text(ACTIVITY_FILE))
    unknown = set(data) - set(SECTIONS)
    if unknown:  # a packaged file: a mistake here is ours, named plainly
        raise ValueError(f"{ACTIVITY_FILE}: unknown section(s) {', '.join(sorted(unknown))}")
    return {name: data[name] for name in SECTIONS if name in data}


def _section_loader(module: str) -> Callable[[UnitOfWork, Actor, Any], dict[str, int]]:
    return import_module(module).load_demo  # type: ignore[no-any-return]


def load_demo(uow: UnitOfWork, actor: Actor, *, history: bool = False) -> dict[str, int]:
    """Apply the demo organisation's file, then add what is missing of its activity; running it
    twice changes nothing. `history`: also its year of history (`aims demo load` does; the
    tests' template does not, its counts stay those of the organisation alone)."""
    doc = demo_document()
    applied = org_files.apply_org(uow, doc, actor)
    added = dict.fromkeys(_ADDED.values(), 0)
    for change in applied.written:
        if change.action == "add":
            added[_ADDED[change.kind]] += 1
    for name, section in (demo_activity() | ({"history": None} if history else {})).items():
        if name == "training":  # records for the demo's own people only, never anyone else's
            section = {**section, "people": [p.email for p in doc.org.people]}
        for label, count in _section_loader(SECTIONS[name])(uow, actor, section).items():
            added[label] = added.get(label, 0) + count
    return added
