"""The kafka transport: a relay publishes each outbox to its topic, subscribers consume topics.

Relay. One relay per producing schema publishes `<source>.outbox` to `salesbook.<source>`,
keyed by the event's key (the customer id), in outbox id order, which is commit order. It
reads and publishes under the row lock of its position in `<source>.consumer_offsets` (so
replicas take turns) and stores the position only after the broker acknowledged every
record: a crash in between republishes, and consumers drop the duplicates.

Ordering without an idempotent producer. Each partition's share of a relay batch is sent as
explicit record batches, one at a time, each awaited before the next. A record batch is
appended to the log whole or not at all, so a failed batch can never be overtaken by a later
one of the same partition: per key, the log holds the outbox order, possibly followed by a
replay of it. (With per-record sends, an expired batch could be followed by a successful
later one, putting a key's events out of order.)

Subscriber. One consumer group per subscription, offsets committed by hand: each fetched
batch is applied in one database transaction (inbox dedupe plus the handler's effects), and
the Kafka offsets are committed only after that commit, and only under the group assignment
the batch was fetched under. Any failure rewinds to the last committed offsets, so an event
is applied late or twice but never skipped.

A broker that lost what it acknowledged (restarted without its log) is noticed by the relay
at its next publish to a partition whose log now starts below where it left it, or, when
there is nothing to publish, by asking where the logs end: it publishes its outbox again
from the start. Where it left each partition's log is kept in the database with its
position (`<source>.consumer_offsets`, consumer `kafka-relay-log`, one row a partition), so a
relay that starts again (after a crash, with the broker restarted meanwhile) compares the
logs with it before it publishes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.partitioner import murmur2
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.config import Settings
from shared.db import Database
from shared.errors import connection_lost
from shared.events.envelope import TOPIC_PREFIX, Event
from shared.messaging.consumer import Subscription, apply_batch
from shared.messaging.health import RETRY_MOST_SECONDS, Backoff, FailedEvent, SubscriptionHealth
from shared.messaging.postgres import OutboxWaker, locked_position, read_outbox, store_position
from shared.tables import common_tables

log = logging.getLogger("salesbook.messaging.kafka")

RELAY_CONSUMER = "kafka-relay"
RELAY_LOG = "kafka-relay-log"
"""The consumer under which a relay keeps, per partition, the offset of the first record of
the last batch it published there (source `<source>:<partition>`)."""
# Large enough that one relay batch usually fits one record batch per partition, well under
# the 1 MiB message size limit brokers apply by default.
MAX_RECORD_BATCH_BYTES = 512 * 1024
# How long a client may take to close before it is abandoned: shutdown must not hang on a
# broker that went away.
CLOSE_TIMEOUT_SECONDS = 5.0
# How often an idle relay asks where its partitions' logs end, to notice a broker that lost
# what it had acknowledged even when nothing new is published.
LOG_WATCH_SECONDS = 5.0


def topic_of(source: str, prefix: str = TOPIC_PREFIX) -> str:
    return prefix + source


def group_of(subscription: Subscription, prefix: str = TOPIC_PREFIX) -> str:
    return prefix + subscription.name


def partition_of(key: str, partitions: list[int]) -> int:
    """The partition of a key, as the Java client and aiokafka's default partitioner choose it."""
    return partitions[(murmur2(key.encode()) & 0x7FFFFFFF) % len(partitions)]


async def ensure_topics(
    bootstrap: str, topics: Iterable[str], *, partitions: int, replication_factor: int = 1
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(topic, partitions, replication_factor) for topic in topics]
        )
    except TopicAlreadyExistsError:
        return
    finally:
        await admin.close()
    for topic, code, *message in response.topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            raise for_code(code)(f"creating topic {topic}: {message}")


def _log_retry(what: str, exc: Exception) -> None:
    """A broker that is away is expected and retried: one line per attempt, not a traceback."""
    if _broker_unavailable(exc):
        log.warning("%s, retrying: %r", what, exc)
    else:
        log.exception("%s, retrying", what)


