"""The stage-gate policy as data: what each gate demands of each risk tier.

Loaded from the packaged `data/gate_policy.yaml`, or from the organisation's own file
(AIMS_GATE_POLICY_FILE), and checked in full on load: every problem is listed with its place (line
and path), so whoever edits the file fixes it in one go. A policy that loads is complete (every
gate a tier may reach has a rule for that tier), so the gate service never meets a hole at request
time. Whether enough people hold the approver roles is left to request time: people change, the
policy does not.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aims_core import catalog
from aims_core.errors import AimsError
from aims_core.models import ControlKind, LifecycleStage, RiskTier
from aims_core.rules.loading import Place, load_located, problem_at, syntax_problem
from aims_core.settings import Settings

__all__ = [
    "GATES",
    "PACKAGED",
    "STAGES",
    "EvidenceRequirement",
    "GatePolicy",
    "GatePolicyError",
    "GateRule",
    "TierCeiling",
    "load_policy",
    "packaged_policy",
    "parse_policy",
    "policy_for",
]

#: The life cycle in order (the enum is declared in order).
STAGES: Final[tuple[LifecycleStage, ...]] = tuple(LifecycleStage)
#: Every gate, named by the stage it enters; systems start at concept, so no gate enters it.
GATES: Final[tuple[LifecycleStage, ...]] = STAGES[1:]
PACKAGED: Final = "packaged gate_policy.yaml"


class GatePolicyError(AimsError):
    """A policy file that cannot be used; the message names every problem and where it is."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        n = len(self.problems)
        head = f"invalid gate policy {source}: {n} problem{'s' * (n != 1)}"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvidenceRequirement(_Strict):
    """One evidence kind a gate needs, and the Annex A control it is evidence of."""

    kind: str
    control: str
    note: str = ""


class GateRule(_Strict):
    """What one gate demands of one tier: evidence, then `quorum` approvals from these roles."""

    evidence: tuple[EvidenceRequirement, ...] = ()
    approvers: tuple[str, ...]
    quorum: int


class _Ceiling(_Strict):
    stage: str
    reason: str = Field(min_length=1)


class _PolicyFile(_Strict):
    """The file as written; names are plain strings here and checked against the catalogs."""

    also_from: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    ceilings: dict[str, _Ceiling] = Field(default_factory=dict)
    gates: dict[str, dict[str, GateRule]]


class TierCeiling(_Strict):
    """The furthest stage a tier may ever reach, and why (shown when a gate beyond is refused)."""

    stage: LifecycleStage
    reason: str


class GatePolicy(_Strict):
    """A validated, complete policy."""

    source: str
    also_from: dict[LifecycleStage, tuple[LifecycleStage, ...]]
    ceilings: dict[RiskTier, TierCeiling]
    gates: dict[LifecycleStage, dict[RiskTier, GateRule]]

    def entered_from(self, to_stage: LifecycleStage) -> tuple[LifecycleStage, ...]:
        """The stages from which a system may enter `to_stage`: the one before it, and any
        the policy adds (e.g. decommission from deployment)."""
        index = STAGES.index(to_stage)
        previous = (STAGES[index - 1],) if index > 0 else ()
        return tuple(dict.fromkeys(previous + self.also_from.get(to_stage, ())))

    def refusal(self, to_stage: LifecycleStage, tier: RiskTier) -> str | None:
        """Why no system of `tier` may ever enter `to_stage`, or None."""
        ceiling = self.ceilings.get(tier)
        if ceiling is not None and STAGES.index(to_stage) > STAGES.index(ceiling.stage):
            return ceiling.reason
        return None

    def rule(self, to_stage: LifecycleStage, tier: RiskTier) -> GateRule:
        """The rule of a gate for a tier; complete by validation wherever no ceiling refuses."""
        return self.gates[to_stage][tier]


# --- loading -----------------------------------------------------------------------------------


@functools.cache
def packaged_policy() -> GatePolicy:
    text = resources.files("aims_core.data").joinpath("gate_policy.yaml").read_text("utf-8")
    return parse_policy(text, PACKAGED)


def load_policy(path: Path | None = None) -> GatePolicy:
    """The policy in `path`, or the packaged one; GatePolicyError lists every problem."""
    if path is None:
        return packaged_policy()
    path = path.expanduser()
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GatePolicyError(str(path), [f"cannot read the file: {exc}"]) from None
    return parse_policy(text, str(path))


def policy_for(settings: Settings) -> GatePolicy:
    """The policy in force: the organisation's file when configured, else the packaged one.

    Re-read when the file changes, so a long-lived process never applies a stale policy."""
    path = settings.gate_policy_file
    if path is None:
        return packaged_policy()
    path = path.expanduser().resolve()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise GatePolicyError(
            str(path), [f"AIMS_GATE_POLICY_FILE: cannot read the file: {exc}"]
        ) from None
    return _cached_file(path, stamp)


@functools.lru_cache(maxsize=8)
def _cached_file(path: Path, stamp: int) -> GatePolicy:
    return load_policy(path)


def parse_policy(text: str, source: str) -> GatePolicy:
    try:
        raw, root = load_located(text)
    except yaml.YAMLError as exc:
        raise GatePolicyError(source, [syntax_problem(exc)]) from None
    if not isinstance(raw, dict):
        raise GatePolicyError(source, ["the file must be a mapping with a 'gates' key"])
    try:
        doc = _PolicyFile.model_validate(raw)
    except ValidationError as exc:
        raise GatePolicyError(source, _structure_problems(exc, root)) from None
    problems = [problem_at(root, place, msg) for place, msg in _check(doc)]
    if problems:
        raise GatePolicyError(source, problems)
    return GatePolicy.model_validate({"source": source, **doc.model_dump(exclude_defaults=False)})


