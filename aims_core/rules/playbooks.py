"""Incident playbooks as data: what to do, in order, for each kind of AI incident.

One YAML file per playbook, named by the playbook id the incident classification gives each
category (`bias`, `model-failure`, ...), packaged in `aims_core/data/playbooks/`. An organisation
replaces a playbook, or adds one, with a file of the same name in its playbooks dir
(AIMS_PLAYBOOKS_DIR, default `playbooks` in the data dir). A file is checked in full when it is
read and every problem is listed with its line, so whoever edits a playbook fixes it in one go,
and an incident never meets an unknown role, evidence kind or placeholder half-way through.

A step applies when its `when` matches the incident (tier, life-cycle stage, severity, system).
It may need approval before it runs (roles + quorum, itself conditional: rolling back a high-risk
system in production needs two approvers, a minimal-risk one none). Its hook is a shell command
(an argv list, never a shell line), an HTTP call or a Prefect deployment run; hook strings may use
the placeholders in PLACEHOLDERS and nothing else, so a playbook says exactly what a hook gets.

No Prefect and no database here.
"""

from __future__ import annotations

import difflib
import functools
import re
import shlex
import string
from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NamedTuple

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from aims_core import catalog, processes
from aims_core.errors import AimsError, NotFound
from aims_core.models import LifecycleStage, RiskTier
from aims_core.rules.loading import (
    Place,
    line_of,
    load_located,
    path_of,
    problem_at,
    syntax_problem,
)
from aims_core.settings import Settings

__all__ = [
    "DEPLOYMENT",
    "PLACEHOLDERS",
    "Closure",
    "Condition",
    "DeploymentHook",
    "EvidenceToCollect",
    "Hook",
    "HookResult",
    "HttpHook",
    "NotifyRule",
    "Playbook",
    "PlaybookError",
    "PlaybookFile",
    "ResponsePlan",
    "ResponseResult",
    "ResponseRun",
    "ShellHook",
    "Situation",
    "Step",
    "StepApproval",
    "StepOutcome",
    "check_playbooks",
    "load_playbook",
    "parse_playbook",
    "playbook_files",
    "playbooks_dir",
    "render",
    "response_run",
]

#: The deployment that runs a playbook for one incident (flows/incident_response.py).
DEPLOYMENT: Final = processes.INCIDENT_RESPONSE.id
PACKAGED: Final = "packaged"
#: What a hook string may refer to, e.g. `{system}`; all are short, charset-restricted values
#: (no free text such as titles: a hook must not be steerable by whoever reports an incident).
PLACEHOLDERS: Final = (
    "incident_id",
    "system",
    "tier",
    "stage",
    "severity",
    "category",
    "playbook",
    "step",
    "drill",
    "flow_run_id",
)
AUDIENCES: Final = ("on-call", "internal-escalation", "affected-parties", "regulator")
STAKEHOLDERS: Final = AUDIENCES[1:]

_ID = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_SEVERITY = re.compile(r"^SEV[0-9]{1,2}$")
_SYSTEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER = re.compile(r"^[A-Za-z0-9-]+$")
_DEPLOYMENT = re.compile(r"^[^/\s]+/[^/\s]+$")

Problems = list[tuple[Place, str]]
#: The classification's severity ids, or None: any `SEVn`.
Severities = Collection[str] | None


class PlaybookError(AimsError):
    """Playbooks that cannot be used; the message names every problem and where it is."""

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        self.problems = list(problems)
        n = len(self.problems)
        head = f"invalid playbook {source}: {n} problem{'s' * (n != 1)}"
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems)]))


# --- the model ---------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Slug = Annotated[str, StringConstraints(pattern=_ID.pattern)]


def _argv(value: object) -> object:
    """A command written as one line is split like a shell would, but never run by one."""
    return shlex.split(value) if isinstance(value, str) else value


