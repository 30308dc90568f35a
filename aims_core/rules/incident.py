"""Incident classification and clock rules as data (clause 10, A.8.4; EU AI Act Art. 3(49), 73).

Two files, shipped in `aims_core/data/` and overridable by the organisation's own copies in the
data dir: `incident_classification.yaml` (severities with response targets and who is told,
categories with their playbook, the serious-incident rule) and `regulatory_clocks.yaml` (which
deadlines run from `aware_at`, with reminders and escalation). Both are checked strictly on load,
and against each other, and every problem is named at once, so whoever edits them fixes the whole
file in one go. Services never meet an unknown role, kind or severity at incident time.

No Prefect, no database: plain functions of the data and the facts of one incident.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Final, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from aims_core import catalog
from aims_core.errors import AimsError, InvalidInput
from aims_core.models import IncidentStatus, RiskTier, as_utc
from aims_core.rules.loading import load_located
from aims_core.settings import Settings

__all__ = [
    "CLASSIFICATION_FILE",
    "CLOCKS_FILE",
    "Answerers",
    "Category",
    "Classification",
    "ClockRule",
    "ClockRules",
    "Duration",
    "IncidentFacts",
    "IncidentPolicy",
    "IncidentPolicyInvalid",
    "ResolvedCategory",
    "ResponseAsks",
    "Severity",
    "Suggestion",
    "incident_policy",
    "normalise_category",
    "parse_classification",
    "parse_clock_rules",
]

CLASSIFICATION_FILE: Final = "incident_classification.yaml"
CLOCKS_FILE: Final = "regulatory_clocks.yaml"
CATEGORY_MAX: Final = 40  # Incident.category is VARCHAR(40)
RULE_ID_MAX: Final = 64  # RegulatoryClock.rule is VARCHAR(64)

Id = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9-]*$", max_length=40)
]
SeverityId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^SEV[0-9]{1,2}$")]
RoleId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=80)]
Target = Literal["acknowledge", "contain", "update_every", "resolve"]
Start = Literal["reported", "serious-confirmed"]


class IncidentPolicyInvalid(AimsError):
    """A policy file that cannot be used; `problems` lists each as `field: problem`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        n = len(problems)
        super().__init__(
            f"invalid incident policy {source}: {n} problem{'s' * (n != 1)}\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Duration(_Strict):
    """A span in calendar time: `{days: 10}`, `{hours: 72}`, `{minutes: 15}` (may combine)."""

    days: int = Field(default=0, ge=0)
    hours: int = Field(default=0, ge=0)
    minutes: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _not_zero(self) -> Self:
        if not (self.days or self.hours or self.minutes):
            raise ValueError("must be longer than zero (give days, hours or minutes)")
        return self

    @property
    def delta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes)

    def human(self) -> str:
        return human_delta(self.delta)


def human_delta(delta: timedelta) -> str:
    """`10 days`, `72 h`, `4 h 30 min`, `15 min`: how a person says a deadline."""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days and not hours and not mins:
        return f"{days} day{'s' * (days != 1)}"
    hours += days * 24
    parts = [f"{hours} h"] if hours else []
    if mins or not parts:
        parts.append(f"{mins} min")
    return " ".join(parts)


# --- classification ----------------------------------------------------------------------------


class ResponseTargets(_Strict):
    acknowledge: Duration
    contain: Duration | None = None
    update_every: Duration | None = None
    resolve: Duration | None = None


class Severity(_Strict):
    id: SeverityId
    title: Title
    description: str = ""
    response: ResponseTargets
    notify_roles: list[RoleId] = Field(default_factory=list)
    notify_channel: bool = False

    def target(self, name: Target) -> Duration | None:
        value: Duration | None = getattr(self.response, name)
        return value

    def response_line(self) -> str:
        """`acknowledge within 15 min, contain within 4 h, ...` for messages and the CLI."""
        words = {"update_every": "update every"}
        parts = []
        for name in ("acknowledge", "contain", "update_every", "resolve"):
            d = self.target(name)  # type: ignore[arg-type]
            if d is not None:
                verb = words.get(name, f"{name} within")
                parts.append(f"{verb} {d.human()}")
        return ", ".join(parts)


class Subcategory(_Strict):
    id: Id
    title: Title
    playbook: Id | None = None


