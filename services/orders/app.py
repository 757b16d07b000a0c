"""The orders service as an app module."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from shared.app import ServiceModule, create_app

NAME = "orders"


def module() -> ServiceModule:
    return ServiceModule(name=NAME, routers=[], migrations=Path(__file__).parent / "migrations")


def app(**options: object) -> FastAPI:
    """The orders service on its own, for a distributed deployment."""
    return create_app([module()], title="Salesbook orders", **options)  # type: ignore[arg-type]