# --- checks ------------------------------------------------------------------------------------


def _known(value: str, names: Iterable[str], what: str) -> str:
    """`unknown role 'complaince-officer' (did you mean 'compliance-officer'?)`."""
    names = list(names)
    close = difflib.get_close_matches(value, names, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"one of: {', '.join(names)}"
    return f"unknown {what} '{value}' ({hint})"


def _check(doc: _PolicyFile) -> list[tuple[Place, str]]:
    """Every semantic problem of a structurally valid file, with its place."""
    stages = [s.value for s in STAGES]
    gates = [s.value for s in GATES]
    tiers = [t.value for t in RiskTier]
    kinds = catalog.evidence_kinds()
    controls = {r.id: r for r in catalog.requirements()}
    annex = [r.id for r in catalog.annex_a_controls()]
    roles = [r.id for r in catalog.roles()]
    out: list[tuple[Place, str]] = []

    for stage, froms in doc.also_from.items():
        if stage not in gates:
            out.append((("also_from", stage), _known(stage, gates, "stage")))
        for i, frm in enumerate(froms):
            if frm not in stages:
                out.append((("also_from", stage, i), _known(frm, stages, "stage")))

    ceiling_of: dict[str, int] = {}
    for tier, ceiling in doc.ceilings.items():
        if tier not in tiers:
            out.append((("ceilings", tier), _known(tier, tiers, "risk tier")))
        if ceiling.stage not in stages:
            out.append((("ceilings", tier, "stage"), _known(ceiling.stage, stages, "stage")))
        else:
            ceiling_of[tier] = stages.index(ceiling.stage)

    for stage, by_tier in doc.gates.items():
        if stage == LifecycleStage.concept.value:
            out.append((("gates", stage), "no gate enters concept: every system starts there"))
        elif stage not in gates:
            out.append((("gates", stage), _known(stage, gates, "stage")))
        for tier, rule in by_tier.items():
            here: Place = ("gates", stage, tier)
            if tier not in tiers:
                out.append((here, _known(tier, tiers, "risk tier")))
            elif stage in stages and stages.index(stage) > ceiling_of.get(tier, len(stages)):
                limit = doc.ceilings[tier].stage
                why = f"never applies: {tier} systems cannot pass beyond {limit} (ceilings.{tier})"
                out.append((here, why))
            out.extend(_check_rule(here, rule, kinds, controls, annex, roles))

    for stage in gates:
        reachable = [t for t in tiers if stages.index(stage) <= ceiling_of.get(t, len(stages))]
        missing = [t for t in reachable if t not in doc.gates.get(stage, {})]
        # A tier stopped before this stage by its ceiling needs no rule here: say so, since
        # the missing rule may come from a ceiling removed rather than a rule forgotten.
        uncapped = [t for t in missing if t not in ceiling_of]
        hint = (
            f", nor a ceiling in ceilings stopping {', '.join(uncapped)} earlier"
            if uncapped
            else ""
        )
        if stage not in doc.gates and missing:
            out.append(
                (("gates",), f"no gate '{stage}' (it needs a rule for {', '.join(missing)}{hint})")
            )
        elif missing:
            out.append((("gates", stage), f"no rule for tier {', '.join(missing)}{hint}"))
    return out


def _check_rule(
    here: Place,
    rule: GateRule,
    kinds: dict[str, catalog.EvidenceKind],
    controls: dict[str, catalog.Requirement],
    annex: list[str],
    roles: list[str],
) -> list[tuple[Place, str]]:
    out: list[tuple[Place, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(rule.evidence):
        place: Place = (*here, "evidence", i)
        if item.kind not in kinds:
            out.append(((*place, "kind"), _known(item.kind, kinds, "evidence kind")))
        elif item.kind in seen:
            out.append(((*place, "kind"), f"evidence kind '{item.kind}' listed twice"))
        seen.add(item.kind)
        control = controls.get(item.control)
        if control is None:
            out.append(((*place, "control"), _known(item.control, annex, "control id")))
        elif control.kind is not ControlKind.annex_control:
            why = f"'{item.control}' is a {control.kind.value}, not an Annex A control"
            out.append(((*place, "control"), why))
    if not rule.approvers:
        out.append(((*here, "approvers"), "no approver roles: someone must approve every gate"))
    for i, role in enumerate(rule.approvers):
        if role not in roles:
            out.append(((*here, "approvers", i), _known(role, roles, "role")))
    if rule.quorum < 1:
        out.append(((*here, "quorum"), f"quorum {rule.quorum}: must be at least 1"))
    return out


# --- places ------------------------------------------------------------------------------------


def _structure_problems(exc: ValidationError, root: yaml.Node | None) -> list[str]:
    out = []
    for err in exc.errors():
        place = tuple(p for p in err["loc"] if isinstance(p, str | int))
        if err["type"] == "extra_forbidden":
            msg = f"unknown field '{place[-1]}'"
        elif err["type"] == "missing":
            msg = f"missing field '{place[-1]}'"
            place = place[:-1]
        else:
            msg = err["msg"]
        out.append(problem_at(root, place, msg))
    return out
