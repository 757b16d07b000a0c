"""Moving one service's schema to a revision, and reading or writing a database directly: for
the tests of migrations that repair or carry over data."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import Connection, text

from services.registry import migration_targets, service_module
from shared.db import Database
from shared.migrations import alembic_config


async def migrate_service(url: str, service: str, direction: str, revision: str) -> None:
    """`direction` ("upgrade" or "downgrade") the service's schema to `revision`."""
    ((schema, folder),) = migration_targets([service_module(service)])
    config = alembic_config(migrations=folder, schema=schema)
    database = Database(url)
    try:
        async with database.engine.begin() as conn:

            def run(connection: Connection) -> None:
                config.attributes["connection"] = connection
                getattr(command, direction)(config, revision)

            await conn.run_sync(run)
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
