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
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

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
    """The outbox rows parsed last in this process, per database.

    The subscriptions of one process that read the same source are woken by the same commit
    and read the same rows moments apart: each row is parsed once for all of them. A row is
    found by its position and taken only if its text is the same (a row corrected in place
    is parsed again): comparing two texts is cheap, where hashing each new text to look it
    up cost a tenth of a subscription's time catching up."""

    SIZE = 4096  # two batches: a subscription reading ahead keeps what the others read next

    def __init__(self) -> None:
        self.events: OrderedDict[tuple[str, int], tuple[str, Event]] = OrderedDict()

    def event(self, source: str, position: int, raw: str) -> Event:
        key = (source, position)
        kept = self.events.get(key)
        if kept is not None and kept[0] == raw:
            return kept[1]
        try:
            event = Event.model_validate_json(raw)
        except ValidationError as exc:
            raise UnreadableEvent(source, position, exc) from exc
        remember(self.events, key, (raw, event), self.SIZE)
        return event


async def read_outbox(
    session: AsyncSession, *, source: str, after: int, limit: int
) -> list[tuple[int, Event]]:
    """Committed events of `source` with id > after, in commit order."""
    parsed = per_database(session, _ParsedRows)
    raw = await _outbox_text(session, source=source, after=after, limit=limit)
    return [(position, parsed.event(source, position, text)) for position, text in raw]