class Situation(BaseModel):
    """The facts of one incident a playbook looks at: its conditions and its placeholders."""

    model_config = ConfigDict(frozen=True)

    incident_id: int
    system: str
    tier: str
    stage: str
    severity: str
    category: str
    playbook: str
    drill: bool = False
    flow_run_id: str = ""

    def values(self, step: str) -> dict[str, Any]:
        """The placeholder values for a hook of `step`."""
        out: dict[str, Any] = self.model_dump(include=set(PLACEHOLDERS))
        out.update(step=step, drill="true" if self.drill else "false")
        return out


class Condition(_Strict):
    """When something applies: every list given must contain the incident's value."""

    tiers: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    systems: tuple[str, ...] = ()

    def matches(self, s: Situation) -> bool:
        return all(
            not wanted or value in wanted
            for wanted, value in (
                (self.tiers, s.tier),
                (self.stages, s.stage),
                (self.severities, s.severity),
                (self.systems, s.system),
            )
        )

    def describe(self) -> str:
        parts = [
            f"{name} {', '.join(values)}"
            for name, values in (
                ("tier", self.tiers),
                ("stage", self.stages),
                ("severity", self.severities),
                ("system", self.systems),
            )
            if values
        ]
        return "; ".join(parts) or "always"


class ShellHook(_Strict):
    """A command run without a shell (argv), with a timeout; only PATH, LANG, HOME, the
    AIMS_HOOK_* facts and the variables named in `env_from` reach it."""

    kind: Literal["shell"]
    command: Annotated[tuple[str, ...], BeforeValidator(_argv)] = Field(min_length=1)
    timeout_s: float = Field(default=300, gt=0, le=3600)
    env_from: tuple[str, ...] = ()


class HttpHook(_Strict):
    """An HTTP call to the URL the playbook names (no redirects followed); `body` is sent as
    JSON; `headers_from_env` maps a header to the variable holding its value (tokens stay out
    of the file)."""

    kind: Literal["http"]
    url: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    headers_from_env: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    timeout_s: float = Field(default=30, gt=0, le=600)


class DeploymentHook(_Strict):
    """A Prefect deployment run, never a subflow; `wait_s` > 0 waits that long for its end."""

    kind: Literal["deployment"]
    deployment: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    run_name: str | None = None
    tags: tuple[str, ...] = ()
    wait_s: float = Field(default=0, ge=0, le=3600)


Hook = Annotated[ShellHook | HttpHook | DeploymentHook, Field(discriminator="kind")]


class StepApproval(_Strict):
    """Who must approve a step before it runs, and when that is needed (default: always)."""

    roles: tuple[str, ...] = Field(min_length=1)
    quorum: int = Field(default=1, ge=1)
    when: Condition = Condition()


class Step(_Strict):
    id: Slug
    title: Text
    phase: Literal["triage", "containment", "recovery"]
    action: (
        Literal["rollback-model", "redirect-traffic", "switch-to-fallback", "isolate-system"] | None
    ) = None
    instructions: str = ""
    when: Condition = Condition()
    approval: StepApproval | None = None
    hook: Hook | None = None

    def approval_for(self, s: Situation) -> StepApproval | None:
        """The approval this step needs for this incident, if any."""
        if self.approval is not None and self.approval.when.matches(s):
            return self.approval
        return None


class EvidenceToCollect(_Strict):
    kind: str
    title: Text


class NotifyRule(_Strict):
    """Who is told, at which severities (default: all). `on-call` is told when the run starts;
    the others after the investigation; `regulator` only for a confirmed serious incident."""

    audience: Literal["on-call", "internal-escalation", "affected-parties", "regulator"]
    roles: tuple[str, ...] = ()
    system_owner: bool = False
    channel: str | None = None
    severities: tuple[str, ...] = ()
    message: str = ""


class Closure(_Strict):
    roles: tuple[str, ...] = Field(min_length=1)
    quorum: int = Field(default=1, ge=1)


class _PlaybookFile(_Strict):
    title: Text
    description: str = ""
    steps: tuple[Step, ...] = Field(min_length=1)
    evidence: tuple[EvidenceToCollect, ...] = ()
    notify: tuple[NotifyRule, ...] = Field(min_length=1)
    closure: Closure


