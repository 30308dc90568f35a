"""Preparing the pack of a management review (9.3): gather the inputs, draw the charts, write
the HTML, the Markdown (PNGs beside it) and the Excel workbook, and record the review with its
figures as JSON and the three files as `management-review` evidence on `review:<period>`.
Re-preparing replaces the pack until the minutes are approved.

`prepare` calls `gather`, `charts`, `write_workbook` and `render` through this module's names,
so a benchmark can time each phase by wrapping them here (bench/review_pack.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from aims_core.errors import Conflict, InvalidInput
from aims_core.evidence_schemas import EvidenceIn
from aims_core.models import ApprovalRequest, ManagementReview, ReviewStatus
from aims_core.report_assets import embed
from aims_core.reports import render
from aims_core.services import evidence
from aims_core.services.reviews.inputs import gather
from aims_core.services.reviews.periods import as_of, default_period, period_bounds, subject
from aims_core.services.reviews.plots import charts
from aims_core.services.reviews.queries import find_review, get_review
from aims_core.services.reviews.schemas import (
    EVIDENCE_KIND,
    INPUT_TITLES,
    MEDIA,
    ReviewInputs,
    ReviewOut,
)
from aims_core.services.reviews.workbook import performance_rows, write_workbook
from aims_core.uow import Actor, UnitOfWork


def _render_files(
    inputs: ReviewInputs, out_dir: Path, prepared_by: str, prepared_at: datetime
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    base = f"management-review-{inputs.period}"
    images = embed(charts(inputs), out_dir, base)
    zone = ZoneInfo(inputs.timezone)
    context = {
        "r": inputs,
        "perf": inputs.performance,
        "titles": INPUT_TITLES,
        "charts": images,
        "kpis": performance_rows(inputs.performance),
        "counts": inputs.action_counts,
        "start": f"{inputs.period_start.astimezone(zone):%Y-%m-%d}",
        "end": f"{(inputs.period_end.astimezone(zone) - timedelta(days=1)):%Y-%m-%d}",
        "prepared_by": prepared_by,
        "prepared_at": prepared_at,
    }
    files = {
        "html": out_dir / f"{base}.html",
        "md": out_dir / f"{base}.md",
        "xlsx": out_dir / f"{base}.xlsx",
    }
    files["html"].write_text(render("management_review.html.j2", **context), "utf-8")
    files["md"].write_text(render("management_review.md.j2", **context), "utf-8")
    write_workbook(inputs, files["xlsx"])
    return files


def _refuse_while_asked(s: Session, row: ManagementReview | None) -> None:
    """A pack whose minutes await approval stays: the waiting run would approve minutes of a
    pack that is gone."""
    if row is None or row.request_id is None:
        return
    asked = s.get(ApprovalRequest, row.request_id)
    if asked is not None and asked.status.value == "open":
        raise Conflict(
            f"the minutes of {row.period} await approval (request {asked.id}): decide it first; "
            "a rejection lets the pack be prepared again",
            "period",
        )


def prepare(
    uow: UnitOfWork,
    period: str | None,
    output_dir: Path | None,
    actor: Actor,
    now: datetime | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> ReviewOut:
    """Gather the inputs, write the pack, record the review and its evidence. Re-preparing a
    review not yet approved replaces its pack (earlier evidence stays, as evidence does); an
    approved review is refused."""
    say = progress or (lambda _msg: None)
    at = as_of(now)
    settings = uow.settings
    period = (period or default_period(at, settings.timezone)).strip()
    start, end = period_bounds(period, settings.timezone)
    if start > at:
        raise InvalidInput(f"{period} has not started yet", "period")
    existing = find_review(uow, period)
    if existing is not None and existing.status is ReviewStatus.approved:
        raise Conflict(
            f"the management review {period} was approved on {existing.approved_at:%Y-%m-%d}: "
            "its pack is final",
            "period",
        )
    with uow.read():
        _refuse_while_asked(
            uow.session,
            uow.session.scalar(select(ManagementReview).where(ManagementReview.period == period)),
        )
    say(f"gathering the 9.3.2 inputs of {period}")
    inputs = gather(uow, period, at)
    out_dir = (output_dir or settings.reviews_path / period).expanduser().resolve()
    say(f"drawing charts and writing the pack to {out_dir}")
    files = _render_files(inputs, out_dir, actor.who, at)
    say("recording the review and its evidence")
    with uow:
        s = uow.session
        row = s.scalar(
            select(ManagementReview).where(ManagementReview.period == period).with_for_update()
        )
        if row is not None and row.status is ReviewStatus.approved:
            raise Conflict(f"the management review {period} was approved meanwhile", "period")
        _refuse_while_asked(s, row)
        if row is None:
            row = ManagementReview(period=period, period_start=start, period_end=end)
            s.add(row)
        row.status = ReviewStatus.prepared
        row.inputs = inputs.model_dump(mode="json")
        row.pack_dir = str(out_dir)
        row.prepared_by = actor.who
        row.prepared_at = at
        row.request_id = None
        row.minutes = ""
        s.flush()
        ids = []
        for ext, path in files.items():
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            ids.append(
                evidence.append_in(
                    uow,
                    EvidenceIn(
                        subject=subject(period),
                        kind=EVIDENCE_KIND,
                        title=f"Management review {period}: pack ({ext})",
                        file=path,
                        file_name=path.name,
                        media_type=MEDIA[ext],
                        idempotency_key=f"review-{period}-pack-{ext}-{sha[:32]}",
                    ),
                    actor,
                ).id
            )
        row.pack_evidence_ids = ids
        s.flush()
        uow.audit(
            actor,
            "review.prepared",
            subject(period),
            pack_dir=str(out_dir),
            evidence_ids=ids,
            replaced=existing is not None,
            actions_reported=len(inputs.actions),
        )
        uow.commit()
    evidence.sync_anchor(settings)
    return get_review(uow, period, at)
