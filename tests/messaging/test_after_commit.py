"""What a request asks to run after its commit (shared/db.py after_commit): it runs only
once the change is committed, with the request's connection given back, and a failure of
it is logged, never turned into a failure of the committed change."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from shared.db import Database, after_commit
from shared.ids import new_id


async def test_waits_run_after_the_commit_and_not_after_a_rollback(migrated: str) -> None:
    db = Database(migrated, pool_size=1, max_overflow=0)
    seen: list[str] = []

    async def look(database: Database) -> None:
        # The request's one connection is back in the pool: this read can take it.
        seen.append(await database.fetchval("SELECT current_setting('application_name')"))

    try:
        async with db.transaction() as session:
            after_commit(session, look)
            assert seen == []
        assert len(seen) == 1
        with pytest.raises(RuntimeError):
            async with db.transaction() as session:
                after_commit(session, look)
                raise RuntimeError("refused")
        assert len(seen) == 1
    finally:
        await db.dispose()


async def test_a_failing_wait_is_logged_and_the_commit_stands(
    migrated: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(migrated, pool_size=1, max_overflow=0)

    async def broken(database: Database) -> None:
        raise LookupError("gone")

    table = f"after_commit_{new_id().hex}"
    try:
        with caplog.at_level(logging.ERROR, logger="salesbook.db"):
            async with db.transaction() as session:
                after_commit(session, broken)
                await session.execute(text(f"CREATE TABLE {table} AS SELECT 1 AS x"))
        assert "a wait after a commit failed" in caplog.text
        assert "LookupError: gone" in caplog.text
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 1
    finally:
        await db.fetchval(f"DROP TABLE IF EXISTS {table}")
        await db.dispose()
