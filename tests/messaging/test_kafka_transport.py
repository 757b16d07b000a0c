"""What only the kafka transport has to do: outlive a broker that is not there yet, and create
its topics with the configured partition count."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from sqlalchemy import select

from shared.config import Settings
from shared.db import Database
from shared.events.envelope import Event
from shared.messaging.kafka import (
    KafkaRelay,
    KafkaSubscriber,
    ensure_topics,
    log_ends,
    topic_of,
)
from shared.messaging.transport import build_workers
from shared.tables import common_tables
from tests.messaging.conftest import (
    SINK,
    Crash,
    Harness,
    Noted,
    assert_each_once_in_order,
    eventually,
    prepared,
)
from tests.support.tansu import free_port, tansu_broker

KEYS = ["cust-a", "cust-b", "cust-c"]


async def test_relay_and_subscriber_wait_for_the_broker_then_deliver_everything(
    contract_db: Database, tmp_path
) -> None:
    port = free_port()
    settings = Settings(
        transport="kafka",
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_partitions=2,
        consumer_batch_size=25,
        consumer_poll_seconds=0.2,
        data_dir=tmp_path,
        _env_file=None,
    )
    async with prepared(Harness("kafka", contract_db, settings)) as harness:
        relay = harness.relay()
        subscriber = harness.subscriber(harness.subscription())
        assert relay is not None
        await harness.publish(KEYS, 10)
        assert isinstance(relay.worker, KafkaRelay)
        assert isinstance(subscriber.worker, KafkaSubscriber)
        relay_worker, subscriber_worker = relay.worker, subscriber.worker

        async def both_failed_to_connect() -> bool:
            return relay_worker.failures > 0 and subscriber_worker.failures > 0

        await eventually(both_failed_to_connect, what="a failed connection of each worker")
        assert not relay_worker.ready() and not subscriber_worker.ready()
        assert not relay.task.done() and not subscriber.task.done()

        with tansu_broker(port):
            await harness.wait_for_effects(len(KEYS) * 10, within=30)
            assert relay.worker.ready() and subscriber.worker.ready()
            assert await _partitions(settings, topic_of(harness.source)) == {0, 1}
            await harness.stop_all()  # before the broker goes
        assert_each_once_in_order(await harness.effects(), KEYS, 10)


async def _partitions(settings: Settings, topic: str) -> set[int]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        return set(await producer.partitions_for(topic))
    finally:
        await producer.stop()


async def test_kafka_settings_build_relays_and_subscribers_with_readiness(
    contract_db: Database, tmp_path
) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9", data_dir=tmp_path, _env_file=None)
    sub = Harness("kafka", contract_db, settings).subscription()
    workers = build_workers(
        settings, contract_db, producers=["orders", "payments"], subscriptions=[sub]
    )
    relays = [w for w in workers if isinstance(w, KafkaRelay)]
    subscribers = [w for w in workers if isinstance(w, KafkaSubscriber)]
    assert sorted(r.topic for r in relays) == ["salesbook.orders", "salesbook.payments"]
    assert [s.group for s in subscribers] == [f"salesbook.{sub.name}"]
    # nothing connected yet
    assert not any(r.ready() for r in relays) and not any(s.ready() for s in subscribers)


class RelayDyingAfterPublish(KafkaRelay):
    """Dies once: after the broker acknowledged a batch, before the relay stored its position."""

    crashed = False

    async def _publish(
        self, producer: AIOKafkaProducer, events: list[Event]
    ) -> dict[int, tuple[int, int, int]]:
        published = await super()._publish(producer, events)
        if not self.crashed:
            self.crashed = True
            raise Crash("between publish and position store")
        return published


@pytest.mark.parametrize("transport", ["kafka"])
async def test_relay_crash_between_publish_and_position_store_republishes(
    harness: Harness,
) -> None:
    await harness.publish(KEYS, 20)
    relay = RelayDyingAfterPublish(harness.db, harness.settings, source=harness.source)
    dying = harness.start(relay)
    await dying.crashed()
    subscriber = harness.subscriber(harness.subscription())
    harness.relay()

    await harness.wait_for_effects(len(KEYS) * 20)
    assert_each_once_in_order(await harness.effects(), KEYS, 20)
    assert isinstance(subscriber.worker, KafkaSubscriber)
    # The first batch is on the topic twice; the subscriber dropped the second copies.
    assert subscriber.worker.received >= len(KEYS) * 20 + harness.settings.consumer_batch_size


@pytest.mark.parametrize("transport", ["kafka"])
async def test_records_that_are_not_events_of_the_topics_source_are_passed_over(
    harness: Harness,
) -> None:
    """Only a source's relay writes to its topic. Anything else found there (bytes that are
    no event, another source's event) is logged and skipped, never recorded as processed,
    and the events after it still arrive."""
    topic = topic_of(harness.source, harness.settings.kafka_topic_prefix)
    await ensure_topics(
        harness.settings.kafka_bootstrap or "",
        [topic],
        partitions=harness.settings.kafka_partitions,
    )
    foreign = Event.of(Noted(run=harness.run, seq=-1), source="elsewhere", key=KEYS[0])
    producer = AIOKafkaProducer(bootstrap_servers=harness.settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"not an event", key=KEYS[0].encode())
        await producer.send_and_wait(topic, foreign.to_json(), key=KEYS[0].encode())
    finally:
        await producer.stop()
    await harness.publish(KEYS, 5)
    subscriber = harness.subscriber(harness.subscription())
    harness.relay()

    await harness.wait_for_effects(len(KEYS) * 5)
    assert_each_once_in_order(await harness.effects(), KEYS, 5)
    assert isinstance(subscriber.worker, KafkaSubscriber)
    assert subscriber.worker.undecodable == 2
    inbox = common_tables(SINK).processed_events
    async with harness.db.sessions() as session:
        recorded = await session.execute(
            select(inbox.c.event_id).where(inbox.c.event_id == foreign.event_id)
        )
        assert recorded.first() is None


async def test_asking_where_logs_end_creates_no_topic() -> None:
    """The relay's watch asks where its logs end without creating a topic the broker lost
    (a lookup of that one topic would create it with the broker's default partition count):
    a partition the broker does not have ends at 0."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    with tansu_broker(port):
        await ensure_topics(bootstrap, ["salesbook.kept"], partitions=2)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for _ in range(3):
                await producer.send_and_wait("salesbook.kept", b"x", partition=1)
        finally:
            await producer.stop()
        assert await log_ends(bootstrap, "salesbook.kept", [0, 1, 5]) == {0: 0, 1: 3, 5: 0}
        assert await log_ends(bootstrap, "salesbook.lost", [0, 1]) == {0: 0, 1: 0}
        client = AIOKafkaClient(bootstrap_servers=bootstrap)
        await client.bootstrap()
        try:
            topics = (await client.fetch_all_metadata()).topics()
        finally:
            await client.close()
        assert "salesbook.kept" in topics and "salesbook.lost" not in topics
