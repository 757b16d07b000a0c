"""The transactional outbox: events are written in the same transaction as the change.

Ordering guarantee: before inserting, a transaction takes a per-schema advisory lock that it
holds until commit or rollback. Outbox ids are therefore handed out in commit order, and a
reader that has seen id N can never later find a committed row with a smaller id — no row
that commits late is ever skipped. Events are collected during the transaction and written
at its very end, so the lock is held only for the insert and the commit.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.envelope import Event, EventPayload
from shared.tables import common_tables

NOTIFY_CHANNEL = "salesbook_outbox"
MAX_CHANNEL_BYTES = 63  # PostgreSQL's identifier limit (NAMEDATALEN - 1)


def notify_channel(source: str) -> str:
    """The channel a commit to `source`'s outbox is announced on: one per source, so the
    database delivers each announcement only to the readers of that source."""
    channel = f"{NOTIFY_CHANNEL}_{source}"
    if len(channel.encode()) > MAX_CHANNEL_BYTES:  # PostgreSQL would refuse every write
        raise ValueError(f"source {source!r} is too long for a notification channel name")
    return channel


_PENDING = "salesbook_pending_events"


def emit(
    session: AsyncSession,
    payload: EventPayload,
    *,
    source: str,
    key: str,
    business_date: date | None = None,
) -> Event:
    """Raise an event in the session's unit of work; it is written to the outbox at commit."""
    event = Event.of(
        payload,
        source=source,
        key=key,
        business_date=business_date,
        request_id=session.info.get("request_id"),
    )
    session.info.setdefault(_PENDING, []).append(event)
    return event


def pending_events(session: AsyncSession) -> list[Event]:
    return list(session.info.get(_PENDING, []))


def take_pending(session: AsyncSession) -> list[Event]:
    """The events raised so far, for a caller that writes them itself (they are no longer
    written at commit)."""
    return list(session.info.pop(_PENDING, []))


def outbox_lock_key(schema: str) -> str:
    return f"salesbook.outbox.{schema}"


async def write_to_outbox(session: AsyncSession, events: list[Event]) -> None:
    """Insert events into their sources' outboxes, in order, under each outbox's commit lock."""
    by_source: dict[str, list[Event]] = {}
    for event in events:
        by_source.setdefault(event.source, []).append(event)
    for source, batch in by_source.items():
        table = common_tables(source).outbox
        await session.execute(
            select(func.pg_advisory_xact_lock(func.hashtext(outbox_lock_key(source))))
        )
        await session.execute(
            insert(table),
            [
                {
                    "event_id": e.event_id,
                    "type": e.type,
                    "key": e.key,
                    "payload": e.model_dump(mode="json"),
                }
                for e in batch
            ],
        )
        await session.execute(
            text("SELECT pg_notify(:channel, :source)"),
            {"channel": notify_channel(source), "source": source},
        )


async def flush_outbox(session: AsyncSession) -> None:
    """Write the events raised in this unit of work; called right before commit."""
    events = session.info.pop(_PENDING, [])
    if events:
        await write_to_outbox(session, events)
