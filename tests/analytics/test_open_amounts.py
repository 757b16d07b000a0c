"""Property: whatever documents reach the analytics consumer, in whatever order and batches,
the open amounts it keeps per instalment and day age every invoice as the reference of
shared/ageing.py ages it from the same documents, on every day."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from services.analytics import queries
from services.analytics.handlers import apply_events
from shared.ageing import BUCKETS, Instalment, age, open_instalments
from shared.db import Database
from shared.events.envelope import Event, EventPayload
from shared.events.orders import Instalment as PlannedInstalment
from shared.events.orders import (
    OrderCancelled,
    OrderConfirmed,
    OrderReturned,
    ReturnedLine,
)
from shared.events.payments import AllocationReleased, PaymentAllocated
from shared.ids import new_id
from tests.conftest import migrate_all
from tests.payments.factories import OrdersFeed

ZERO = Decimal("0.00")
DAY0 = date(2025, 3, 1)
SPAN = 40  # days documents are dated within, from DAY0 (credit notes up to 2 × SPAN)
AFTER_ALL = DAY0 + timedelta(days=3 * SPAN)


@dataclass
class Invoice:
    """One invoice as the reference needs it: its plan and what reduced it, dated."""

    order_id: UUID
    day: date
    gross: Decimal
    instalments: list[Instalment]
    paid: list[tuple[date, Decimal]] = field(default_factory=list)  # allocated +, released -
    credited: list[tuple[date, Decimal]] = field(default_factory=list)

    def open_on(self, day: date) -> list[tuple[Instalment, Decimal]]:
        """Each instalment in due order with what was open of it at the end of `day`."""
        if self.day > day:
            return [(i, ZERO) for i in sorted(self.instalments, key=lambda i: i.due_date)]
        return open_instalments(
            self.instalments,
            allocated=sum((a for d, a in self.paid if d <= day), ZERO),
            credited=sum((a for d, a in self.credited if d <= day), ZERO),
        )


@pytest.fixture(scope="module")
async def database(own_database: str) -> AsyncIterator[Database]:
    db = Database(await migrate_all(own_database))
    yield db
    await db.dispose()


money = st.integers(min_value=1, max_value=50_000).map(lambda cents: Decimal(cents) / 100)
days = st.integers(min_value=0, max_value=SPAN).map(lambda n: DAY0 + timedelta(days=n))


def _confirmed(draw: Any, customer: UUID, invoice_day: date) -> tuple[OrderConfirmed, Invoice]:
    """An invoice of one to three instalments (due dates may repeat) summing to its gross."""
    amounts = draw(st.lists(money, min_size=1, max_size=3))
    dues = [invoice_day + timedelta(days=draw(st.integers(0, 60))) for _ in amounts]
    gross = sum(amounts, ZERO)
    facts = OrdersFeed.facts(customer, gross)
    plan = [PlannedInstalment(due_date=d, amount=a) for d, a in zip(dues, amounts, strict=True)]
    event = OrderConfirmed(
        order=facts,
        invoice_number="INV",
        business_date=invoice_day,
        due_date=max(dues),
        instalments=plan if len(plan) > 1 else [],
        confirmed_at=datetime.now(UTC),
    )
    instalments = [Instalment(d, a) for d, a in zip(dues, amounts, strict=True)]
    if len(plan) == 1:  # no plan: the whole gross is due on the due date
        instalments = [Instalment(max(dues), gross)]
    return event, Invoice(facts.order_id, invoice_day, gross, instalments)


def _days_after(day: date, days: int) -> date:
    return day + timedelta(days=days)


@st.composite
def documents(draw: Any, customer: UUID) -> tuple[list[tuple[EventPayload, str]], list[Invoice]]:
    """Invoices with credit notes, a cancellation, allocations and released allocations.
    Each source's events keep their own order (an order's credit notes follow its invoice);
    payments' events may come before the invoice they pay, and any document may be dated
    before documents published earlier."""
    orders: list[tuple[EventPayload, str]] = []
    payments: list[tuple[EventPayload, str]] = []
    invoices = []
    for _ in range(draw(st.integers(1, 3))):
        invoice_day = draw(days)
        confirmed, invoice = _confirmed(draw, customer, invoice_day)
        invoices.append(invoice)
        orders.append((confirmed, "orders"))
        after = st.integers(0, SPAN).map(partial(_days_after, invoice_day))
        credited = ZERO
        for _ in range(draw(st.integers(0, 2))):
            on, gross = draw(after), draw(money)
            credited += gross
            invoice.credited.append((on, gross))
            part = ReturnedLine(
                line_no=1, sku="SKU-1", category="tools", quantity=ZERO, net=gross, tax=ZERO,
                gross=gross,
            )  # fmt: skip
            orders.append(
                (
                    OrderReturned(
                        credit_note_id=new_id(),
                        credit_note_number="CN",
                        order_id=invoice.order_id,
                        customer_id=customer,
                        business_date=on,
                        lines=[part],
                        net=gross,
                        tax=ZERO,
                        gross=gross,
                        reason=None,
                    ),
                    "orders",
                )
            )
        if draw(st.booleans()) and credited < invoice.gross:
            on, left = draw(after), invoice.gross - credited
            invoice.credited.append((on, left))
            orders.append(
                (
                    OrderCancelled(
                        order_id=invoice.order_id,
                        number="SO",
                        customer_id=customer,
                        was_confirmed=True,
                        invoice_number="INV",
                        business_date=on,
                        reversed_net=left,
                        reversed_tax=ZERO,
                        reversed_gross=left,
                        reason=None,
                    ),
                    "orders",
                )
            )
        for _ in range(draw(st.integers(0, 3))):
            on, amount = draw(days), draw(money)
            allocation = new_id()
            invoice.paid.append((on, amount))
            payments.append(
                (
                    PaymentAllocated(
                        allocation_id=allocation,
                        payment_id=new_id(),
                        payment_number="PAY",
                        customer_id=customer,
                        order_id=invoice.order_id,
                        amount=amount,
                        business_date=on,
                    ),
                    "payments",
                )
            )
            if draw(st.booleans()):
                back_on = draw(days)
                back = draw(st.integers(1, int(amount * 100))) / Decimal(100)
                invoice.paid.append((back_on, -back))
                payments.append(
                    (
                        AllocationReleased(
                            allocation_id=allocation,
                            payment_id=new_id(),
                            customer_id=customer,
                            order_id=invoice.order_id,
                            amount=back,
                            was_applied=True,
                            reason="refund",
                            business_date=back_on,
                        ),
                        "payments",
                    )
                )
    # Interleave the two sources, each in its own order.
    picks = draw(st.permutations([0] * len(orders) + [1] * len(payments)))
    queues = [iter(orders), iter(payments)]
    return [next(queues[p]) for p in picks], invoices


async def _apply_in_batches(db: Database, events: list[Event], cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(events)]
    for start, end in itertools.pairwise(bounds):
        if start < end:
            async with db.transaction() as session:
                await apply_events(session, events[start:end])


async def _kept_open(db: Database, invoices: list[Invoice], day: date) -> dict[Any, Decimal]:
    """What the consumer keeps open of each instalment at the end of `day`: the day's changes
    summed, or after every document what is open now."""
    orders = [i.order_id for i in invoices]
    async with db.sessions() as session:
        if day == AFTER_ALL:
            rows = await session.execute(
                text(
                    "SELECT order_id, seq, amount FROM analytics.open_now WHERE order_id = ANY(:o)"
                ),
                {"o": orders},
            )
        else:
            rows = await session.execute(
                text(
                    "SELECT order_id, seq, sum(amount) FROM analytics.open_changes "
                    "WHERE order_id = ANY(:o) AND day <= :day GROUP BY order_id, seq"
                ),
                {"o": orders, "day": day},
            )
        return {(o, s): a for o, s, a in rows if a != 0}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_kept_open_amounts_age_as_the_reference(
    database: Database, data: st.DataObject
) -> None:
    customer = new_id()
    sent, invoices = data.draw(documents(customer))
    events = [Event.of(payload, source=source, key=str(customer)) for payload, source in sent]
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=4))
    await _apply_in_batches(database, events, cuts)

    # Every third day of the documents' span, then a day after every document (read from
    # what is open now).
    for day in [*(DAY0 + timedelta(days=n) for n in range(-1, SPAN + 2, 3)), AFTER_ALL]:
        expected = {
            (invoice.order_id, seq): still_open
            for invoice in invoices
            for seq, (_, still_open) in enumerate(invoice.open_on(day))
            if still_open != 0
        }
        assert await _kept_open(database, invoices, day) == expected, day

        buckets = dict.fromkeys(BUCKETS, ZERO)
        for invoice in invoices:
            if invoice.day <= day:
                aged = age(
                    invoice.instalments,
                    allocated=sum((a for d, a in invoice.paid if d <= day), ZERO),
                    credited=sum((a for d, a in invoice.credited if d <= day), ZERO),
                    on=day,
                )
                for bucket, amount in aged.items():
                    buckets[bucket] += amount
        async with database.sessions() as session:
            rows = await queries.ageing(session, as_of_date=day, limit=1, after=_before(customer))
        got = {k: v for k, v in rows[0].items() if k in BUCKETS} if rows else None
        if any(buckets.values()):
            assert rows[0]["customer_id"] == customer and got == buckets, day
        else:
            assert not rows or rows[0]["customer_id"] != customer, day
    await _totals_add_up(database, DAY0 + timedelta(days=data.draw(st.integers(0, 3 * SPAN))))


def _before(customer: UUID) -> UUID:
    return UUID(int=customer.int - 1)


async def _totals_add_up(db: Database, day: date) -> None:
    """The totals kept per day and due date are the per-instalment rows summed over every
    customer (no row of them zero), and age as every customer's ageing summed."""
    async with db.sessions() as session:
        kept = await session.execute(
            text("SELECT day, due_date, amount FROM analytics.open_by_day ORDER BY day, due_date")
        )
        summed = await session.execute(
            text(
                "SELECT day, due_date, sum(amount) FROM analytics.open_changes "
                "GROUP BY day, due_date HAVING sum(amount) <> 0 ORDER BY day, due_date"
            )
        )
        assert list(kept) == list(summed)
        rows = await queries.ageing(session, as_of_date=day, limit=10**6)
        totals = await queries.ageing_totals(session, as_of_date=day)
    by_customer = dict.fromkeys((*BUCKETS, "total"), ZERO)
    for row in rows:
        for name in by_customer:
            by_customer[name] += row[name]
    assert totals == by_customer
