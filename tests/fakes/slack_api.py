"""The fake Slack Web API (notifications/fake_slack.py) as pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from aims_core.settings import Settings
from notifications.fake_slack import FakeMessage, FakeSlack, RecordedRequest

__all__ = ["FakeMessage", "FakeSlack", "RecordedRequest", "fake_slack", "slack_settings"]


# --- pytest helpers --------------------------------------------------------------------------


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A started fake Slack Web API for one test."""
    fake = FakeSlack().start()
    try:
        yield fake
    finally:
        fake.stop()


def slack_settings(settings: Settings, fake: FakeSlack, **overrides: Any) -> Settings:
    """`settings` with the bot token and the Web API base URL of `fake`."""
    update: dict[str, Any] = {
        "slack_bot_token": SecretStr(fake.token),
        "slack_api_url": fake.base_url,
        **overrides,
    }
    return settings.model_copy(update=update)