def _broker_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_broker_unavailable(inner) for inner in exc.exceptions)
    return isinstance(exc, KafkaError | OSError)


async def _close(client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.stop(), CLOSE_TIMEOUT_SECONDS)


class KafkaRelay:
    """Publishes one schema's outbox to its topic until cancelled."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        source: str,
        batch_size: int | None = None,
        poll_seconds: float | None = None,
        request_timeout_ms: int = 15_000,
    ) -> None:
        if not settings.kafka_bootstrap:
            raise ValueError("the kafka relay needs settings.kafka_bootstrap")
        self.db = db
        self.bootstrap = settings.kafka_bootstrap
        self.partitions = settings.kafka_partitions
        self.source = source
        self.topic = topic_of(source, settings.kafka_topic_prefix)
        self.batch_size = batch_size or settings.consumer_batch_size
        self.poll_seconds = poll_seconds or settings.consumer_poll_seconds
        self.request_timeout_ms = request_timeout_ms
        self.relayed = 0
        self.position = 0
        self.failures = 0
        # Where each partition's log ended after this relay's last publish to it, the offset
        # of the first record of that publish's last batch (a log that holds the batch ends
        # past it), and how often the broker was found to have lost what it had acknowledged.
        self._log_ends: dict[int, int] = {}
        self._log_marks: dict[int, int] = {}
        self.log_losses = 0
        self._log_watched = time.monotonic()
        self._log_recalled = False  # whether the logs were compared with the stored marks
        self._producer: AIOKafkaProducer | None = None
        self._healthy = False
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    def ready(self) -> bool:
        """Whether the last attempt to reach the broker and publish succeeded."""
        return self._healthy

    def stop(self) -> None:
        """Ask the relay to finish after the round trip it is in, if any."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        self._wake.clear()
        waker = OutboxWaker(self.db, self._wake, sources=(self.source,))
        await waker.start()
        backoff = Backoff()
        try:
            while not self._stopping.is_set():
                try:
                    if not self._log_recalled:
                        await self.recall_log()
                    await self.drain()
                    if time.monotonic() - self._log_watched >= LOG_WATCH_SECONDS:
                        await self.watch_log()
                    self._healthy = True
                    backoff.reset()
                except Exception as exc:
                    self._healthy = False
                    self.failures += 1
                    _log_retry(f"relay of {self.source} failed", exc)
                    # A new producer looks the topic up again (and creates it, if a broker
                    # that lost its data no longer has it).
                    await self._discard_producer()
                    await _pause(backoff.next(), self._stopping)
                    continue
                await waker.wait(self.poll_seconds)
        finally:
            await waker.stop()
            await self._discard_producer()

    async def recall_log(self) -> bool:
        """Before the relay's first publish: whether the broker lost what was published before
        it started (by this relay's last run or another replica), from where the partitions'
        logs were left as stored with the position, compared as watch_log compares. Raises
        while the broker does not answer: the relay is not ready, and asks again."""
        async with self.db.sessions() as session:
            marks = await self._stored_marks(session)
        lost = False
        if marks:
            ends = await asyncio.wait_for(
                log_ends(self.bootstrap, self.topic, sorted(marks)), LOG_WATCH_SECONDS * 2
            )
            self._log_marks = marks
            lost = await self._compare_with_log(ends)
        self._log_recalled = True
        return lost

    async def watch_log(self) -> bool:
        """Whether the broker lost what it acknowledged, seen from where the partitions' logs
        end now: below where this relay left them. Then the outbox is published again from
        its start, as when a publish finds it (see _check_log), by a new producer, which
        creates the topic again if the broker lost it whole."""
        if not self._log_marks:
            self._log_watched = time.monotonic()
            return False
        try:
            ends = await asyncio.wait_for(
                log_ends(self.bootstrap, self.topic, list(self._log_marks)), LOG_WATCH_SECONDS * 2
            )
        except (KafkaError, TimeoutError, OSError) as exc:
            # A broker away now is met by the next publish; nothing to conclude from it here.
            log.debug("relay of %s could not see where its logs end: %r", self.source, exc)
            return False
        finally:
            self._log_watched = time.monotonic()
        return await self._compare_with_log(ends)

    async def _compare_with_log(self, ends: dict[int, int]) -> bool:
        # Compared with the last batch's first record, not with where the publish left the
        # log: a broker may answer the offset after the last batch's first record as its end
        # (Tansu does), and a batch is written whole or not at all.
        lost = self._note_losses(
            [(p, end, self._log_marks[p] + 1) for p, end in sorted(ends.items())], ends
        )
        for partition, end in ends.items():
            self._log_marks[partition] = min(self._log_marks[partition], end - 1)
        if lost:
            await self._discard_producer()
            async with self.db.transaction() as session:
                await self._locked_position(session)
                await self._store_position(session, 0)
                await self._store_marks(session, ends)
            self.position = 0
            self._wake.set()
        return lost

    async def drain(self) -> int:
        """Publish everything committed so far; returns how many events were published."""
        total = 0
        while not self._stopping.is_set() and (read := await self.step()):
            total += read
        return total

    async def step(self) -> int:
        """Publish the next batch of the outbox and store the position; returns its size."""
        producer = await self._started_producer()
        async with self.db.transaction() as session:
            position = await self._locked_position(session)
            rows = await read_outbox(
                session, source=self.source, after=position, limit=self.batch_size
            )
            if not rows:
                return 0
            logs = await self._publish(producer, [event for _, event in rows])
            lost = self._check_log(logs)
            # After a loss the outbox is published again from its start: the events the
            # broker lost are in it still, and consumers drop what they applied already.
            position = 0 if lost else rows[-1][0]
            await self._store_position(session, position)
            await self._store_marks(session, logs)
        self.relayed += len(rows)
        self.position = position
        return len(rows)

    async def _locked_position(self, session: AsyncSession) -> int:
        """The relay's position in its outbox, row-locked so replicas take turns."""
        return await locked_position(
            session, schema=self.source, consumer=RELAY_CONSUMER, source=self.source
        )

    async def _store_position(self, session: AsyncSession, position: int) -> None:
        await store_position(
            session,
            schema=self.source,
            consumer=RELAY_CONSUMER,
            source=self.source,
            position=position,
        )

    async def _stored_marks(self, session: AsyncSession) -> dict[int, int]:
        """Where the partitions' logs were left, as stored by the relays' publishes."""
        offsets = common_tables(self.source).consumer_offsets
        rows = await session.execute(
            select(offsets.c.source, offsets.c.position).where(
                offsets.c.consumer == RELAY_LOG, offsets.c.source.startswith(f"{self.source}:")
            )
        )
        return {int(name.rpartition(":")[2]): int(mark) for name, mark in rows.all()}

    async def _store_marks(self, session: AsyncSession, partitions: Iterable[int]) -> None:
        """Store this relay's marks of `partitions`, in the transaction that stores the
        position the publish reached."""
        marks = [
            {"consumer": RELAY_LOG, "source": f"{self.source}:{p}", "position": self._log_marks[p]}
            for p in sorted(partitions)
            if p in self._log_marks
        ]
        if not marks:
            return
        offsets = common_tables(self.source).consumer_offsets
        statement = insert(offsets).values(marks)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[offsets.c.consumer, offsets.c.source],
                set_={"position": statement.excluded.position, "updated_at": func.now()},
            )
        )

    def _check_log(self, logs: dict[int, tuple[int, int, int]]) -> bool:
        """Whether a partition's log restarted below where this relay last left it: the
        broker lost events it had acknowledged (a broker keeping its log in memory
        restarted, or the topic was recreated). Said loudly, and counted."""
        self._log_marks.update({partition: last for partition, (_, last, _) in logs.items()})
        return self._note_losses(
            [
                (partition, first, self._log_ends.get(partition, 0))
                for partition, (first, _, _) in sorted(logs.items())
            ],
            {partition: end for partition, (_, _, end) in logs.items()},
        )

    def _note_losses(self, seen: list[tuple[int, int, int]], ends: dict[int, int]) -> bool:
        """Of (partition, offset the log is at now, where this relay left it): whether any
        is below, said loudly and counted; `ends` become where the logs end."""
        lost = [(partition, at, left) for partition, at, left in seen if 0 <= at < left]
        self._log_ends.update(ends)
        if lost:
            self.log_losses += len(lost)
            log.error(
                "the broker lost events of %s it had acknowledged (partition %s restarted at "
                "offset %s, below %s): publishing the %s outbox again from its start",
                self.topic,
                *lost[0],
                self.source,
            )
        return bool(lost)

    async def _publish(
        self, producer: AIOKafkaProducer, events: list[Event]
    ) -> dict[int, tuple[int, int, int]]:
        return await publish(producer, self.topic, events)

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = await started_producer(
                self.bootstrap,
                self.topic,
                partitions=self.partitions,
                request_timeout_ms=self.request_timeout_ms,
            )
        return self._producer

    async def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _close(producer)


