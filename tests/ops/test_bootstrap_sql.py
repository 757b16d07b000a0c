"""deploy/bootstrap.sql on a fresh database: every service role owns its schema, reads only
the outboxes it subscribes to, and is refused writes anywhere else."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.registry import SERVICES, all_modules, migration_targets, service_module
from shared.db import Database, plain_url
from shared.messaging.postgres import PostgresSubscriber
from shared.migrations import upgrade
from tests.support.database import fresh_database

BOOTSTRAP = Path(__file__).parents[2] / "deploy" / "bootstrap.sql"
MIGRATED = [name for name, _ in migration_targets(all_modules())]


def as_role(url: str, service: str) -> str:
    """The URL of the same database, logged in as the service's role (bootstrap passwords)."""
    parts = urlsplit(plain_url(url))
    role = f"salesbook_{service}"
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}:{role}@{host}"))


async def execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(plain_url(url))
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def migrate(url: str, services: list[str]) -> None:
    db = Database(url, pool_size=1)
    try:
        await upgrade(db, migration_targets([service_module(s) for s in services]))
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def bootstrapped(pg_server: str) -> Iterator[str]:
    """A fresh database, bootstrapped, then each schema migrated as its own role."""
    with fresh_database(pg_server, prefix="salesbook_boot") as url:
        asyncio.run(execute(url, BOOTSTRAP.read_text()))
        for service in MIGRATED:
            asyncio.run(migrate(as_role(url, service), [service]))
        yield url


async def test_each_schema_and_its_tables_belong_to_the_service_role(bootstrapped: str) -> None:
    rows = await fetch(
        bootstrapped,
        "SELECT schemaname, tablename, tableowner FROM pg_tables"
        " WHERE schemaname IN ('orders', 'payments', 'closing', 'analytics')",
    )
    assert {r["schemaname"] for r in rows} == set(MIGRATED)
    assert all(r["tableowner"] == f"salesbook_{r['schemaname']}" for r in rows), rows
    owners = await fetch(
        bootstrapped,
        "SELECT nspname, nspowner::regrole::text AS owner FROM pg_namespace"
        " WHERE nspname IN ('orders', 'payments', 'closing', 'analytics')",
    )
    assert {(r["nspname"], r["owner"]) for r in owners} == {(s, f"salesbook_{s}") for s in SERVICES}


async def test_a_service_role_is_refused_writes_to_another_schema(bootstrapped: str) -> None:
    orders = as_role(bootstrapped, "orders")
    await execute(orders, "INSERT INTO orders.document_numbers VALUES ('T', 2000, 1)")
    for statement in (
        "INSERT INTO payments.document_numbers VALUES ('T', 2000, 1)",
        "UPDATE closing.outbox SET key = 'x'",
        "DELETE FROM payments.outbox",
        "CREATE TABLE payments.intruder (id int)",
        "SELECT * FROM payments.idempotency_keys",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await execute(orders, statement)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await execute(as_role(bootstrapped, "analytics"), "SELECT * FROM closing.ledger_entries")


async def test_outbox_reads_are_granted_exactly_as_the_subscriptions_need(
    bootstrapped: str,
) -> None:
    rows = await fetch(
        bootstrapped,
        "SELECT table_schema, table_name, grantee FROM information_schema.role_table_grants"
        " WHERE privilege_type = 'SELECT' AND grantee LIKE 'salesbook\\_%'"
        " AND grantee <> 'salesbook_' || table_schema",
    )
    granted = {(r["grantee"], f"{r['table_schema']}.{r['table_name']}") for r in rows}
    needed = {
        (f"salesbook_{sub.schema}", f"{source}.outbox")
        for module in all_modules()
        for sub in module.subscriptions
        for source in sub.sources
    }
    assert needed <= granted, "a subscription could not read its source"
    # Beyond what the subscriptions need, only analytics may read more: its read models are
    # being extended to further sources, and the bootstrap grants it orders and payments.
    assert granted - needed <= {
        ("salesbook_analytics", "orders.outbox"),
        ("salesbook_analytics", "payments.outbox"),
    }


async def test_every_subscription_runs_on_the_postgres_transport_as_its_role(
    bootstrapped: str,
) -> None:
    for module in all_modules():
        db = Database(as_role(bootstrapped, module.name), pool_size=1)
        try:
            for sub in module.subscriptions:
                await PostgresSubscriber(db, sub).drain()
        finally:
            await db.dispose()


def test_a_superuser_migration_is_handed_over_to_the_service_roles(pg_server: str) -> None:
    """The other way to migrate: `salesbook migrate` as an administrator, then (or before)
    the bootstrap; either order leaves every table with its service's role."""
    for bootstrap_first in (True, False):
        with fresh_database(pg_server, prefix="salesbook_boot") as url:
            if bootstrap_first:
                asyncio.run(execute(url, BOOTSTRAP.read_text()))
            asyncio.run(migrate(url, MIGRATED))
            if not bootstrap_first:
                asyncio.run(execute(url, BOOTSTRAP.read_text()))
            rows = asyncio.run(
                fetch(
                    url,
                    "SELECT schemaname, tableowner FROM pg_tables"
                    " WHERE schemaname IN ('orders', 'payments', 'closing')",
                )
            )
            assert rows
            assert all(r["tableowner"] == f"salesbook_{r['schemaname']}" for r in rows), rows
            # The service can keep migrating its own schema afterwards (`salesbook serve`).
            asyncio.run(migrate(as_role(url, "orders"), ["orders"]))
            asyncio.run(execute(as_role(url, "orders"), "SELECT count(*) FROM payments.outbox"))
