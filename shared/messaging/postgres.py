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
from collections import OrderedDict
from collections.abc import Callable, Iterable

import asyncpg
from pydantic import ValidationError
from sqlalchemy import Text, cast, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.errors import connection_lost
from shared.events.envelope import Event
from shared.memo import per_database, remember
from shared.messaging.consumer import Subscription, apply_batch
from shared.messaging.health import RETRY_MOST_SECONDS, Backoff, FailedEvent, SubscriptionHealth
from shared.messaging.outbox import notify_channel
from shared.tables import common_tables

log = logging.getLogger("salesbook.messaging.postgres")


class _ParsedRows:
    """The outbox rows parsed last in this process, per database, by their text.

    The subscriptions of one process that read the same source are woken by the same commit
    and read the same rows moments apart: each row is parsed once for all of them. Keyed by
    the row's text itself, so a row corrected in place is parsed again."""

    SIZE = 2048

    def __init__(self) -> None:
        self.events: OrderedDict[tuple[str, int, str], Event] = OrderedDict()

    def event(self, source: str, position: int, raw: str) -> Event:
        key = (source, position, raw)
        event = self.events.get(key)
        if event is None:
            try:
                event = Event.model_validate_json(raw)
            except ValidationError as exc:
                raise UnreadableEvent(source, position, exc) from exc
            remember(self.events, key, event, self.SIZE)
        return event


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
    parsed = per_database(session, _ParsedRows)
    return [(position, parsed.event(source, position, raw)) for position, raw in rows]


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


