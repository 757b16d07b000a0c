"""Tables every service schema has: outbox, inbox, consumer offsets, idempotency keys, audit
log, document number counters. One set per schema, built on first use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Every table of every service lives in this one MetaData, each in its service's schema;
# Alembic filters by schema so each service migrates only its own tables.
metadata: MetaData = SQLModel.metadata
metadata.naming_convention = NAMING_CONVENTION


@dataclass(frozen=True)
class CommonTables:
    schema: str
    outbox: Table
    processed_events: Table
    consumer_offsets: Table
    idempotency_keys: Table
    audit_log: Table
    document_numbers: Table


@cache
def common_tables(schema: str) -> CommonTables:
    """The shared tables of one service schema (registered in the global metadata once)."""
    outbox = Table(
        "outbox",
        metadata,
        # Numbers are taken under a per-schema advisory lock held until commit, so the id
        # order is the commit order (see shared/messaging/outbox.py).
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("type", String(80), nullable=False),
        Column("key", String(80), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        schema=schema,
    )
    processed_events = Table(
        "processed_events",
        metadata,
        Column("consumer", String(80), nullable=False),
        Column("event_id", UUID(as_uuid=True), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "event_id"),
        schema=schema,
    )
    consumer_offsets = Table(
        "consumer_offsets",
        metadata,
        Column("consumer", String(80), nullable=False),
        Column("source", String(80), nullable=False),
        Column("position", BigInteger, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "source"),
        schema=schema,
    )
    idempotency_keys = Table(
        "idempotency_keys",
        metadata,
        Column("subject", String(200), nullable=False),
        Column("endpoint", String(200), nullable=False),
        Column("key", String(200), nullable=False),
        Column("request_hash", String(64), nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("response", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("subject", "endpoint", "key"),
        schema=schema,
    )
    audit_log = Table(
        "audit_log",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("actor", String(200), nullable=False),
        Column("role", String(40), nullable=False),
        Column("action", String(80), nullable=False),
        Column("entity", String(80), nullable=False),
        Column("entity_id", String(80), nullable=False),
        Column("details", JSONB, nullable=False),
        Column("request_id", String(80)),
        schema=schema,
    )
    document_numbers = Table(
        "document_numbers",
        metadata,
        Column("prefix", String(10), nullable=False),
        Column("year", Integer, nullable=False),
        Column("last", BigInteger, nullable=False),
        PrimaryKeyConstraint("prefix", "year"),
        schema=schema,
    )
    return CommonTables(
        schema=schema,
        outbox=outbox,
        processed_events=processed_events,
        consumer_offsets=consumer_offsets,
        idempotency_keys=idempotency_keys,
        audit_log=audit_log,
        document_numbers=document_numbers,
    )


AUDIT_APPEND_ONLY_SQL = (
    """
    CREATE OR REPLACE FUNCTION {schema}.audit_log_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only';
    END
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON {schema}.audit_log
        FOR EACH ROW EXECUTE FUNCTION {schema}.audit_log_append_only()
    """,
)


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a table model, typed (SQLModel sets `__table__` but declares no type)."""
    table = model.__table__  # type: ignore[attr-defined]  # set by SQLModel's metaclass
    assert isinstance(table, Table)
    return table
