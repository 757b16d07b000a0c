"""The closing service as an app module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from shared.app import ServiceModule, create_app

NAME = "closing"


def module() -> ServiceModule:
    from services.closing.api import router
    from services.closing.handlers import subscriptions

    return ServiceModule(
        name=NAME,
        routers=[router],
        subscriptions=subscriptions(),
        migrations=Path(__file__).parent / "migrations",
    )


def app(**options: Any) -> FastAPI:
    """The closing service on its own, for a distributed deployment."""
    return create_app([module()], title="Salesbook closing", **options)
