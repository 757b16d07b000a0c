"""One settings object for every service, read from `SALESBOOK_*` environment variables."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "change-me"
# HMAC-SHA256 keys shorter than its 32-byte output make tokens easier to forge than the hash.
MIN_PRODUCTION_SECRET_BYTES = 32
MAX_TOKEN_TTL_HOURS = 24 * 365 * 10
"""The longest a token may live: ten years (an expiry far past that overflows a date)."""

Transport = Literal["postgres", "kafka"]


class Settings(BaseSettings):
    """Configuration of a Salesbook process; see the README for the full table."""

    model_config = SettingsConfigDict(env_prefix="SALESBOOK_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL; unset means the embedded server under data_dir.",
    )
    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers; set means the kafka transport."
    )
    transport: Transport | None = Field(
        default=None, description="Event transport; defaults to kafka when kafka_bootstrap is set."
    )
    kafka_partitions: int = Field(default=3, ge=1)
    kafka_topic_prefix: str = Field(
        default="salesbook.", description="Topics are <prefix><source>; groups <prefix><consumer>."
    )
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    data_dir: Path = Path(".salesbook")
    secret_key: str | None = Field(
        default=None, description="Token signing secret; generated into data_dir when unset."
    )
    token_ttl_hours: int = Field(24 * 30, gt=0, le=MAX_TOKEN_TTL_HOURS)
    currency: str = "CNY"
    timezone: str = "Asia/Shanghai"
    approval_thresholds: list[Decimal] = Field(
        default_factory=lambda: [Decimal("10000"), Decimal("100000")],
        description="Gross above the n-th threshold needs n approvals by distinct approvers.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    db_pool_size: int = Field(
        default=20,
        ge=1,
        description="Connections a process keeps open to PostgreSQL for HTTP requests; a "
        "request finding them all busy waits for one (up to 30 s, then 503).",
    )
    db_max_overflow: int = Field(
        default=0,
        ge=0,
        description="Connections opened beyond db_pool_size under load and closed as soon as "
        "they come back: each costs a connect and its authentication, so none by default.",
    )
    consumer_pool_size: int | None = Field(
        default=None,
        ge=1,
        description="Connections the event consumers and relays of a process share, apart "
        "from the HTTP pool so neither can starve the other; unset: one for each of them.",
    )
    consumer_batch_size: int = Field(
        default=2000,
        ge=1,
        description="Most events a consumer applies in one transaction; a subscription that "
        "is behind catches up in batches of this size.",
    )
    consumer_poll_seconds: float = Field(default=1.0, gt=0)
    consumer_linger_seconds: float = Field(
        default=0.005,
        ge=0,
        description="How long a woken consumer waits for more commits before reading, so "
        "that events committed close together are applied as one batch.",
    )
    log_level: str = "INFO"
    pending_allocation_report_after_seconds: int = Field(
        default=24 * 3600,
        ge=0,
        description="A pending allocation still unresolved after this long is listed in the "
        "period reconciliation.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        ZoneInfo(value)
        return value

    @field_validator("approval_thresholds")
    @classmethod
    def _ascending(cls, value: list[Decimal]) -> list[Decimal]:
        if value != sorted(value):
            raise ValueError("approval thresholds must be ascending")
        return value

    @model_validator(mode="after")
    def _no_placeholder_secret_in_production(self) -> Settings:
        if self.environment == "production":
            # An empty value (a blank line in an env file) counts as unset: every process
            # would otherwise sign with its own generated key.
            secret = self.secret_key or ""
            if secret == PLACEHOLDER_SECRET or len(secret.encode()) < MIN_PRODUCTION_SECRET_BYTES:
                raise ValueError(
                    "SALESBOOK_SECRET_KEY must be a random secret of at least "
                    f"{MIN_PRODUCTION_SECRET_BYTES} bytes in production "
                    "(e.g. `openssl rand -hex 32`)"
                )
        if self.effective_transport == "kafka" and not self.kafka_bootstrap:
            raise ValueError("the kafka transport needs SALESBOOK_KAFKA_BOOTSTRAP")
        return self

    @property
    def effective_transport(self) -> Transport:
        if self.transport:
            return self.transport
        return "kafka" if self.kafka_bootstrap else "postgres"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@lru_cache
def get_settings() -> Settings:
    return Settings()
