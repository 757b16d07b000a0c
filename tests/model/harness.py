"""The whole system for a synchronous test: every service on one app, served in-process on an
event loop of its own thread with its consumers running, the means to wait until every event
raised has been applied everywhere, and a reset to an empty database between examples."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any, TypeVar

import asyncpg
import httpx

from services.registry import all_modules
from shared.app import create_app
from shared.config import Settings
from shared.db import plain_url

T = TypeVar("T")


class Loop:
    """An event loop running in a thread of its own, for calling async code from sync code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="system", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# Per subscription and source: how far behind its consumer is, all in one snapshot.
def _lag_sql() -> str:
    parts = []
    for module in all_modules():
        for sub in module.subscriptions:
            for source in sub.sources:
                parts.append(
                    f"SELECT '{sub.name}' AS consumer, '{source}' AS source, "
                    f'(SELECT coalesce(max(id), 0) FROM "{source}".outbox) - '
                    f'(SELECT coalesce(max(position), 0) FROM "{sub.schema}".consumer_offsets '
                    f"WHERE consumer = '{sub.name}' AND source = '{source}') AS behind"
                )
    return " UNION ALL ".join(parts)


LAG_SQL = _lag_sql()


# One statement deleting every row of every table but the migrations' versions and the
# append-only audit logs (truncated instead): the foreign keys are checked at its end, when
# both sides are gone. Faster than truncating all some eighty tables, which replaces their files.
RESET_SQL = """
SELECT 'TRUNCATE ' || string_agg(format('%I.%I', schemaname, tablename), ', ')
         FILTER (WHERE tablename = 'audit_log') || '; '
       || 'WITH '
       || string_agg(format('d%s AS (DELETE FROM %I.%I)', n, schemaname, tablename), ', ')
         FILTER (WHERE tablename <> 'audit_log')
       || ' SELECT 1'
  FROM (SELECT schemaname, tablename, row_number() OVER () AS n
          FROM pg_tables
         WHERE schemaname IN ('orders', 'payments', 'closing', 'analytics')
           AND tablename <> 'alembic_version') t
"""


class System:
    """Every service on one app over the migrated database `url`, with its workers. Closing
    it stops the app and empties every table (the migrations seed none), so the next example
    starts as on a freshly migrated database, without the seconds a DROP DATABASE takes."""

    def __init__(self, loop: Loop, url: str, settings: Settings) -> None:
        self.loop = loop
        self.url = url
        self.stack = AsyncExitStack()
        self.client: httpx.AsyncClient = loop.run(self._start(settings))
        try:
            self.probe: asyncpg.Connection = loop.run(asyncpg.connect(plain_url(self.url)))
        except BaseException:
            loop.run(self.stack.aclose())  # no server left running
            raise

    async def _start(self, settings: Settings) -> httpx.AsyncClient:
        app = create_app(all_modules(), settings=settings, database_url=self.url)
        await self.stack.enter_async_context(app.router.lifespan_context(app))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        return await self.stack.enter_async_context(client)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run(self.client.request(method, path, **kwargs))

    def behind(self) -> dict[str, int]:
        rows = self.loop.run(self.probe.fetch(LAG_SQL))
        return {f"{r['consumer']}<{r['source']}": r["behind"] for r in rows if r["behind"]}

    def drain(self, seconds: float = 30.0) -> None:
        """Wait until every subscription has applied every event its sources hold, read in
        one snapshot (an event a consumer raises is committed with its own progress, so
        nothing is in flight once all are level)."""
        deadline = time.monotonic() + seconds
        while True:
            behind = self.behind()
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"events not drained within {seconds}s: {behind}")
            time.sleep(0.02)

    @contextmanager
    def paused(self, consumer: str, schema: str, source: str) -> Iterator[None]:
        """Hold `consumer` back from `source` (its position row locked) for the block."""
        conn: asyncpg.Connection = self.loop.run(asyncpg.connect(plain_url(self.url)))
        try:
            self.loop.run(conn.execute("BEGIN"))
            self.loop.run(
                conn.execute(
                    f'INSERT INTO "{schema}".consumer_offsets (consumer, source, position) '
                    "VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
                    consumer,
                    source,
                )
            )
            self.loop.run(
                conn.execute(
                    f'SELECT 1 FROM "{schema}".consumer_offsets '
                    "WHERE consumer = $1 AND source = $2 FOR UPDATE",
                    consumer,
                    source,
                )
            )
            yield
        finally:
            self.loop.run(conn.close())

    def close(self) -> None:
        try:
            self.loop.run(self.stack.aclose())
            self.loop.run(self.probe.execute(self.loop.run(self.probe.fetchval(RESET_SQL))))
        finally:
            self.loop.run(self.probe.close())