async def _outbox_text(
    session: AsyncSession, *, source: str, after: int, limit: int
) -> list[tuple[int, str]]:
    outbox = common_tables(source).outbox
    # As text, parsed by the model itself in one step, rather than decoded to Python objects
    # by the driver and then validated.
    rows = await session.execute(
        select(outbox.c.id, cast(outbox.c.payload, Text))
        .where(outbox.c.id > after)
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return [(position, text) for position, text in rows]


class OutboxReader:
    """Reads outboxes batch after batch for one reader, parsing the next batch while the
    current one is applied.

    When a read fills its batch, the rows after it are read too, and parsed in a task of
    their own. That task runs whenever the reader waits for the database to apply the
    batch. Parsing is most of a reader's own work (bench/consumers.py), and the database's
    work is most of the rest, so the two now overlap. Parsed rows are handed only to the
    read that continues where the batch they follow ended. Any other read parses afresh:
    a retry from an earlier position, or one event at a time after a failure. Outbox ids
    follow commit order, so rows read ahead are what a read at that moment would have
    returned, as if the reader were a little slower."""

    CHUNK = 64  # rows parsed between two chances for the batch's statements to proceed

    def __init__(self, payload_types: frozenset[str] = frozenset()) -> None:
        self.payload_types = payload_types
        self._ahead: dict[str, tuple[int, asyncio.Task[list[tuple[int, Event]]]]] = {}

    async def read(
        self, session: AsyncSession, *, source: str, after: int, limit: int
    ) -> list[tuple[int, Event]]:
        """Committed events of `source` with id > after, in commit order (as read_outbox)."""
        rows: list[tuple[int, Event]] | None = None
        ahead = self._ahead.pop(source, None)
        if ahead is not None:
            follows, task = ahead
            if follows == after and limit > 1:
                rows = await task
            else:
                _discard(task)
        if rows is None:
            rows = await read_outbox(session, source=source, after=after, limit=limit)
        if limit > 1 and len(rows) == limit:
            end = rows[-1][0]
            raw = await _outbox_text(session, source=source, after=end, limit=limit)
            if raw:
                parse = self._parse(per_database(session, _ParsedRows), source, raw)
                replaced = self._ahead.get(source)
                if replaced is not None:  # only reads running side by side get here
                    _discard(replaced[1])
                self._ahead[source] = (end, asyncio.create_task(parse))
        return rows

    async def _parse(
        self, parsed: _ParsedRows, source: str, raw: list[tuple[int, str]]
    ) -> list[tuple[int, Event]]:
        rows = []
        for start in range(0, len(raw), self.CHUNK):
            if start:
                await asyncio.sleep(0)  # let the current batch's statements go on
            for at, text in raw[start : start + self.CHUNK]:
                event = parsed.event(source, at, text)
                if event.type in self.payload_types:
                    # A payload that does not validate fails again where the handler reads
                    # it, and is reported there as it would be without reading ahead.
                    with contextlib.suppress(Exception):
                        event.typed  # noqa: B018 - validated now, kept by the event
                rows.append((at, event))
        return rows

    def ahead_of(self, source: str) -> int | None:
        """The position the rows read ahead of `source` follow, if any are."""
        ahead = self._ahead.get(source)
        return ahead[0] if ahead is not None else None

    def close(self) -> None:
        """Forget what was read ahead."""
        for _, task in self._ahead.values():
            _discard(task)
        self._ahead.clear()


def _discard(task: asyncio.Task[Any]) -> None:
    """Cancel a task whose result is no longer wanted; a failure it ended with is dropped
    (the read that wants those rows parses them again, and reports it there)."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


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


LOOK_AGAIN_SECONDS = 0.02
TRANSPORT = "transport"
"""Key of session.info naming the transport whose subscriber began the session's transaction."""
SCAN_MOST = 10_000


async def wait_for_key(
    db: asyncpg.Connection[Any],
    *,
    schema: str,
    consumer: str,
    source: str,
    key: str,
    seconds: float,
    why: str,
) -> bool:
    """Wait, at most `seconds`, until the subscription `consumer` of the service of `schema`
    has applied every event of `key` (a customer: the key of every order and payment event)
    that `source`'s outbox held when the wait began: for a decision that must count what
    another service has already acknowledged to a client. One short read when nothing of
    the key is behind; the head is fixed at the start, so events committed meanwhile never
    keep it waiting. A subscription still behind at the bound is logged, and the caller
    decides on what it has. True when it had to wait."""
    # Behind while the key has an event past the stored position (the last id applied) and
    # at or below the head. Past SCAN_MOST events of lag the subscription is taken as behind
    # without looking: the outbox is indexed by id alone, and a scan that long, repeated
    # while waiting, would cost more than the wait can win.
    behind = (
        f"CASE WHEN p.at >= {{head}} THEN false WHEN {{head}} - p.at > {SCAN_MOST} THEN true "
        f"ELSE EXISTS (SELECT 1 FROM {source}.outbox AS o WHERE o.key = $1 AND o.id > p.at "
        f"AND o.id <= {{head}}) END"
    )
    position = (
        f"(SELECT coalesce(max(position), 0) AS at FROM {schema}.consumer_offsets "
        f"WHERE consumer = $2 AND source = $3) AS p"
    )
    head, pending = await db.fetchrow(
        f"SELECT h.head, {behind.format(head='h.head')} FROM {position}, "
        f"(SELECT coalesce(max(id), 0) AS head FROM {source}.outbox) AS h",
        key,
        consumer,
        source,
    )
    again = f"SELECT {behind.format(head='$4')} FROM {position}"
    if not pending:
        return False
    log.info("%s waits for %s events %s has not applied", why, source, consumer)
    if not await look_again(lambda: db.fetchval(again, key, consumer, source, head), seconds):
        _went_ahead(why, seconds, consumer, source, head)
    return True


async def wait_for_head(
    db: asyncpg.Connection[Any],
    *,
    schema: str,
    consumer: str,
    source: str,
    seconds: float,
    why: str,
) -> bool:
    """Wait, at most `seconds`, until the subscription `consumer` of the service of `schema`
    has applied every event `source`'s outbox held when the wait began (wait_for_key, for
    all keys). A subscription still behind at the bound is logged, and the caller goes on.
    True when it had to wait."""
    head = await db.fetchval(f"SELECT coalesce(max(id), 0) FROM {source}.outbox")
    behind = (
        f"SELECT coalesce(max(position), 0) < $3 FROM {schema}.consumer_offsets "
        f"WHERE consumer = $1 AND source = $2"
    )
    if not await db.fetchval(behind, consumer, source, head):
        return False
    log.info("%s waits for %s to apply %s up to %d", why, consumer, source, head)
    if not await look_again(lambda: db.fetchval(behind, consumer, source, head), seconds):
        _went_ahead(why, seconds, consumer, source, head)
    return True


async def look_again(still: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    """Look again every LOOK_AGAIN_SECONDS, for at most `seconds`, while `still()` holds
    (polled: what it waits for may be done by another process); False when it still held."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await asyncio.sleep(LOOK_AGAIN_SECONDS)
                if not await still():
                    return True
    except TimeoutError:
        return False


def _went_ahead(why: str, seconds: float, consumer: str, source: str, head: int) -> None:
    log.warning(
        "%s goes ahead after %.1fs: %s has not applied all of %s up to %d",
        why,
        seconds,
        consumer,
        source,
        head,
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
        # asyncio.timeout, not wait_for: on Python 3.11 a cancellation arriving as wait_for
        # times out comes out as TimeoutError, and the worker would not stop when asked.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
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
        self.reader = OutboxReader(subscription.payload_types)

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
            session.info[TRANSPORT] = "postgres"
            position = await self._locked_position(session, source)
            until = self._careful.get(source)
            careful = until is not None and position < until
            if until is not None and not careful:
                del self._careful[source]  # past the failed batch: whole batches again
            self._attempt = FailedEvent(source, str(position + 1), None, None)
            rows = await self.reader.read(
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
        try:
            while pending and not self._stopping.is_set():
                for source in list(pending):
                    read = await self.step(source)
                    total += read
                    # A read that did not fill its batch took everything committed before
                    # it: reading again would find nothing, and a later commit notifies again.
                    if not read or (read < self.batch_size and source not in self._careful):
                        pending.remove(source)
        except BaseException:
            # What was read ahead of another source is older than the drain that comes next.
            self.reader.close()
            raise
        if self._stopping.is_set():
            self.reader.close()
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
            self.reader.close()
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