class Category(_Strict):
    id: Id
    title: Title
    description: str = ""
    playbook: Id
    aliases: list[Id] = Field(default_factory=list)
    also_notify: list[RoleId] = Field(default_factory=list)
    subcategories: list[Subcategory] = Field(default_factory=list)


class SeriousKind(_Strict):
    id: Id
    title: Title
    basis: str = ""
    keywords: list[Keyword] = Field(default_factory=list)


class Signals(_Strict):
    harm_labels: list[str] = Field(default_factory=list)
    text_labels: list[str] = Field(default_factory=list)
    scan_title_and_summary: bool = True


class CategoryRule(_Strict):
    """Suggest `suggests` for incidents of these categories (and tiers, severities, if given)."""

    categories: list[str] = Field(min_length=1)
    tiers: list[RiskTier] = Field(default_factory=list)
    severities: list[str] = Field(default_factory=list)
    suggests: str


class Confirmers(_Strict):
    """Who confirms (or dismisses) a likely serious incident: an ask to these roles, scoped by
    the RACI of `activity` where the system has one."""

    roles: list[str] = Field(default_factory=lambda: ["governance-lead", "compliance-officer"])
    quorum: int = Field(default=1, ge=1)
    activity: str = "serious-incident-confirmation"


class Answerers(_Strict):
    """Who answers one of the response run's questions: holders of `roles` within the RACI of
    `activity` for the system (its Responsible and Consulted, plus its Accountable), and the
    system's owner when `system_owner` (the people who know the system and ran the response)."""

    roles: list[RoleId] = Field(default_factory=lambda: ["incident-responder"])
    system_owner: bool = True
    quorum: int = Field(default=1, ge=1)
    activity: Id = "incident-response"


class ResponseAsks(_Strict):
    """The questions the response run asks after containment: the root cause, the lessons
    learned, and what was changed after a refused closure (never answered by whoever refused
    it: they check it at the next closure request)."""

    root_cause: Answerers = Answerers()
    lessons: Answerers = Answerers()
    amendment: Answerers = Answerers()


class SeriousRule(_Strict):
    kinds: list[SeriousKind] = Field(min_length=1)
    signals: Signals = Signals()
    category_rules: list[CategoryRule] = Field(default_factory=list)
    confirmed_by: Confirmers = Confirmers()


@dataclass(frozen=True)
class ResolvedCategory:
    """A category as stored (`id` or `id/sub`), with the playbook it runs."""

    stored: str
    category: Category
    sub: Subcategory | None

    @property
    def playbook(self) -> str:
        return (self.sub.playbook if self.sub and self.sub.playbook else None) or (
            self.category.playbook
        )


@dataclass(frozen=True)
class Suggestion:
    """A serious-incident kind the rule suggests, and why (shown on the timeline)."""

    kind: str
    reason: str


def normalise_category(value: str) -> str:
    """`Model failure`, `model_failure` → `model-failure`; `/` separates a subcategory."""
    value = value.strip().lower().replace("_", "-")
    return "/".join(re.sub(r"\s+", "-", p.strip()) for p in value.split("/"))


def _keyword_pattern(keywords: Iterable[str]) -> re.Pattern[str] | None:
    words = [re.escape(k.lower()).replace(r"\ ", r"\s+") for k in keywords]
    if not words:
        return None
    # Whole words only: "dies" must not match "studies", nor "death" match "deathly-slow".
    return re.compile(r"(?<![\w-])(?:" + "|".join(words) + r")(?![\w-])", re.IGNORECASE)