class Playbook(_PlaybookFile):
    """A validated playbook."""

    id: str
    source: str

    def steps_for(self, s: Situation) -> list[Step]:
        return [step for step in self.steps if step.when.matches(s)]

    def notify_rules(self, audience: str, severity: str) -> list[NotifyRule]:
        return [
            r
            for r in self.notify
            if r.audience == audience and (not r.severities or severity in r.severities)
        ]


class ResponseRun(BaseModel):
    """The deployment run of one incident's response: what starts it, readable in the UI."""

    deployment: str
    parameters: dict[str, Any]
    name: str
    tags: list[str]


def response_run(
    incident_id: int,
    *,
    system: str,
    tier: str,
    severity: str,
    category: str,
    playbook: str | None,
    drill: bool = False,
    unattended: bool = False,
) -> ResponseRun:
    """Name and tags of the response run (the same whether the CLI, intake or the UI starts it):
    `incident 12 SEV2 bias: credit-scoring`."""
    parameters: dict[str, Any] = {"incident_id": incident_id}
    if drill:
        parameters.update(drill=True, unattended=unattended)
    what = "drill" if drill else "incident"
    name = f"{what} {incident_id} {severity} {playbook or category}: {system}"
    tags = ["incident", system, tier, severity, category.split("/", 1)[0]]
    return ResponseRun(
        deployment=DEPLOYMENT,
        parameters=parameters,
        name=name,
        tags=[*dict.fromkeys(tags), *(["drill"] if drill else [])],
    )


# --- what a response run works with and produces ------------------------------------------------
# Defined here, not in the flow module, so persisted results unpickle anywhere (a served flow's
# module is loaded by file path, under another name).

HookStatus = Literal["started", "succeeded", "failed", "rehearsed"]


class HookResult(BaseModel):
    """A hook's record. `fired_now` is False when this call found an earlier record and did
    nothing (`status` started then means that attempt never recorded its outcome)."""

    key: str
    incident_id: int
    step: str
    kind: str
    target: str
    status: HookStatus
    output: str
    dry_run: bool
    fired_now: bool
    started_at: datetime
    finished_at: datetime | None

    @property
    def ok(self) -> bool:
        return self.status in ("succeeded", "rehearsed")

    def line(self) -> str:
        """One line for the timeline."""
        what = {
            "succeeded": "succeeded",
            "failed": "FAILED",
            "rehearsed": "rehearsed (drill: not fired)",
            "started": "started earlier, outcome never recorded: check the target by hand",
        }[self.status]
        first = self.output.strip().splitlines()[:1]
        detail = f" — {first[0][:200]}" if first and self.status != "rehearsed" else ""
        return f"{self.kind} hook `{self.target}` {what}{detail}"


class ResponsePlan(BaseModel):
    """What a response run works with, fixed when it starts: a re-run after a resume uses the
    same playbook even if its file changed meanwhile."""

    situation: Situation
    playbook: Playbook
    unattended: bool

    @property
    def incident_id(self) -> int:
        return self.situation.incident_id

    @property
    def drill(self) -> bool:
        return self.situation.drill

    @property
    def tag(self) -> str:
        return "[DRILL] " if self.drill else ""


class StepOutcome(BaseModel):
    step: str
    phase: str
    status: Literal["succeeded", "failed", "rehearsed", "started", "manual", "not-approved"]
    line: str
    hook: HookResult | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("succeeded", "rehearsed", "manual")


class ResponseResult(BaseModel):
    """What an `incident-response` run returns."""

    incident_id: int
    drill: bool
    status: str
    steps: list[StepOutcome]
    capa_id: int | None
    closure_request_id: int | None


# --- placeholders ------------------------------------------------------------------------------


def _fields(template: str) -> list[tuple[str, str, str | None]]:
    """(field, format spec, conversion) of each placeholder; ValueError for bad braces."""
    return [
        (name, spec or "", conv)
        for _, name, spec, conv in string.Formatter().parse(template)
        if name is not None
    ]


