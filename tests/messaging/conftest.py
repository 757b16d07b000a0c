"""Fixtures of the transport contract suite: test schemas, and a harness per transport.

No service is involved. Every test gets its own producing schema `contract_<run>` (outbox and
relay position), hence its own topic, so no test reads another's events. The consuming schema
`contract_dst` (inbox, offsets, and an `effects` table the handler writes to) is shared; each
test has its own subscription (consumer group) and tags its effects with its run id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pytest
from sqlalchemy import BigInteger, Column, Identity, Integer, MetaData, String, Table, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession

from shared.config import Settings
from shared.db import Database
from shared.events.envelope import Event, EventPayload
from shared.messaging.consumer import Subscription, one_by_one
from shared.messaging.kafka import RELAY_CONSUMER, KafkaRelay, KafkaSubscriber
from shared.messaging.outbox import emit
from shared.messaging.postgres import PostgresSubscriber, store_position
from shared.tables import common_tables, metadata

SINK = "contract_dst"

TransportName = Literal["postgres", "kafka"]

effects_metadata = MetaData()
effects = Table(
    "effects",
    effects_metadata,
    # Identity order is the order in which the handler applied the events.
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("run", String(40), nullable=False),
    Column("key", String(80), nullable=False),
    Column("seq", Integer, nullable=False),
    # Deliberately not unique: a duplicate effect must be visible, not an error.
    Column("event_id", UUID(as_uuid=True), nullable=False),
    schema=SINK,
)


class Noted(EventPayload):
    """The contract's only event: the seq-th event of one key in one test run."""

    TYPE: ClassVar[str] = "contract.noted"
    run: str
    seq: int


class Crash(BaseException):
    """A worker dying on the spot: not an Exception, so no retry loop catches it."""


async def record_effect(session: AsyncSession, event: Event) -> None:
    await session.execute(
        effects.insert().values(
            run=event.data["run"], key=event.key, seq=event.data["seq"], event_id=event.event_id
        )
    )


@pytest.fixture(scope="session")
async def contract_db(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    sink = common_tables(SINK)
    async with db.engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SINK}"'))
        tables = [sink.processed_events, sink.consumer_offsets]
        await conn.run_sync(lambda sync: metadata.create_all(sync, tables=tables))
        await conn.run_sync(effects_metadata.create_all)
    try:
        yield db
    finally:
        await db.dispose()


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float = 20.0, what: str = "condition"
) -> None:
    """Poll `check` until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


# A cancelled worker closes its clients within CLOSE_TIMEOUT_SECONDS each.
STOP_SECONDS = 30.0


@dataclass
class Running:
    """A worker running in a task; `stop` cancels it like a process shutdown would."""

    worker: KafkaRelay | KafkaSubscriber | PostgresSubscriber
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Cancel the worker; a worker still running after STOP_SECONDS fails the test."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Crash):
            await asyncio.wait_for(self.task, STOP_SECONDS)

    async def crashed(self, within: float = 20.0) -> None:
        """Wait until the worker died of an injected Crash."""
        with pytest.raises(Crash):
            await asyncio.wait_for(asyncio.shield(self.task), within)


@dataclass
class Harness:
    """One transport, seen the same way by every contract test."""

    transport: TransportName
    db: Database
    settings: Settings
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _running: list[Running] = field(default_factory=list)

    @property
    def source(self) -> str:
        return f"contract_{self.run}"

    async def create_source(self) -> None:
        source = common_tables(self.source)
        async with self.db.engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{self.source}"'))
            tables = [source.outbox, source.consumer_offsets]
            await conn.run_sync(lambda sync: metadata.create_all(sync, tables=tables))

    async def drop_source(self) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.source}" CASCADE'))

    def subscription(self) -> Subscription:
        return Subscription(
            name=f"contract-{self.run}",
            schema=SINK,
            sources=(self.source,),
            handle=one_by_one(record_effect),
        )

    def subscriber(
        self, sub: Subscription, *, on_batch: Callable[[str, int], None] | None = None
    ) -> Running:
        worker: KafkaSubscriber | PostgresSubscriber
        if self.transport == "kafka":
            worker = KafkaSubscriber(
                self.db,
                self.settings,
                sub,
                on_batch=on_batch,
                # A short session: the test broker holds each group join for half of it.
                session_timeout_ms=2_000,
                heartbeat_interval_ms=400,
            )
        else:
            worker = PostgresSubscriber(
                self.db,
                sub,
                batch_size=self.settings.consumer_batch_size,
                poll_seconds=self.settings.consumer_poll_seconds,
                on_batch=on_batch,
            )
        return self.start(worker)

    def relay(self) -> Running | None:
        """The publishing side of the transport, where it has one (kafka)."""
        if self.transport != "kafka":
            return None
        return self.start(KafkaRelay(self.db, self.settings, source=self.source))

    def start(self, worker: KafkaRelay | KafkaSubscriber | PostgresSubscriber) -> Running:
        """Run a worker until the test ends (or it crashes, or the test stops it)."""
        running = Running(worker, asyncio.create_task(worker.run(), name=type(worker).__name__))
        self._running.append(running)
        return running

    async def stop_all(self) -> None:
        for running in self._running:
            await running.stop()

    async def publish(
        self, keys: Sequence[str], per_key: int, *, first_seq: int = 0, per_commit: int = 7
    ) -> None:
        """Publish `per_key` events for every key, interleaved across keys, a few per commit."""
        order = [(key, seq) for seq in range(first_seq, first_seq + per_key) for key in keys]
        for start_at in range(0, len(order), per_commit):
            async with self.db.transaction() as session:
                for key, seq in order[start_at : start_at + per_commit]:
                    emit(session, Noted(run=self.run, seq=seq), source=self.source, key=key)

    async def effects(self) -> list[tuple[str, int, uuid.UUID]]:
        """(key, seq, event_id) of this run's effects, in the order they were applied."""
        async with self.db.sessions() as session:
            rows = await session.execute(
                select(effects.c.key, effects.c.seq, effects.c.event_id)
                .where(effects.c.run == self.run)
                .order_by(effects.c.id)
            )
            return [(row.key, row.seq, row.event_id) for row in rows]

    async def effect_count(self) -> int:
        return len(await self.effects())

    async def wait_for_effects(self, count: int, within: float = 20.0) -> None:
        async def enough() -> bool:
            return await self.effect_count() >= count

        await eventually(enough, within=within, what=f"{count} effects")

    async def deliver_everything_again(self, sub: Subscription) -> None:
        """Make the transport deliver every event once more, through its own path."""
        async with self.db.transaction() as session:
            if self.transport == "kafka":
                # The relay republishes the whole outbox: each event is on the topic twice.
                await store_position(
                    session,
                    schema=self.source,
                    consumer=RELAY_CONSUMER,
                    source=self.source,
                    position=0,
                )
            else:
                await store_position(
                    session, schema=SINK, consumer=sub.name, source=self.source, position=0
                )