class Classification(_Strict):
    severities: list[Severity] = Field(min_length=1)
    categories: list[Category] = Field(min_length=1)
    serious_incident: SeriousRule
    response_asks: ResponseAsks = ResponseAsks()

    # --- lookups (InvalidInput names the field a caller gave) ---------------------------------

    @property
    def severity_ids(self) -> list[str]:
        return [s.id for s in self.severities]

    @property
    def kind_ids(self) -> list[str]:
        return [k.id for k in self.serious_incident.kinds]

    def severity(self, value: str, field: str = "severity") -> Severity:
        wanted = value.strip().upper()
        for s in self.severities:
            if s.id == wanted:
                return s
        raise InvalidInput(
            f"unknown severity '{value}' (one of: {', '.join(self.severity_ids)})", field=field
        )

    def serious_kind(self, value: str, field: str = "kind") -> SeriousKind:
        wanted = value.strip().lower()
        for k in self.serious_incident.kinds:
            if k.id == wanted:
                return k
        raise InvalidInput(
            f"unknown serious-incident kind '{value}' (one of: {', '.join(self.kind_ids)})",
            field=field,
        )

    def _parent(self, value: str) -> Category | None:
        for c in self.categories:
            if value == c.id or value in c.aliases:
                return c
        return None

    def resolve_category(self, value: str, field: str = "category") -> ResolvedCategory:
        """`id`, an alias, `id/sub` or a bare subcategory id → the stored form and playbook."""
        raw = normalise_category(value)
        parent_raw, _, sub_raw = raw.partition("/")
        parent = self._parent(parent_raw)
        if parent is not None:
            if not sub_raw:
                return ResolvedCategory(parent.id, parent, None)
            for sub in parent.subcategories:
                if sub.id == sub_raw:
                    return ResolvedCategory(f"{parent.id}/{sub.id}", parent, sub)
            subs = ", ".join(s.id for s in parent.subcategories) or "none"
            raise InvalidInput(
                f"'{sub_raw}' is not a subcategory of {parent.id} (subcategories: {subs})",
                field=field,
            )
        if not sub_raw:
            for c in self.categories:
                for sub in c.subcategories:
                    if sub.id == raw:
                        return ResolvedCategory(f"{c.id}/{sub.id}", c, sub)
        known = ", ".join(c.id for c in self.categories)
        raise InvalidInput(f"unknown category '{value}' (one of: {known})", field=field)

    def notify_roles(self, severity: str, category: str) -> list[str]:
        """The roles told when an incident is reported: the severity's, then the category's."""
        sev = self.severity(severity)
        cat = self.resolve_category(category).category
        return list(dict.fromkeys([*sev.notify_roles, *cat.also_notify]))

    # --- the serious-incident rule ------------------------------------------------------------

    @functools.cached_property
    def _patterns(self) -> dict[str, re.Pattern[str] | None]:
        return {k.id: _keyword_pattern(k.keywords) for k in self.serious_incident.kinds}

    def suggest_serious(
        self,
        *,
        title: str,
        summary: str,
        category: str,
        severity: str,
        tier: RiskTier | str,
        labels: Mapping[str, str] | None = None,
        harm: Iterable[str] = (),
    ) -> list[Suggestion]:
        """The kinds this incident is likely to be, each with its first reason, in data order.

        A suggestion is not a finding: Art. 73 runs from a person's confirmation (the kind they
        confirm), so the rule errs towards asking.
        """
        labels = {k.strip().lower(): v for k, v in (labels or {}).items()}
        rule = self.serious_incident
        found: dict[str, str] = {}

        def match_text(text: str, where: str, *, by_id: bool) -> None:
            norm = normalise_category(text)
            for kind in rule.kinds:
                if kind.id in found:
                    continue
                if by_id and norm == kind.id:
                    found[kind.id] = f"{where} names it"
                    continue
                pattern = self._patterns[kind.id]
                m = pattern.search(text) if pattern else None
                if m:
                    found[kind.id] = f"'{m.group(0)}' in {where}"

        for entry in harm:
            match_text(entry, "harm", by_id=True)
        for key in rule.signals.harm_labels:
            for part in (labels.get(key.lower()) or "").split(","):
                if part.strip():
                    match_text(part.strip(), f"label {key}", by_id=True)
        if rule.signals.scan_title_and_summary:
            match_text(title, "title", by_id=False)
            match_text(summary, "summary", by_id=False)
        for key in rule.signals.text_labels:
            if labels.get(key.lower()):
                match_text(labels[key.lower()], f"label {key}", by_id=False)

        parent = self.resolve_category(category).category.id
        tier_value = RiskTier(tier)
        for r in rule.category_rules:
            if r.suggests in found or parent not in r.categories:
                continue
            if r.tiers and tier_value not in r.tiers:
                continue
            if r.severities and severity not in r.severities:
                continue
            found[r.suggests] = f"{parent} {severity} on a {tier_value.value}-risk system"
        return [Suggestion(k, found[k]) for k in self.kind_ids if k in found]

    # --- the checks a schema cannot express ---------------------------------------------------

    def problems(self, roles: set[str]) -> list[str]:
        out: list[str] = []
        _dupes(out, "severities", [s.id for s in self.severities])
        _dupes(out, "categories", [c.id for c in self.categories])
        _dupes(out, "serious_incident.kinds", self.kind_ids)
        for i, s in enumerate(self.severities):
            _known_roles(out, f"severities.{i}.notify_roles", s.notify_roles, roles)
        names: dict[str, str] = {}
        subs: dict[str, str] = {}
        for i, c in enumerate(self.categories):
            _known_roles(out, f"categories.{i}.also_notify", c.also_notify, roles)
            for name in [c.id, *c.aliases]:
                if name in names and names[name] != c.id:
                    out.append(f"categories.{i}: '{name}' already names category {names[name]}")
                names.setdefault(name, c.id)
            for j, sub in enumerate(c.subcategories):
                where = f"categories.{i}.subcategories.{j}"
                if sub.id in subs:
                    out.append(f"{where}: '{sub.id}' is also a subcategory of {subs[sub.id]}")
                subs.setdefault(sub.id, c.id)
                if len(f"{c.id}/{sub.id}") > CATEGORY_MAX:
                    out.append(f"{where}: '{c.id}/{sub.id}' is longer than {CATEGORY_MAX}")
        for sub_id, parent in subs.items():
            if sub_id in names:
                out.append(
                    f"categories: subcategory '{sub_id}' of {parent} is also a category name"
                )
        for name in ResponseAsks.model_fields:
            who: Answerers = getattr(self.response_asks, name)
            _known_roles(out, f"response_asks.{name}.roles", who.roles, roles)
            if not who.roles and not who.system_owner:
                out.append(f"response_asks.{name}: asks nobody (give roles or system_owner)")
        kinds = set(self.kind_ids)
        for i, r in enumerate(self.serious_incident.category_rules):
            where = f"serious_incident.category_rules.{i}"
            _known(out, f"{where}.categories", r.categories, set(names.values()), "category")
            _known(out, f"{where}.severities", r.severities, set(self.severity_ids), "severity")
            _known(out, f"{where}.suggests", [r.suggests], kinds, "serious-incident kind")
        return out