def template_problems(template: str) -> list[str]:
    try:
        fields = _fields(template)
    except ValueError as exc:
        return [f"{template!r}: {exc} (write {{{{ and }}}} for literal braces)"]
    out = []
    for name, spec, conv in fields:
        if name not in PLACEHOLDERS:
            out.append(
                f"unknown placeholder '{{{name}}}' in {template!r} "
                f"(placeholders: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
            )
        elif spec or conv:
            out.append(f"'{{{name}}}' in {template!r}: no conversions or format specs")
    return out


def render(value: Any, values: dict[str, Any]) -> Any:
    """Fill the placeholders of a (validated) template, recursively through lists and dicts.

    A string that is exactly one placeholder becomes that value with its type (`{incident_id}`
    stays an int for a deployment's parameters)."""
    if isinstance(value, str):
        fields = _fields(value)
        if len(fields) == 1 and value == "{" + fields[0][0] + "}":
            return values[fields[0][0]]
        return value.format_map(values)
    if isinstance(value, list | tuple):
        return [render(v, values) for v in value]
    if isinstance(value, dict):
        return {k: render(v, values) for k, v in value.items()}
    return value


def _strings(value: Any, place: Place) -> Iterator[tuple[Place, str]]:
    if isinstance(value, str):
        yield place, value
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _strings(v, (*place, i))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*place, str(k)))


# --- checks ------------------------------------------------------------------------------------


