"""Training requirements and records: competence that expires (ISO/IEC 42001 7.2, 7.3, A.4.6).

- **Catalog** (data, `aims_core.rules.training`): the trainings an AIMS needs, how long a
  completion counts, the controls each serves, and the default trainings per role.
- **Requirements and records** (`records`): a role requires a training; one completion per row
  with its evidence, the newest per (person, training) counting.
- **Competence check** (`competence`): a person whose required training expired may not decide
  approvals; `approvals.decide` calls it directly, whatever the channel.
- **Matrix** (`queries`, `export`), **daily pass** (`tracking`), **demo seeding** (`demo`).

This module only re-exports what callers use.
"""

from aims_core.rules.training import (
    CATALOG_FILE,
    CatalogTraining,
    TrainingCatalog,
    TrainingCatalogInvalid,
    TrainingId,
    parse_training_catalog,
    training_catalog,
)
from aims_core.services.training.competence import competence_refusal
from aims_core.services.training.demo import load_demo
from aims_core.services.training.export import SUMMARY_SHEET, export_xlsx
from aims_core.services.training.queries import list_requirements, matrix
from aims_core.services.training.records import EVIDENCE_KIND, record, require, require_defaults
from aims_core.services.training.schemas import (
    MatrixRow,
    Notice,
    RecordIn,
    RecordOut,
    RequirementIn,
    RequirementOut,
    Status,
)
from aims_core.services.training.tracking import (
    GOVERNANCE_LEAD,
    TRACKER,
    TickReport,
    run_name,
    tick,
)

__all__ = [
    "CATALOG_FILE",
    "EVIDENCE_KIND",
    "GOVERNANCE_LEAD",
    "SUMMARY_SHEET",
    "TRACKER",
    "CatalogTraining",
    "MatrixRow",
    "Notice",
    "RecordIn",
    "RecordOut",
    "RequirementIn",
    "RequirementOut",
    "Status",
    "TickReport",
    "TrainingCatalog",
    "TrainingCatalogInvalid",
    "TrainingId",
    "competence_refusal",
    "export_xlsx",
    "list_requirements",
    "load_demo",
    "matrix",
    "parse_training_catalog",
    "record",
    "require",
    "require_defaults",
    "run_name",
    "tick",
    "training_catalog",
]