def _dupes(out: list[str], where: str, ids: list[str]) -> None:
    seen = sorted({x for x in ids if ids.count(x) > 1})
    if seen:
        out.append(f"{where}: duplicate id(s) {', '.join(seen)}")


def _known(out: list[str], where: str, values: Iterable[str], known: set[str], what: str) -> None:
    for v in values:
        if v not in known:
            out.append(f"{where}: unknown {what} '{v}' (known: {', '.join(sorted(known))})")


def _known_roles(out: list[str], where: str, values: Iterable[str], roles: set[str]) -> None:
    _known(out, where, values, roles, "role")


# --- clock rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentFacts:
    """What the clock rules look at. `category` is the stored form (`id` or `id/sub`)."""

    category: str
    severity: str
    tier: RiskTier
    aware_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)
    harm: tuple[str, ...] = ()
    serious_kind: str | None = None


class Condition(_Strict):
    """One alternative of a rule's `when`: every filter given must match."""

    categories: list[str] = Field(default_factory=list)
    severities: list[str] = Field(default_factory=list)
    tiers: list[RiskTier] = Field(default_factory=list)
    labels: dict[str, list[str]] = Field(default_factory=dict)
    harm: list[str] = Field(default_factory=list)

    def matches(self, facts: IncidentFacts) -> bool:
        parent = facts.category.split("/", 1)[0]
        if self.categories and not ({facts.category, parent} & set(self.categories)):
            return False
        if self.severities and facts.severity not in self.severities:
            return False
        if self.tiers and facts.tier not in self.tiers:
            return False
        labels = {k.lower(): v.strip().lower() for k, v in facts.labels.items()}
        for key, values in self.labels.items():
            if labels.get(key.lower()) not in {v.lower() for v in values}:
                return False
        if self.harm:
            given = {normalise_category(h) for h in facts.harm}
            if not given & {normalise_category(h) for h in self.harm}:
                return False
        return True


class ClockDefaults(_Strict):
    reminders: list[float] = Field(default_factory=lambda: [0.5, 0.8, 0.95])
    remind_roles: list[RoleId] = Field(default_factory=list)
    remind_system_owner: bool = True
    escalate_to_roles: list[RoleId] = Field(min_length=1)


