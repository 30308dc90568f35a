"""Policy documents rendered from the organisation's data (5.2, A.2.2).

The Jinja2 templates `aims_core/templates/policy_<name>.md.j2` are filled with the roles and
their holders, the RACI, the incident classification, clocks and playbooks, so the AI incident
management policy says what the incident flow does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aims_core import catalog, reports
from aims_core.errors import InvalidInput, NotFound
from aims_core.models import AISystem, Person, PersonRole, Policy
from aims_core.rules import playbooks as playbook_data
from aims_core.rules.capa import capa_policy
from aims_core.rules.incident import incident_policy
from aims_core.rules.policy import governance
from aims_core.services import raci
from aims_core.services.policies.due import as_of
from aims_core.services.policies.queries import get_policy
from aims_core.services.policies.schemas import PolicyOut
from aims_core.uow import UnitOfWork


def templates() -> list[str]:
    """The policy document templates shipped: `policy_<name>.md.j2` → name (dashes)."""
    names = reports.environment().list_templates(
        filter_func=lambda n: n.startswith("policy_") and n.endswith(".md.j2")
    )
    return sorted(n.removeprefix("policy_").removesuffix(".md.j2").replace("_", "-") for n in names)


def template_file(name: str) -> str:
    name = name.strip().lower()
    if name not in templates():
        raise NotFound(
            f"no policy template '{name}' (templates: {', '.join(templates())})", "template"
        )
    return f"policy_{name.replace('-', '_')}.md.j2"


def render_document(
    uow: UnitOfWork,
    template_or_key: str,
    *,
    organisation: str = "the organisation",
    now: datetime | None = None,
) -> str:
    """A policy document as Markdown from its template and the organisation's data: a template
    name, or the key of a policy that names its template."""
    name = template_or_key.strip().lower()
    policy: PolicyOut | None = None
    if name not in templates():
        with uow.read():
            exists = uow.session.scalar(select(Policy.id).where(Policy.key == name))
        if exists is None:
            raise NotFound(
                f"'{template_or_key}' is neither a policy template ({', '.join(templates())}) "
                "nor a policy key (see `aims policy list`)",
                "template",
            )
        policy = get_policy(uow, name, now=now)
        if policy.template is None:
            raise InvalidInput(
                f"policy '{name}' has no template: its text is its approved version "
                f"(`aims policy show {name} --text`)",
                "template",
            )
        name = policy.template
    context = document_context(uow, organisation=organisation, now=as_of(now))
    return reports.render(template_file(name), policy=policy, **context)


def _people(session: Session, emails: list[str]) -> list[str]:
    found = {p.email: p for p in session.scalars(select(Person).where(Person.email.in_(emails)))}
    return [f"{found[e].name} <{e}>" if e in found else e for e in emails]


def _as_written(d: Any) -> str:
    """A duration as the rule says it (`72 h` stays 72 h, as GDPR Art. 33 puts it)."""
    parts = [
        f"{n} {unit}"
        for n, unit in (
            (d.days, "days" if d.days != 1 else "day"),
            (d.hours, "h"),
            (d.minutes, "min"),
        )
        if n
    ]
    return " ".join(parts)


def document_context(uow: UnitOfWork, *, organisation: str, now: datetime) -> dict[str, Any]:
    """What every policy template may use: the organisation, its roles with their holders, the
    RACI per activity, the inventory by risk tier, the governance data (approval of policies,
    CAPA), and the incident classification, clocks and playbooks the incident flow runs on."""
    settings = uow.settings
    raci_rows = [r for r in raci.show_raci(uow) if r.system is None]
    with uow.read():
        s = uow.session
        # Every role's holders at once, by name as a document lists them (not `role_holders`,
        # which answers for some roles, by id).
        holders: dict[str, list[str]] = {}
        for role_id, name, email in s.execute(
            select(PersonRole.role_id, Person.name, Person.email)
            .join(Person, Person.id == PersonRole.person_id)
            .where(Person.active.is_(True))
            .order_by(Person.name)
        ):
            holders.setdefault(role_id, []).append(f"{name} <{email}>")
        tiers = dict(
            s.execute(select(AISystem.risk_tier, func.count()).group_by(AISystem.risk_tier)).all()
        )
        named_raci = {
            r.activity: {
                "responsible": _people(s, r.responsible),
                "accountable": _people(s, [r.accountable])[0],
                "consulted": _people(s, r.consulted),
                "informed": _people(s, r.informed),
            }
            for r in raci_rows
        }
    policy = incident_policy(settings)
    books = {}
    for category in policy.classification.categories:
        for playbook_id in dict.fromkeys(
            [category.playbook, *(x.playbook for x in category.subcategories if x.playbook)]
        ):
            books[playbook_id] = playbook_data.load_playbook(settings, playbook_id)
    severities = {s.id: s for s in policy.classification.severities}
    clocks = []
    for rule in policy.clocks.rules:
        if rule.duration is not None:
            span = _as_written(rule.duration)
        else:
            spans = [
                f"{sid} {_as_written(d)}"
                for sid, sev in severities.items()
                if (d := sev.target(rule.duration_from_severity)) is not None  # type: ignore[arg-type]
            ]
            span = f"the severity's {rule.duration_from_severity} target ({', '.join(spans)})"
        clocks.append({"rule": rule, "span": span})
    return {
        "organisation": organisation,
        "generated_at": now,
        "timezone": settings.timezone,
        "roles": [
            {
                "id": r.id,
                "title": r.title,
                "description": r.description,
                "holders": holders.get(r.id, []),
            }
            for r in catalog.roles()
        ],
        "raci": named_raci,
        "tiers": {t.value: n for t, n in tiers.items()},
        "approval": governance(settings).approval,
        "capa": capa_policy(settings),
        "classification": policy.classification,
        "clocks": clocks,
        "clock_defaults": policy.clocks.defaults,
        "playbooks": books,
        "severity_map": settings.alertmanager_severity_map,
    }
