"""Alembic glue: every service migrates its own schema with its own version table."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import Database, async_url, metadata


def alembic_config(*, migrations: Path, schema: str, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("version_locations", str(migrations / "versions"))
    config.attributes["schema"] = schema
    if url:
        config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return config


def run_migrations(schema: str) -> None:
    """Body of every service's migrations/env.py."""
    config = context.config

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if type_ == "table":
            return obj.schema == schema
        return True

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        return name == schema if type_ == "schema" else True

    def migrate(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=metadata,
            include_schemas=True,
            include_object=include_object,
            include_name=include_name,
            version_table_schema=schema,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    connection = config.attributes.get("connection")
    if connection is not None:
        migrate(connection)
        return

    async def standalone() -> None:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            from shared.config import get_settings

            url = get_settings().database_url
        if not url:
            raise SystemExit("set SALESBOOK_DATABASE_URL to run alembic directly")
        engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
        async with engine.begin() as conn:
            await conn.run_sync(migrate)
        await engine.dispose()

    asyncio.run(standalone())


async def upgrade(db: Database, targets: list[tuple[str, Path]]) -> None:
    """Bring each (schema, migrations folder) to its newest revision."""
    for schema, migrations in targets:
        config = alembic_config(migrations=migrations, schema=schema)

        def run(connection: Connection, config: Config = config) -> None:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        async with db.engine.begin() as conn:
            # Serialise concurrent migrators (several processes starting at once).
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('salesbook.migrate'))"))
            await conn.run_sync(run)