class ClockRule(_Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$", max_length=RULE_ID_MAX)]
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=240)]
    start: Start
    serious_kinds: list[str] = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)
    duration: Duration | None = None
    duration_from_severity: Target | None = None
    effective_from: date
    effective_until: date | None = None
    reminders: list[float] | None = None
    remind_roles: list[RoleId] | None = None
    remind_system_owner: bool | None = None
    escalate_to_roles: list[RoleId] | None = None
    met_on_status: list[IncidentStatus] = Field(default_factory=list)

    def in_force(self, aware_at: datetime) -> bool:
        day = as_utc(aware_at).date()
        return self.effective_from <= day and (
            self.effective_until is None or day <= self.effective_until
        )

    def applies(self, start: Start, facts: IncidentFacts) -> bool:
        if self.start != start or not self.in_force(facts.aware_at):
            return False
        if start == "serious-confirmed" and facts.serious_kind not in self.serious_kinds:
            return False
        return not self.when or any(c.matches(facts) for c in self.when)


@dataclass(frozen=True)
class ClockPlan:
    """A clock to start: its rule, the label it carries, and its span."""

    rule: ClockRule
    label: str
    span: timedelta


class ClockRules(_Strict):
    defaults: ClockDefaults
    rules: list[ClockRule] = Field(default_factory=list)

    def rule(self, rule_id: str) -> ClockRule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def reminders(self, rule: ClockRule | None) -> list[float]:
        return list(
            rule.reminders if rule and rule.reminders is not None else self.defaults.reminders
        )

    def remind_roles(self, rule: ClockRule | None) -> list[str]:
        if rule and rule.remind_roles is not None:
            return list(rule.remind_roles)
        return list(self.defaults.remind_roles)

    def remind_system_owner(self, rule: ClockRule | None) -> bool:
        if rule and rule.remind_system_owner is not None:
            return rule.remind_system_owner
        return self.defaults.remind_system_owner

    def escalate_to_roles(self, rule: ClockRule | None) -> list[str]:
        if rule and rule.escalate_to_roles is not None:
            return list(rule.escalate_to_roles)
        return list(self.defaults.escalate_to_roles)

    def plan(
        self, start: Start, facts: IncidentFacts, classification: Classification
    ) -> list[ClockPlan]:
        """The clocks `start` sets running for an incident with these facts, in data order."""
        out = []
        for rule in self.rules:
            if not rule.applies(start, facts):
                continue
            span = self.span(rule, facts.severity, classification)
            if span is None:
                continue  # the severity has no such target (checked on load for listed ones)
            out.append(ClockPlan(rule, _label(rule, facts.severity, span), span))
        return out

    @staticmethod
    def span(rule: ClockRule, severity: str, classification: Classification) -> timedelta | None:
        if rule.duration is not None:
            return rule.duration.delta
        assert rule.duration_from_severity is not None
        target = classification.severity(severity).target(rule.duration_from_severity)
        return target.delta if target else None

    def problems(self, classification: Classification, roles: set[str]) -> list[str]:
        out: list[str] = []
        _dupes(out, "rules", [r.id for r in self.rules])
        _reminder_problems(out, "defaults.reminders", self.defaults.reminders)
        _known_roles(out, "defaults.remind_roles", self.defaults.remind_roles, roles)
        _known_roles(out, "defaults.escalate_to_roles", self.defaults.escalate_to_roles, roles)
        kinds = set(classification.kind_ids)
        sevs = set(classification.severity_ids)
        cats = {c.id for c in classification.categories} | {
            f"{c.id}/{s.id}" for c in classification.categories for s in c.subcategories
        }
        for i, r in enumerate(self.rules):
            where = f"rules.{i}"
            if r.start == "serious-confirmed" and not r.serious_kinds:
                out.append(f"{where}.serious_kinds: required with `start: serious-confirmed`")
            if r.start == "reported" and r.serious_kinds:
                out.append(f"{where}.serious_kinds: only with `start: serious-confirmed`")
            _known(out, f"{where}.serious_kinds", r.serious_kinds, kinds, "serious-incident kind")
            if (r.duration is None) == (r.duration_from_severity is None):
                out.append(f"{where}: give exactly one of duration, duration_from_severity")
            if r.effective_until is not None and r.effective_until < r.effective_from:
                out.append(f"{where}.effective_until: before effective_from")
            if r.reminders is not None:
                _reminder_problems(out, f"{where}.reminders", r.reminders)
            for name in ("remind_roles", "escalate_to_roles"):
                _known_roles(out, f"{where}.{name}", getattr(r, name) or [], roles)
            if r.escalate_to_roles is not None and not r.escalate_to_roles:
                out.append(f"{where}.escalate_to_roles: an overdue clock needs someone to tell")
            for j, c in enumerate(r.when):
                _known(out, f"{where}.when.{j}.categories", c.categories, cats, "category")
                _known(out, f"{where}.when.{j}.severities", c.severities, sevs, "severity")
            if r.duration_from_severity is not None:
                listed = {s for c in r.when for s in c.severities}
                if not r.when or any(not c.severities for c in r.when):
                    listed = sevs
                for s in classification.severities:
                    if s.id in listed and s.target(r.duration_from_severity) is None:
                        out.append(
                            f"{where}.duration_from_severity: {s.id} has no "
                            f"`response.{r.duration_from_severity}` target"
                        )
        return out


