"""Synthetic organisation generator: a realistic, seeded AIMS database at scale.

    .venv/bin/python bench/synth.py --systems 20 --data-dir /tmp/synth-20
    .venv/bin/python bench/synth.py --size M --database-url postgresql+psycopg://... \
        --data-dir /tmp/synth-m-pg      # the data dir keeps the evidence key and anchor

N AI systems across every EU AI Act tier and life-cycle stage, ~10 risks each, incidents (some
serious, with their regulatory clocks and timelines), CAPAs with actions, an internal audit
programme with closed audits and findings, people with roles and training records (current,
expiring, expired), gate reviews, SoA decisions, context changes, and ~50 evidence records per
system on a valid keyed chain: `aims evidence verify` passes afterwards. Sizes: S=500, M=5,000,
L=20,000 systems.

Speed: rows go in with bulk `insert(Model)` statements, one transaction per batch; the evidence
chain is computed here with the evidence service's own `chain_value` (the HMAC over
`canonical_bytes`), the head row moved in the same transaction, and the anchor outside the
database moved once at the end (`sync_anchor`). The few structured pieces that are cheap and
carry policy (training requirements, the audit programme with its scope, checklists and
independent auditors) go through their services. Audit events: one `synth.generated` per phase
(with its counts), not one per generated row.

Deterministic for a seed: one `random.Random(seed)` drives every choice, dates are relative to
`--now` (default: now). The evidence chain values differ between data dirs (another key).
A database that already has AI systems is refused (exit 2, one line) unless `--append`.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from aims_core.cli._base import database_problem
from aims_core.database import initialise
from aims_core.errors import AimsError
from aims_core.models import (
    AISystem,
    Audit,
    AuditFinding,
    AuditProgramme,
    AuditStatus,
    Capa,
    CapaAction,
    CapaStatus,
    ClockStatus,
    ContextEntry,
    ContextKind,
    Control,
    ControlKind,
    Criticality,
    Evidence,
    EvidenceHead,
    FindingKind,
    GateReview,
    GateStatus,
    Incident,
    IncidentEvent,
    IncidentStatus,
    LifecycleStage,
    Person,
    PersonRole,
    RaciActivity,
    RaciKind,
    RaciMember,
    RegulatoryClock,
    Risk,
    RiskStatus,
    RiskTier,
    SoaEntry,
    TrainingRecord,
    TrainingRequirement,
    TreatmentOption,
    Vendor,
)
from aims_core.rules.incident import IncidentFacts, incident_policy
from aims_core.rules.risk import risk_policy
from aims_core.services import audits, evidence, training
from aims_core.settings import Settings
from aims_core.uow import Actor, UnitOfWork

SIZES: Final = {"S": 500, "M": 5_000, "L": 20_000}
BATCH: Final = 5_000  # rows per INSERT batch, one transaction each
EVIDENCE_PER_SYSTEM: Final = 50
RISKS_PER_SYSTEM: Final = (7, 13)  # inclusive bounds, mean 10
ACTOR: Final = Actor(who="synth@aims.local", channel="import")
PROGRAMME: Final = "Synthetic internal audit programme"
DOMAIN: Final = "synth.example"

STAGES: Final = list(LifecycleStage)
STAGE_WEIGHTS: Final = [8, 10, 15, 10, 10, 40, 7]
TIERS: Final = [RiskTier.high, RiskTier.limited, RiskTier.minimal, RiskTier.gpai]
TIER_WEIGHTS: Final = [25, 25, 35, 15]
PROHIBITED_SHARE: Final = 0.02  # kept at concept: the gate policy refuses them beyond it
LIVE: Final = {LifecycleStage.deployment, LifecycleStage.operation, LifecycleStage.decommission}
INCIDENT_PATH: Final = [
    IncidentStatus.open,
    IncidentStatus.contained,
    IncidentStatus.investigating,
    IncidentStatus.awaiting_closure,
    IncidentStatus.closed,
]
SEVERITIES: Final = ["SEV1", "SEV2", "SEV3", "SEV4"]
SEVERITY_WEIGHTS: Final = [5, 20, 40, 35]
CONTAIN_HOURS: Final = {"SEV1": 4, "SEV2": 24, "SEV3": 72, "SEV4": 240}
CATEGORIES: Final = [
    ("model-failure", "model-failure"),
    ("bias-fairness", "bias"),
    ("adversarial-attack/evasion", "adversarial-attack"),
    ("adversarial-attack/poisoning", "adversarial-attack"),
    ("data-issue/drift", "data-issue"),
    ("data-issue/quality", "data-issue"),
    ("privacy", "privacy"),
    ("safety", "safety"),
    ("misuse", "misuse"),
]
CATEGORY_WEIGHTS: Final = [30, 12, 4, 2, 20, 14, 8, 5, 5]
SERIOUS_KINDS: Final = ["health", "fundamental-rights", "property-environment", "death"]

#: Evidence a system has by the stage it reached (cumulative), beside per-risk/incident records.
STAGE_EVIDENCE: Final = {
    LifecycleStage.concept: ["impact-assessment", "risk-assessment", "requirements-spec"],
    LifecycleStage.design: ["design-doc", "data-sheet", "risk-treatment-plan"],
    LifecycleStage.development: ["model-card", "data-sheet"],
    LifecycleStage.validation: ["vv-report", "fairness-report"],
    LifecycleStage.deployment: ["deployment-plan"],
    LifecycleStage.operation: ["monitoring-plan", "vv-report", "fairness-report"],
    LifecycleStage.decommission: ["decommission-plan"],
}

# fmt: off
FIRST: Final = [
    "Ada", "Ben", "Chloe", "Dev", "Elif", "Farah", "Gus", "Hana", "Ivan", "Jia", "Kofi", "Lea",
    "Milo", "Nia", "Omar", "Pia", "Quinn", "Rosa", "Sven", "Tara", "Uma", "Vik", "Wen", "Xavi",
    "Yara", "Zane", "Anouk", "Bruno", "Carmen", "Dario", "Esme", "Femi", "Greta", "Hugo",
    "Ines", "Jonas",
]
LAST: Final = [
    "Abara", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jansen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quispe",
    "Rossi", "Sato", "Tanaka", "Usman", "Varga", "Weber", "Xu", "Yilmaz", "Zhou", "Novak",
    "Ruiz",
]
DEPARTMENTS: Final = [
    "lending", "payments", "fraud", "marketing", "support", "hr", "finance", "operations",
    "risk", "legal", "claims", "procurement", "logistics", "treasury", "compliance",
]
# fmt: on
VENDOR_NAMES: Final = [
    "Acme LLM",
    "Bluefin Analytics",
    "Cobalt Vision",
    "Delta Scoring",
    "Evergreen Data",
    "Fjord Models",
    "Granite Labs",
    "Helix Speech",
]
FUNCTIONS: Final = [
    ("scoring", "Scores {x} applications"),
    ("ranking", "Ranks {x} cases for review"),
    ("forecast", "Forecasts {x} volumes"),
    ("chatbot", "Answers {x} questions in chat; discloses that it is an AI"),
    ("summariser", "Summarises {x} documents with a general-purpose model"),
    ("detector", "Flags anomalous {x} transactions"),
    ("recommender", "Recommends {x} products"),
    ("classifier", "Classifies incoming {x} requests"),
    ("extractor", "Extracts fields from {x} forms"),
    ("pricing", "Suggests {x} prices"),
]
RISK_TITLES: Final = [
    "Unfair outcomes for a protected group",
    "Accuracy degrades after data drift",
    "Training data contains personal data without a lawful basis",
    "Adversarial inputs evade the model",
    "Users over-rely on the model's output",
    "Model outputs cannot be explained to affected persons",
    "Third-party model changes without notice",
    "Prompt injection exposes internal data",
    "Feedback loop amplifies historical bias",
    "Logs are insufficient to reconstruct a decision",
    "Human oversight is bypassed under time pressure",
    "Model is used outside its intended purpose",
    "Training data provenance or licence is unclear",
    "Service outage stops a critical process",
]
FINDINGS: Final = {
    FindingKind.major: "No evidence that {c} is implemented for the sampled systems",
    FindingKind.minor: "{c} is implemented but its records are incomplete",
    FindingKind.observation: "{c}: practice differs between teams; consider one procedure",
    FindingKind.opportunity: "{c}: automate the check to save reviewer time",
}
ROLE_SHARES: Final = [  # role, minimum, one per this many systems
    ("top-management", 2, 10_000),
    ("governance-lead", 1, 1_000),
    ("risk-manager", 2, 500),
    ("compliance-officer", 2, 500),
    ("legal", 1, 1_000),
    ("ethics-committee", 3, 1_000),
    ("privacy", 1, 2_000),
    ("security", 2, 500),
    ("internal-auditor", 3, 1_000),
    ("incident-responder", 3, 200),
    ("procurement", 1, 2_000),
    ("system-owner", 3, 8),
    ("data-scientist", 4, 3),
]


def parse_now(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date-time: {value!r}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


# --- timing and progress -------------------------------------------------------------------------


@dataclass
class PhaseTime:
    name: str
    rows: int = 0
    seconds: float = 0.0


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:>9,.0f}/s" if speed else "", style="progress.data.speed")


@dataclass
class Meter:
    """A rich progress bar per phase, and the rows and seconds each phase took."""

    progress: Progress
    phases: list[PhaseTime] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str, total: int) -> Iterator[PhaseCounter]:
        task = self.progress.add_task(name, total=max(total, 1))
        timing = PhaseTime(name)
        started = time.perf_counter()
        counter = PhaseCounter(self.progress, task, timing)
        try:
            yield counter
        finally:
            timing.seconds = time.perf_counter() - started
            self.progress.update(task, total=max(timing.rows, 1), completed=max(timing.rows, 1))
            self.progress.stop_task(task)
            self.phases.append(timing)


@dataclass
class PhaseCounter:
    progress: Progress
    task: Any
    timing: PhaseTime

    def add(self, rows: int) -> None:
        self.timing.rows += rows
        self.progress.update(self.task, advance=rows)


# --- bulk helpers --------------------------------------------------------------------------------


def chunks(rows: Sequence[dict[str, Any]], size: int = BATCH) -> Iterator[Sequence[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def insert_ids(session: Session, model: Any, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Bulk insert; the new ids in the order of `rows` (RETURNING, both backends)."""
    if not rows:
        return []
    stmt = insert(model).returning(model.id, sort_by_parameter_order=True)
    return list(session.scalars(stmt, list(rows)))


