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
from pydantic import ValidationError
from sqlalchemy import Text, cast, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.errors import connection_lost
from shared.events.envelope import Event
from shared.messaging.consumer import Subscription, apply_batch
from shared.messaging.health import RETRY_MOST_SECONDS, Backoff, FailedEvent, SubscriptionHealth
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
    events = []
    for position, raw in rows:
        try:
            events.append((position, Event.model_validate_json(raw)))
        except ValidationError as exc:
            raise UnreadableEvent(source, position, exc) from exc
    return events


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
    """LISTENs for outbox notifications and wakes whoever waits on it.

    The database may drop the listening connection (restart, failover, a terminated backend);
    it is then opened again at the next wait, and the wait after a reconnect returns at once,
    since a notification may have been missed in between.
    """

    def __init__(self, db: Database, wake: asyncio.Event | None = None) -> None:
        self._db = db
        self._event = wake or asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._lost = False
        self.connects = 0

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed() and not self._lost

    async def start(self) -> None:
        try:
            conn = await asyncpg.connect(self._db.url)
        except (OSError, asyncpg.PostgresError) as exc:  # polling still works without it
            log.warning("LISTEN unavailable, polling only: %s", exc)
            self._conn = None
            return
        try:
            conn.add_termination_listener(self._terminated)
            await conn.add_listener(NOTIFY_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("LISTEN unavailable, polling only: %s", exc)
            with contextlib.suppress(Exception):
                await conn.close()
            return
        self._conn = conn
        self._lost = False
        self.connects += 1

    def _notified(self, *_: object) -> None:
        self._event.set()

    def _terminated(self, *_: object) -> None:
        self._lost = True
        self._event.set()

    async def wait(self, seconds: float) -> None:
        if not self.listening:
            await self._reconnect()
            if self.listening:
                self._event.clear()
                return  # whatever was notified while nobody listened is read now
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()

    async def _reconnect(self) -> None:
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5.0)


class UnreadableEvent(Exception):
    """An outbox row that is not an event: it cannot be applied until it is corrected."""

    def __init__(self, source: str, position: int, problem: Exception) -> None:
        super().__init__(f"{source} outbox row {position} is not an event: {problem}")
        self.source = source
        self.position = position


class PostgresSubscriber:
    """Runs one subscription on the postgres transport until stopped (or cancelled).

    A batch that fails is retried one event at a time, so that the event at fault is known
    (and the events before it are applied); that event is retried with a backoff until it
    applies, and after a few attempts the subscription reports itself stuck on it.
    """

    def __init__(
        self,
        db: Database,
        subscription: Subscription,
        *,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        on_batch: Callable[[str, int], None] | None = None,
        retry_most_seconds: float = RETRY_MOST_SECONDS,
    ) -> None:
        self.db = db
        self.subscription = subscription
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.on_batch = on_batch
        self.health = SubscriptionHealth(subscription.name)
        self.backoff = Backoff(most=retry_most_seconds)
        self.waker: OutboxWaker | None = None
        # Per source: how many more events to apply one at a time after a batch failed.
        self._careful: dict[str, int] = {}
        self._attempt: FailedEvent | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    def stop(self) -> None:
        """Ask the worker to finish: it returns after the round trip it is in, if any."""
        self._stopping.set()
        self._wake.set()

    def retry(self) -> None:
        """Try a failing event again now."""
        self.health.request_retry()
        self._wake.set()

    async def step(self, source: str) -> int:
        """Apply the next batch from one source; returns how many events were read."""
        sub = self.subscription
        careful = self._careful.get(source, 0) > 0
        self._attempt = None
        async with self.db.transaction() as session:
            position = await locked_position(
                session, schema=sub.schema, consumer=sub.name, source=source
            )
            self._attempt = FailedEvent(source, str(position + 1), None, None)
            rows = await read_outbox(
                session, source=source, after=position, limit=1 if careful else self.batch_size
            )
            if not rows:
                self._careful.pop(source, None)
                self._attempt = None
                return 0
            if careful:
                at, event = rows[0]
                self._attempt = FailedEvent(source, str(at), event.event_id, event.type)
            await apply_batch(session, sub, [event for _, event in rows])
            await store_position(
                session, schema=sub.schema, consumer=sub.name, source=source, position=rows[-1][0]
            )
        self._attempt = None
        if careful:
            self._careful[source] -= 1
        self.health.applied()
        if self.on_batch:
            self.on_batch(source, len(rows))
        return len(rows)

    async def drain(self) -> int:
        """Apply everything available now; returns how many events were read."""
        total = 0
        while not self._stopping.is_set():
            read = 0
            for source in self.subscription.sources:
                read += await self.step(source)
            total += read
            if not read:
                break
        self.health.idle()
        return total

    async def run(self) -> None:
        self._wake.clear()
        waker = self.waker = OutboxWaker(self.db, self._wake)
        await waker.start()
        try:
            while not self._stopping.is_set():
                try:
                    await self.drain()
                    self.backoff.reset()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if self._failed(exc):
                        continue  # narrowed to one event at a time: try at once
                    await self.health.pause(self.backoff.next(), self._stopping)
                    continue
                await waker.wait(self.poll_seconds)
        finally:
            await waker.stop()
            self.health.stopped()

    def _failed(self, exc: Exception) -> bool:
        """Record a failure; True when the batch is to be retried at once, event by event."""
        attempt, self._attempt = self._attempt, None
        name = self.subscription.name
        if connection_lost(exc):
            log.warning("subscription %s cannot reach the database, retrying: %r", name, exc)
            self.health.unreachable(exc)
            return False
        if isinstance(exc, UnreadableEvent):
            attempt = FailedEvent(exc.source, str(exc.position), None, None)
        elif attempt is not None and attempt.event_id is None:
            if self._careful.get(attempt.source, 0) <= 0:
                log.warning("subscription %s failed a batch of %s: %r", name, attempt.source, exc)
                self._careful[attempt.source] = self.batch_size
                self.health.failed(exc, None)
                return True
            attempt = None  # failed before it read the event: nothing to blame
        log.error("subscription %s failed on %s, retrying", name, attempt, exc_info=exc)
        self.health.failed(exc, attempt)
        return False
