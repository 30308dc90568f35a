"""Effective configuration, read from `AIMS_*` environment variables (and `.env`).

Secrets are `SecretStr` so they never print by accident; `masked()` is what
`aims config show` shows.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EVIDENCE_KEY_FILE = "evidence.key"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIMS_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path(".aims"),
        description="Where the embedded database, "
        "the evidence key, its anchor and the evidence file store live.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the AIMS database; default: SQLite file in the data dir.",
    )
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str | None = Field(
        default=None,
        description="Base URL of the Slack Web API (default https://slack.com/api/); "
        "tests and Slack-compatible gateways point it elsewhere.",
    )
    slack_team_id: str | None = Field(
        default=None,
        description="The Slack workspace (team id, T...) whose button clicks count; clicks from "
        "any other team are refused. Default: the bot token's workspace (asked once, auth.test).",
    )
    slack_channel: str | None = Field(
        default=None,
        description="Default Slack channel id for notifications addressed to no one person.",
    )
    intake_token: SecretStr | None = None
    alertmanager_severity_map: dict[str, str] = Field(
        default={"critical": "SEV1", "high": "SEV2", "warning": "SEV3", "info": "SEV4"},
        description="POST /alertmanager: the `severity` label (lowercase) -> SEV1..SEV4; "
        'JSON in AIMS_ALERTMANAGER_SEVERITY_MAP, e.g. {"page": "SEV1"}.',
    )
    alertmanager_default_category: str = Field(
        default="model-failure",
        description="Incident category of an alert without a `category` label.",
    )
    evidence_key: SecretStr | None = Field(
        default=None,
        description="HMAC key of the evidence chain; default: the key file in the data dir.",
    )
    approval_reminder_every_hours: float = Field(
        default=24,
        gt=0,
        description="Hours between reminders to approvers who have not decided an open request "
        "(counted from the request, then from the last reminder).",
    )
    approval_max_reminders: int = Field(
        default=3, ge=0, description="Reminders per open request at most (0: none)."
    )
    gate_policy_file: Path | None = Field(
        default=None,
        description="The organisation's stage-gate policy (YAML); default: the packaged one.",
    )
    playbooks_dir: Path | None = Field(
        default=None,
        description="The organisation's incident playbooks (one YAML per playbook id; a file "
        "replaces the packaged playbook of its name); default: `playbooks` in the data dir.",
    )

    timezone: str = Field(
        default="UTC",
        description="IANA time zone of the schedules (quarterly management review at 06:00 on "
        "the 1st of Jan/Apr/Jul/Oct, daily checks) and of dates in reports, e.g. Europe/Berlin.",
    )
    training_reminder_days: list[int] = Field(
        default=[30, 7],
        description="Days before a required training expires on which its holder is reminded; "
        "JSON in AIMS_TRAINING_REMINDER_DAYS, e.g. [60, 30, 7].",
    )
    training_blocks_missing: bool = Field(
        default=False,
        description="Refuse approvers who never completed a required training (not only those "
        "whose training expired). Off by default so that introducing a requirement does not "
        "lock every approver out before anyone could take it.",
    )
    exception_reminder_days: list[int] = Field(
        default=[14, 3],
        description="Days before a policy exception expires on which its owner is reminded.",
    )
    reviews_dir: Path | None = Field(
        default=None,
        description="Where management review packs are written; default: `reviews` in the "
        "data dir.",
    )
    audit_cycle_years: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Years in which the internal audit programme covers every clause and control.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone '{value}' (an IANA name such as Europe/Berlin)"
            ) from None
        return value

    @field_validator("training_reminder_days", "exception_reminder_days")
    @classmethod
    def _positive_days(cls, value: list[int]) -> list[int]:
        if any(d < 0 for d in value):
            raise ValueError("days must be 0 or more")
        return sorted(set(value), reverse=True)

    @property
    def reviews_path(self) -> Path:
        return self.reviews_dir or self.data_dir / "reviews"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'aims.db').resolve()}"

    @property
    def evidence_key_path(self) -> Path:
        return self.data_dir / EVIDENCE_KEY_FILE

    @property
    def evidence_anchor_path(self) -> Path:
        return self.data_dir / "evidence-anchor.json"

    @property
    def evidence_store_dir(self) -> Path:
        return self.data_dir / "evidence-store"

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir

    def ensure_evidence_key(self) -> bool:
        """Generate the key file when no key is configured; True if one was created."""
        if self.evidence_key is not None or self.evidence_key_path.exists():
            return False
        self.ensure_data_dir()
        fd = os.open(self.evidence_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        return True

    def evidence_key_bytes(self) -> bytes | None:
        if self.evidence_key is not None:
            return self.evidence_key.get_secret_value().encode()
        if self.evidence_key_path.exists():
            return self.evidence_key_path.read_text().strip().encode()
        return None

    def masked(self) -> dict[str, str]:
        """Every setting as text, secrets masked (only whether they are set, and where from)."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "database_url":
                out[name] = _mask_url(self.effective_database_url)
            elif name == "evidence_key":
                out[name] = self._evidence_key_source()
            elif isinstance(value, SecretStr):
                out[name] = "****** (set)"
            elif value is None:
                out[name] = "(not set)"
            elif isinstance(value, Path):
                out[name] = str(value.resolve())
            else:
                out[name] = str(value)
        return out

    def _evidence_key_source(self) -> str:
        if self.evidence_key is not None:
            return "****** (set in AIMS_EVIDENCE_KEY)"
        if self.evidence_key_path.exists():
            return f"****** (file {self.evidence_key_path.resolve()})"
        return "(not set: `aims init` generates one)"


def _mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown without anything after the scheme
        return url.split("://", 1)[0] + "://******"


def get_settings() -> Settings:
    return Settings()
