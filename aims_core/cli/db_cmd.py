"""`aims init` and `aims db`: schema migrations and initialisation."""

from __future__ import annotations

import typer

from aims_core.settings import get_settings
from aims_core.uow import Actor

app = typer.Typer(no_args_is_help=True, help="Database schema migrations.")


def init() -> None:
    """Create (or bring up to date) the AIMS database, generate the evidence key, load catalogs."""
    settings = get_settings()
    from aims_core import database

    result = database.initialise(settings, Actor.cli())
    typer.echo(
        f"AIMS database ready at revision {result['revision']}: {settings.masked()['database_url']}"
    )
    typer.echo(
        f"catalogs: {result['roles']} roles, {result['requirements']} ISO/IEC 42001 requirements"
    )
    if result["evidence_key_created"]:
        typer.echo(
            f"evidence key generated: {settings.evidence_key_path} (keep it safe and "
            "outside the database's backups)"
        )


@app.command("upgrade")
def upgrade() -> None:
    """Apply every pending migration."""
    from aims_core import database

    revision = database.upgrade(get_settings())
    typer.echo(f"database at revision {revision}")


@app.command("current")
def current() -> None:
    """Print the database's revision and the newest the package ships."""
    from aims_core import database

    rev = database.current_revision(get_settings().effective_database_url)
    typer.echo(f"database: {rev or 'empty'}; newest: {database.head_revision()}")