def _unknown(value: str, known: Collection[str], what: str) -> str | None:
    """`unknown role 'complaince-officer' (did you mean 'compliance-officer'?)`, or None."""
    if value in known:
        return None
    close = difflib.get_close_matches(value, list(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"one of: {', '.join(known)}"
    return f"unknown {what} '{value}' ({hint})"


def _known(values: Iterable[str], known: Collection[str], what: str, place: Place) -> Problems:
    out: Problems = []
    for i, value in enumerate(values):
        problem = _unknown(value, known, what)
        if problem:
            out.append(((*place, i), problem))
    return out


def _severity_problems(values: Iterable[str], severities: Severities, place: Place) -> Problems:
    if severities is not None:
        return _known(values, severities, "severity", place)
    return [
        ((*place, i), f"'{value}' is not a severity (SEV1, SEV2, ...)")
        for i, value in enumerate(values)
        if not _SEVERITY.match(value)
    ]


def _check_condition(c: Condition, place: Place, severities: Severities) -> Problems:
    out = _known(c.tiers, [t.value for t in RiskTier], "risk tier", (*place, "tiers"))
    out += _known(c.stages, [s.value for s in LifecycleStage], "stage", (*place, "stages"))
    out += _severity_problems(c.severities, severities, (*place, "severities"))
    for i, name in enumerate(c.systems):
        if not _SYSTEM.match(name):
            out.append(((*place, "systems", i), f"'{name}' is not a system name"))
    return out


def _check_hook(hook: ShellHook | HttpHook | DeploymentHook, place: Place) -> Problems:
    out: Problems = []
    texts: list[tuple[Place, str]] = []
    if isinstance(hook, ShellHook):
        texts += [((*place, "command", i), arg) for i, arg in enumerate(hook.command)]
        for i, name in enumerate(hook.env_from):
            if not _ENV_NAME.match(name):
                out.append(((*place, "env_from", i), f"'{name}' is not a variable name"))
    elif isinstance(hook, HttpHook):
        texts.append(((*place, "url"), hook.url))
        if not re.match(r"^https?://[^/{}\s]", hook.url):
            out.append(((*place, "url"), f"{hook.url!r}: an http:// or https:// URL with a host"))
        for name, value in hook.headers.items():
            texts.append(((*place, "headers", name), value))
        for name, env in {**hook.headers, **hook.headers_from_env}.items():
            if not _HEADER.match(name):
                out.append(((*place, "headers", name), f"'{name}' is not a header name"))
            if name in hook.headers_from_env and not _ENV_NAME.match(env):
                out.append(((*place, "headers_from_env", name), f"'{env}' is not a variable"))
        texts += list(_strings(hook.body, (*place, "body")))
    else:
        if not _DEPLOYMENT.match(hook.deployment):
            out.append(((*place, "deployment"), f"'{hook.deployment}': write FLOW/DEPLOYMENT"))
        texts += list(_strings(hook.parameters, (*place, "parameters")))
        if hook.run_name:
            texts.append(((*place, "run_name"), hook.run_name))
        texts += [((*place, "tags", i), tag) for i, tag in enumerate(hook.tags)]
    for where, text in texts:
        out += [(where, problem) for problem in template_problems(text)]
    return out


def _check(doc: _PlaybookFile, severities: Severities) -> Problems:
    """Every problem a schema cannot express, with its place."""
    roles = [r.id for r in catalog.roles()]
    out: Problems = []
    seen: dict[str, int] = {}
    for i, step in enumerate(doc.steps):
        here: Place = ("steps", i)
        if step.id in seen:
            out.append(((*here, "id"), f"step id '{step.id}' also names steps[{seen[step.id]}]"))
        seen.setdefault(step.id, i)
        if step.phase == "containment" and step.hook is None and not step.instructions.strip():
            out.append((here, "a containment step needs a hook or instructions"))
        out += _check_condition(step.when, (*here, "when"), severities)
        if step.approval is not None:
            out += _known(step.approval.roles, roles, "role", (*here, "approval", "roles"))
            out += _check_condition(step.approval.when, (*here, "approval", "when"), severities)
        if step.hook is not None:
            out += _check_hook(step.hook, (*here, "hook"))
    kinds = catalog.evidence_kinds()
    for i, item in enumerate(doc.evidence):
        problem = _unknown(item.kind, kinds, "evidence kind")
        if problem:
            out.append((("evidence", i, "kind"), problem))
    if not any(r.audience == "on-call" for r in doc.notify):
        out.append((("notify",), "no `audience: on-call` rule: someone must be told at once"))
    for i, rule in enumerate(doc.notify):
        here = ("notify", i)
        if not (rule.roles or rule.system_owner or rule.channel):
            out.append((here, "tells nobody: give roles, system_owner: true or a channel"))
        out += _known(rule.roles, roles, "role", (*here, "roles"))
        out += _severity_problems(rule.severities, severities, (*here, "severities"))
        if rule.channel is not None and not _CHANNEL.match(rule.channel):
            out.append(((*here, "channel"), f"'{rule.channel}' is not a Slack channel id"))
        out += [((*here, "message"), p) for p in template_problems(rule.message)]
    out += _known(doc.closure.roles, roles, "role", ("closure", "roles"))
    return out


# --- parsing -----------------------------------------------------------------------------------


def parse_playbook(
    text: str, playbook_id: str, source: str, *, severities: Severities = None
) -> Playbook:
    """Check a playbook file in full; PlaybookError lists every problem with its line.

    `severities`: the classification's severity ids (default: any SEVn)."""
    if not _ID.match(playbook_id):
        raise PlaybookError(
            source, [f"'{playbook_id}' is not a playbook id (like bias, data-issue)"]
        )
    try:
        raw, root = load_located(text)
    except yaml.YAMLError as exc:
        raise PlaybookError(source, [syntax_problem(exc)]) from None
    if not isinstance(raw, dict):
        raise PlaybookError(source, ["the file must be a mapping (title, steps, notify, ...)"])
    try:
        doc = _PlaybookFile.model_validate(raw)
    except ValidationError as exc:
        raise PlaybookError(source, _structure_problems(exc, root)) from None
    problems = [problem_at(root, place, msg) for place, msg in _check(doc, severities)]
    if problems:
        raise PlaybookError(source, problems)
    return Playbook(id=playbook_id, source=source, **doc.model_dump())


def _structure_problems(exc: ValidationError, root: yaml.Node | None) -> list[str]:
    out = []
    for err in exc.errors():
        # A tagged union adds the tag as a path element ("shell"): it is not a place in the file.
        loc = err["loc"]
        place = tuple(
            p
            for i, p in enumerate(loc)
            if isinstance(p, str | int) and not (i > 0 and loc[i - 1] == "hook" and p in _KINDS)
        )
        if err["type"] == "extra_forbidden":  # the line of the field, the path of its parent
            line = line_of(root, place)
            where = f"line {line}: " if line is not None else ""
            out.append(f"{where}{path_of(place[:-1]) or '(top)'}: unknown field '{place[-1]}'")
            continue
        elif err["type"] == "missing":
            msg = f"missing field '{place[-1]}'"
            place = place[:-1]
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown hook kind (one of: {', '.join(_KINDS)})"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        out.append(problem_at(root, place, msg))
    return list(dict.fromkeys(out))


_KINDS: Final = ("shell", "http", "deployment")


# --- loading -----------------------------------------------------------------------------------


def playbooks_dir(settings: Settings) -> Path:
    """The organisation's playbooks: AIMS_PLAYBOOKS_DIR, else `playbooks` in the data dir."""
    return (settings.playbooks_dir or settings.data_dir / "playbooks").expanduser()


def _packaged() -> Traversable:
    return resources.files("aims_core.data").joinpath("playbooks")


class PlaybookFile(NamedTuple):
    source: str  # what messages call it: `packaged playbooks/bias.yaml` or the path
    entry: Traversable


def playbook_files(settings: Settings) -> dict[str, PlaybookFile]:
    """Every playbook in force by id, the organisation's file winning over the packaged one."""
    found = {
        entry.name.removesuffix(".yaml"): PlaybookFile(f"{PACKAGED} playbooks/{entry.name}", entry)
        for entry in sorted(_packaged().iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".yaml")
    }
    directory = playbooks_dir(settings)
    if directory.is_dir():
        found.update(
            (path.stem, PlaybookFile(str(path), path)) for path in sorted(directory.glob("*.yaml"))
        )
    return found


def _severities(settings: Settings) -> tuple[str, ...] | None:
    """The classification's severities; None (any SEVn) when it cannot be read: its own check
    says why."""
    from aims_core.rules.incident import incident_policy

    try:
        return tuple(incident_policy(settings).classification.severity_ids)
    except AimsError:
        return None


@functools.lru_cache(maxsize=64)
def _parse_cached(
    text: str, playbook_id: str, source: str, severities: tuple[str, ...] | None
) -> Playbook:
    return parse_playbook(text, playbook_id, source, severities=severities)


def load_playbook(settings: Settings, playbook_id: str) -> Playbook:
    """The playbook in force under this id (read each time: an edit applies to the next run)."""
    files = playbook_files(settings)
    if playbook_id not in files:
        raise NotFound(
            f"no playbook '{playbook_id}' (playbooks: {', '.join(files)}; an organisation adds "
            f"its own in {playbooks_dir(settings)})",
            "playbook",
        )
    source, entry = files[playbook_id]
    try:
        text = entry.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaybookError(source, [f"cannot read the file: {exc}"]) from None
    return _parse_cached(text, playbook_id, source, _severities(settings))


def check_playbooks(settings: Settings) -> tuple[list[Playbook], list[str]]:
    """Every playbook in force, and every problem: in each file, a file that is not used, and
    a playbook the incident classification names that does not exist."""
    problems: list[str] = []
    good: list[Playbook] = []
    directory = playbooks_dir(settings)
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            misnamed = path.suffix == ".yaml" and not _ID.match(path.stem)
            if misnamed or path.suffix in (".yml", ".json"):
                problems.append(
                    f"{path}: not used (a playbook file is named ID.yaml, e.g. bias.yaml)"
                )
    files = playbook_files(settings)
    for playbook_id in files:
        try:
            good.append(load_playbook(settings, playbook_id))
        except PlaybookError as exc:
            problems += [f"{exc.source}: {p}" for p in exc.problems]
    from aims_core.rules.incident import incident_policy

    try:
        classification = incident_policy(settings).classification
    except AimsError as exc:
        problems.append(f"incident classification: {exc}")
        return good, problems
    for category in classification.categories:
        named = [category.playbook, *(s.playbook for s in category.subcategories if s.playbook)]
        for playbook_id in dict.fromkeys(named):
            if playbook_id not in files:
                problems.append(
                    f"category {category.id}: names playbook '{playbook_id}', which does not "
                    f"exist (add {directory / (playbook_id + '.yaml')})"
                )
    return good, problems
