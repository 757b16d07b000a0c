"""The event transport contract, run unchanged against the postgres and the kafka transport.

Whatever the transport: every committed event takes effect exactly once, a key's events take
effect in the order they were committed, and neither a crash nor a restart nor a redelivery
changes that.
"""

from __future__ import annotations

import asyncio
import itertools
import random

from sqlalchemy import select

from shared.events.envelope import Event
from shared.messaging.kafka import KafkaRelay, KafkaSubscriber
from shared.messaging.outbox import write_to_outbox
from shared.tables import common_tables
from tests.messaging.conftest import (
    Crash,
    Harness,
    Noted,
    assert_each_once_in_order,
    eventually,
)

KEYS = ["cust-a", "cust-b", "cust-c", "cust-d", "cust-e", "cust-f"]


async def test_each_keys_events_take_effect_in_order(harness: Harness) -> None:
    sub = harness.subscription()
    await harness.publish(KEYS, 20)  # before anyone listens
    relay = harness.relay()
    subscriber = harness.subscriber(sub)
    await harness.publish(KEYS, 20, first_seq=20)  # while events flow
    await harness.wait_for_effects(len(KEYS) * 40)
    assert_each_once_in_order(await harness.effects(), KEYS, 40)

    if relay is not None and isinstance(subscriber.worker, KafkaSubscriber):
        assert isinstance(relay.worker, KafkaRelay)
        assert relay.worker.ready() and subscriber.worker.ready()
        kafka_subscriber = subscriber.worker

        async def caught_up() -> bool:
            return kafka_subscriber.lag() == 0

        await eventually(caught_up, what="zero consumer lag")


async def test_crash_after_effects_commit_before_offset_commit_loses_and_repeats_nothing(
    harness: Harness,
) -> None:
    sub = harness.subscription()
    await harness.publish(KEYS, 15)
    harness.relay()

    def crash(source: str, count: int) -> None:
        raise Crash(f"after committing {count} events of {source}")

    crashing = harness.subscriber(sub, on_batch=crash)
    await crashing.crashed()
    assert await harness.effect_count() > 0, "the crashed batch's effects were committed"

    restarted = harness.subscriber(sub)
    await harness.wait_for_effects(len(KEYS) * 15)
    if isinstance(restarted.worker, KafkaSubscriber):
        # The crashed batch's offsets were never committed: it came again and was dropped.
        assert restarted.worker.received > restarted.worker.applied
    assert_each_once_in_order(await harness.effects(), KEYS, 15)


async def test_an_event_delivered_twice_takes_effect_once(harness: Harness) -> None:
    sub = harness.subscription()
    harness.relay()
    harness.subscriber(sub)
    await harness.publish(KEYS, 10)
    await harness.wait_for_effects(len(KEYS) * 10)

    await harness.deliver_everything_again(sub)
    # One more event per key: a key's partition delivers it after that key's duplicates, so
    # once all of them took effect, every duplicate has been through the subscriber.
    await harness.publish(KEYS, 1, first_seq=10)
    await harness.wait_for_effects(len(KEYS) * 11)
    assert_each_once_in_order(await harness.effects(), KEYS, 11)


async def test_restarting_workers_mid_stream_loses_nothing(harness: Harness) -> None:
    sub = harness.subscription()
    relay = harness.relay()
    subscriber = harness.subscriber(sub)
    per_key = 40
    steps = iter(range(0, per_key, 2))

    async def publish(commits: int) -> None:
        """The next `commits` steps of the stream: two events per key, four per commit."""
        for seq in itertools.islice(steps, commits):
            await harness.publish(KEYS, 2, first_seq=seq, per_commit=4)

    await publish(5)
    await harness.wait_for_effects(15)  # stopped below with the stream half delivered
    if relay is not None:
        await relay.stop()
        await publish(5)  # the stream goes on into the outbox while no relay runs
        harness.relay()
        await harness.wait_for_effects(45)
    await subscriber.stop()
    await publish(5)  # and on into the transport while no subscriber runs
    harness.subscriber(sub)
    await publish(per_key)  # the rest

    await harness.wait_for_effects(len(KEYS) * per_key)
    assert_each_once_in_order(await harness.effects(), KEYS, per_key)


async def test_concurrent_writers_take_effect_in_commit_order(harness: Harness) -> None:
    """Writers whose transactions overlap: each key's effects follow the outbox (commit) order."""
    sub = harness.subscription()
    harness.relay()
    harness.subscriber(sub)
    rng = random.Random(7)
    writers, per_writer = 8, 5

    async def writer(index: int) -> None:
        for seq in range(per_writer):
            async with harness.db.transaction() as session:
                event = Event.of(
                    Noted(run=harness.run, seq=index * per_writer + seq),
                    source=harness.source,
                    key=KEYS[(index + seq) % 3],
                )
                await write_to_outbox(session, [event])
                # Holding the transaction open after the insert is what would let a later
                # writer commit first with a higher id, if ids were not taken in commit order.
                await asyncio.sleep(rng.random() * 0.005)

    await asyncio.gather(*(writer(i) for i in range(writers)))
    total = writers * per_writer
    await harness.wait_for_effects(total)

    applied = await harness.effects()
    assert len({event_id for _, _, event_id in applied}) == total
    outbox = common_tables(harness.source).outbox
    async with harness.db.sessions() as session:
        committed = (
            (
                await session.execute(
                    select(outbox.c.event_id)
                    .where(outbox.c.event_id.in_([event_id for _, _, event_id in applied]))
                    .order_by(outbox.c.id)
                )
            )
            .scalars()
            .all()
        )
    for key in KEYS[:3]:
        in_effect_order = [event_id for k, _, event_id in applied if k == key]
        key_ids = set(in_effect_order)
        assert in_effect_order == [event_id for event_id in committed if event_id in key_ids]
