"""Outbox notifications reach only the readers of the source that was written to: a commit
to one schema's outbox wakes its readers, and nothing else's connection hears of it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from shared.db import Database
from shared.events.envelope import Event
from shared.events.orders import OrderFulfilled
from shared.events.payments import SOURCE as PAYMENTS
from shared.ids import new_id
from shared.messaging.outbox import write_to_outbox
from shared.messaging.postgres import OutboxWaker
from tests.support.waiting import eventually


def _event(source: str) -> Event:
    payload = OrderFulfilled(
        order_id=new_id(), customer_id=new_id(), fulfilled_at=datetime.now(UTC)
    )
    return Event.of(payload, source=source, key="wakeups")


async def test_a_commit_wakes_the_readers_of_its_source_only(migrated: str) -> None:
    db = Database(migrated, pool_size=1, max_overflow=0)
    orders_woken, payments_woken = asyncio.Event(), asyncio.Event()
    orders = OutboxWaker(db, orders_woken, sources=("orders",))
    payments = OutboxWaker(db, payments_woken, sources=(PAYMENTS,))
    # Every notification that reaches the payments reader's connection, whatever its source.
    heard: list[str] = []
    deliver = payments._notified

    def hear(conn: object, pid: int, channel: str, source: str) -> None:
        heard.append(source)
        deliver(conn, pid, channel, source)

    payments._notified = hear  # type: ignore[method-assign,assignment]  # observed before it listens
    await orders.start()
    await payments.start()
    assert payments._conn is not None
    try:
        async with db.transaction() as session:
            await write_to_outbox(session, [_event("orders")])
        await eventually(lambda: _is_set(orders_woken), lambda woken: woken)
        assert orders.take_notified() == {"orders"}
        # A notification on the payments reader's channels would have arrived with the
        # orders reader's (the server sends both at commit); a round trip on its connection
        # after that has read everything sent to it before.
        await payments._conn.execute("SELECT 1")
        assert heard == [] and not payments_woken.is_set()
        async with db.transaction() as session:
            await write_to_outbox(session, [_event(PAYMENTS)])
        await eventually(lambda: _is_set(payments_woken), lambda woken: woken)
        assert payments.take_notified() == {PAYMENTS}
        assert heard == [PAYMENTS]
    finally:
        await orders.stop()
        await payments.stop()
        await db.dispose()


async def _is_set(event: asyncio.Event) -> bool:
    return event.is_set()
