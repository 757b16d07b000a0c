"""The postgres transport: consumers read the producers' outbox tables directly.

A subscriber keeps one position per source in its own schema's consumer_offsets and moves
it in the same transaction as the effects of the events it applied: the crash window between
"applied" and "acknowledged" does not exist on this transport. Outbox ids are assigned in
commit order (see outbox.py), so reading `id > position` in id order never skips a row.
LISTEN/NOTIFY wakes readers at once; a poll interval covers a lost notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy import Text, cast, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.events.envelope import Event
from shared.messaging.consumer import Subscription, apply_batch
from shared.messaging.outbox import NOTIFY_CHANNEL
from shared.tables import common_tables

log = logging.getLogger("salesbook.messaging.postgres")


async def read_outbox(
    session: AsyncSession, *, source: str, after: int, limit: int
) -> list[tuple[int, Event]]:
    """Committed events of `source` with id > after, in commit order."""
    outbox = common_tables(source).outbox
    # As text, parsed by the model itself in one step, rather than decoded to Python objects
    # by the driver and then validated.
    rows = await session.execute(
        select(outbox.c.id, cast(outbox.c.payload, Text))
        .where(outbox.c.id > after)
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return [(position, Event.model_validate_json(raw)) for position, raw in rows]


async def locked_position(session: AsyncSession, *, schema: str, consumer: str, source: str) -> int:
    """The consumer's position in `source`, row-locked so replicas take turns."""
    offsets = common_tables(schema).consumer_offsets
    await session.execute(
        insert(offsets)
        .values(consumer=consumer, source=source, position=0)
        .on_conflict_do_nothing()
    )
    return (
        await session.execute(
            select(offsets.c.position)
            .where(offsets.c.consumer == consumer, offsets.c.source == source)
            .with_for_update()
        )
    ).scalar_one()


async def store_position(
    session: AsyncSession, *, schema: str, consumer: str, source: str, position: int
) -> None:
    offsets = common_tables(schema).consumer_offsets
    await session.execute(
        offsets.update()
        .where(offsets.c.consumer == consumer, offsets.c.source == source)
        .values(position=position)
    )


class OutboxWaker:
    """LISTENs for outbox notifications and wakes whoever waits on it."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._event = asyncio.Event()
        self._conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        try:
            self._conn = await asyncpg.connect(self._db.url)
            await self._conn.add_listener(NOTIFY_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError) as exc:  # polling still works without it
            log.warning("LISTEN unavailable, polling only: %s", exc)
            self._conn = None

    def _notified(self, *_: object) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()

    async def stop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None


class PostgresSubscriber:
    """Runs one subscription on the postgres transport until cancelled."""

    def __init__(
        self,
        db: Database,
        subscription: Subscription,
        *,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.db = db
        self.subscription = subscription
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.on_batch = on_batch

    async def step(self, source: str) -> int:
        """Apply the next batch from one source; returns how many events were read."""
        sub = self.subscription
        async with self.db.transaction() as session:
            position = await locked_position(
                session, schema=sub.schema, consumer=sub.name, source=source
            )
            rows = await read_outbox(session, source=source, after=position, limit=self.batch_size)
            if not rows:
                return 0
            await apply_batch(session, sub, [event for _, event in rows])
            await store_position(
                session, schema=sub.schema, consumer=sub.name, source=source, position=rows[-1][0]
            )
        if self.on_batch:
            self.on_batch(source, len(rows))
        return len(rows)

    async def drain(self) -> int:
        """Apply everything available now; returns how many events were read."""
        total = 0
        while True:
            read = sum([await self.step(source) for source in self.subscription.sources])
            total += read
            if not read:
                return total

    async def run(self) -> None:
        waker = OutboxWaker(self.db)
        await waker.start()
        backoff = 0.1
        try:
            while True:
                try:
                    await self.drain()
                    backoff = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("subscription %s failed; retrying", self.subscription.name)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                await waker.wait(self.poll_seconds)
        finally:
            await waker.stop()
