"""Reading an outbox: the subscriptions of one process that read the same rows share one
parse of each, and a row corrected in place is read as corrected."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from shared.db import Database
from shared.events.envelope import Event
from shared.events.orders import OrderFulfilled
from shared.ids import new_id
from shared.messaging.outbox import write_to_outbox
from shared.messaging.postgres import read_outbox


async def test_rows_are_parsed_once_and_again_when_corrected(migrated: str) -> None:
    db = Database(migrated, pool_size=2, max_overflow=0)
    try:
        async with db.transaction() as session:
            before = await session.scalar(text("SELECT coalesce(max(id), 0) FROM orders.outbox"))
            payload = OrderFulfilled(
                order_id=new_id(), customer_id=new_id(), fulfilled_at=datetime.now(UTC)
            )
            await write_to_outbox(session, [Event.of(payload, source="orders", key="first")])
        async with db.transaction() as first, db.transaction() as second:
            [(position, one)] = await read_outbox(first, source="orders", after=before, limit=9)
            [(_, other)] = await read_outbox(second, source="orders", after=before, limit=9)
        assert other is one and one.key == "first"

        async with db.transaction() as session:
            await session.execute(
                text(
                    "UPDATE orders.outbox SET payload = jsonb_set(payload, '{key}', "
                    "to_jsonb('corrected'::text)) WHERE id = :id"
                ),
                {"id": position},
            )
        async with db.transaction() as session:
            [(_, corrected)] = await read_outbox(session, source="orders", after=before, limit=9)
        assert corrected.key == "corrected" and corrected.event_id == one.event_id
    finally:
        await db.dispose()