# --- the generator -------------------------------------------------------------------------------


@dataclass
class SystemRow:
    id: int
    name: str
    tier: RiskTier
    stage: LifecycleStage
    owner_id: int
    created_at: datetime
    risks: list[tuple[int, datetime]] = field(default_factory=list)
    incidents: list[tuple[int, datetime, bool]] = field(default_factory=list)  # id, aware, closed


class Synth:
    def __init__(
        self, settings: Settings, systems: int, seed: int, now: datetime, meter: Meter
    ) -> None:
        self.settings = settings
        self.n = systems
        self.seed = seed
        self.now = now
        self.meter = meter
        self.rng = random.Random(seed)
        self.tag = ""  # set by run(): distinguishes appended generations in names and keys
        self.people: dict[str, list[int]] = {}  # role -> person ids
        self.emails: dict[int, str] = {}
        self.systems: list[SystemRow] = []
        self.capas: list[tuple[int, datetime, str]] = []  # id, created, subject title
        self.findings: list[tuple[int, datetime, str]] = []
        self.closed_audits: list[tuple[int, datetime, str]] = []
        self.training_records: list[tuple[int, datetime, str]] = []  # person, completed, training
        self.incident_meta: list[tuple[int, int, str, datetime, str, bool]] = []
        self.finding_rows: dict[int, dict[str, Any]] = {}
        self.system_base = self.person_base = 0

    # -- small helpers

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.settings)

    def ago(self, days_max: float, days_min: float = 0.0) -> datetime:
        return self.now - timedelta(days=self.rng.uniform(days_min, days_max))

    def between(self, start: datetime, end: datetime) -> datetime:
        span = max((end - start).total_seconds(), 0.0)
        return start + timedelta(seconds=self.rng.uniform(0, span))

    def pick(self, role: str) -> int:
        return self.rng.choice(self.people[role])

    def audit_phase(self, uow: UnitOfWork, phase: str, **counts: object) -> None:
        uow.audit(ACTOR, "synth.generated", "org:synthetic", phase=phase, seed=self.seed, **counts)

    def bulk(self, model: Any, rows: list[dict[str, Any]], meter: PhaseCounter) -> list[int]:
        """Insert in batches, one transaction each; returns the ids in order."""
        ids: list[int] = []
        for part in chunks(rows):
            with self.uow() as uow:
                ids += insert_ids(uow.session, model, part)
                uow.commit()
            meter.add(len(part))
        return ids

    def bulk_plain(self, model: Any, rows: list[dict[str, Any]], meter: PhaseCounter) -> None:
        """Insert rows nothing refers to (no RETURNING needed)."""
        for part in chunks(rows):
            with self.uow() as uow:
                uow.session.execute(insert(model), list(part))
                uow.commit()
            meter.add(len(part))

    # -- the phases

    def run(self, append: bool) -> None:
        with self.uow().read() as uow:
            have = uow.session.scalar(select(func.count()).select_from(AISystem)) or 0
            last_system = uow.session.scalar(select(func.max(AISystem.id))) or 0
            last_person = uow.session.scalar(select(func.max(Person.id))) or 0
        if have and not append:
            raise AimsError(
                f"the database already holds {have} AI systems; pass --append to add more",
                field="database",
            )
        self.system_base, self.person_base = last_system, last_person
        self.tag = f"s{self.seed}-{last_system}"
        self.gen_people()
        self.gen_vendors_systems()
        self.gen_raci_gates()
        self.gen_training()
        self.gen_risks()
        self.gen_incidents()
        self.gen_audits()
        self.gen_capas()
        self.gen_soa_context()
        self.gen_evidence()

    def gen_people(self) -> None:
        plan: list[str] = []
        for role, minimum, per in ROLE_SHARES:
            plan += [role] * max(minimum, self.n // per)
        rows, roles = [], []
        for i, role in enumerate(plan, start=self.person_base + 1):
            first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
            email = f"{first}.{last}.{i}@{DOMAIN}".lower()
            extra = []
            if role == "system-owner" and self.rng.random() < 0.1:
                extra = ["incident-responder"]
            if role == "governance-lead":
                extra = ["risk-manager"]
            rows.append(
                {
                    "email": email,
                    "name": f"{first} {last}",
                    "slack_user_id": f"USYN{i:07d}" if self.rng.random() < 0.8 else None,
                    "manager_id": None,
                    "active": role in ("top-management", "governance-lead")
                    or self.rng.random() > 0.03,
                    "created_at": self.ago(1500, 60),
                }
            )
            roles.append([role, *extra])
        with self.meter.phase("people", len(rows) * 2) as m:
            ids = self.bulk(Person, rows, m)
            for pid, row, held in zip(ids, rows, roles, strict=True):
                self.emails[pid] = row["email"]
                for role in held:
                    self.people.setdefault(role, []).append(pid)
            links = [
                {"person_id": p, "role_id": r}
                for p, held in zip(ids, roles, strict=True)
                for r in held
            ]
            self.bulk_plain(PersonRole, links, m)
            ceo = self.people["top-management"][0]
            leads = self.people["governance-lead"]
            owners = self.people["system-owner"]
            managers = []
            for pid, held in zip(ids, roles, strict=True):
                role = held[0]
                if pid == ceo:
                    continue
                if role in ("top-management", "governance-lead", "system-owner"):
                    boss = ceo
                elif role == "data-scientist":
                    boss = self.rng.choice(owners)
                else:
                    boss = self.rng.choice(leads)
                managers.append({"id": pid, "manager_id": boss})
            for part in chunks(managers):
                with self.uow() as uow:
                    uow.session.execute(update(Person), list(part))
                    uow.commit()
            with self.uow() as uow:
                self.audit_phase(uow, "people", people=len(ids), roles=len(links))
                uow.commit()

    def gen_vendors_systems(self) -> None:
        owners = self.people["system-owner"]
        vendors = [
            {
                "name": f"{self.rng.choice(VENDOR_NAMES)} AI {self.tag}-{i:04d}",
                "criticality": self.rng.choice(list(Criticality)),
                "services": "Hosted AI model and scoring API",
                "contact": f"trust@vendor{i}.{DOMAIN}",
                "owner_id": self.rng.choice(owners),
                "last_assessed_at": self.ago(800, 10),
                "created_at": self.ago(1800, 900),
            }
            for i in range(max(3, self.n // 25))
        ]
        rows = []
        for i in range(self.n):
            idx = self.system_base + i + 1
            if i < len(TIERS):  # every tier and stage at least once, even for tiny N
                tier = TIERS[i]
            elif i == len(TIERS) or self.rng.random() < PROHIBITED_SHARE:
                tier = RiskTier.prohibited
            else:
                tier = self.rng.choices(TIERS, TIER_WEIGHTS)[0]
            if tier is RiskTier.prohibited:
                stage = LifecycleStage.concept
            elif len(TIERS) < i <= len(TIERS) + len(STAGES):
                stage = STAGES[i - len(TIERS) - 1]
            else:
                stage = self.rng.choices(STAGES, STAGE_WEIGHTS)[0]
            dept = self.rng.choice(DEPARTMENTS)
            fn, purpose = self.rng.choice(FUNCTIONS)
            crit_w = [1, 3, 4, 2] if tier is RiskTier.high else [4, 4, 2, 1]
            # Systems further along their life cycle were registered longer ago.
            age = 60 + STAGES.index(stage) * 150 + self.rng.uniform(0, 300)
            created = self.now - timedelta(days=age)
            rows.append(
                {
                    "name": f"{dept}-{fn}-{idx:05d}",
                    "purpose": purpose.format(x=dept) + f" ({tier.value} risk)",
                    "owner_id": self.rng.choice(owners),
                    "risk_tier": tier,
                    "criticality": self.rng.choices(list(Criticality), crit_w)[0],
                    "lifecycle_stage": stage,
                    "vendor_id": None,
                    "reapproval_stage": None,
                    "created_at": created,
                    "updated_at": self.between(created, self.now - timedelta(days=5)),
                }
            )
        with self.meter.phase("vendors + systems", len(vendors) + len(rows)) as m:
            vendor_ids = self.bulk(Vendor, vendors, m)
            for row in rows:
                if self.rng.random() < 0.3:
                    row["vendor_id"] = self.rng.choice(vendor_ids)
            ids = self.bulk(AISystem, rows, m)
            self.systems = [
                SystemRow(
                    sid,
                    r["name"],
                    r["risk_tier"],
                    r["lifecycle_stage"],
                    r["owner_id"],
                    r["created_at"],
                )
                for sid, r in zip(ids, rows, strict=True)
            ]
            with self.uow() as uow:
                self.audit_phase(uow, "systems", vendors=len(vendor_ids), systems=len(ids))
                uow.commit()

    def gen_raci_gates(self) -> None:
        """Organisation-wide RACI per activity, a per-system stage-gate RACI for high-risk
        systems, and the approved gate review that brought each system to its stage."""
        p = self.people
        org = {
            "stage-gate": ("governance-lead", ["data-scientist"], ["compliance-officer"]),
            "incident-response": ("governance-lead", ["incident-responder"], ["legal"]),
            "risk-assessment": ("risk-manager", ["risk-manager"], ["ethics-committee"]),
            "impact-assessment": ("governance-lead", ["ethics-committee"], ["privacy"]),
            "internal-audit": ("top-management", ["internal-auditor"], []),
            "management-review": ("top-management", ["governance-lead"], ["compliance-officer"]),
            "vendor-assessment": ("procurement", ["procurement"], ["security"]),
            "capa-closure": ("governance-lead", ["compliance-officer"], []),
            "policy": ("top-management", ["governance-lead"], ["legal"]),
        }
        with self.uow().read() as uow:
            have = set(
                uow.session.scalars(
                    select(RaciActivity.activity).where(RaciActivity.scope == "org")
                )
            )
        acts, members = [], []
        for activity, (acc, resp, cons) in org.items():
            if activity in have:
                continue
            acts.append(
                {
                    "activity": activity,
                    "scope": "org",
                    "system_id": None,
                    "accountable_id": p[acc][0],
                    "updated_at": self.ago(400, 200),
                }
            )
            # One auditor is Responsible for the audit activity; the others stay independent.
            r_ids = [p[r][0] for r in resp] if activity == "internal-audit" else []
            r_ids = r_ids or [x for r in resp for x in p[r][:2]]
            members.append(
                [(x, RaciKind.responsible) for x in dict.fromkeys(r_ids)]
                + [
                    (x, RaciKind.consulted)
                    for x in dict.fromkeys(c for r in cons for c in p[r][:1])
                ]
                + [(p["top-management"][0], RaciKind.informed)]
            )
        for s in self.systems:
            if s.tier is RiskTier.high:
                acts.append(
                    {
                        "activity": "stage-gate",
                        "scope": f"system:{s.id}",
                        "system_id": s.id,
                        "accountable_id": s.owner_id,
                        "updated_at": s.created_at,
                    }
                )
                members.append(
                    [
                        (self.pick("data-scientist"), RaciKind.responsible),
                        (self.pick("compliance-officer"), RaciKind.consulted),
                        (self.pick("ethics-committee"), RaciKind.consulted),
                    ]
                )
        gates = []
        for s in self.systems:
            k = STAGES.index(s.stage)
            if k == 0:
                continue
            at = self.between(s.created_at, self.now - timedelta(days=3))
            gates.append(
                {
                    "system_id": s.id,
                    "from_stage": STAGES[k - 1],
                    "to_stage": s.stage,
                    "status": GateStatus.approved,
                    "checklist": {"evidence": STAGE_EVIDENCE[STAGES[k - 1]]},
                    "missing": [],
                    "reasons": "",
                    "request_id": None,
                    "flow_run_id": None,
                    "requested_by": self.emails[s.owner_id],
                    "created_at": at - timedelta(days=self.rng.uniform(1, 10)),
                    "decided_at": at,
                }
            )
        total = len(acts) + sum(map(len, members)) + len(gates)
        with self.meter.phase("raci + gate reviews", total) as m:
            ids = self.bulk(RaciActivity, acts, m)
            rows = [
                {"raci_id": rid, "person_id": pid, "kind": kind}
                for rid, group in zip(ids, members, strict=True)
                for pid, kind in dict.fromkeys(group)
            ]
            self.bulk_plain(RaciMember, rows, m)
            self.bulk_plain(GateReview, gates, m)
            with self.uow() as uow:
                self.audit_phase(uow, "raci", raci=len(ids), gate_reviews=len(gates))
                uow.commit()

    def gen_training(self) -> None:
        """The catalog's requirements (through the service), then records: mostly current,
        some expiring within 30 days, some expired, a few missing."""
        with self.meter.phase("training records", len(self.emails) * 2) as m:
            training.require_defaults(self.uow(), ACTOR)
            self._training(m)

    def _training(self, m: PhaseCounter) -> None:
        with self.uow().read() as uow:
            reqs = uow.session.execute(
                select(
                    TrainingRequirement.role_id,
                    TrainingRequirement.training,
                    TrainingRequirement.validity_days,
                )
            ).all()
            active = set(uow.session.scalars(select(Person.id).where(Person.active.is_(True))))
        need: dict[int, dict[str, int]] = {}
        for role, ids in self.people.items():
            for pid in ids:
                if pid not in active:
                    continue
                for r in reqs:
                    if r.role_id == role:
                        have = need.setdefault(pid, {})
                        have[r.training] = min(have.get(r.training, 10_000), r.validity_days)
        rows = []
        for pid in sorted(need):
            for name, days in sorted(need[pid].items()):
                state = self.rng.choices(
                    ["current", "expiring", "expired", "missing"], [75, 10, 10, 5]
                )[0]
                if state == "missing":
                    continue
                if state == "current":
                    expires = self.now + timedelta(days=self.rng.uniform(31, days))
                elif state == "expiring":
                    expires = self.now + timedelta(days=self.rng.uniform(1, 30))
                else:
                    expires = self.now - timedelta(days=self.rng.uniform(1, 120))
                completed = expires - timedelta(days=days)
                left = (expires - self.now).days
                reminded = [d for d in self.settings.training_reminder_days if left <= d]
                if state == "current" and self.rng.random() < 0.3:  # an earlier completion
                    rows.append(self._record(pid, name, completed - timedelta(days=days), days, []))
                rows.append(self._record(pid, name, completed, days, reminded))
                if state == "expired":
                    rows[-1]["escalated_at"] = min(expires + timedelta(days=1), self.now)
                self.training_records.append((pid, completed, name))
        self.bulk_plain(TrainingRecord, rows, m)
        with self.uow() as uow:
            self.audit_phase(uow, "training", records=len(rows))
            uow.commit()

    def _record(
        self, pid: int, name: str, completed: datetime, days: int, reminded: list[int]
    ) -> dict[str, Any]:
        return {
            "person_id": pid,
            "training": name,
            "completed_at": completed,
            "expires_at": completed + timedelta(days=days),
            "evidence_id": None,
            "recorded_by": ACTOR.who,
            "created_at": min(completed + timedelta(hours=self.rng.uniform(1, 48)), self.now),
            "reminders_sent": reminded,
            "escalated_at": None,
        }

    def gen_risks(self) -> None:
        """~10 risks per system, scored on the policy's scales; generated and inserted a slice
        of systems at a time so memory stays flat at size L."""
        appetite = risk_policy(self.settings).appetite
        per_slice = max(1, BATCH // RISKS_PER_SYSTEM[1])
        total = 0
        with self.meter.phase("risks", self.n * sum(RISKS_PER_SYSTEM) // 2) as m:
            for i in range(0, len(self.systems), per_slice):
                rows = [
                    self._risk(s, appetite)
                    for s in self.systems[i : i + per_slice]
                    for _ in range(self.rng.randint(*RISKS_PER_SYSTEM))
                ]
                by_id = {s.id: s for s in self.systems[i : i + per_slice]}
                with self.uow() as uow:
                    # Plain executemany, then read the ids back: far faster on SQLite than
                    # RETURNING in parameter order. The systems are new, so all their risks
                    # are these rows.
                    uow.session.execute(insert(Risk), rows)
                    back = uow.session.execute(
                        select(Risk.id, Risk.system_id, Risk.created_at)
                        .where(Risk.system_id.in_(list(by_id)))
                        .order_by(Risk.id)
                    ).all()
                    uow.commit()
                for r in back:
                    by_id[r.system_id].risks.append((r.id, r.created_at))
                total += len(rows)
                m.add(len(rows))
            with self.uow() as uow:
                self.audit_phase(uow, "risks", risks=total)
                uow.commit()

    def _risk(self, s: SystemRow, appetite: int) -> dict[str, Any]:
        rng = self.rng
        lik = rng.choices([1, 2, 3, 4, 5], [10, 25, 30, 25, 10])[0]
        imp = rng.choices([1, 2, 3, 4, 5], [5, 20, 30, 30, 15])[0]
        if s.tier is RiskTier.high:
            imp = min(5, imp + 1)
        status = rng.choices(list(RiskStatus), [25, 55, 5, 15])[0]
        treatment, res_l, res_i = None, None, None
        if status is not RiskStatus.open:
            treatment = rng.choices(list(TreatmentOption), [5, 70, 10, 15])[0]
            res_l = max(1, lik - rng.randint(0, 2))
            res_i = max(1, imp - rng.randint(0, 1))
            if treatment is TreatmentOption.accept:  # accepted as it is, above appetite: asked
                res_l, res_i = lik, imp
                if lik * imp > appetite and status is RiskStatus.treated:
                    status = RiskStatus.awaiting_acceptance
        if status is RiskStatus.awaiting_acceptance and treatment is not TreatmentOption.accept:
            status = RiskStatus.treated
        created = self.between(s.created_at, self.now - timedelta(days=1))
        return {
            "system_id": s.id,
            "title": rng.choice(RISK_TITLES),
            "description": f"Identified for {s.name} during its risk assessment.",
            "owner_id": s.owner_id if rng.random() < 0.7 else self.pick("risk-manager"),
            "likelihood": lik,
            "impact": imp,
            "score": lik * imp,
            "treatment": treatment,
            "justification": ""
            if treatment is None
            else f"{treatment.value} chosen in the risk treatment plan",
            "residual_likelihood": res_l,
            "residual_impact": res_i,
            "residual_score": None if res_l is None or res_i is None else res_l * res_i,
            "status": status,
            "acceptance_request_id": None,
            "created_at": created,
            "updated_at": self.between(created, self.now),
        }

    def gen_incidents(self) -> None:
        """Incidents on live systems: timeline, status path, and the clocks the policy starts
        (internal SLA, GDPR, and Art. 73 for confirmed serious ones), met, overdue or running."""
        policy = incident_policy(self.settings)
        cls = policy.classification
        plans: list[dict[str, Any]] = []
        for s in self.systems:
            if s.stage not in LIVE:
                continue
            for _ in range(self.rng.choices([0, 1, 2, 3], [55, 30, 10, 5])[0]):
                plans.append(self._incident(s, policy, cls))
        rough = sum(1 + len(p["events"]) + len(p["clocks"]) for p in plans)
        with self.meter.phase("incidents + timelines + clocks", rough) as m:
            events = clocks = 0
            for part in chunks(plans, 1000):
                with self.uow() as uow:
                    ids = insert_ids(uow.session, Incident, [p["row"] for p in part])
                    ev, ck = [], []
                    for iid, p in zip(ids, part, strict=True):
                        r = p["row"]
                        closed = r["status"] is IncidentStatus.closed
                        p["system"].incidents.append((iid, r["aware_at"], closed))
                        self.incident_meta.append(
                            (
                                iid,
                                r["system_id"],
                                r["title"],
                                r["reported_at"],
                                r["severity"],
                                r["is_drill"],
                            )
                        )
                        ev += [{**e, "incident_id": iid} for e in p["events"]]
                        ck += [{**c, "incident_id": iid} for c in p["clocks"]]
                    if ev:
                        uow.session.execute(insert(IncidentEvent), ev)
                    if ck:
                        uow.session.execute(insert(RegulatoryClock), ck)
                    uow.commit()
                    events, clocks = events + len(ev), clocks + len(ck)
                m.add(len(part) + len(ev) + len(ck))
            with self.uow() as uow:
                self.audit_phase(
                    uow, "incidents", incidents=len(plans), events=events, clocks=clocks
                )
                uow.commit()

    def _incident(self, s: SystemRow, policy: Any, cls: Any) -> dict[str, Any]:
        rng = self.rng
        sev = rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0]
        category, playbook = rng.choices(CATEGORIES, CATEGORY_WEIGHTS)[0]
        aware = self.between(max(s.created_at, self.now - timedelta(days=400)), self.now)
        reported = min(aware + timedelta(hours=rng.uniform(0, 6)), self.now)
        drill = rng.random() < 0.03
        source = rng.choice(["cli", "api", "alertmanager"]) if not drill else "drill"
        serious_kind, suggested, confirmed = None, [], None
        if sev in ("SEV1", "SEV2") and not drill and rng.random() < 0.35:
            kind = (
                "fundamental-rights" if category == "bias-fairness" else rng.choice(SERIOUS_KINDS)
            )
            suggested = [kind]
            if rng.random() < 0.7:
                serious_kind = kind
                confirmed = min(reported + timedelta(hours=rng.uniform(1, 48)), self.now)
        # How far along its path the incident got: older ones are mostly closed.
        age_days = (self.now - aware).days
        if age_days > 45:
            last = rng.choices([4, 3, 2], [85, 8, 7])[0]
        else:
            last = rng.choices([0, 1, 2, 3, 4], [15, 20, 25, 15, 25])[0]
        contain_h = CONTAIN_HOURS[sev] * rng.uniform(0.2, 1.4)
        times = [reported]
        for _ in INCIDENT_PATH[1 : last + 1]:
            step = contain_h if len(times) == 1 else rng.uniform(4, 24 * 10)
            times.append(min(times[-1] + timedelta(hours=step), self.now))
        status = INCIDENT_PATH[last]
        who = self.emails[s.owner_id]
        events = [
            self._event(
                reported,
                "reported",
                f"{sev} {category} incident reported via {source} by {who}; playbook {playbook}",
                {
                    "source": source,
                    "severity": sev,
                    "category": category,
                    "playbook": playbook,
                    "fingerprint": None,
                    "labels": {},
                    "harm": [],
                },
                who,
            )
        ]
        if suggested:
            events.append(
                self._event(
                    reported,
                    "serious-suggested",
                    f"likely serious incident: {suggested[0]}",
                    {"suggestions": [{"kind": suggested[0], "reason": "classification"}]},
                    who,
                )
            )
        facts = IncidentFacts(category=category, severity=sev, tier=s.tier, aware_at=aware)
        clock_rows = []
        contained_at = times[1] if last >= 1 else None
        starts: list[tuple[Any, datetime]] = [
            (pl, reported) for pl in policy.clocks.plan("reported", facts, cls)
        ]
        if serious_kind and confirmed:
            serious = IncidentFacts(
                category=category,
                severity=sev,
                tier=s.tier,
                aware_at=aware,
                serious_kind=serious_kind,
            )
            events.append(
                self._event(
                    confirmed,
                    "serious-confirmed",
                    f"confirmed serious: {serious_kind}",
                    {"kind": serious_kind},
                    who,
                )
            )
            starts += [
                (pl, confirmed) for pl in policy.clocks.plan("serious-confirmed", serious, cls)
            ]
        for plan, started in starts:
            deadline = aware + plan.span
            met_at = None
            if plan.rule.met_on_status:
                met_at = contained_at
            elif last == 4 or rng.random() < 0.6:  # the report was filed
                met_at = self.between(started, min(deadline + plan.span * 0.2, self.now))
            if met_at is not None and met_at <= self.now:
                st, escalated = ClockStatus.met, None
            elif deadline < self.now:
                escalated = min(deadline + timedelta(hours=1), self.now)
                st, met_at = ClockStatus.overdue, None
            else:
                st, escalated, met_at = ClockStatus.running, None, None
            until = met_at or self.now
            fired = [f for f in (0.5, 0.8, 0.95) if aware + plan.span * f <= until]
            clock_rows.append(
                {
                    "rule": plan.rule.id,
                    "label": plan.label,
                    "started_at": aware,
                    "deadline": deadline,
                    "status": st,
                    "reminders_fired": fired,
                    "escalated_at": escalated,
                    "met_at": met_at,
                }
            )
            events.append(
                self._event(
                    started,
                    "clock-started",
                    f"clock started: {plan.label}",
                    {"rule": plan.rule.id, "deadline": deadline.isoformat()},
                    who,
                )
            )
        for old, new, at in zip(
            INCIDENT_PATH, INCIDENT_PATH[1 : last + 1], times[1:], strict=False
        ):
            events.append(
                self._event(
                    at,
                    "status",
                    f"status {old.value} → {new.value}",
                    {"from": old.value, "to": new.value, "note": ""},
                    who,
                )
            )
        closed = last == 4
        root: dict[str, Any] = {}
        if last >= 3:
            why = rng.choice(RISK_TITLES).lower()
            root = {
                "whys": [f"because {why}"],
                "fishbone": {},
                "root_cause": why,
                "recorded_by": who,
                "recorded_at": times[min(2, last)].isoformat(),
            }
        title = f"{sev} {category.split('/')[0]} on {s.name}"
        row = {
            "system_id": s.id,
            "title": title,
            "summary": f"Synthetic {category} incident on {s.name}.",
            "severity": sev,
            "category": category,
            "status": status,
            "source": source,
            "fingerprint": f"fp-{self.tag}-{s.id}-{reported:%Y%m%d%H%M%S}"
            if source == "alertmanager"
            else None,
            "aware_at": aware,
            "reported_at": reported,
            "serious_suggested": suggested,
            "serious_kind": serious_kind,
            "serious_confirmed_at": confirmed,
            "is_drill": drill,
            "playbook": playbook,
            "root_cause": root,
            "lessons": "Add a monitoring alert and a runbook step."
            if closed and rng.random() < 0.5
            else "",
            "flow_run_id": None,
            "reported_by": who,
            "closed_at": times[-1] if closed else None,
        }
        return {"system": s, "row": row, "events": events, "clocks": clock_rows}

    @staticmethod
    def _event(
        at: datetime, kind: str, text: str, data: dict[str, Any], who: str
    ) -> dict[str, Any]:
        return {
            "at": at,
            "kind": kind,
            "text": text,
            "data": data,
            "actor": who,
            "idempotency_key": None,
        }

    def gen_audits(self) -> None:
        with self.meter.phase("audit programme + findings", 12 * (3 + self.n // 100)) as m:
            self._audits(m)

    def _audits(self, m: PhaseCounter) -> None:
        """The programme through the audit service (scope, checklists, independent auditors),
        from two years back: past audits closed with findings, the current one in progress."""
        tz = ZoneInfo(self.settings.timezone)
        start = audits.period_of(self.now - timedelta(days=730), 4, tz)
        result = audits.plan_programme(
            self.uow(), {"name": PROGRAMME, "start": start, "cycle_years": 3}, ACTOR, now=self.now
        )
        if not result.created:
            return  # appended: the programme and its audits are there already
        current = audits.period_of(self.now, 4, tz)
        names = {s.name: s.id for s in self.systems}
        with self.uow().read() as uow:
            rows = uow.session.execute(
                select(
                    Audit.id,
                    Audit.period,
                    Audit.scope,
                    Audit.systems,
                    Audit.planned_start,
                    Audit.auditor_id,
                )
                .join(AuditProgramme)
                .where(AuditProgramme.name == PROGRAMME)
                .order_by(Audit.period)
            ).all()
            emails = dict(uow.session.execute(select(Person.id, Person.email)).all())
        per_audit = 2 + self.n // 100
        updates, findings = [], []
        for a in rows:
            if a.period > current:
                continue
            started = a.planned_start + timedelta(days=self.rng.uniform(3, 20))
            done = a.period < current
            completed = min(started + timedelta(days=self.rng.uniform(20, 50)), self.now)
            updates.append(
                {
                    "id": a.id,
                    "status": AuditStatus.closed if done else AuditStatus.in_progress,
                    "started_at": min(started, self.now),
                    "completed_at": completed if done else None,
                }
            )
            auditor = emails.get(a.auditor_id, ACTOR.who)
            sampled = [names[x] for x in a.systems if x in names]
            count = (per_audit if done else per_audit // 3) if a.scope else 0
            for _ in range(count):
                kind = self.rng.choices(list(FindingKind), [10, 35, 35, 20])[0]
                control = self.rng.choice(a.scope)
                findings.append(
                    {
                        "audit_id": a.id,
                        "control_id": control,
                        "kind": kind,
                        "statement": FINDINGS[kind].format(c=control),
                        "system_id": self.rng.choice(sampled)
                        if sampled and self.rng.random() < 0.6
                        else None,
                        "evidence_id": None,
                        "capa_id": None,
                        "recorded_by": auditor,
                        "created_at": self.between(min(started, self.now), completed),
                    }
                )
            if done:
                self.closed_audits.append((a.id, completed, a.period))
        if updates:
            with self.uow() as uow:
                uow.session.execute(update(Audit), updates)
                uow.commit()
            m.add(len(updates))
        ids = self.bulk(AuditFinding, findings, m)
        self.findings = [
            (fid, f["created_at"], f"{f['kind'].value} on {f['control_id']}")
            for fid, f in zip(ids, findings, strict=True)
        ]
        self.finding_rows = dict(zip(ids, findings, strict=True))
        with self.uow() as uow:
            self.audit_phase(uow, "audits", audits=len(updates), findings=len(ids))
            uow.commit()

    def gen_capas(self) -> None:
        """CAPAs from serious-enough incidents, from nonconformities, and a few raised by hand;
        each with actions, root cause and verification results as far as its status goes."""
        sources: list[tuple[str, dict[str, Any], datetime, int | None]] = []
        for iid, sid, title, reported, sev, drill in self.incident_meta:
            if sev in ("SEV1", "SEV2") and not drill and self.rng.random() < 0.6:
                ref = {"incident_id": iid, "system_id": sid, "control_id": None, "title": title}
                sources.append(("incident", ref, reported + timedelta(hours=2), None))
        for fid, row in self.finding_rows.items():
            if row["kind"] in (FindingKind.major, FindingKind.minor) and self.rng.random() < 0.8:
                ref = {
                    "incident_id": None,
                    "system_id": row["system_id"],
                    "control_id": row["control_id"],
                    "title": row["statement"],
                }
                sources.append(("audit-finding", ref, row["created_at"] + timedelta(days=1), fid))
        for _ in range(max(1, self.n // 50)):
            s = self.rng.choice(self.systems)
            ref = {
                "incident_id": None,
                "system_id": s.id,
                "control_id": None,
                "title": f"Improve monitoring of {s.name}",
            }
            sources.append(("manual", ref, self.ago(300, 1), None))
        rows, actions_per, owners = [], [], self.people["governance-lead"]
        for k, (source, ref, created, _) in enumerate(sources):
            created = min(created, self.now)
            age = (self.now - created).days
            if age < 14:
                status = self.rng.choice(
                    [CapaStatus.containment, CapaStatus.root_cause, CapaStatus.action_plan]
                )
            elif age < 60:
                status = self.rng.choice([CapaStatus.tracking, CapaStatus.verification])
            else:
                status = self.rng.choices(
                    [CapaStatus.closed, CapaStatus.awaiting_closure, CapaStatus.tracking],
                    [70, 10, 20],
                )[0]
            stage = list(CapaStatus).index(status)
            owner = (
                self.rng.choice(owners) if self.rng.random() < 0.5 else self.pick("system-owner")
            )
            who = self.emails[owner]
            attempt = 2 if stage >= 5 and self.rng.random() < 0.1 else 1
            analyses = []
            if stage >= 2:
                rc_at = created + timedelta(days=self.rng.uniform(1, 7))
                for n in range(1, attempt + 1):
                    analyses.append(
                        {
                            "attempt": n,
                            "method": "5-whys",
                            "whys": ["the check was manual", "no owner for the check"],
                            "fishbone": {},
                            "root_cause": "no owner for the check",
                            "similar": [],
                            "recorded_by": who,
                            "recorded_at": rc_at.isoformat(),
                            "evidence_id": None,
                        }
                    )
            acts = []
            if stage >= 3:
                for a in range(self.rng.randint(1, 4)):
                    due = created + timedelta(days=self.rng.uniform(10, 60))
                    done = None
                    if stage >= 4 or (due < self.now and self.rng.random() < 0.5):
                        done = min(due - timedelta(days=self.rng.uniform(-5, 8)), self.now)
                    acts.append(
                        {
                            "title": f"Action {a + 1}: {ref['title'][:200]}",
                            "owner_id": self.pick("system-owner"),
                            "due_at": due,
                            "attempt": attempt,
                            "done_at": done,
                            "evidence_id": None,
                            "reminders_sent": 0 if done else 1,
                            "escalated_at": None,
                        }
                    )
            last_done = max((a["done_at"] for a in acts if a["done_at"]), default=created)
            results = []
            if stage >= 5:
                for n in range(1, attempt + 1):
                    at = min(last_done + timedelta(days=30 * n), self.now)
                    results.append(
                        {
                            "number": n,
                            "attempt": n,
                            "effective": n == attempt,
                            "evidence": "error rate back under threshold for 30 days"
                            if n == attempt
                            else "the error came back in week 2",
                            "verifier": self.emails[self.pick("compliance-officer")],
                            "recorded_by": who,
                            "channel": "cli",
                            "at": at.isoformat(),
                            "evidence_id": None,
                            "closure": None,
                            "closure_reasons": [],
                        }
                    )
            closed = status is CapaStatus.closed
            rows.append(
                {
                    "idempotency_key": f"synth-{self.tag}-capa-{k}",
                    "title": f"CAPA: {ref['title']}"[:300],
                    "description": f"Raised from {source}.",
                    "source": source,
                    "system_id": ref["system_id"],
                    "incident_id": ref["incident_id"],
                    "control_id": ref["control_id"],
                    "owner_id": owner,
                    "status": status,
                    "containment": "" if stage == 0 else "Affected outputs held for review.",
                    "root_cause": {"analyses": analyses} if analyses else {},
                    "attempt": attempt,
                    "verify_after_days": 30,
                    "verification_due_at": last_done + timedelta(days=30) if stage >= 4 else None,
                    "verification": {"results": results} if results else {},
                    "flow_run_id": None,
                    "created_by": who,
                    "created_at": created,
                    "closed_at": min(last_done + timedelta(days=35 * attempt), self.now)
                    if closed
                    else None,
                }
            )
            actions_per.append(acts)
        total = len(rows) + sum(map(len, actions_per))
        with self.meter.phase("capas + actions", total) as m:
            ids = self.bulk(Capa, rows, m)
            acts_rows = [
                {**a, "capa_id": cid}
                for cid, acts in zip(ids, actions_per, strict=True)
                for a in acts
            ]
            self.bulk_plain(CapaAction, acts_rows, m)
            links_rows = [
                {"id": fid, "capa_id": cid}
                for cid, (*_, fid) in zip(ids, sources, strict=True)
                if fid is not None
            ]
            if links_rows:
                with self.uow() as uow:
                    uow.session.execute(update(AuditFinding), links_rows)
                    uow.commit()
            self.capas = [
                (cid, r["created_at"], r["title"]) for cid, r in zip(ids, rows, strict=True)
            ]
            with self.uow() as uow:
                self.audit_phase(uow, "capas", capas=len(ids), actions=len(acts_rows))
                uow.commit()

    def gen_soa_context(self) -> None:
        """Statement of Applicability decisions for most Annex A controls, and context changes
        (issues, interested parties, improvements) over the last two years."""
        with self.uow().read() as uow:
            controls = list(
                uow.session.scalars(
                    select(Control.id)
                    .where(Control.kind == ControlKind.annex_control)
                    .order_by(Control.position)
                )
            )
            decided = set(uow.session.scalars(select(SoaEntry.control_id)))
        lead = self.emails[self.people["governance-lead"][0]]
        soa = []
        for cid in controls:
            if cid in decided or self.rng.random() < 0.1:  # a few still undecided
                continue
            applicable = self.rng.random() < 0.9
            soa.append(
                {
                    "control_id": cid,
                    "applicable": applicable,
                    "justification": "Required by the AI risk assessment"
                    if applicable
                    else "No AI system of ours falls under this control",
                    "updated_by": lead,
                    "updated_at": self.ago(500, 30),
                }
            )
        kinds = list(ContextKind)
        context = []
        for _ in range(8 + self.n // 100):
            kind = self.rng.choice(kinds)
            context.append(
                {
                    "kind": kind,
                    "title": f"{kind.value.replace('-', ' ').capitalize()}: "
                    f"{self.rng.choice(RISK_TITLES).lower()}",
                    "description": "Recorded for the next management review.",
                    "change": self.rng.choice(["new", "changed", "resolved"]),
                    "recorded_by": lead,
                    "recorded_at": self.ago(730, 1),
                }
            )
        with self.meter.phase("SoA + context", len(soa) + len(context)) as m:
            self.bulk_plain(SoaEntry, soa, m)
            self.bulk_plain(ContextEntry, context, m)
            with self.uow() as uow:
                self.audit_phase(uow, "soa+context", soa=len(soa), context=len(context))
                uow.commit()

    # -- evidence: the keyed chain, in bulk

    def evidence_specs(self) -> Iterator[tuple[str, str, str, datetime]]:
        """(subject, kind, title, created_at) for every record, system by system, then the
        organisation's own records (training, audits, findings, CAPAs)."""
        rng = self.rng
        for s in self.systems:
            out: list[tuple[str, str, str, datetime]] = []
            for rid, at in s.risks:
                out.append(
                    (
                        f"risk:{rid}",
                        "risk-assessment",
                        f"Risk assessment of risk {rid}",
                        at + timedelta(hours=rng.uniform(1, 72)),
                    )
                )
            for iid, aware, closed in s.incidents:
                out.append(
                    (
                        f"incident:{iid}",
                        "incident-report",
                        f"Incident {iid} report",
                        min(aware + timedelta(hours=rng.uniform(1, 48)), self.now),
                    )
                )
                if closed:
                    out.append(
                        (
                            f"incident:{iid}",
                            "root-cause-analysis",
                            f"Incident {iid} root cause analysis",
                            min(aware + timedelta(days=rng.uniform(3, 20)), self.now),
                        )
                    )
            kinds = [k for st in STAGES[: STAGES.index(s.stage) + 1] for k in STAGE_EVIDENCE[st]]
            kinds += ["decision"] * STAGES.index(s.stage) + ["other"]
            target = rng.randint(EVIDENCE_PER_SYSTEM - 5, EVIDENCE_PER_SYSTEM + 5)
            version: dict[str, int] = {}
            while len(out) < target:
                kind = rng.choice(kinds)
                version[kind] = version.get(kind, 0) + 1
                out.append(
                    (
                        f"system:{s.name}",
                        kind,
                        f"{kind} v{version[kind]}: {s.name}",
                        self.between(s.created_at, self.now),
                    )
                )
            yield from out
        for pid, completed, name in self.training_records:
            yield (
                f"person:{self.emails[pid]}",
                "training-record",
                f"{name} completed",
                completed + timedelta(hours=1),
            )
        for aid, completed, period in self.closed_audits:
            yield (f"audit:{aid}", "audit-report", f"Internal audit {period} report", completed)
        for fid, at, title in self.findings:
            yield (f"finding:{fid}", "audit-finding", f"Finding {fid}: {title}"[:300], at)
        for cid, at, title in self.capas:
            yield (f"capa:{cid}", "capa-record", title[:300], at + timedelta(hours=1))

    def gen_evidence(self) -> None:
        key = evidence.evidence_key(self.settings)
        rough = self.n * EVIDENCE_PER_SYSTEM + len(self.training_records)
        rough += len(self.closed_audits) + len(self.findings) + len(self.capas)
        specs = self.evidence_specs()
        with self.meter.phase("evidence (keyed chain)", rough) as m:
            count, done = 0, False
            while not done:
                part = []
                for spec in specs:
                    part.append(spec)
                    if len(part) == BATCH:
                        break
                else:
                    done = True
                if not part:
                    break
                with self.uow() as uow:
                    count, head = _lock_head(uow.session)
                    rows = []
                    for subject, kind, title, at in part:
                        count += 1
                        text = (
                            f"# {title}\n\nSubject {subject}. Synthetic record {count} "
                            f"(seed {self.seed}, {self.tag}), recorded {at:%Y-%m-%d}.\n"
                        )
                        raw = text.encode()
                        fields = {
                            "seq": count,
                            "subject": subject,
                            "kind": kind,
                            "title": title,
                            "content_sha256": hashlib.sha256(raw).hexdigest(),
                            "size": len(raw),
                            "media_type": "text/markdown; charset=utf-8",
                            "file_name": None,
                            "actor": ACTOR.who,
                            "channel": ACTOR.channel,
                            "idempotency_key": f"synth-{self.tag}-{count}",
                            "created_at": at,
                        }
                        prev, head = head, evidence.chain_value(key, head, fields)
                        rows.append({**fields, "content": text, "prev_chain": prev, "chain": head})
                    uow.session.execute(insert(Evidence), rows)
                    uow.session.execute(
                        update(EvidenceHead)
                        .where(EvidenceHead.id == evidence.HEAD_ID)
                        .values(count=count, head=head)
                        .execution_options(synchronize_session=False)
                    )
                    uow.commit()
                m.add(len(part))
            evidence.sync_anchor(self.settings)
            with self.uow() as uow:
                self.audit_phase(uow, "evidence", records=m.timing.rows, head_seq=count)
                uow.commit()


def _lock_head(session: Session) -> tuple[int, str]:
    """Lock the chain head row first (as the evidence service does), then read it."""
    locked = session.execute(
        update(EvidenceHead)
        .where(EvidenceHead.id == evidence.HEAD_ID)
        .values(count=EvidenceHead.count)
        .execution_options(synchronize_session=False)
    )
    if locked.rowcount != 1:  # type: ignore[attr-defined]
        raise AimsError("the evidence head row is missing: is the database initialised?")
    row = session.execute(
        select(EvidenceHead.count, EvidenceHead.head).where(EvidenceHead.id == evidence.HEAD_ID)
    ).one()
    return int(row.count), str(row.head)


# --- counts and the command line -----------------------------------------------------------------

COUNTED: Final = [
    ("people", Person),
    ("AI systems", AISystem),
    ("vendors", Vendor),
    ("RACI activities", RaciActivity),
    ("gate reviews", GateReview),
    ("training records", TrainingRecord),
    ("risks", Risk),
    ("incidents", Incident),
    ("incident timeline events", IncidentEvent),
    ("regulatory clocks", RegulatoryClock),
    ("audits", Audit),
    ("audit findings", AuditFinding),
    ("CAPAs", Capa),
    ("CAPA actions", CapaAction),
    ("evidence records", Evidence),
]


def table_counts(settings: Settings) -> dict[str, int]:
    with UnitOfWork(settings).read() as uow:
        return {
            label: uow.session.scalar(select(func.count()).select_from(model)) or 0
            for label, model in COUNTED
        }


def summary(console: Console, phases: list[PhaseTime], counts: dict[str, int]) -> None:
    t = Table(title="phases")
    t.add_column("phase")
    t.add_column("rows", justify="right")
    t.add_column("seconds", justify="right")
    t.add_column("rows/s", justify="right")
    for p in phases:
        rate = p.rows / p.seconds if p.seconds else 0
        t.add_row(p.name, f"{p.rows:,}", f"{p.seconds:.2f}", f"{rate:,.0f}")
    total = sum(p.seconds for p in phases)
    t.add_row("total", f"{sum(p.rows for p in phases):,}", f"{total:.2f}", "", style="bold")
    console.print(t)
    c = Table(title="the database now holds")
    c.add_column("table")
    c.add_column("rows", justify="right")
    for label, n in counts.items():
        c.add_row(label, f"{n:,}")
    console.print(c)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/synth.py",
        description="Fill an AIMS database with a realistic, seeded synthetic organisation.",
    )
    size = ap.add_mutually_exclusive_group(required=True)
    size.add_argument("--systems", type=int, metavar="N", help="number of AI systems")
    size.add_argument("--size", choices=sorted(SIZES), help="S=500, M=5,000, L=20,000 systems")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--database-url", help="SQLAlchemy URL (default: the data dir's SQLite)")
    ap.add_argument(
        "--data-dir",
        type=Path,
        help="AIMS data dir: the SQLite database, and always the evidence key and anchor "
        "(default: AIMS_DATA_DIR or .aims)",
    )
    ap.add_argument("--now", type=parse_now, help="ISO date-time the data is relative to")
    ap.add_argument("--append", action="store_true", help="add to a database that has systems")
    args = ap.parse_args(argv)
    args.systems = args.systems if args.systems is not None else SIZES[args.size]
    if args.systems < 1:
        ap.error("--systems must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.database_url is not None:
        overrides["database_url"] = args.database_url
    settings = Settings(**overrides)
    now = args.now or datetime.now(UTC).replace(microsecond=0)
    console = Console(stderr=True)
    try:
        started = time.perf_counter()
        initialise(settings, ACTOR)
        init_s = time.perf_counter() - started
        progress = Progress(
            TextColumn("{task.description:<30}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        meter = Meter(progress, [PhaseTime("initialise (schema, catalogs)", 0, init_s)])
        with progress:
            Synth(settings, args.systems, args.seed, now, meter).run(args.append)
    except AimsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:  # unreachable or refused: one line, as the CLI says it
        message, code = database_problem(exc)
        print(f"error: {message}", file=sys.stderr)
        return code
    summary(Console(), meter.phases, table_counts(settings))
    target = "the given --database-url" if settings.database_url else str(settings.data_dir)
    print(
        f"{args.systems:,} systems, seed {args.seed}, as of {now:%Y-%m-%d %H:%M} UTC, in {target}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
