"""Reading the next batch ahead (postgres.OutboxReader): a subscription catching up parses
the batch after the one it applies meanwhile. What it read ahead is used only by the read
that continues where that batch ended, and an event it cannot read is reported where it
would have been without reading ahead."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from shared.events.envelope import Event
from shared.messaging.postgres import OutboxReader, PostgresSubscriber, UnreadableEvent
from shared.tables import common_tables
from tests.messaging.conftest import Harness, Noted


async def _ids(harness: Harness) -> list[int]:
    outbox = common_tables(harness.source).outbox
    async with harness.db.sessions() as session:
        return list((await session.execute(select(outbox.c.id).order_by(outbox.c.id))).scalars())


async def _read(
    harness: Harness, reader: OutboxReader, after: int, limit: int
) -> list[tuple[int, Event]]:
    async with harness.db.transaction() as session:
        return await reader.read(session, source=harness.source, after=after, limit=limit)


async def test_what_was_read_ahead_goes_only_to_the_read_that_continues_it(
    postgres_harness: Harness,
) -> None:
    harness = postgres_harness
    await harness.publish(["a"], 8)
    ids = await _ids(harness)
    reader = OutboxReader(frozenset({Noted.TYPE}))
    try:
        first = await _read(harness, reader, 0, 3)  # full: the next three are read ahead
        assert reader.ahead_of(harness.source) == ids[2]
        # Read again from the start (a batch that failed and is retried): not the rows ahead.
        again = await _read(harness, reader, 0, 3)
        assert [at for at, _ in again] == [at for at, _ in first] == ids[:3]
        second = await _read(harness, reader, ids[2], 3)
        assert reader.ahead_of(harness.source) == ids[5]  # taken, and the next ones read
        third = await _read(harness, reader, ids[5], 3)
        assert reader.ahead_of(harness.source) is None  # two rows were left: not a full batch
        assert await _read(harness, reader, ids[7], 3) == []
        read = first + second + third
        assert [at for at, _ in read] == ids
        assert [e.payload_as(Noted).seq for _, e in read] == list(range(8))
        # One event at a time (after a failure) does not take the rows read ahead either.
        await _read(harness, reader, ids[2], 3)
        assert [at for at, _ in await _read(harness, reader, ids[5], 1)] == [ids[6]]
    finally:
        reader.close()


async def test_an_unreadable_row_ahead_is_reported_at_its_place(
    postgres_harness: Harness,
) -> None:
    harness = postgres_harness
    await harness.publish(["a"], 9)
    ids = await _ids(harness)
    outbox = f'"{harness.source}".outbox'
    async with harness.db.transaction() as session:
        original = await session.scalar(
            text(f"SELECT payload::text FROM {outbox} WHERE id = :id"), {"id": ids[6]}
        )
        await session.execute(
            text(f'UPDATE {outbox} SET payload = \'{{"not": "an event"}}\' WHERE id = :id'),
            {"id": ids[6]},
        )
    sub = harness.subscription()
    subscriber = PostgresSubscriber(harness.db, sub, batch_size=4)
    with pytest.raises(UnreadableEvent) as failed:
        await subscriber.drain()
    assert failed.value.position == ids[6]
    # The first batch was applied; the one holding the bad row was not, nor anything after.
    assert [seq for _, seq, _ in await harness.effects()] == [0, 1, 2, 3]

    async with harness.db.transaction() as session:
        await session.execute(
            text(f"UPDATE {outbox} SET payload = CAST(:p AS jsonb) WHERE id = :id"),
            {"p": original, "id": ids[6]},
        )
    assert await subscriber.drain() == 5
    assert [seq for _, seq, _ in await harness.effects()] == list(range(9))
