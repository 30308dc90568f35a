"""The demo organisation's policies and exceptions (the `policies` section of
aims_core/data/demo_org.yaml), brought in as if they were approved before the AIMS kept
records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from aims_core.models import Policy, PolicyException
from aims_core.services.policies.documents import render_document
from aims_core.services.policies.due import local_date
from aims_core.services.policies.exceptions import add_exception
from aims_core.services.policies.lifecycle import (
    add_policy,
    import_approved_version,
    record_review,
)
from aims_core.services.policies.schemas import ExceptionIn, PolicyIn, ReviewIn
from aims_core.uow import Actor, UnitOfWork


class _DemoPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    title: str
    owner: str
    review_months: int = 12
    template: str | None = None
    approved_by: str
    approved_days_ago: int
    reviewed_days_ago: int | None = None  # a review that kept it, after the approval
    body: str | None = None  # else rendered from the template


class _DemoException(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str
    title: str
    reason: str
    owner: str
    system: str | None = None
    expires_in_days: int


class _DemoSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    organisation: str = "the organisation"
    policies: list[_DemoPolicy] = Field(default_factory=list)
    exceptions: list[_DemoException] = Field(default_factory=list)


def load_demo(uow: UnitOfWork, actor: Actor, section: Any) -> dict[str, int]:
    """The demo organisation's `policies` section (aims_core/data/demo_org.yaml); idempotent.
    Dates are relative to now: the AI policy's review is overdue, one exception runs out soon."""
    data = _DemoSection.model_validate(section)
    now = datetime.now(UTC)
    with uow.read():
        have = set(uow.session.scalars(select(Policy.key)))
        have_exceptions = set(uow.session.scalars(select(PolicyException.title)))
    added = {"policies": 0, "policy exceptions": 0}
    for p in data.policies:
        if p.key in have:
            continue
        approved_at = now - timedelta(days=p.approved_days_ago)
        add_policy(
            uow,
            PolicyIn(
                key=p.key,
                title=p.title,
                owner=p.owner,
                review_interval_months=p.review_months,
                template=p.template,
            ),
            actor,
            now=approved_at - timedelta(days=7),
        )
        body = p.body or render_document(
            uow, p.key, organisation=data.organisation, now=approved_at
        )
        import_approved_version(uow, p.key, body, p.approved_by, approved_at, actor, note="v1")
        if p.reviewed_days_ago is not None:
            record_review(
                uow,
                p.key,
                ReviewIn(notes="Annual review: still fits our AI use.", reviewer=p.owner),
                actor,
                now=now - timedelta(days=p.reviewed_days_ago),
            )
        added["policies"] += 1
    for e in data.exceptions:
        if e.title in have_exceptions:
            continue
        add_exception(
            uow,
            e.policy,
            ExceptionIn(
                title=e.title,
                reason=e.reason,
                owner=e.owner,
                system=e.system,
                expires=local_date(now + timedelta(days=e.expires_in_days), uow.settings),
            ),
            actor,
            now=now,
            notify=False,  # demo data, not news: the reminders before expiry still come
        )
        added["policy exceptions"] += 1
    return added
