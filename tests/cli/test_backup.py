"""`salesbook backup` / `salesbook restore`: every row of the service schemas survives a
round trip into an empty database, and a restore over an existing one replaces it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from services.registry import all_modules, migration_targets
from tests.cli.conftest import RunCli
from tests.cli.sql import query, snapshot
from tests.support.database import fresh_database


def seed(url: str) -> None:
    """A few rows of each kind of column (uuid, jsonb, timestamps, text) in every schema."""
    for schema, _ in migration_targets(all_modules()):
        query(
            url,
            f"""
            INSERT INTO {schema}.outbox (event_id, type, key, payload)
                VALUES (gen_random_uuid(), 'order.confirmed', 'c-1', '{{"total": "12.50"}}'),
                       (gen_random_uuid(), 'payment.received', 'c-2', '{{"名": "客户"}}');
            INSERT INTO {schema}.audit_log (actor, role, action, entity, entity_id, details)
                VALUES ('alice', 'admin', 'create', 'thing', '1', '{{"why": "test"}}');
            INSERT INTO {schema}.document_numbers (prefix, year, last) VALUES ('INV', 2026, 41);
            INSERT INTO {schema}.consumer_offsets (consumer, source, position)
                VALUES ('{schema}.probe', 'orders', 17);
            """,
        )


def test_backup_and_restore_round_trip(run_cli: RunCli, pg_server: str, tmp_path: Path) -> None:
    file = tmp_path / "backups" / "ledger.dump"
    with fresh_database(pg_server) as source, fresh_database(pg_server) as target:
        assert run_cli("migrate", env={"SALESBOOK_DATABASE_URL": source}).code == 0
        seed(source)
        original = snapshot(source)
        assert original["orders.outbox"], "the seed must have written rows"

        made = run_cli("backup", str(file), env={"SALESBOOK_DATABASE_URL": source})
        assert made.code == 0, made.err
        assert file.is_file() and not file.with_name(file.name + ".partial").exists()

        into_empty = run_cli("restore", str(file), env={"SALESBOOK_DATABASE_URL": target})
        assert into_empty.code == 0, into_empty.err
        assert snapshot(target) == original

        # Over an existing database the restore replaces what changed since the backup.
        query(target, "INSERT INTO orders.document_numbers (prefix, year, last) VALUES ('X', 1, 1)")
        again = run_cli("restore", str(file), env={"SALESBOOK_DATABASE_URL": target})
        assert again.code == 0, again.err
        assert snapshot(target) == original

        # The restored audit log is still append-only: its trigger came back too.
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            query(target, "UPDATE orders.audit_log SET actor = 'mallory'")


def test_a_backup_restores_into_a_new_server(
    run_cli: RunCli, pg_server: str, tmp_path: Path
) -> None:
    """Disaster recovery: the backup goes into the embedded server of a new data folder,
    which never ran the migrations, so it lacks the server-wide role the backup's grants
    name. Backed up from there again, it is still the original."""
    first, second = tmp_path / "first.dump", tmp_path / "second.dump"
    embedded = {"SALESBOOK_DATA_DIR": str(tmp_path / "new-folder")}
    with fresh_database(pg_server) as source, fresh_database(pg_server) as target:
        assert run_cli("migrate", env={"SALESBOOK_DATABASE_URL": source}).code == 0
        seed(source)
        original = snapshot(source)
        assert run_cli("backup", str(first), env={"SALESBOOK_DATABASE_URL": source}).code == 0

        restored = run_cli("restore", str(first), env=embedded)
        assert restored.code == 0, restored.err
        assert run_cli("backup", str(second), env=embedded).code == 0
        again = run_cli("restore", str(second), env={"SALESBOOK_DATABASE_URL": target})
        assert again.code == 0, again.err
        assert snapshot(target) == original


def test_restore_of_a_damaged_file_changes_nothing(
    run_cli: RunCli, pg_server: str, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged.dump"
    damaged.write_bytes(b"PGDMP this is not a backup")
    with fresh_database(pg_server) as target:
        assert run_cli("migrate", env={"SALESBOOK_DATABASE_URL": target}).code == 0
        before = snapshot(target)
        outcome = run_cli("restore", str(damaged), env={"SALESBOOK_DATABASE_URL": target})
        assert outcome.code == 1
        assert "pg_restore" in outcome.err
        assert snapshot(target) == before


def test_restore_is_refused_while_another_client_uses_the_database(
    run_cli: RunCli, pg_server: str, tmp_path: Path
) -> None:
    file = tmp_path / "ledger.dump"
    with fresh_database(pg_server) as url:
        assert run_cli("migrate", env={"SALESBOOK_DATABASE_URL": url}).code == 0
        seed(url)
        assert run_cli("backup", str(file), env={"SALESBOOK_DATABASE_URL": url}).code == 0
        query(url, "INSERT INTO orders.document_numbers (prefix, year, last) VALUES ('X', 1, 1)")
        changed = snapshot(url)

        async def hold_connection() -> asyncpg.Connection:
            return await asyncpg.connect(url, server_settings={"application_name": "a-server"})

        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(hold_connection())
        try:
            refused = run_cli("restore", str(file), env={"SALESBOOK_DATABASE_URL": url})
            assert refused.code == 1
            assert "in use" in refused.err and "a-server" in refused.err
            assert snapshot(url) == changed
        finally:
            loop.run_until_complete(server.close())
            loop.close()

        # Once it has gone, the same restore goes through.
        restored = run_cli("restore", str(file), env={"SALESBOOK_DATABASE_URL": url})
        assert restored.code == 0, restored.err
        assert snapshot(url) != changed
