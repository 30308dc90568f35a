"""The training catalog (data): the trainings an AIMS needs, how long a completion counts, the
controls each serves, and the default trainings per role (ISO/IEC 42001 7.2, A.4.6).

Shipped as `aims_core/data/training_catalog.yaml`, overridable by `training_catalog.yaml` in the
data dir; read and checked by the common loader (`aims_core.rules.loading`).
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field, StringConstraints

from aims_core import catalog
from aims_core.errors import InvalidInput
from aims_core.rules.loading import DataFileInvalid, Strict, load_data_file, parse_data_file
from aims_core.settings import Settings

__all__ = [
    "CATALOG_FILE",
    "CatalogTraining",
    "TrainingCatalog",
    "TrainingCatalogInvalid",
    "TrainingId",
    "parse_training_catalog",
    "training_catalog",
]

CATALOG_FILE: Final = "training_catalog.yaml"

TrainingId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$"
    ),
]


class TrainingCatalogInvalid(DataFileInvalid):
    field_name = "training_catalog"


class CatalogTraining(Strict):
    id: TrainingId
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    validity_days: int = Field(ge=1, le=3650)
    description: str = ""
    controls: list[str] = Field(default_factory=list)


class TrainingCatalog(Strict):
    trainings: list[CatalogTraining] = Field(min_length=1)
    #: role id -> the trainings it requires by default
    requirements: dict[str, list[str]] = Field(default_factory=dict)

    def get(self, training: str) -> CatalogTraining:
        """The training, or an InvalidInput listing the catalog."""
        found = next((t for t in self.trainings if t.id == training), None)
        if found is None:
            known = ", ".join(t.id for t in self.trainings)
            raise InvalidInput(
                f"unknown training '{training}' (catalog: {known}; `aims training catalog`)",
                "training",
            )
        return found

    def roles_requiring(self, training: str) -> list[str]:
        return [role for role, ids in self.requirements.items() if training in ids]

    def problems(self) -> list[str]:
        """What a schema cannot check: unique ids, known trainings, roles and controls."""
        out: list[str] = []
        ids = [t.id for t in self.trainings]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            out.append(f"trainings: duplicate id(s) {', '.join(dupes)}")
        controls = {r.id for r in catalog.requirements()}
        for n, t in enumerate(self.trainings):
            unknown = [c for c in t.controls if c not in controls]
            if unknown:
                out.append(
                    f"trainings.{n}.controls: unknown clause or control {', '.join(unknown)}"
                )
        roles = {r.id for r in catalog.roles()}
        for role, wanted in self.requirements.items():
            if role not in roles:
                out.append(f"requirements.{role}: unknown role (roles: {', '.join(sorted(roles))})")
            unknown = [w for w in wanted if w not in ids]
            if unknown:
                out.append(f"requirements.{role}: unknown training(s) {', '.join(unknown)}")
        return out


def parse_training_catalog(text: str, source: str = CATALOG_FILE) -> TrainingCatalog:
    """Parse and check a document; TrainingCatalogInvalid lists every problem found."""
    return parse_data_file(TrainingCatalog, text, source, TrainingCatalogInvalid)


def training_catalog(settings: Settings) -> TrainingCatalog:
    """The catalog in force: the organisation's file in the data dir if present, else the
    shipped one."""
    return load_data_file(settings, TrainingCatalog, CATALOG_FILE, TrainingCatalogInvalid)
