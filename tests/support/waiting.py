"""Waiting for eventually consistent effects without fixed sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from shared.db import plain_url

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    seconds: float = 10.0,
    interval: float = 0.05,
) -> T:
    """Call probe until `until(result)` holds; fail with the last result after `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await probe()
        if until(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached within {seconds}s; last: {result!r}")
        await asyncio.sleep(interval)


async def waiting_for_events(database_url: str, source: str) -> None:
    """Until a request of the app under test waits for a subscription to apply `source`'s
    events (shared/messaging/postgres.py wait_for_key: the query it repeats while it waits
    is the one its connection is running, or ran last)."""
    await running_query(
        database_url,
        f"%FROM {source}.outbox AS o WHERE o.key = $1 AND o.id > p.at AND o.id <= $4)%",
    )


async def running_query(database_url: str, like: str) -> None:
    """Until another connection of the database is running (or last ran) a query whose text
    is LIKE `like`: a request of the app under test that waits by repeating it."""
    connection = await asyncpg.connect(plain_url(database_url))
    try:

        async def waiting() -> int:
            return int(
                await connection.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND query LIKE $1",
                    like,
                )
            )

        await eventually(waiting, lambda n: n > 0)
    finally:
        await connection.close()
