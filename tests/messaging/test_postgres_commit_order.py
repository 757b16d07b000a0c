"""The postgres transport reads outboxes by id; ids must therefore follow commit order.

The hazard: transaction A takes outbox id N, transaction B takes N+1 and commits first. A
reader at N+1 would then never see N. The outbox's commit lock makes B wait for A, so a
reader never sees N+1 before N, and never moves past a row that is still uncommitted.
"""

from __future__ import annotations

import asyncio
from functools import partial

from sqlalchemy import select, text

from shared.events.envelope import Event
from shared.messaging.outbox import write_to_outbox
from shared.messaging.postgres import PostgresSubscriber
from shared.tables import common_tables
from tests.messaging.conftest import SINK, Harness, Noted
from tests.support.waiting import eventually


def _event(harness: Harness, seq: int, key: str = "cust-a") -> Event:
    return Event.of(Noted(run=harness.run, seq=seq), source=harness.source, key=key)


async def _position(harness: Harness, consumer: str) -> int:
    offsets = common_tables(SINK).consumer_offsets
    async with harness.db.sessions() as session:
        return (
            await session.execute(
                select(offsets.c.position).where(
                    offsets.c.consumer == consumer, offsets.c.source == harness.source
                )
            )
        ).scalar_one()


async def _outbox_id(harness: Harness, event: Event) -> int:
    outbox = common_tables(harness.source).outbox
    async with harness.db.sessions() as session:
        return (
            await session.execute(select(outbox.c.id).where(outbox.c.event_id == event.event_id))
        ).scalar_one()


async def _advisory_waiters(harness: Harness) -> int:
    """How many sessions of the test database wait for an advisory lock right now."""
    async with harness.db.sessions() as session:
        found = await session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
            )
        )
        return found.scalar_one()


async def _commit_in_background(harness: Harness, event: Event) -> asyncio.Task[None]:
    """Start writing `event` in a transaction of its own; return once that writer waits for
    the outbox's commit lock (or has finished: then it was not held back, and the caller's
    check that it is still running fails)."""

    async def write() -> None:
        async with harness.db.transaction() as session:
            await write_to_outbox(session, [event])

    task = asyncio.create_task(write())
    await eventually(
        partial(_advisory_waiters, harness), lambda waiting: waiting > 0 or task.done()
    )
    return task


async def test_reader_never_passes_a_row_that_commits_later(postgres_harness: Harness) -> None:
    harness = postgres_harness
    contract_db = harness.db
    sub = harness.subscription()
    reader = PostgresSubscriber(contract_db, sub, batch_size=1000)
    await reader.drain()
    start = await _position(harness, sub.name)

    first, second = _event(harness, 0), _event(harness, 1)
    async with contract_db.transaction() as slow:
        await write_to_outbox(slow, [first])  # takes the lower id, commits last
        fast = await _commit_in_background(harness, second)
        assert not fast.done(), "a later writer committed before an earlier uncommitted one"
        assert await reader.drain() == 0
        assert await _position(harness, sub.name) == start
    await fast

    assert await reader.drain() == 2
    assert [seq for _, seq, _ in await harness.effects()] == [0, 1]
    assert await _outbox_id(harness, first) < await _outbox_id(harness, second)
    assert await _position(harness, sub.name) == await _outbox_id(harness, second)


async def test_a_rolled_back_writer_leaves_a_gap_the_reader_does_not_wait_for(
    postgres_harness: Harness,
) -> None:
    harness = postgres_harness
    contract_db = harness.db
    sub = harness.subscription()
    reader = PostgresSubscriber(contract_db, sub, batch_size=1000)
    await reader.drain()

    class Abandon(Exception):
        pass

    try:
        async with contract_db.transaction() as doomed:
            await write_to_outbox(doomed, [_event(harness, 99)])
            waiting = await _commit_in_background(harness, _event(harness, 0))
            assert not waiting.done()
            raise Abandon
    except Abandon:
        pass
    await waiting

    assert await reader.drain() == 1
    assert [seq for _, seq, _ in await harness.effects()] == [0]
