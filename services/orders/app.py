"""The orders service as an app module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from services.orders import api, cutoff, handlers
from shared.app import ServiceModule, create_app
from shared.audit import audit_router

NAME = "orders"


def module() -> ServiceModule:
    return ServiceModule(
        name=NAME,
        # The audit log first: /orders/audit must not be taken for an order id.
        routers=[audit_router(schema=NAME, path="/orders/audit"), api.router],
        subscriptions=[handlers.subscription, cutoff.subscription],
        migrations=Path(__file__).parent / "migrations",
    )


def app(**options: Any) -> FastAPI:
    """The orders service on its own, for a distributed deployment."""
    return create_app([module()], title="Salesbook orders", **options)