async def publish(
    producer: AIOKafkaProducer, topic: str, events: list[Event]
) -> dict[int, tuple[int, int, int]]:
    """Publish events to a topic keyed by their key, each partition's share in order; per
    partition, the offsets of the first event published, of the last batch's first event, and
    after the last event."""
    known = await producer.partitions_for(topic)
    if not known:
        raise UnknownTopicOrPartitionError(f"topic {topic} has no partitions")
    partitions = sorted(known)
    by_partition: dict[int, list[Event]] = {}
    for event in events:
        by_partition.setdefault(partition_of(event.key, partitions), []).append(event)
    # A TaskGroup cancels the other partitions' sends as soon as one fails.
    async with asyncio.TaskGroup() as group:
        sends = {
            partition: group.create_task(_publish_partition(producer, topic, partition, share))
            for partition, share in by_partition.items()
        }
    return {partition: send.result() for partition, send in sends.items()}


async def _publish_partition(
    producer: AIOKafkaProducer, topic: str, partition: int, events: list[Event]
) -> tuple[int, int, int]:
    """The offsets of the first record published, of the last batch's first record, and
    after the last record."""
    remaining = events
    first = last = end = -1
    while remaining:
        batch = producer.create_batch()
        taken = 0
        for event in remaining:
            appended = batch.append(key=event.key.encode(), value=event.to_json(), timestamp=None)
            if appended is None:
                break
            taken += 1
        batch.close()
        acked = await producer.send_batch(batch, topic, partition=partition)
        offset = (await acked).offset
        first = offset if first < 0 else first
        last, end = offset, offset + taken
        remaining = remaining[taken:]
    return first, last, end


