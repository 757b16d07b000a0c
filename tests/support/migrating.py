"""Moving one service's schema to a revision, and reading or writing a database directly: for
the tests of migrations that repair or carry over data."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from services.registry import migration_targets, service_module
from shared.db import Database
from shared.migrations import migrate_schema


async def migrate_service(url: str, service: str, direction: str, revision: str) -> None:
    """`direction` ("upgrade" or "downgrade") the service's schema to `revision`."""
    ((schema, folder),) = migration_targets([service_module(service)])
    database = Database(url)
    try:
        await migrate_schema(database, schema, folder, direction=direction, revision=revision)
    finally:
        await database.dispose()


async def run_sql(url: str, statements: list[tuple[str, dict[str, Any]]]) -> None:
    database = Database(url)
    try:
        async with database.engine.begin() as conn:
            for statement, params in statements:
                await conn.execute(text(statement), params)
    finally:
        await database.dispose()


async def query(url: str, statement: str) -> list[tuple[Any, ...]]:
    database = Database(url)
    try:
        async with database.engine.begin() as conn:
            return [tuple(r) for r in await conn.execute(text(statement))]
    finally:
        await database.dispose()
