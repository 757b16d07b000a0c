"""The double-entry subledger, built only from events, one batch (one transaction) at a time.

Every posting's debits equal its credits. Besides the journal, each batch moves running
aggregates — account totals, per-customer activity, document totals — so that closing a
period reads small tables instead of rescanning a month of documents.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.closing.domain import (
    ACTIVITY_COLUMNS,
    ORDINARY_RELEASES,
    ZERO,
    PeriodBook,
    Posting,
)
from services.closing.models import (
    AccountTotal,
    Customer,
    CustomerActivity,
    DocumentTotal,
    Invoice,
    InvoiceInstalment,
    InvoiceMovement,
    LedgerEntry,
    Period,
    ReconciliationException,
)
from shared import periods
from shared.bulk import add_to, insert_rows
from shared.config import get_settings
from shared.events.envelope import Event, EventPayload
from shared.events.orders import (
    CustomerCreated,
    CustomerUpdated,
    OrderCancelled,
    OrderConfirmed,
    OrderReturned,
)
from shared.events.payments import (
    AllocationReleased,
    PaymentAllocated,
)
from shared.money import money_str
from shared.tables import table_of


@dataclass
class Batch:
    """The aggregate movements of a batch of postings, flushed with a few statements."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    accounts: dict[tuple[str, str], list[Decimal]] = field(
        default_factory=lambda: defaultdict(lambda: [ZERO, ZERO])
    )
    activity: dict[tuple[str, UUID], dict[str, Decimal]] = field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys(ACTIVITY_COLUMNS, ZERO))
    )
    documents: dict[tuple[str, str], list[Any]] = field(
        default_factory=lambda: defaultdict(lambda: [0, ZERO])
    )
    invoices: list[dict[str, Any]] = field(default_factory=list)
    instalments: list[dict[str, Any]] = field(default_factory=list)
    movements: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    customers: dict[UUID, str] = field(default_factory=dict)  # the name each was last given

    def __bool__(self) -> bool:
        return bool(self.entries or self.movements or self.exceptions or self.customers)


def add_customer(batch: Batch, payload: EventPayload) -> None:
    """A customer.created or customer.updated: the ledger knows the customer from then on."""
    match payload:
        case CustomerCreated() | CustomerUpdated():
            batch.customers[payload.customer_id] = payload.name


async def load_book(session: AsyncSession) -> PeriodBook:
    rows = await session.execute(select(col(Period.period), col(Period.status)))
    return PeriodBook({p: s for p, s in rows.all()})


def add_posting(batch: Batch, book: PeriodBook, posting: Posting) -> None:
    if not posting.balanced():
        raise ValueError(f"unbalanced posting for event {posting.event.event_id}")
    dated, period, posting_date = placement(book, posting.business_date)
    late = period != dated
    batch.entries.append(
        {
            "event_id": posting.event.event_id,
            "kind": posting.kind,
            "document_id": posting.document_id,
            "document_number": posting.document_number,
            "order_id": posting.order_id,
            "customer_id": posting.customer_id,
            "business_date": posting.business_date,
            "dated_period": dated,
            "period": period,
            "posting_date": posting_date,
            "late": late,
            "amount": posting.amount,
            "lines": [
                {"account": a, "debit": money_str(d), "credit": money_str(c)}
                for a, d, c in posting.lines
            ],
        }
    )
    for account, debit, credit in posting.lines:
        totals = batch.accounts[(period, account)]
        totals[0] += debit
        totals[1] += credit
    activity = batch.activity[(period, posting.customer_id)]
    for column, amount in posting.activity.items():
        activity[column] += amount
    if not late:  # a late document was counted in its period's control totals already
        document = batch.documents[(dated, posting.kind)]
        document[0] += 1
        document[1] += posting.control_amount
    else:
        batch.exceptions.append(
            {
                "period": period,
                "kind": "late_event",
                "customer_id": posting.customer_id,
                "document": posting.document_number or str(posting.document_id),
                "amount": posting.control_amount,
                "detail": f"{posting.kind} dated {posting.business_date} in closed period {dated}; "
                f"posted into {period}",
                "event_id": posting.event.event_id,
            }
        )


def placement(book: PeriodBook, day: date) -> tuple[str, str, date]:
    """Where something dated `day` goes: (its own period, the period it is posted into, the
    day it counts from). Into a closed period nothing goes: it is posted into the first open
    period after the latest closed one, from that period's first day."""
    dated = str(periods.Period.of(day))
    period = book.posting_period(dated)
    return dated, period, day if period == dated else periods.Period.parse(period).first_day


