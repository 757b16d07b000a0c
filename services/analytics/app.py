"""The analytics service as an app module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from shared.app import ServiceModule, create_app

NAME = "analytics"


def module() -> ServiceModule:
    from services.analytics.api import router
    from services.analytics.handlers import subscriptions

    return ServiceModule(
        name=NAME,
        routers=[router],
        subscriptions=subscriptions(),
        migrations=Path(__file__).parent / "migrations",
        produces_events=False,  # a pure reader: nothing to relay
    )


def app(**options: Any) -> FastAPI:
    """The analytics service on its own, for a distributed deployment."""
    return create_app([module()], title="Salesbook analytics", **options)
