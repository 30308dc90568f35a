"""The organisation as code: one file declares people, RACI, systems, vendors and required
trainings; `apply` makes the database hold it (idempotent, one transaction), `export` writes it."""

from aims_core.services.org.apply import apply_org
from aims_core.services.org.export import export_org, export_yaml
from aims_core.services.org.reading import OrgDocument, OrgFileInvalid, parse_org, read_org
from aims_core.services.org.schemas import OrgApplied, OrgChange, OrgFile

__all__ = [
    "OrgApplied",
    "OrgChange",
    "OrgDocument",
    "OrgFile",
    "OrgFileInvalid",
    "apply_org",
    "export_org",
    "export_yaml",
    "parse_org",
    "read_org",
]