async def started_producer(
    bootstrap: str, topic: str, *, partitions: int, request_timeout_ms: int = 15_000
) -> AIOKafkaProducer:
    """A connected producer for a topic that exists with the configured partition count."""
    await ensure_topics(bootstrap, [topic], partitions=partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        # Ordering comes from sending one record batch per partition at a time, not from
        # broker-side idempotence, which not every Kafka-protocol broker offers.
        enable_idempotence=False,
        max_batch_size=MAX_RECORD_BATCH_BYTES,
        request_timeout_ms=request_timeout_ms,
    )
    try:
        await producer.start()
    except BaseException:
        await _close(producer)
        raise
    return producer


async def _pause(seconds: float, stopping: asyncio.Event) -> None:
    """Sleep, unless asked to stop meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):  # never swallows a cancellation, as wait_for can
            await stopping.wait()


async def republish(db: Database, settings: Settings, *, source: str, from_id: int) -> int:
    """Publish `source`'s outbox rows from id `from_id` on to its topic again, in id order;
    returns how many. For a broker that lost events it had acknowledged: consumers drop the
    ones they already applied by event_id, so republishing too much is harmless."""
    if not settings.kafka_bootstrap:
        raise ValueError("republishing needs settings.kafka_bootstrap")
    topic = topic_of(source, settings.kafka_topic_prefix)
    producer = await started_producer(
        settings.kafka_bootstrap, topic, partitions=settings.kafka_partitions
    )
    published = 0
    after = from_id - 1
    try:
        while True:
            async with db.sessions() as session:
                rows = await read_outbox(
                    session, source=source, after=after, limit=settings.consumer_batch_size
                )
            if not rows:
                return published
            await publish(producer, topic, [event for _, event in rows])
            published += len(rows)
            after = rows[-1][0]
    finally:
        await _close(producer)


async def log_ends(bootstrap: str, topic: str, partitions: list[int]) -> dict[int, int]:
    """Where each of the topic's `partitions` ends now (the offset the next record gets); 0
    for one the broker does not have, as after it lost the topic whole. Asked without
    creating the topic: a lookup of one topic would create it, with the broker's default
    partition count rather than ours."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    try:
        await client.bootstrap()
        cluster = await client.fetch_all_metadata()  # every topic: creates none
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), CLOSE_TIMEOUT_SECONDS)
    held = cluster.partitions_for_topic(topic) or set()
    ends = dict.fromkeys(partitions, 0)
    present = [TopicPartition(topic, partition) for partition in partitions if partition in held]
    if present:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        try:
            await consumer.start()
            for tp, offset in (await consumer.end_offsets(present)).items():
                ends[tp.partition] = offset
        finally:
            await _close(consumer)
    return ends