async def stored_position(
    session: AsyncSession, *, schema: str, consumer: str, source: str
) -> int | None:
    """The consumer's position in `source`, row-locked; None if it has none yet."""
    offsets = common_tables(schema).consumer_offsets
    return (
        await session.execute(
            select(offsets.c.position)
            .where(offsets.c.consumer == consumer, offsets.c.source == source)
            .with_for_update()
        )
    ).scalar_one_or_none()


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

    def __init__(
        self,
        db: Database,
        wake: asyncio.Event | None = None,
        *,
        sources: tuple[str, ...],
    ) -> None:
        self._db = db
        self._event = wake or asyncio.Event()
        # The sources whose commits wake it: it listens on their channels only, so a commit
        # to another schema's outbox does not even reach its connection.
        self._sources = frozenset(sources)
        self._channels = sorted(notify_channel(source) for source in self._sources)
        self._conn: asyncpg.Connection | None = None
        self._lost = False
        self.connects = 0
        self.notified: set[str] = set()

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
            for channel in self._channels:
                await conn.add_listener(channel, self._notified)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("LISTEN unavailable, polling only: %s", exc)
            with contextlib.suppress(Exception):
                await conn.close()
            return
        self._conn = conn
        self._lost = False
        self.connects += 1

    def _notified(self, _conn: object, _pid: int, _channel: str, source: str) -> None:
        if source in self._sources:
            self.notified.add(source)
            self._event.set()

    def take_notified(self) -> set[str]:
        """The sources notified since the last call."""
        notified, self.notified = self.notified, set()
        return notified

    def _terminated(self, *_: object) -> None:
        self._lost = True
        self._event.set()

    async def wait(self, seconds: float) -> None:
        if not self.listening:
            await self._reconnect()
            if self.listening:
                self._event.clear()
                self.notified |= self._sources
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

    Woken by its own sources' notifications only, it reads just the sources that were
    notified, after lingering a moment so that commits arriving close together are applied as
    one batch. A batch that fails is retried one event at a time up to its last event, so
    that the event at fault is known (and the events before it are applied); that event is
    retried with a backoff until it applies, and after a few attempts the subscription
    reports itself stuck on it.
    """

    def __init__(
        self,
        db: Database,
        subscription: Subscription,
        *,
        batch_size: int = 2000,
        poll_seconds: float = 1.0,
        linger_seconds: float = 0.0,
        on_batch: Callable[[str, int], None] | None = None,
        retry_most_seconds: float = RETRY_MOST_SECONDS,
    ) -> None:
        self.db = db
        self.subscription = subscription
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.linger_seconds = linger_seconds
        self.on_batch = on_batch
        self.health = SubscriptionHealth(subscription.name)
        self.backoff = Backoff(most=retry_most_seconds)
        self.waker: OutboxWaker | None = None
        # Per source: the last outbox id of a failed batch, up to which events are applied
        # one at a time.
        self._careful: dict[str, int] = {}
        self._attempt: FailedEvent | None = None
        self._batch_end: tuple[str, int] | None = None
        # Sources whose position row exists: it is created once, not in every batch.
        self._positioned: set[str] = set()
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
        self._attempt = self._batch_end = None
        async with self.db.transaction() as session:
            position = await self._locked_position(session, source)
            until = self._careful.get(source)
            careful = until is not None and position < until
            if until is not None and not careful:
                del self._careful[source]  # past the failed batch: whole batches again
            self._attempt = FailedEvent(source, str(position + 1), None, None)
            rows = await read_outbox(
                session, source=source, after=position, limit=1 if careful else self.batch_size
            )
            if not rows:
                self._careful.pop(source, None)
                self._attempt = None
                return 0
            self._batch_end = (source, rows[-1][0])
            if careful:
                at, event = rows[0]
                self._attempt = FailedEvent(source, str(at), event.event_id, event.type)
            await apply_batch(session, sub, [event for _, event in rows])
            await store_position(
                session, schema=sub.schema, consumer=sub.name, source=source, position=rows[-1][0]
            )
        self._attempt = self._batch_end = None
        self.health.applied()
        if self.on_batch:
            self.on_batch(source, len(rows))
        return len(rows)

    async def _locked_position(self, session: AsyncSession, source: str) -> int:
        sub = self.subscription
        if source in self._positioned:
            position = await stored_position(
                session, schema=sub.schema, consumer=sub.name, source=source
            )
            if position is not None:
                return position
        position = await locked_position(
            session, schema=sub.schema, consumer=sub.name, source=source
        )
        self._positioned.add(source)
        return position

    async def drain(self, sources: Iterable[str] | None = None) -> int:
        """Apply everything available now from `sources` (all of the subscription's by
        default); returns how many events were read."""
        pending = list(sources or self.subscription.sources)
        total = 0
        while pending and not self._stopping.is_set():
            for source in list(pending):
                read = await self.step(source)
                total += read
                if not read:
                    pending.remove(source)
        self.health.idle()
        return total

    async def run(self) -> None:
        self._wake.clear()
        sources = self.subscription.sources
        waker = self.waker = OutboxWaker(self.db, self._wake, sources=sources)
        await waker.start()
        try:
            while not self._stopping.is_set():
                try:
                    await self.drain(sources)
                    self.backoff.reset()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    sources = self.subscription.sources
                    if self._failed(exc):
                        continue  # narrowed to one event at a time: try at once
                    await self.health.pause(self.backoff.next(), self._stopping)
                    continue
                sources = await self._next_sources(waker)
        finally:
            await waker.stop()
            self.health.stopped()

    async def _next_sources(self, waker: OutboxWaker) -> tuple[str, ...]:
        """Waits for a notification (or the poll interval); the sources to read next: the
        notified ones, or all of them after a poll, a retry or a reconnect."""
        await waker.wait(self.poll_seconds)
        notified = waker.take_notified()
        if notified and self.linger_seconds > 0 and not self._stopping.is_set():
            await asyncio.sleep(self.linger_seconds)
            notified |= waker.take_notified()
            self._wake.clear()
        return tuple(s for s in self.subscription.sources if s in notified) or (
            self.subscription.sources
        )

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
            batch_end, self._batch_end = self._batch_end, None
            if attempt.source not in self._careful:
                log.warning("subscription %s failed a batch of %s: %r", name, attempt.source, exc)
                self._careful[attempt.source] = (
                    batch_end[1] if batch_end else int(attempt.position) - 1 + self.batch_size
                )
                self.health.failed(exc, None)
                return True
            attempt = None  # failed before it read the event: nothing to blame
        log.error("subscription %s failed on %s, retrying", name, attempt, exc_info=exc)
        self.health.failed(exc, attempt)
        return False
