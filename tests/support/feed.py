"""Publishing events straight into a source's outbox, as that service would, so a consumer
service can be exercised on its own through the real transport."""

from __future__ import annotations

from datetime import date

from shared.db import Database
from shared.events.envelope import Event, EventPayload
from shared.messaging.outbox import write_to_outbox


async def publish(
    database_url: str,
    payloads: list[tuple[EventPayload, str, str, date | None]],
) -> list[Event]:
    """Write (payload, source, key, business_date) events in one transaction, in order."""
    events = [
        Event.of(payload, source=source, key=key, business_date=day)
        for payload, source, key, day in payloads
    ]
    db = Database(database_url, pool_size=1)
    try:
        async with db.transaction() as session:
            await write_to_outbox(session, events)
    finally:
        await db.dispose()
    return events
