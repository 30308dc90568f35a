"""Settings, `aims config show`, `aims init`, migrations."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from aims_core.db import get_engine
from aims_core.models import Control, Role


def test_config_show_masks_every_secret(run_cli, monkeypatch) -> None:
    monkeypatch.setenv("AIMS_SLACK_BOT_TOKEN", "xoxb-very-secret")
    monkeypatch.setenv("AIMS_SLACK_SIGNING_SECRET", "sign-very-secret")
    monkeypatch.setenv("AIMS_EVIDENCE_KEY", "key-very-secret")
    monkeypatch.setenv("AIMS_DATABASE_URL", "postgresql+psycopg://aims:pw-very-secret@db/aims")
    result = run_cli("config", "show", "--json")
    assert result.exit_code == 0, result.output
    assert "very-secret" not in result.output
    shown = json.loads(result.output)
    assert shown["slack_bot_token"] == "****** (set)"
    assert shown["slack_app_token"] == "(not set)"
    assert shown["database_url"] == "postgresql+psycopg://aims:***@db/aims"


def test_init_is_repeatable_and_loads_catalogs(run_cli, settings) -> None:
    for _ in range(2):
        result = run_cli("init")
        assert result.exit_code == 0, result.output
    with get_engine(settings.effective_database_url).connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Role)) == 13
        assert conn.scalar(select(func.count()).select_from(Control)) == 90
