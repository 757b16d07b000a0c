"""What a consumer is, and how a batch of events is applied exactly once.

Both transports deliver at least once. `apply_batch` makes every consumer idempotent: it
records each event_id in the consumer's inbox (processed_events) in the same transaction
as the handler's effects, and hands the handler only events it has never processed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import insert_rows
from shared.events.envelope import Event
from shared.tables import common_tables

BatchHandler = Callable[[AsyncSession, list[Event]], Awaitable[None]]
EventHandler = Callable[[AsyncSession, Event], Awaitable[None]]

log = logging.getLogger("salesbook.messaging.consumer")


@dataclass(frozen=True)
class Subscription:
    """A named consumer of one or more sources' events, owned by the service of `schema`."""

    name: str
    schema: str
    sources: tuple[str, ...]
    handle: BatchHandler
    # The event types whose typed payloads the handler reads (Event.payload): events of
    # these types that are read ahead of their batch are parsed whole there (see
    # postgres.OutboxReader), the others only as far as their envelope.
    payload_types: frozenset[str] = frozenset()


def one_by_one(handler: EventHandler) -> BatchHandler:
    """Adapt a per-event handler to the batch interface, keeping the events' order."""

    async def handle(session: AsyncSession, events: list[Event]) -> None:
        for event in events:
            with caused_by(session, event):
                await handler(session, event)

    return handle


@contextmanager
def caused_by(session: AsyncSession, event: Event) -> Iterator[None]:
    """While an event is applied, what the session records (audit entries) carries the id of
    the request that caused the event, as the request's own entries do."""
    before = session.info.get("request_id")
    session.info["request_id"] = event.request_id
    try:
        yield
    finally:
        session.info["request_id"] = before


async def apply_batch(
    session: AsyncSession, subscription: Subscription, events: Sequence[Event]
) -> int:
    """Apply the events not yet processed by this subscription; returns how many were new."""
    if not events:
        return 0
    inbox = common_tables(subscription.schema).processed_events
    unique: dict[object, Event] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    inserted = await insert_rows(
        session,
        inbox,
        [{"consumer": subscription.name, "event_id": eid} for eid in unique],
        suffix="ON CONFLICT DO NOTHING RETURNING event_id",
    )
    fresh_ids = set(inserted.scalars()) if inserted is not None else set()
    if len(fresh_ids) == len(unique):  # the usual case: nothing was delivered twice
        fresh = list(unique.values())
    else:
        fresh = [e for eid, e in unique.items() if eid in fresh_ids]
    if fresh:
        _trace(subscription, fresh)
        await subscription.handle(session, fresh)
    return len(fresh)


def _trace(subscription: Subscription, events: list[Event]) -> None:
    """One DEBUG line per event applied, carrying the id of the request that caused it, so a
    request can be followed into every service its events reach (DEBUG: one line per event
    is too many for normal operation)."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    for event in events:
        log.debug(
            "%s applies %s %s",
            subscription.name,
            event.type,
            event.event_id,
            extra={"request_id": event.request_id},
        )
