"""Reactions to order and payment events: post them to the ledger, collect cutoffs, and
complete any close whose control totals the ledger now matches."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.closing.ledger import (
    Batch,
    add_invoice_facts,
    add_posting,
    flush,
    load_book,
    posting_of,
)
from services.closing.models import SCHEMA
from services.closing.pending import PendingChanges, flush_pending, track
from services.closing.service import closing_periods, on_cutoff, try_complete
from shared.events.closing import PeriodCutoff
from shared.events.envelope import Event
from shared.messaging.consumer import Subscription

LEDGER_TYPES = frozenset(
    {
        "order.confirmed",
        "order.returned",
        "order.cancelled",
        "payment.received",
        "payment.refunded",
        "payment.allocated",
        "payment.allocation_pending",
        "payment.allocation_released",
    }
)


def subscriptions() -> list[Subscription]:
    return [
        Subscription(
            name="closing.ledger", schema=SCHEMA, sources=("orders", "payments"), handle=post_events
        )
    ]


async def post_events(session: AsyncSession, events: list[Event]) -> None:
    """Post a batch of events in order; cutoffs see every posting that came before them."""
    book = await load_book(session)
    batch = Batch()
    pending = PendingChanges()
    for event in events:
        if event.type == "period.cutoff":
            await flush(session, batch)
            batch = Batch()
            await on_cutoff(session, PeriodCutoff.model_validate(event.data))
            book = await load_book(session)
            continue
        if event.type not in LEDGER_TYPES:
            continue
        payload = event.payload()
        posting = posting_of(event, payload)
        if posting is not None:
            add_posting(batch, book, posting)
        add_invoice_facts(batch, book, event, payload)
        track(pending, event, payload)
    await flush(session, batch)
    await flush_pending(session, pending)
    for period in await closing_periods(session):
        await try_complete(session, period)
