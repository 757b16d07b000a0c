"""Where the services are found: one ServiceModule per service package."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only for annotations: the service names are wanted by commands that never build an app.
    from shared.app import ServiceModule

SERVICES = ("orders", "payments", "closing", "analytics")


def service_module(name: str) -> ServiceModule:
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    return importlib.import_module(f"services.{name}.app").module()


def all_modules() -> list[ServiceModule]:
    return [service_module(name) for name in SERVICES]


def migration_targets(modules: list[ServiceModule]) -> list[tuple[str, Path]]:
    return [(m.name, m.migrations) for m in modules if m.migrations is not None]
