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

from services.closing.models import (
    AccountTotal,
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
from shared.events.orders import OrderCancelled, OrderConfirmed, OrderReturned
from shared.events.payments import (
    AllocationReleased,
    PaymentAllocated,
    PaymentReceived,
    PaymentRefunded,
)
from shared.money import money_str

ZERO = Decimal("0.00")
ACTIVITY_COLUMNS = ("invoiced", "returned", "received", "refunded")
# Releases that are ordinary business, not a failed check of a pending allocation.
ORDINARY_RELEASES = (
    "refund",
    "order cancelled",
    "order rejected",
    "credit note left the order overpaid",
)


@dataclass
class Posting:
    """A document as the ledger sees it."""

    event: Event
    kind: str
    document_id: UUID
    document_number: str | None
    order_id: UUID | None
    customer_id: UUID
    business_date: date
    amount: Decimal  # signed effect on the customer's receivable
    control_amount: Decimal  # what the source's control total sums for this kind
    activity: dict[str, Decimal]
    lines: list[tuple[str, Decimal, Decimal]]  # account, debit, credit

    def balanced(self) -> bool:
        return sum(d for _, d, _ in self.lines) == sum(c for _, _, c in self.lines)


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

    def __bool__(self) -> bool:
        return bool(self.entries or self.movements or self.exceptions)


def posting_of(event: Event, payload: EventPayload) -> Posting | None:
    """The ledger posting an event calls for, if any."""
    match payload:
        case OrderConfirmed() as inv:
            c = inv.order.customer_id
            return Posting(
                event,
                "invoice",
                inv.order.order_id,
                inv.invoice_number,
                inv.order.order_id,
                c,
                inv.business_date,
                inv.order.gross,
                inv.order.gross,
                {"invoiced": inv.order.gross},
                [
                    (f"ar:{c}", inv.order.gross, ZERO),
                    ("revenue", ZERO, inv.order.net),
                    ("tax_payable", ZERO, inv.order.tax),
                ],
            )
        case OrderReturned() as crn:
            c = crn.customer_id
            return Posting(
                event,
                "credit_note",
                crn.credit_note_id,
                crn.credit_note_number,
                crn.order_id,
                c,
                crn.business_date,
                -crn.gross,
                crn.gross,
                {"returned": crn.gross},
                [
                    ("sales_returns", crn.net, ZERO),
                    ("tax_payable", crn.tax, ZERO),
                    (f"ar:{c}", ZERO, crn.gross),
                ],
            )
        case OrderCancelled() as cnl if cnl.was_confirmed:
            c = cnl.customer_id
            return Posting(
                event,
                "cancellation",
                cnl.order_id,
                cnl.invoice_number,
                cnl.order_id,
                c,
                cnl.business_date,
                -cnl.reversed_gross,
                cnl.reversed_gross,
                {"invoiced": -cnl.reversed_gross},
                [
                    ("revenue", cnl.reversed_net, ZERO),
                    ("tax_payable", cnl.reversed_tax, ZERO),
                    (f"ar:{c}", ZERO, cnl.reversed_gross),
                ],
            )
        case PaymentReceived() as pay:
            c = pay.customer_id
            return Posting(
                event,
                "payment",
                pay.payment_id,
                pay.number,
                None,
                c,
                pay.business_date,
                -pay.amount,
                pay.amount,
                {"received": pay.amount},
                [(f"cash:{pay.method}", pay.amount, ZERO), (f"ar:{c}", ZERO, pay.amount)],
            )
        case PaymentRefunded() as ref:
            c = ref.customer_id
            return Posting(
                event,
                "refund",
                ref.refund_id,
                ref.payment_number,
                None,
                c,
                ref.business_date,
                ref.amount,
                ref.amount,
                {"refunded": ref.amount},
                [(f"ar:{c}", ref.amount, ZERO), (f"cash:{ref.method}", ZERO, ref.amount)],
            )
    return None


class PeriodBook:
    """Which period a document dated into `period` is posted to (late ones move forward)."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses

    def posting_period(self, dated: str) -> str:
        period = dated
        while self.statuses.get(period) == "closed":
            period = str(periods.Period.parse(period).next())
        return period


async def load_book(session: AsyncSession) -> PeriodBook:
    rows = await session.execute(select(Period.period, Period.status))
    return PeriodBook({p: s for p, s in rows.all()})


def add_posting(batch: Batch, book: PeriodBook, posting: Posting) -> None:
    if not posting.balanced():
        raise ValueError(f"unbalanced posting for event {posting.event.event_id}")
    dated = str(periods.Period.of(posting.business_date))
    period = book.posting_period(dated)
    late = period != dated
    posting_date = periods.Period.parse(period).first_day if late else posting.business_date
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
        case OrderReturned() as crn:
            batch.movements.append(
                _movement(crn.order_id, crn.customer_id, "credit", crn.business_date, crn.gross)
            )
        case OrderCancelled() as cnl if cnl.was_confirmed:
            batch.movements.append(
                _movement(
                    cnl.order_id,
                    cnl.customer_id,
                    "credit",
                    cnl.business_date,
                    cnl.reversed_gross,
                )
            )
        case PaymentAllocated() as alloc:
            batch.movements.append(
                _movement(
                    alloc.order_id,
                    alloc.customer_id,
                    "allocation",
                    alloc.business_date,
                    alloc.amount,
                )
            )
        case AllocationReleased() as rel:
            zone = get_settings().zone
            day = rel.business_date or periods.business_date_of(event.occurred_at, zone)
            if rel.was_applied:
                batch.movements.append(
                    _movement(rel.order_id, rel.customer_id, "allocation", day, -rel.amount)
                )
            elif rel.reason not in ORDINARY_RELEASES:
                batch.exceptions.append(
                    {
                        "period": book.posting_period(str(periods.Period.of(day))),
                        "kind": "failed_allocation",
                        "customer_id": rel.customer_id,
                        "document": str(rel.order_id),
                        "amount": rel.amount,
                        "detail": f"pending allocation of payment {rel.payment_id} "
                        f"released: {rel.reason}",
                        "event_id": event.event_id,
                    }
                )


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
        session, LedgerEntry.__table__, batch.entries, suffix="ON CONFLICT DO NOTHING"
    )
    await insert_rows(
        session,
        AccountTotal.__table__,
        [
            {"period": p, "account": a, "debit": d, "credit": c}
            for (p, a), (d, c) in batch.accounts.items()
        ],
        suffix=f"ON CONFLICT (period, account) DO UPDATE SET {add_to(('debit', 'credit'))}",
    )
    await insert_rows(
        session,
        CustomerActivity.__table__,
        [{"period": p, "customer_id": c, **v} for (p, c), v in batch.activity.items()],
        suffix=f"ON CONFLICT (period, customer_id) DO UPDATE SET {add_to(ACTIVITY_COLUMNS)}",
    )
    await insert_rows(
        session,
        DocumentTotal.__table__,
        [
            {"period": p, "kind": k, "count": n, "amount": a}
            for (p, k), (n, a) in batch.documents.items()
        ],
        suffix=f"ON CONFLICT (period, kind) DO UPDATE SET {add_to(('count', 'amount'))}",
    )
    await insert_rows(session, Invoice.__table__, batch.invoices, suffix="ON CONFLICT DO NOTHING")
    await insert_rows(
        session, InvoiceInstalment.__table__, batch.instalments, suffix="ON CONFLICT DO NOTHING"
    )
    await insert_rows(session, InvoiceMovement.__table__, batch.movements)
    await insert_rows(session, ReconciliationException.__table__, batch.exceptions)
