"""`aims evidence`: append evidence, list it, verify the tamper-evident chain."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from aims_core.cli._base import print_json, print_table
from aims_core.errors import InvalidInput
from aims_core.evidence_schemas import EvidenceIn
from aims_core.services import evidence
from aims_core.settings import Settings, get_settings
from aims_core.uow import Actor

app = typer.Typer(
    no_args_is_help=True,
    help="Append-only, tamper-evident evidence: add, list, verify the chain.",
)

PROGRESS_MIN_RECORDS = 20_000  # below this verify is quick enough not to need a progress bar


@app.command("add")
def add(
    subject: str = typer.Option(..., "--subject", help="KIND:ID, e.g. system:credit-scoring."),
    kind: str = typer.Option(..., "--kind", help="An evidence kind, e.g. vv-report."),
    title: str = typer.Option(..., "--title", help="What this evidence is."),
    text: str | None = typer.Option(None, "--text", help="Inline content."),
    file: Path | None = typer.Option(None, "--file", help="A file to attach (stored by hash)."),
    idempotency_key: str | None = typer.Option(
        None, "--idempotency-key", help="Default: derived from subject, kind and content hash."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Append one evidence record; a repeat with the same content writes nothing."""
    if (text is None) == (file is None):
        raise InvalidInput("give --text or --file (exactly one)", field="content")
    data = EvidenceIn(
        subject=subject,
        kind=kind,
        title=title,
        text=text,
        file=file,
        idempotency_key=idempotency_key,
    )
    out = evidence.append(get_settings(), data, Actor.cli())
    if as_json:
        print_json(out)
        return
    verb = "already recorded (same idempotency key and content)" if out.replayed else "appended"
    typer.echo(
        f"evidence {out.id} (seq {out.seq}) {verb}: sha256 {out.content_sha256}, chain {out.chain}"
    )


@app.command("list")
def list_(
    subject: str | None = typer.Option(None, "--subject", help="Only this subject (KIND:ID)."),
    kind: str | None = typer.Option(None, "--kind", help="Only this evidence kind."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many records."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List evidence records, oldest first."""
    rows = evidence.list_evidence(get_settings(), subject=subject, kind=kind, limit=limit)
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Evidence ({len(rows)})",
        ("seq", "id", "subject", "kind", "title", "file", "size", "actor", "created"),
        (
            (
                r.seq,
                r.id,
                r.subject,
                r.kind,
                r.title,
                r.file_name or "",
                r.size,
                f"{r.actor} ({r.channel})",
                r.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            )
            for r in rows
        ),
    )


@app.command("verify")
def verify(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    no_file_hash: bool = typer.Option(
        False, "--no-file-hash", help="Check stored files exist with the right size, skip hashing."
    ),
) -> None:
    """Check every record, the keyed chain, the head row and the anchor; exit 1 if broken."""
    settings = get_settings()
    err = Console(stderr=True)
    if err.is_terminal and not as_json:
        report = _verify_with_progress(settings, not no_file_hash, err)
    else:
        report = evidence.verify(settings, hash_files=not no_file_hash)
    if as_json:
        print_json(report)
    else:
        for warning in report.warnings:
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(report.summary)
    if not report.intact:
        raise typer.Exit(1)


def _verify_with_progress(
    settings: Settings, hash_files: bool, err: Console
) -> evidence.VerifyReport:
    """A progress bar on stderr for long chains; nothing for short ones."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "verifying evidence",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("verify", total=None, visible=False)

        def update(done: int, total: int) -> None:
            if total >= PROGRESS_MIN_RECORDS:
                bar.update(task, completed=done, total=total, visible=True)

        return evidence.verify(settings, hash_files=hash_files, progress=update)
