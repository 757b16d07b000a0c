"""Alembic glue: every service migrates its own schema with its own version table."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import Database, async_url
from shared.tables import AUDIT_APPEND_ONLY_SQL, metadata


def alembic_config(*, migrations: Path, schema: str, url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("path_separator", "os")
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


def create_common_tables_v1(schema: str) -> None:
    """First migration of every service: outbox, inbox, offsets, idempotency keys, audit log
    and document numbers, as they were in version 1. Frozen: change them in new revisions."""
    from alembic import op
    from sqlalchemy.dialects import postgresql

    now = sa.text("now()")
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
        schema=schema,
    )
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(length=80), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_processed_events"),
        schema=schema,
    )
    op.create_table(
        "consumer_offsets",
        sa.Column("consumer", sa.String(length=80), nullable=False),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.PrimaryKeyConstraint("consumer", "source", name="pk_consumer_offsets"),
        schema=schema,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.PrimaryKeyConstraint("subject", "endpoint", "key", name="pk_idempotency_keys"),
        schema=schema,
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=80), nullable=False),
        sa.Column("entity", sa.String(length=80), nullable=False),
        sa.Column("entity_id", sa.String(length=80), nullable=False),
        sa.Column("details", postgresql.JSONB(), nullable=False),
        sa.Column("request_id", sa.String(length=80), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        schema=schema,
    )
    for statement in AUDIT_APPEND_ONLY_SQL:
        op.execute(statement.format(schema=schema))
    op.create_table(
        "document_numbers",
        sa.Column("prefix", sa.String(length=10), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", "year", name="pk_document_numbers"),
        schema=schema,
    )


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


async def migrate_schema(
    db: Database, schema: str, migrations: Path, *, direction: str, revision: str
) -> None:
    """Move one schema to `revision`, `direction` being "upgrade" or "downgrade": for the tests
    and benchmarks that replay a migration over data written before it."""
    config = alembic_config(migrations=migrations, schema=schema)

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)
