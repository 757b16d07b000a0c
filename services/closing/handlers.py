"""Reactions to order and payment events: post them to the ledger, collect cutoffs, and
complete any close whose control totals the ledger now matches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.closing.domain import posting_of
from services.closing.ledger import (
    Batch,
    PeriodBook,
    add_customer,
    add_invoice_facts,
    add_posting,
    flush,
    load_book,
)
from services.closing.models import SCHEMA, Period
from services.closing.pending import PendingChanges, flush_pending, track
from services.closing.service import on_cutoff, try_complete
from shared.events.closing import PeriodCutoff
from shared.events.envelope import Event
from shared.messaging.consumer import Subscription

CUTOFF_SOURCES = frozenset({"orders", "payments"})
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
CUSTOMER_TYPES = frozenset({"customer.created", "customer.updated"})


def subscriptions() -> list[Subscription]:
    return [
        Subscription(
            name="closing.ledger",
            schema=SCHEMA,
            sources=("orders", "payments"),
            handle=post_events,
            payload_types=LEDGER_TYPES | CUSTOMER_TYPES | {"period.cutoff"},
        )
    ]


async def post_events(session: AsyncSession, events: list[Event]) -> None:
    """Post a batch of events in order; cutoffs see every posting that came before them."""
    book = await load_book(session)

    async def cut_off(cutoff: PeriodCutoff) -> PeriodBook:
        await on_cutoff(session, cutoff)
        return await load_book(session)

    book = await _post(session, events, book, cut_off)
    # The periods being closed are in the book already: no query of its own per batch.
    for period, status in sorted(book.statuses.items()):
        if status == "closing":
            await try_complete(session, period)


async def _post(
    session: AsyncSession,
    events: list[Event],
    book: PeriodBook,
    cut_off: Callable[[PeriodCutoff], Awaitable[PeriodBook]],
) -> PeriodBook:
    batch = Batch()
    pending = PendingChanges()
    for event in events:
        if event.type == "period.cutoff":
            await flush(session, batch)
            batch = Batch()
            book = await cut_off(event.payload_as(PeriodCutoff))
            continue
        if event.type in CUSTOMER_TYPES:
            add_customer(batch, event.payload())
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
    return book


class ReplayBook(PeriodBook):
    """The periods as a replay of the events meets them: a period the close has closed counts
    as closed from the point where both sources' cutoffs of its last close have been read, as
    it was for the consumer that posted the events the first time."""

    def __init__(self, closes: dict[str, str]) -> None:
        super().__init__({})
        self.closes = closes  # closed period -> the close that closed it
        self.cut: dict[str, set[str]] = {}

    def cut_off(self, cutoff: PeriodCutoff) -> ReplayBook:
        if self.closes.get(cutoff.period) == str(cutoff.close_id) and not cutoff.refused:
            sources = self.cut.setdefault(cutoff.period, set())
            sources.add(cutoff.source)
            if sources >= CUTOFF_SOURCES:
                self.set_status(cutoff.period, "closed")
        return self


async def replay_book(session: AsyncSession) -> ReplayBook:
    rows = await session.execute(
        select(col(Period.period), col(Period.close_id)).where(col(Period.status) == "closed")
    )
    return ReplayBook({period: str(close_id) for period, close_id in rows.all()})


async def replay_events(session: AsyncSession, events: list[Event], book: ReplayBook) -> None:
    """Post a batch of retained events into the ledger again, leaving the periods as they are:
    a rebuild's handler (services/rebuild.py)."""

    async def cut_off(cutoff: PeriodCutoff) -> PeriodBook:
        return book.cut_off(cutoff)

    await _post(session, events, book, cut_off)