async def broker_reachable(bootstrap: str, *, timeout_seconds: float = 3.0) -> bool:
    """Whether a broker answers a metadata request now; for readiness, so that a service
    whose workers are idle still notices the broker is gone."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_seconds * 1000)
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_seconds)
        return True
    except (KafkaError, OSError, TimeoutError) as exc:
        log.debug("broker %s unreachable: %r", bootstrap, exc)
        return False
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), CLOSE_TIMEOUT_SECONDS)


class _CommitFailed(Exception):
    """The broker did not take a commit of offsets (the cause says why)."""


class RebuildConsumer(Exception):
    """Commits have failed for longer than a session: start over with a new consumer."""


class _Reassigned(Exception):
    """The group assigned the partitions again while a fetched batch was being applied."""

    def __init__(self, when: str) -> None:
        super().__init__(f"partitions reassigned {when} the commit of a batch")
        self.when = when


class _Assignments(ConsumerRebalanceListener):
    """Counts the group's rebalances this member took part in (each revocation and each
    assignment), and keeps the offsets the broker held for the group's partitions when the
    current assignment began. Records fetched under one assignment are not committed under
    the next: after a broker restarted empty, a member that fetched from its old positions
    in the new log would otherwise commit those positions there, and the new log's records
    before them would never be read."""

    def __init__(self, consumer: AIOKafkaConsumer, timeout_seconds: float) -> None:
        self.consumer = consumer
        self.timeout_seconds = timeout_seconds
        self.count = 0
        self.committed: dict[TopicPartition, int | None] = {}
        self.settled = asyncio.Event()  # `committed` is the current assignment's

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Before the group is joined again: a batch fetched until now is not committed.
        self.count += 1
        self.settled.clear()

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.count += 1
        self.settled.clear()
        partitions = list(assigned)
        held: list[int | None]
        try:
            # One bounded wait for them all: the group's rebalance waits for this callback.
            held = await asyncio.wait_for(
                asyncio.gather(*(self.consumer.committed(tp) for tp in partitions)),
                self.timeout_seconds,
            )
        except (KafkaError, TimeoutError, OSError):
            held = [None] * len(partitions)  # unknown: read those partitions from their start
        self.committed = dict(zip(partitions, held, strict=True))
        self.settled.set()


class KafkaSubscriber:
    """Runs one subscription on the kafka transport until cancelled."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        subscription: Subscription,
        *,
        batch_size: int | None = None,
        poll_seconds: float | None = None,
        on_batch: Callable[[str, int], None] | None = None,
        session_timeout_ms: int | None = None,
        heartbeat_interval_ms: int | None = None,
        retry_most_seconds: float = RETRY_MOST_SECONDS,
    ) -> None:
        if not settings.kafka_bootstrap:
            raise ValueError("the kafka subscriber needs settings.kafka_bootstrap")
        self.db = db
        self.bootstrap = settings.kafka_bootstrap
        self.partitions = settings.kafka_partitions
        self.subscription = subscription
        self.prefix = settings.kafka_topic_prefix
        self.group = group_of(subscription, self.prefix)
        self.topics = [topic_of(source, self.prefix) for source in subscription.sources]
        self.batch_size = batch_size or settings.consumer_batch_size
        self.poll_seconds = poll_seconds or settings.consumer_poll_seconds
        # Called per source after a batch's effects are committed, before its offsets are.
        self.on_batch = on_batch
        # How soon a vanished member's partitions move to another member; some brokers also
        # hold every group join for half of it (see docs/tansu.md).
        self.session_timeout_ms = session_timeout_ms or settings.kafka_session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms or settings.kafka_heartbeat_interval_ms
        self.received = 0
        self.applied = 0
        self.undecodable = 0
        self.failures = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._assignments: _Assignments | None = None
        self._next_offsets: dict[TopicPartition, int] = {}
        self._healthy = False
        self._commits_failing_since: float | None = None
        self.health = SubscriptionHealth(subscription.name)
        self.backoff = Backoff(most=retry_most_seconds)
        # How many more records to apply one at a time after a batch failed.
        self._careful = 0
        self._attempt: FailedEvent | None = None
        self._stopping = asyncio.Event()

    def ready(self) -> bool:
        """Whether the consumer is connected, its last fetch succeeded and its last commit
        went through."""
        return self._healthy and self._commits_failing_since is None

    def lag(self) -> int | None:
        """Records on the assigned partitions not yet applied, as of the last fetch; a
        partition counts from its first applied batch. None while there is no consumer."""
        consumer = self._consumer
        if consumer is None:
            return None
        total = 0
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            applied_up_to = self._next_offsets.get(tp)
            if highwater is not None and applied_up_to is not None:
                total += max(0, highwater - applied_up_to)
        return total

    def stop(self) -> None:
        """Ask the subscriber to finish after the fetch or batch it is in."""
        self._stopping.set()
        self.health.request_retry()  # ends a backoff pause at once

    def retry(self) -> None:
        """Try a failing event again now."""
        self.health.request_retry()

    def positions(self) -> dict[str, int]:
        """The next offset to apply per partition assigned to this member now."""
        consumer = self._consumer
        assigned = consumer.assignment() if consumer is not None else set()
        return {
            f"{tp.topic}[{tp.partition}]": at
            for tp, at in sorted(self._next_offsets.items())
            if tp in assigned
        }

    async def run(self) -> None:
        rebuild = Backoff()
        try:
            while not self._stopping.is_set():
                try:
                    await self._consume(rebuild)
                except Exception as exc:
                    self._healthy = False
                    self.failures += 1
                    _log_retry(f"subscription {self.group} lost its consumer", exc)
                    await _pause(rebuild.next(), self._stopping)
        finally:
            self._healthy = False
            self.health.stopped()

    async def _consume(self, rebuild: Backoff) -> None:
        # Created here too, with the configured partition count, because a subscriber may
        # start before the relay and the broker would otherwise auto-create with its default.
        await ensure_topics(self.bootstrap, self.topics, partitions=self.partitions)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
        )
        self._assignments = _Assignments(consumer, self.session_timeout_ms / 2000)
        consumer.subscribe(self.topics, listener=self._assignments)
        self._consumer = consumer
        self._next_offsets = {}
        try:
            await consumer.start()
            while not self._stopping.is_set():
                # Taken before the fetch: a rebalance during it makes its records not committed.
                fetched_under = self._assignment()
                batches = await consumer.getmany(
                    timeout_ms=int(self.poll_seconds * 1000), max_records=self.batch_size
                )
                self._healthy = self._commits_failing_since is None
                rebuild.reset()
                if not batches:
                    self.health.idle()
                    continue
                await self._handle(consumer, batches, fetched_under)
        finally:
            self._consumer = None
            await _close(consumer)

    async def _handle(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord]],
        fetched_under: int,
    ) -> None:
        """Apply a fetched batch; on failure, record why and go back to the committed offsets."""
        careful = self._careful > 0
        self._attempt = None
        try:
            if careful:
                await self._apply_one_by_one(consumer, batches, fetched_under)
            else:
                await self._apply(consumer, batches, fetched_under)
            self.backoff.reset()
            return
        except _Reassigned as exc:
            # What was applied stays applied (the inbox drops it when it comes again).
            await self._read_again(consumer, batches, exc)
            return
        except _CommitFailed as exc:
            self._commit_failed(exc)
            pause = self.backoff.next()
        except Exception as exc:
            self.failures += 1
            attempt, self._attempt = self._attempt, None
            name = self.subscription.name
            if connection_lost(exc):
                log.warning("subscription %s cannot reach the database: %r", name, exc)
                self.health.unreachable(exc)
            elif not careful:
                log.warning("subscription %s failed a batch, retrying one by one: %r", name, exc)
                # Up to the failed batch's last record, then whole batches again.
                self._careful = sum(len(records) for records in batches.values())
                self.health.failed(exc, None)
                await self._rewind(consumer)
                return
            else:
                log.error("subscription %s failed on %s, retrying", name, attempt, exc_info=exc)
                self.health.failed(exc, attempt)
            pause = self.backoff.next()
        await self.health.pause(pause, self._stopping)
        # If the rewind fails too, the consumer is rebuilt from scratch, which also starts
        # from the committed offsets.
        await self._rewind(consumer)

    def _commit_failed(self, exc: _CommitFailed) -> None:
        """A broker that keeps refusing commits (restarted, lost the group or its topics) is
        not waited on forever: past a session timeout the consumer is rebuilt."""
        self.failures += 1
        self._healthy = False
        now = time.monotonic()
        if self._commits_failing_since is None:
            self._commits_failing_since = now
        failing_for = now - self._commits_failing_since
        log.warning(
            "subscription %s cannot commit its offsets (for %.1fs): %r",
            self.subscription.name,
            failing_for,
            exc.__cause__,
        )
        if failing_for * 1000 > self.session_timeout_ms:
            raise RebuildConsumer(
                f"{self.group} could not commit for {failing_for:.1f}s"
            ) from exc.__cause__

    async def _commit(
        self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int], fetched_under: int
    ) -> None:
        if self._assignment() != fetched_under:
            raise _Reassigned("before")
        try:
            # Bounded: a commit waits for a coordinator, which a broker that went away never is.
            await asyncio.wait_for(consumer.commit(offsets), self.session_timeout_ms / 1000)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise _CommitFailed() from exc
        self._commits_failing_since = None
        self._healthy = True
        if self._assignment() != fetched_under:
            # The group was joined again while the commit waited for its coordinator, and the
            # commit went out under the new assignment.
            raise _Reassigned("during")
        self._next_offsets.update(offsets)

    def _events(
        self, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> tuple[list[Event], dict[str, int]]:
        events: list[Event] = []
        per_source: dict[str, int] = {}
        for tp, records in batches.items():
            source = tp.topic.removeprefix(self.prefix)
            for record in records:
                event = self._decode(record, source)
                if event is not None:
                    events.append(event)
                    per_source[source] = per_source.get(source, 0) + 1
            self.received += len(records)
        return events, per_source

    async def _apply(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord]],
        fetched_under: int,
    ) -> None:
        events, per_source = self._events(batches)
        async with self.db.transaction() as session:
            self.applied += await apply_batch(session, self.subscription, events)
        self.health.applied()
        if self.on_batch:
            for source, count in per_source.items():
                self.on_batch(source, count)
        await self._commit(
            consumer,
            {tp: records[-1].offset + 1 for tp, records in batches.items()},
            fetched_under,
        )

    async def _apply_one_by_one(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord]],
        fetched_under: int,
    ) -> None:
        """After a failed batch: each event in a transaction of its own, its offset committed
        after it, so the one at fault is known and the ones before it are applied."""
        for tp, records in batches.items():
            source = tp.topic.removeprefix(self.prefix)
            for record in records:
                self.received += 1
                event = self._decode(record, source)
                if event is not None:
                    self._attempt = FailedEvent(
                        source,
                        f"{tp.topic}[{tp.partition}]@{record.offset}",
                        event.event_id,
                        event.type,
                    )
                    async with self.db.transaction() as session:
                        self.applied += await apply_batch(session, self.subscription, [event])
                    self._attempt = None
                    self.health.applied()
                    if self.on_batch:
                        self.on_batch(source, 1)
                await self._commit(consumer, {tp: record.offset + 1}, fetched_under)
                self._careful = max(0, self._careful - 1)

    def _decode(self, record: ConsumerRecord, source: str) -> Event | None:
        """The event in a record; a record that is not an event of the topic's source can
        never be applied, so it is logged and passed over rather than blocking its
        partition forever. (Only the source's relay writes to its topic: another source's
        event there came from elsewhere and is not this subscription's to record.)"""
        try:
            event = Event.from_json(record.value or b"")
        except ValidationError:
            self.undecodable += 1
            log.error(
                "subscription %s skipped a record that is not an event: %s[%d]@%d",
                self.subscription.name,
                record.topic,
                record.partition,
                record.offset,
            )
            return None
        if event.source != source:
            self.undecodable += 1
            log.error(
                "subscription %s skipped %s %s of %s found in %s[%d]@%d",
                self.subscription.name,
                event.type,
                event.event_id,
                event.source,
                record.topic,
                record.partition,
                record.offset,
            )
            return None
        return event

    def _assignment(self) -> int:
        """Which of the group's assignments to this member is the current one."""
        return self._assignments.count if self._assignments is not None else 0

    async def _read_again(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord]],
        exc: _Reassigned,
    ) -> None:
        """After the group assigned the partitions again under a batch in flight: read from
        what the broker held for the group when the new assignment began (the start of a
        log it no longer knows the group in), since a commit that went out under the new
        assignment may have moved that."""
        log.warning("subscription %s: %s; reading it again", self.subscription.name, exc)
        assignments = self._assignments
        if exc.when == "before" or assignments is None:
            await self._rewind(consumer)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(assignments.timeout_seconds):
                await assignments.settled.wait()
        held_at_start = assignments.committed if assignments.settled.is_set() else {}
        assigned = consumer.assignment()
        for tp in batches:
            if tp not in assigned:
                continue
            await self._seek(consumer, tp, held_at_start.get(tp))

    async def _rewind(self, consumer: AIOKafkaConsumer) -> None:
        """Go back to the last committed offsets, so the failed batch is fetched again."""
        for tp in consumer.assignment():
            await self._seek(consumer, tp, await consumer.committed(tp))

    async def _seek(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int | None
    ) -> None:
        """Read `tp` from `offset` (its log's start when None). The position and lag shown
        stay those of the next offset to apply, so a subscription stuck on an event still
        shows how far behind it falls."""
        if offset is None:
            await consumer.seek_to_beginning(tp)
            offset = (await consumer.beginning_offsets([tp])).get(tp)
        else:
            consumer.seek(tp, offset)
        if offset is None:
            self._next_offsets.pop(tp, None)
        else:
            self._next_offsets[tp] = offset