def add_invoice_facts(batch: Batch, book: PeriodBook, event: Event, payload: EventPayload) -> None:
    """What ageing needs besides the journal: instalments, credits and allocations per invoice."""
    match payload:
        case OrderConfirmed() as inv:
            order = inv.order
            batch.invoices.append(
                {
                    "order_id": order.order_id,
                    "customer_id": order.customer_id,
                    "invoice_number": inv.invoice_number,
                    "business_date": inv.business_date,
                    "due_date": inv.due_date,
                    "gross": order.gross,
                }
            )
            batch.instalments.extend(instalment_rows(inv))
        # A credit or an allocation moves an invoice from the day it is posted on, like the
        # journal: one dated into a closed period counts from the first open one, so the
        # closed period's ageing stays what its close stored.
        case OrderReturned() as crn:
            _, _, day = placement(book, crn.business_date)
            batch.movements.append(
                _movement(crn.order_id, crn.customer_id, "credit", day, crn.gross)
            )
        case OrderCancelled() as cnl if cnl.was_confirmed:
            _, _, day = placement(book, cnl.business_date)
            batch.movements.append(
                _movement(cnl.order_id, cnl.customer_id, "credit", day, cnl.reversed_gross)
            )
        case PaymentAllocated() as alloc:
            day = _allocation_day(batch, book, event, alloc.business_date, alloc)
            batch.movements.append(
                _movement(alloc.order_id, alloc.customer_id, "allocation", day, alloc.amount)
            )
        case AllocationReleased() as rel:
            zone = get_settings().zone
            dated_day = rel.business_date or periods.business_date_of(event.occurred_at, zone)
            if rel.was_applied:
                day = _allocation_day(batch, book, event, dated_day, rel)
                batch.movements.append(
                    _movement(rel.order_id, rel.customer_id, "allocation", day, -rel.amount)
                )
            elif rel.reason not in ORDINARY_RELEASES:
                batch.exceptions.append(
                    {
                        "period": book.posting_period(str(periods.Period.of(dated_day))),
                        "kind": "failed_allocation",
                        "customer_id": rel.customer_id,
                        "document": str(rel.order_id),
                        "amount": rel.amount,
                        "detail": f"pending allocation of payment {rel.payment_id} "
                        f"released: {rel.reason}",
                        "event_id": event.event_id,
                    }
                )


def _allocation_day(
    batch: Batch,
    book: PeriodBook,
    event: Event,
    day: date,
    allocation: PaymentAllocated | AllocationReleased,
) -> date:
    """The day an allocation (or its release) counts from; one dated into a closed period (a
    pending allocation the payments service resolved after the close) is listed as late."""
    dated, period, placed = placement(book, day)
    if period != dated:
        what = "allocation" if isinstance(allocation, PaymentAllocated) else "release"
        batch.exceptions.append(
            {
                "period": period,
                "kind": "late_event",
                "customer_id": allocation.customer_id,
                "document": str(allocation.order_id),
                "amount": allocation.amount,
                "detail": f"{what} of payment {allocation.payment_id} to order "
                f"{allocation.order_id} dated {day} in closed period {dated}; "
                f"placed in {period}",
                "event_id": event.event_id,
            }
        )
    return placed


def instalment_rows(inv: OrderConfirmed) -> list[dict[str, Any]]:
    """An invoice's instalments in payment order (due date, then seq), each with the running
    sum `upto` that lets ageing place allocations and credits on it without a window."""
    order = inv.order
    parts = [(i.due_date, i.amount) for i in inv.instalments] or [(inv.due_date, order.gross)]
    numbered = sorted((due, seq, amount) for seq, (due, amount) in enumerate(parts, start=1))
    rows, upto = [], ZERO
    for due, seq, amount in numbered:
        upto += amount
        rows.append(
            {
                "order_id": order.order_id,
                "seq": seq,
                "customer_id": order.customer_id,
                "business_date": inv.business_date,
                "due_date": due,
                "amount": amount,
                "upto": upto,
                "gross": order.gross,
            }
        )
    return rows


def _movement(
    order_id: UUID, customer_id: UUID, kind: str, day: date, amount: Decimal
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "kind": kind,
        "business_date": day,
        "amount": amount,
    }


async def flush(session: AsyncSession, batch: Batch) -> None:
    """Write a batch's journal entries and move the running aggregates."""
    await insert_rows(
        session, table_of(LedgerEntry), batch.entries, suffix="ON CONFLICT DO NOTHING"
    )
    await insert_rows(
        session,
        table_of(AccountTotal),
        [
            {"period": p, "account": a, "debit": d, "credit": c}
            for (p, a), (d, c) in batch.accounts.items()
        ],
        suffix=f"ON CONFLICT (period, account) DO UPDATE SET {add_to(('debit', 'credit'))}",
    )
    await insert_rows(
        session,
        table_of(CustomerActivity),
        [{"period": p, "customer_id": c, **v} for (p, c), v in batch.activity.items()],
        suffix=f"ON CONFLICT (period, customer_id) DO UPDATE SET {add_to(ACTIVITY_COLUMNS)}",
    )
    await insert_rows(
        session,
        table_of(DocumentTotal),
        [
            {"period": p, "kind": k, "count": n, "amount": a}
            for (p, k), (n, a) in batch.documents.items()
        ],
        suffix=f"ON CONFLICT (period, kind) DO UPDATE SET {add_to(('count', 'amount'))}",
    )
    await insert_rows(session, table_of(Invoice), batch.invoices, suffix="ON CONFLICT DO NOTHING")
    await insert_rows(
        session, table_of(InvoiceInstalment), batch.instalments, suffix="ON CONFLICT DO NOTHING"
    )
    await insert_rows(session, table_of(InvoiceMovement), batch.movements)
    await insert_rows(session, table_of(ReconciliationException), batch.exceptions)
    await insert_rows(
        session,
        table_of(Customer),
        [{"customer_id": c, "name": n} for c, n in sorted(batch.customers.items())],
        suffix="ON CONFLICT (customer_id) DO UPDATE SET name = EXCLUDED.name",
    )
