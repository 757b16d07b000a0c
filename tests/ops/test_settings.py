"""Production refuses a signing secret that is missing, the placeholder, empty or shorter
than 32 bytes; the connection budget is read from the environment."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.config import Settings


def production(**values: Any) -> Settings:
    return Settings(_env_file=None, environment="production", **values)


@pytest.mark.parametrize("secret", [None, "", "change-me", "x", "é" * 15 + "x"])
def test_production_refuses_a_weak_secret(secret: str | None) -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        production(secret_key=secret)


def test_production_takes_a_secret_of_32_bytes_and_development_anything() -> None:
    assert production(secret_key="é" * 16).secret_key == "é" * 16  # 32 bytes in UTF-8
    assert Settings(_env_file=None, secret_key="x").secret_key == "x"


def test_pool_sizes_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESBOOK_DB_POOL_SIZE", "3")
    monkeypatch.setenv("SALESBOOK_DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("SALESBOOK_CONSUMER_POOL_SIZE", "2")
    settings = Settings(_env_file=None)
    assert (settings.db_pool_size, settings.db_max_overflow, settings.consumer_pool_size) == (
        3,
        0,
        2,
    )