def assert_each_once_in_order(
    applied: list[tuple[str, int, uuid.UUID]], keys: Sequence[str], per_key: int
) -> None:
    """Every key's events took effect exactly once each, in the order they were published."""
    assert len({event_id for _, _, event_id in applied}) == len(applied), "duplicate effects"
    for key in keys:
        seqs = [seq for k, seq, _ in applied if k == key]
        assert seqs == list(range(per_key)), f"key {key}: {seqs}"
    assert len(applied) == len(keys) * per_key


TRANSPORTS: list[TransportName] = ["postgres", "kafka"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> TransportName:
    return request.param


@pytest.fixture
def transport_settings(
    request: pytest.FixtureRequest, transport: TransportName, tmp_path
) -> Iterator[Settings]:
    # The broker starts only when a kafka-parametrized test asks for it.
    bootstrap = request.getfixturevalue("kafka_bootstrap") if transport == "kafka" else None
    yield Settings(
        transport=transport,
        kafka_bootstrap=bootstrap,
        kafka_partitions=3,
        # Small batches and short polls: many batch boundaries, quick tests.
        consumer_batch_size=25,
        consumer_poll_seconds=0.2,
        data_dir=tmp_path,
        _env_file=None,
    )


@pytest.fixture
async def harness(
    transport: TransportName, transport_settings: Settings, contract_db: Database
) -> AsyncIterator[Harness]:
    async with prepared(Harness(transport, contract_db, transport_settings)) as harness:
        yield harness


@pytest.fixture
async def postgres_harness(contract_db: Database, tmp_path) -> AsyncIterator[Harness]:
    """For the tests of what only the postgres transport has to guarantee itself."""
    settings = Settings(transport="postgres", data_dir=tmp_path, _env_file=None)
    async with prepared(Harness("postgres", contract_db, settings)) as harness:
        yield harness


@asynccontextmanager
async def prepared(harness: Harness) -> AsyncIterator[Harness]:
    """The harness with its source schema, every worker stopped and the schema gone after."""
    await harness.create_source()
    try:
        yield harness
    finally:
        await harness.stop_all()
        await harness.drop_source()
