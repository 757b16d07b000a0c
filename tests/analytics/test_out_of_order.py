"""Credit notes and cancellations that reach analytics before their invoice (an order event
published again after a broker lost it comes after newer ones) wait for it: the read models
end exactly as when every event came in order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from services.analytics.handlers import subscriptions
from shared.db import Database
from shared.events.envelope import Event
from shared.messaging.consumer import apply_batch
from tests.analytics.world import build
from tests.conftest import migrate_all

BATCH = 40  # small, so that documents wait across batches


def _late_invoices(events: list[Event]) -> list[Event]:
    """The same events, each invoice that has credit notes or a cancellation moved to just
    after the last of them."""
    credited = {
        e.data["order_id"] for e in events if e.type in ("order.returned", "order.cancelled")
    }
    last_credit: dict[str, int] = {}
    for index, event in enumerate(events):
        if event.type in ("order.returned", "order.cancelled"):
            last_credit[event.data["order_id"]] = index
    moved = {
        index: event
        for index, event in enumerate(events)
        if event.type == "order.confirmed" and event.data["order"]["order_id"] in credited
    }
    reordered: list[Event] = []
    for index, event in enumerate(events):
        if index in moved:
            continue
        reordered.append(event)
        order_id = event.data.get("order_id")
        if order_id in last_credit and last_credit[order_id] == index:
            reordered += [e for e in moved.values() if e.data["order"]["order_id"] == order_id]
    return reordered


async def _applied(url: str, events: list[Event]) -> dict[str, list[tuple[Any, ...]]]:
    db = Database(url, pool_size=1)
    try:
        for start in range(0, len(events), BATCH):
            async with db.transaction() as session:
                await apply_batch(session, subscriptions()[0], events[start : start + BATCH])
        return await _tables(db)
    finally:
        await db.dispose()


async def _tables(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every analytics table's rows, sorted, without the ids numbering rows as they came."""
    async with db.sessions() as session:
        names = (
            await session.execute(
                text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'analytics' AND table_type = 'BASE TABLE'"
                )
            )
        ).scalars()
        found = {}
        for name in sorted(names):
            columns = (
                await session.execute(
                    text(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_schema = 'analytics' AND table_name = :name "
                        "AND column_name NOT IN ('id', 'processed_at') ORDER BY ordinal_position"
                    ),
                    {"name": name},
                )
            ).scalars()
            listed = ", ".join(f'"{c}"' for c in columns)
            rows = await session.execute(text(f"SELECT {listed} FROM analytics.{name}"))
            found[name] = sorted(tuple(map(str, row)) for row in rows)
        return found


async def test_documents_before_their_invoice_end_as_in_order(
    own_database: str, scratch_database: str
) -> None:
    world = build()
    events = [
        Event.of(payload, source=source, key=key, business_date=day)
        for payload, source, key, day in world.events
    ]
    late = _late_invoices(events)
    assert late != events and sorted(e.event_id for e in late) == sorted(e.event_id for e in events)
    expected = await _applied(await migrate_all(own_database), events)
    got = await _applied(await migrate_all(scratch_database), late)
    assert got["waiting_documents"] == [] and expected["waiting_documents"] == []
    assert expected["receivable_moves"] and expected["daily_sales"]
    for table, rows in expected.items():
        assert got[table] == rows, table
