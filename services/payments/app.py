"""The payments service as an app module."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import ServiceModule, create_app

NAME = "payments"


def module() -> ServiceModule:
    return ServiceModule(name=NAME, routers=[])


def app(**options: object) -> FastAPI:
    """The payments service on its own, for a distributed deployment."""
    return create_app([module()], title="Salesbook payments", **options)  # type: ignore[arg-type]