def _label(rule: ClockRule, severity: str, span: timedelta) -> str:
    scope = f"{severity}: " if rule.duration_from_severity else ""
    return f"{rule.label} ({scope}within {human_delta(span)})"[:300]


def _reminder_problems(out: list[str], where: str, fractions: list[float]) -> None:
    if any(not 0 < f < 1 for f in fractions):
        out.append(f"{where}: each fraction must be between 0 and 1 (got {fractions})")
    if fractions != sorted(set(fractions)):
        out.append(f"{where}: fractions must be increasing, without repeats (got {fractions})")


# --- parsing and loading -----------------------------------------------------------------------


def _describe(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "file"
        msg = "missing" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {msg}")
    return out


def _load_mapping(text: str, source: str) -> dict[str, object]:
    try:
        data, _root = load_located(text)
    except yaml.YAMLError as exc:
        raise IncidentPolicyInvalid(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise IncidentPolicyInvalid(source, ["file: expected a mapping"])
    return data


def _roles() -> set[str]:
    return {r.id for r in catalog.roles()}


def parse_classification(text: str, source: str = CLASSIFICATION_FILE) -> Classification:
    """Parse and check a classification file; IncidentPolicyInvalid lists every problem."""
    data = _load_mapping(text, source)
    try:
        doc = Classification.model_validate(data)
    except ValidationError as exc:
        raise IncidentPolicyInvalid(source, _describe(exc)) from None
    problems = doc.problems(_roles())
    if problems:
        raise IncidentPolicyInvalid(source, problems)
    return doc


def parse_clock_rules(
    text: str, classification: Classification, source: str = CLOCKS_FILE
) -> ClockRules:
    """Parse and check a clock-rules file against the classification it refers to."""
    data = _load_mapping(text, source)
    try:
        doc = ClockRules.model_validate(data)
    except ValidationError as exc:
        raise IncidentPolicyInvalid(source, _describe(exc)) from None
    problems = doc.problems(classification, _roles())
    if problems:
        raise IncidentPolicyInvalid(source, problems)
    return doc


@dataclass(frozen=True)
class IncidentPolicy:
    classification: Classification
    clocks: ClockRules


@functools.lru_cache(maxsize=8)
def _parse_cached(
    cls_text: str, cls_source: str, clocks_text: str, clocks_source: str
) -> IncidentPolicy:
    classification = parse_classification(cls_text, cls_source)
    return IncidentPolicy(
        classification, parse_clock_rules(clocks_text, classification, clocks_source)
    )


def _text(settings: Settings, name: str) -> tuple[str, str]:
    path: Path = settings.data_dir / name
    if path.is_file():
        return path.read_text("utf-8"), str(path)
    return resources.files("aims_core.data").joinpath(name).read_text("utf-8"), (
        f"aims_core/data/{name}"
    )


def incident_policy(settings: Settings) -> IncidentPolicy:
    """The classification and clock rules in force: the organisation's files in the data dir
    where present, else the shipped ones. Read on every call and parsed once per content, so an
    edit takes effect at the next command or flow run without a restart."""
    return _parse_cached(*_text(settings, CLASSIFICATION_FILE), *_text(settings, CLOCKS_FILE))
