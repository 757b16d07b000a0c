"""`salesbook migrate` against a configured database, and commands refusing clearly."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from services.registry import all_modules, migration_targets
from shared.migrations import alembic_config
from tests.cli.conftest import RunCli
from tests.cli.sql import query
from tests.support.database import fresh_database


def heads() -> dict[str, str | None]:
    return {
        schema: ScriptDirectory.from_config(
            alembic_config(migrations=migrations, schema=schema)
        ).get_current_head()
        for schema, migrations in migration_targets(all_modules())
    }


def versions(url: str, schemas: list[str]) -> dict[str, str | None]:
    return {
        schema: query(url, f'SELECT version_num FROM "{schema}".alembic_version')[0][0]
        for schema in schemas
    }


def test_migrate_brings_a_fresh_database_to_the_newest_revisions(
    run_cli: RunCli, pg_server: str
) -> None:
    expected = heads()
    assert "orders" in expected
    with fresh_database(pg_server) as url:
        first = run_cli("migrate", env={"SALESBOOK_DATABASE_URL": url})
        assert first.code == 0, first.err
        assert first.out.strip() == f"migrated: {', '.join(expected)}"
        assert versions(url, list(expected)) == expected

        again = run_cli("migrate", env={"SALESBOOK_DATABASE_URL": url})
        assert again.code == 0, again.err
        assert versions(url, list(expected)) == expected


def test_serve_without_a_database_url_says_what_to_set(run_cli: RunCli) -> None:
    outcome = run_cli("serve", "orders")
    assert outcome.code == 1
    assert "SALESBOOK_DATABASE_URL" in outcome.err
    assert "salesbook run" in outcome.err


def test_restore_of_a_missing_file_fails_before_touching_a_database(run_cli: RunCli) -> None:
    outcome = run_cli("restore", "/nonexistent/ledger.dump")
    assert outcome.code == 1
    assert "no backup file" in outcome.err
