"""The analytics consumer: folds order and payment events into the read models.

One batch at a time: deltas are summed in memory and written with one additive upsert per
table, so a batch of thousands of lines costs a handful of statements. Every document counts
on its own business date; a cancellation reverses what is left of its invoice on the
cancellation date.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any
from uuid import UUID

from sqlalchemy import TextClause, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics import customer_counts
from services.analytics.models import (
    CUSTOMER_DAYS,
    ROLLUPS,
    SCHEMA,
    ZERO,
    CustomerFacts,
    DailyFunnel,
    DailyPayments,
    Freshness,
    Invoice,
    InvoiceInstalment,
    ReceivableMove,
    ReceivablesByDay,
    Rollup,
    WaitingDocument,
)
from shared.bulk import add_to, insert_rows
from shared.config import get_settings
from shared.events.envelope import Event
from shared.events.orders import (
    CustomerCreated,
    CustomerUpdated,
    OrderCancelled,
    OrderConfirmed,
    OrderReturned,
    SubmissionDay,
)
from shared.events.payments import (
    AllocationReleased,
    PaymentAllocated,
    PaymentReceived,
    PaymentRefunded,
)
from shared.messaging.consumer import Subscription
from shared.periods import business_date_of
from shared.tables import table_of

SALES_KEY = ("day", "sku", "category", "customer_id", "region", "segment", "channel", "salesperson")
SALES_SUMS = (
    "net",
    "tax",
    "gross",
    "orders",
    "category_orders",
    "order_count",
    "units",
    "returns",
    "returns_net",
    "returned_units",
    "cancellations",
)
PAYMENT_SUMS = ("received", "refunded", "payments", "refunds")
COUNTS = frozenset({"orders", "category_orders", "order_count"})
NO_SALES = {name: 0 if name in COUNTS else ZERO for name in SALES_SUMS}
INVOICE_COLUMNS = (
    "order_id",
    "customer_id",
    "region",
    "segment",
    "channel",
    "salesperson",
    "business_date",
    "due_date",
    "gross",
    "cancelled_on",
    "lines",
)


def subscriptions() -> list[Subscription]:
    return [
        Subscription(
            name="analytics.read_models",
            schema=SCHEMA,
            sources=("orders", "payments"),
            handle=apply_events,
            # order.submitted is read as its SubmissionDay only (_on_submitted).
            payload_types=frozenset(_HANDLERS) - {"order.submitted"},
        )
    ]


@dataclass
class Batch:
    sales: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    invoices: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    instalments: list[dict[str, Any]] = field(default_factory=list)
    moves: list[dict[str, Any]] = field(default_factory=list)
    customers: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    payments: dict[date, dict[str, Any]] = field(
        default_factory=lambda: defaultdict(
            lambda: {"received": ZERO, "refunded": ZERO, "payments": 0, "refunds": 0}
        )
    )
    funnel: dict[date, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: {"submitted": 0, "confirmed": 0})
    )
    customer_days: dict[tuple[UUID, date], int] = field(default_factory=lambda: defaultdict(int))
    newest: datetime | None = None
    # Credit notes and cancellations whose invoice is not held (yet), in arrival order.
    waiting: list[Event] = field(default_factory=list)
    # The day of each invoice this batch's allocations and releases pay (see _paid_day), and
    # those moves of this batch per order, for an invoice that comes after them.
    invoice_days: dict[UUID, date] = field(default_factory=dict)
    paid_moves: dict[UUID, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    # Orders invoiced in this batch, by day: their earlier allocations and releases move there.
    invoiced_on: dict[UUID, date] = field(default_factory=dict)
    # Moves of earlier batches dated again: (day, kind, amount) for receivables_by_day.
    shifts: list[tuple[date, str, Decimal]] = field(default_factory=list)

    def add_sales(self, key: tuple[Any, ...], **amounts: Any) -> None:
        row = self.sales.get(key)
        if row is None:
            row = self.sales[key] = dict(NO_SALES)
        for name, amount in amounts.items():
            row[name] += amount


def _dim(value: str | None) -> str:
    return value or ""


def _event_day(event: Event) -> date:
    return event.business_date or business_date_of(event.occurred_at, get_settings().zone)


async def apply_events(session: AsyncSession, events: list[Event], *, rollups: bool = True) -> None:
    """Fold a batch of events, in order, into the read models; without `rollups`, the coarser
    sales tables are left for `fill_rollups` to compute once (a rebuild)."""
    batch = Batch()
    await _load_invoices(session, batch, events)
    waited = await _waiting_for(session, events)
    for event in events:
        handle = _HANDLERS.get(event.type)
        if handle is not None:
            handle(batch, event)
        if batch.newest is None or event.occurred_at > batch.newest:
            batch.newest = event.occurred_at
    await _apply_waiting(session, batch, waited)
    await _flush(session, batch, rollups=rollups)


async def _waiting_for(session: AsyncSession, events: list[Event]) -> list[tuple[int, Event]]:
    """The credit notes and cancellations held back for the invoices this batch brings, in
    the order they came (see models.WaitingDocument)."""
    confirmed = [UUID(e.data["order"]["order_id"]) for e in events if e.type == "order.confirmed"]
    if not confirmed:
        return []
    table = table_of(WaitingDocument)
    rows = await session.execute(
        select(table.c.id, table.c.event)
        .where(table.c.order_id.in_(confirmed))
        .order_by(table.c.id)
    )
    return [(row.id, Event.model_validate(row.event)) for row in rows]


async def _apply_waiting(
    session: AsyncSession, batch: Batch, waited: list[tuple[int, Event]]
) -> None:
    """Apply what waited for an invoice this batch brought, then this batch's documents that
    came before theirs; keep waiting what still has no invoice."""
    table = table_of(WaitingDocument)
    if waited:
        await session.execute(table.delete().where(table.c.id.in_([i for i, _ in waited])))
    pending = [event for _, event in waited] + batch.waiting
    batch.waiting = []
    for event in pending:
        _HANDLERS[event.type](batch, event)  # an invoice still missing: back to batch.waiting
    await insert_rows(
        session,
        table,
        [
            {"order_id": UUID(e.data["order_id"]), "event": e.model_dump(mode="json")}
            for e in batch.waiting
        ],
    )


async def _load_invoices(session: AsyncSession, batch: Batch, events: list[Event]) -> None:
    """The invoices this batch's credit notes and cancellations refer to, and the days of
    those its allocations and releases pay."""
    wanted = {
        UUID(e.data["order_id"]) for e in events if e.type in ("order.returned", "order.cancelled")
    }
    paid = {UUID(e.data["order_id"]) for e in events if e.type in PAID_TYPES} - wanted
    invoices = table_of(Invoice)
    if wanted:
        rows = await session.execute(select(invoices).where(invoices.c.order_id.in_(wanted)))
        for row in rows.mappings():
            batch.invoices[row["order_id"]] = {c: row[c] for c in INVOICE_COLUMNS}
    if paid:
        rows = await session.execute(
            select(invoices.c.order_id, invoices.c.business_date).where(
                invoices.c.order_id.in_(paid)
            )
        )
        batch.invoice_days.update({order_id: day for order_id, day in rows})


PAID_TYPES = ("payment.allocated", "payment.allocation_released")


def _paid_day(batch: Batch, order_id: UUID, day: date) -> date:
    """The day an allocation or its release counts from: its own, or its invoice's when that
    is later. An invoice owes nothing before its day, so nothing is paid of it before either,
    as the AR ageing has it; an invoice that comes after its allocations moves them to its
    day (_on_confirmed, _redate_paid_moves)."""
    invoice = batch.invoices.get(order_id)
    issued = invoice["business_date"] if invoice is not None else batch.invoice_days.get(order_id)
    return max(day, issued) if issued is not None else day


def _on_customer(batch: Batch, event: Event) -> None:
    payload = event.payload()
    assert isinstance(payload, CustomerCreated | CustomerUpdated)
    entry = batch.customers.setdefault(payload.customer_id, {"first": None, "last": None})
    entry["name"] = payload.name


def _touch_customer(batch: Batch, customer_id: UUID, day: date) -> None:
    entry = batch.customers.setdefault(customer_id, {"first": None, "last": None})
    entry["first"] = day if entry["first"] is None else min(entry["first"], day)
    entry["last"] = day if entry["last"] is None else max(entry["last"], day)


def _on_submitted(batch: Batch, event: Event) -> None:
    submitted = event.payload_as(SubmissionDay)
    # Counted on the business date, as its confirmation is, so a backdated month's conversion
    # rate compares the same orders.
    day = submitted.business_date or business_date_of(submitted.submitted_at, get_settings().zone)
    batch.funnel[day]["submitted"] += 1


def _on_confirmed(batch: Batch, event: Event) -> None:
    confirmed = event.payload_as(OrderConfirmed)
    order, day = confirmed.order, confirmed.business_date
    batch.funnel[day]["confirmed"] += 1
    batch.customer_days[(order.customer_id, day)] += 1
    _touch_customer(batch, order.customer_id, day)
    invoice: dict[str, Any] = {
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "region": _dim(order.region),
        "segment": _dim(order.segment),
        "channel": _dim(order.channel),
        "salesperson": _dim(order.salesperson),
        "business_date": day,
        "due_date": confirmed.due_date,
        "gross": order.gross,
        "cancelled_on": None,
        "lines": [],
    }
    seen_categories: set[str] = set()
    seen_skus: set[str] = set()
    for index, line in enumerate(order.lines):
        category = _dim(line.category)
        invoice["lines"].append(
            {
                "line_no": line.line_no,
                "sku": line.sku,
                "category": category,
                # Which count columns this line's row carries for its order (see DailySales).
                "first_of_sku": line.sku not in seen_skus,
                "first_of_category": category not in seen_categories,
                "first_of_order": index == 0,
                "quantity": str(line.quantity),
                "net": str(line.net),
                "tax": str(line.tax),
                "gross": str(line.gross),
                "returned_quantity": "0",
                "returned_net": "0",
                "returned_tax": "0",
                "returned_gross": "0",
            }
        )
        seen_skus.add(line.sku)
        seen_categories.add(category)
    batch.invoices[order.order_id] = invoice
    batch.invoiced_on[order.order_id] = day
    for move in batch.paid_moves.get(order.order_id, ()):
        move["day"] = max(move["day"], day)
    plan = [(i.due_date, i.amount) for i in confirmed.instalments] or [
        (confirmed.due_date, order.gross)
    ]
    upto = ZERO
    for seq, (due, amount) in enumerate(sorted(plan, key=lambda p: p[0])):
        upto += amount
        batch.instalments.append(
            {
                "order_id": order.order_id,
                "seq": seq,
                "customer_id": order.customer_id,
                "due_date": due,
                "amount": amount,
                "upto": upto,
                "gross": order.gross,
            }
        )
    for line, stored in zip(order.lines, invoice["lines"], strict=True):
        batch.add_sales(
            _sales_key(invoice, day, stored),
            net=line.net,
            tax=line.tax,
            gross=line.gross,
            units=line.quantity,
            orders=int(stored["first_of_sku"]),
            category_orders=int(stored["first_of_category"]),
            order_count=int(stored["first_of_order"]),
        )
    batch.moves.append(_move(invoice, day, "invoice", order.gross))


def _sales_key(invoice: dict[str, Any], day: date, line: dict[str, Any]) -> tuple[Any, ...]:
    return (
        day,
        line["sku"],
        line["category"],
        invoice["customer_id"],
        invoice["region"],
        invoice["segment"],
        invoice["channel"],
        invoice["salesperson"],
    )


def _move(invoice: dict[str, Any], day: date, kind: str, amount: Decimal) -> dict[str, Any]:
    return {
        "order_id": invoice["order_id"],
        "customer_id": invoice["customer_id"],
        "day": day,
        "kind": kind,
        "amount": amount,
    }


def _on_returned(batch: Batch, event: Event) -> None:
    returned = event.payload_as(OrderReturned)
    invoice = batch.invoices.get(returned.order_id)
    if invoice is None:  # its invoice has not come (yet): the credit note waits for it
        batch.waiting.append(event)
        return
    day = returned.business_date
    by_line = {line["line_no"]: line for line in invoice["lines"]}
    for part in returned.lines:
        line = by_line.get(part.line_no)
        if line is None:
            continue
        for name, amount in (
            ("quantity", part.quantity),
            ("net", part.net),
            ("tax", part.tax),
            ("gross", part.gross),
        ):
            line[f"returned_{name}"] = str(Decimal(line[f"returned_{name}"]) + amount)
        batch.add_sales(
            _sales_key(invoice, day, line),
            returns=part.gross,
            returns_net=part.net,
            returned_units=part.quantity,
        )
    batch.moves.append(_move(invoice, day, "credit", -returned.gross))


def _on_cancelled(batch: Batch, event: Event) -> None:
    cancelled = event.payload_as(OrderCancelled)
    invoice = batch.invoices.get(cancelled.order_id)
    if cancelled.was_confirmed and invoice is None:  # it waits for its invoice to come
        batch.waiting.append(event)
        return
    if not cancelled.was_confirmed or invoice is None or invoice["cancelled_on"] is not None:
        return
    day = cancelled.business_date
    invoice["cancelled_on"] = day
    if day == invoice["business_date"]:
        batch.customer_days[(invoice["customer_id"], day)] -= 1
    for line in invoice["lines"]:
        # What the cancellation reverses of a line: what its credit notes left of it.
        left = {
            name: Decimal(line[name]) - Decimal(line[f"returned_{name}"])
            for name in ("quantity", "net", "tax", "gross")
        }
        batch.add_sales(
            _sales_key(invoice, day, line),
            net=-left["net"],
            tax=-left["tax"],
            gross=-left["gross"],
            units=-left["quantity"],
            cancellations=left["gross"],
            orders=-int(line["first_of_sku"]),
            category_orders=-int(line["first_of_category"]),
            order_count=-int(line["first_of_order"]),
        )
    batch.moves.append(_move(invoice, day, "cancel", -cancelled.reversed_gross))


def _on_payment_received(batch: Batch, event: Event) -> None:
    received = event.payload_as(PaymentReceived)
    entry = batch.payments[received.business_date]
    entry["received"] += received.amount
    entry["payments"] += 1


def _on_refunded(batch: Batch, event: Event) -> None:
    refunded = event.payload_as(PaymentRefunded)
    entry = batch.payments[refunded.business_date]
    entry["refunded"] += refunded.amount
    entry["refunds"] += 1


def _on_allocated(batch: Batch, event: Event) -> None:
    allocated = event.payload_as(PaymentAllocated)
    _paid(batch, allocated, "allocated", allocated.business_date, -allocated.amount)


def _on_released(batch: Batch, event: Event) -> None:
    released = event.payload_as(AllocationReleased)
    if not released.was_applied:  # a pending allocation never counted as paid
        return
    # Dated by what caused it (a refund, a credit note); older events carry no date.
    day = released.business_date or _event_day(event)
    _paid(batch, released, "released", day, released.amount)


def _paid(
    batch: Batch,
    allocation: PaymentAllocated | AllocationReleased,
    kind: str,
    day: date,
    amount: Decimal,
) -> None:
    """An allocation's move, or its release's, on the day it counts from (_paid_day)."""
    move = {
        "order_id": allocation.order_id,
        "customer_id": allocation.customer_id,
        "day": _paid_day(batch, allocation.order_id, day),
        "kind": kind,
        "amount": amount,
    }
    batch.moves.append(move)
    batch.paid_moves[allocation.order_id].append(move)


_HANDLERS = {
    "customer.created": _on_customer,
    "customer.updated": _on_customer,
    "order.submitted": _on_submitted,
    "order.confirmed": _on_confirmed,
    "order.returned": _on_returned,
    "order.cancelled": _on_cancelled,
    "payment.received": _on_payment_received,
    "payment.refunded": _on_refunded,
    "payment.allocated": _on_allocated,
    "payment.allocation_released": _on_released,
}


async def _flush(session: AsyncSession, batch: Batch, *, rollups: bool) -> None:
    # Rows per document and customer first; the per-day rollups, which every batch of
    # every consumer touches, last, so their row locks are held only until the commit.
    invoice_updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in INVOICE_COLUMNS if c != "order_id")
    await insert_rows(
        session,
        table_of(Invoice),
        [batch.invoices[oid] for oid in sorted(batch.invoices)],
        suffix=f"ON CONFLICT (order_id) DO UPDATE SET {invoice_updates}",
    )
    await insert_rows(
        session,
        table_of(InvoiceInstalment),
        batch.instalments,
        suffix="ON CONFLICT DO NOTHING",
    )
    await _redate_paid_moves(session, batch)
    await insert_rows(session, table_of(ReceivableMove), batch.moves)
    touched = {*batch.customers, *(cid for cid, _ in batch.customer_days)}
    before = await customer_counts.firsts(session, touched)
    await _flush_customer_activity(session, batch)
    await insert_rows(
        session,
        table_of(CustomerFacts),
        [
            {
                "customer_id": cid,
                "name": entry.get("name") or "",
                "first_order_on": entry["first"],
                "last_order_on": entry["last"],
            }
            for cid, entry in sorted(batch.customers.items())
        ],
        suffix="ON CONFLICT (customer_id) DO UPDATE SET "
        "name = CASE WHEN EXCLUDED.name = '' THEN cur.name ELSE EXCLUDED.name END, "
        "first_order_on = LEAST(cur.first_order_on, EXCLUDED.first_order_on), "
        "last_order_on = GREATEST(cur.last_order_on, EXCLUDED.last_order_on)",
    )
    await customer_counts.move_counters(
        session, before, await customer_counts.firsts(session, touched)
    )
    await _flush_receivables(session, batch)
    await _flush_open_amounts(session, batch)
    await insert_rows(
        session,
        table_of(DailyPayments),
        [{"day": day} | batch.payments[day] for day in sorted(batch.payments)],
        suffix=f"ON CONFLICT (day) DO UPDATE SET {add_to(PAYMENT_SUMS)}",
    )
    await insert_rows(
        session,
        table_of(DailyFunnel),
        [{"day": day} | batch.funnel[day] for day in sorted(batch.funnel)],
        suffix=f"ON CONFLICT (day) DO UPDATE SET {add_to(('submitted', 'confirmed'))}",
    )
    await _flush_sales(session, batch, rollups=rollups)
    if batch.newest is not None:
        await insert_rows(
            session,
            table_of(Freshness),
            [{"id": 1, "as_of": batch.newest}],
            suffix="ON CONFLICT (id) DO UPDATE SET as_of = GREATEST(cur.as_of, EXCLUDED.as_of)",
        )


async def _flush_sales(session: AsyncSession, batch: Batch, *, rollups: bool) -> None:
    """The batch's sales deltas into `daily_sales` and every coarser rollup of it, in one
    statement, so the deltas cross the wire once. Each table takes its rows in key order,
    so concurrent consumers (one per Kafka partition) lock shared rows in the same order
    and cannot deadlock one another."""
    if not batch.sales:
        return
    params: dict[str, list[Any]] = {name: [] for name in (*SALES_KEY, *SALES_SUMS)}
    for key, sums in batch.sales.items():
        for name, part in zip(SALES_KEY, key, strict=True):
            params[name].append(part)
        for name, amount in sums.items():
            # Amounts travel as text: encoding Decimals is the slow part of a big batch.
            params[name].append(amount if name in COUNTS else str(amount))
    await session.execute(_sales_statement(rollups), params)


def _sales_column_type(name: str) -> str:
    if name == "day":
        return "date"
    if name == "customer_id":
        return "uuid"
    return "int" if name in COUNTS else "text"


@cache
def _sales_statement(rollups: bool = True) -> TextClause:
    columns = (*SALES_KEY, *SALES_SUMS)
    arrays = ", ".join(f"CAST(:{c} AS {_sales_column_type(c)}[])" for c in columns)
    picks = ", ".join(
        c if c in SALES_KEY or c in COUNTS else f"CAST({c} AS numeric) AS {c}" for c in columns
    )
    keys = ", ".join(SALES_KEY)
    targets = [
        f"full_grain AS (INSERT INTO {SCHEMA}.daily_sales AS cur ({', '.join(columns)}) "
        f"SELECT {', '.join(columns)} FROM delta ORDER BY {keys} "
        f"ON CONFLICT ({keys}) DO UPDATE SET {add_to(SALES_SUMS)})"
    ]
    if rollups:
        targets += _rollup_targets()
    return text(
        f"WITH delta AS (SELECT {picks} FROM unnest({arrays}) AS t({', '.join(columns)})), "
        f"{', '.join(targets)} SELECT 1"
    )


async def fill_rollups(session: AsyncSession) -> None:
    """Every coarser sales table summed from `daily_sales` in one statement: what adding each
    batch's deltas to them adds up to."""
    columns = ", ".join((*SALES_KEY, *SALES_SUMS))
    await session.execute(
        text(
            f"WITH delta AS (SELECT {columns} FROM {SCHEMA}.daily_sales), "
            f"{', '.join(_rollup_targets())} SELECT 1"
        )
    )


def _rollup_targets() -> list[str]:
    targets = [_rollup_upsert(rollup) for rollup in ROLLUPS]
    targets.append(
        f"ever AS (INSERT INTO {SCHEMA}.sales_by_customer AS cur "
        f"(customer_id, {', '.join(SALES_SUMS)}) "
        f"SELECT customer_id, {', '.join(f'sum({c})' for c in SALES_SUMS)} FROM delta "
        f"GROUP BY 1 ORDER BY 1 ON CONFLICT (customer_id) DO UPDATE SET {add_to(SALES_SUMS)})"
    )
    return targets


def _rollup_upsert(rollup: Rollup) -> str:
    """A data-modifying CTE adding the deltas, summed to the rollup's grain, to it."""
    day = "CAST(date_trunc('month', day) AS date)" if rollup.monthly else "day"
    keys = ", ".join(("day", *rollup.dimensions))
    picks = ", ".join((f"{day} AS day", *rollup.dimensions, *(f"sum({c})" for c in SALES_SUMS)))
    positions = ", ".join(str(i) for i in range(1, len(rollup.dimensions) + 2))
    return (
        f"{rollup.table.name} AS (INSERT INTO {SCHEMA}.{rollup.table.name} AS cur "
        f"({keys}, {', '.join(SALES_SUMS)}) SELECT {picks} FROM delta "
        f"GROUP BY {positions} ORDER BY {positions} "
        f"ON CONFLICT ({keys}) DO UPDATE SET {add_to(SALES_SUMS)})"
    )


async def _redate_paid_moves(session: AsyncSession, batch: Batch) -> None:
    """Allocations and releases of earlier batches dated before an invoice this batch brings
    move to its day (see _paid_day), in receivable_moves and in receivables_by_day."""
    if not batch.invoiced_on:
        return
    invoiced = sorted(batch.invoiced_on.items())
    moved = await session.execute(
        _REDATE_STATEMENT,
        {"orders": [order_id for order_id, _ in invoiced], "days": [d for _, d in invoiced]},
    )
    for was, now, kind, amount in moved:
        batch.shifts += [(was, kind, -amount), (now, kind, amount)]


_REDATE_STATEMENT = text(
    f"""
    WITH invoiced AS (
        SELECT * FROM unnest(CAST(:orders AS uuid[]), CAST(:days AS date[])) AS i(order_id, day)
    ), early AS (
        SELECT m.id, m.day AS was, i.day AS now
        FROM {SCHEMA}.receivable_moves m JOIN invoiced i ON i.order_id = m.order_id
        WHERE m.kind IN ('allocated', 'released') AND m.day < i.day
        ORDER BY m.id
        FOR UPDATE OF m
    )
    UPDATE {SCHEMA}.receivable_moves m SET day = e.now FROM early e WHERE m.id = e.id
    RETURNING e.was, e.now, m.kind, m.amount
    """
)


async def _flush_receivables(session: AsyncSession, batch: Batch) -> None:
    by_day: dict[tuple[date, str], Decimal] = defaultdict(lambda: ZERO)
    for move in batch.moves:
        by_day[(move["day"], move["kind"])] += move["amount"]
    for day, kind, amount in batch.shifts:
        by_day[(day, kind)] += amount
    await insert_rows(
        session,
        table_of(ReceivablesByDay),
        [
            {"day": day, "kind": kind, "amount": amount}
            for (day, kind), amount in sorted(by_day.items())
        ],
        suffix="ON CONFLICT (day, kind) DO UPDATE SET amount = cur.amount + EXCLUDED.amount",
    )


async def _flush_open_amounts(session: AsyncSession, batch: Batch) -> None:
    """Place again, on their instalments, every move of each invoice this batch moved, and
    keep `open_changes`, `open_now` and `open_by_day` equal to the result. A whole invoice is placed
    again because a backdated move changes what its later moves took of each instalment."""
    touched = sorted({move["order_id"] for move in batch.moves})
    if not touched:
        return
    summed = await session.execute(_OPEN_CHANGES_STATEMENT, {"orders": touched})
    # A day and due date whose sum came back to zero leaves no row, as a rebuild leaves none.
    emptied = [(day, due) for day, due, amount in summed if amount == 0]
    if emptied:
        await session.execute(
            _EMPTIED_BY_DAY_STATEMENT,
            {"days": [day for day, _ in emptied], "dues": [due for _, due in emptied]},
        )


# The ageing rule of shared/ageing.py on each instalment (amount, upto, gross) at the end of
# each day its invoice moved, from the allocations and credits summed up to that day; an
# invoice counts from the day of its invoice move. Only what differs from the rows kept is
# written: upserted or deleted per row of open_changes and open_now, and added to
# open_by_day per day and due date.
_OPEN_CHANGES_STATEMENT = text(
    f"""
    WITH touched AS (
        SELECT unnest(CAST(:orders AS uuid[])) AS order_id
    ), daily AS (
        SELECT m.order_id, m.day,
               sum(-m.amount) FILTER (WHERE m.kind IN ('allocated', 'released')) AS allocated,
               sum(-m.amount) FILTER (WHERE m.kind IN ('credit', 'cancel')) AS credited,
               bool_or(m.kind = 'invoice') AS invoiced
        FROM {SCHEMA}.receivable_moves m JOIN touched t ON t.order_id = m.order_id
        GROUP BY m.order_id, m.day
    ), running AS (
        SELECT order_id, day,
               coalesce(sum(allocated) OVER w, 0) AS allocated,
               coalesce(sum(credited) OVER w, 0) AS credited,
               bool_or(invoiced) OVER w AS invoiced
        FROM daily
        WINDOW w AS (PARTITION BY order_id ORDER BY day)
    ), opens AS (
        SELECT i.order_id, i.seq, i.customer_id, i.due_date, r.day,
               CASE WHEN r.invoiced THEN greatest(0, i.amount
                   - least(i.amount, greatest(0, greatest(least(r.allocated, i.gross), 0)
                                                 - (i.upto - i.amount)))
                   - least(i.amount, greatest(0, r.credited - (i.gross - i.upto))))
               ELSE 0 END AS open
        FROM running r JOIN {SCHEMA}.invoice_instalments i ON i.order_id = r.order_id
    ), placed AS (
        SELECT order_id, seq, day, customer_id, due_date,
               open - coalesce(lag(open) OVER (PARTITION BY order_id, seq ORDER BY day), 0)
                   AS amount
        FROM opens
    ), kept AS (
        SELECT c.* FROM {SCHEMA}.open_changes c JOIN touched t ON t.order_id = c.order_id
    ), diff AS (
        SELECT coalesce(p.order_id, k.order_id) AS order_id, coalesce(p.seq, k.seq) AS seq,
               coalesce(p.day, k.day) AS day,
               coalesce(p.customer_id, k.customer_id) AS customer_id,
               coalesce(p.due_date, k.due_date) AS due_date,
               coalesce(p.amount, 0) AS amount,
               coalesce(p.amount, 0) - coalesce(k.amount, 0) AS change
        FROM (SELECT * FROM placed WHERE amount <> 0) p
        FULL JOIN kept k ON (k.order_id, k.seq, k.day) = (p.order_id, p.seq, p.day)
        WHERE coalesce(p.amount, 0) <> coalesce(k.amount, 0)
    ), upserted AS (
        INSERT INTO {SCHEMA}.open_changes AS cur
               (order_id, seq, day, customer_id, due_date, amount)
        SELECT order_id, seq, day, customer_id, due_date, amount FROM diff
        WHERE amount <> 0 ORDER BY order_id, seq, day
        ON CONFLICT (order_id, seq, day) DO UPDATE SET amount = EXCLUDED.amount
    ), deleted AS (
        DELETE FROM {SCHEMA}.open_changes c USING diff d
        WHERE d.amount = 0 AND (c.order_id, c.seq, c.day) = (d.order_id, d.seq, d.day)
    ), final AS (
        SELECT DISTINCT ON (order_id, seq) order_id, seq, customer_id, due_date, open AS amount
        FROM opens ORDER BY order_id, seq, day DESC
    ), kept_now AS (
        SELECT n.* FROM {SCHEMA}.open_now n JOIN touched t ON t.order_id = n.order_id
    ), now_diff AS (
        SELECT coalesce(f.order_id, k.order_id) AS order_id, coalesce(f.seq, k.seq) AS seq,
               f.customer_id, f.due_date, coalesce(f.amount, 0) AS amount
        FROM (SELECT * FROM final WHERE amount <> 0) f
        FULL JOIN kept_now k ON (k.order_id, k.seq) = (f.order_id, f.seq)
        WHERE coalesce(f.amount, 0) <> coalesce(k.amount, 0)
    ), now_upserted AS (
        INSERT INTO {SCHEMA}.open_now AS cur (order_id, seq, customer_id, due_date, amount)
        SELECT order_id, seq, customer_id, due_date, amount FROM now_diff
        WHERE amount <> 0 ORDER BY order_id, seq
        ON CONFLICT (order_id, seq) DO UPDATE SET amount = EXCLUDED.amount
    ), now_deleted AS (
        DELETE FROM {SCHEMA}.open_now n USING now_diff d
        WHERE d.amount = 0 AND (n.order_id, n.seq) = (d.order_id, d.seq)
    )
    INSERT INTO {SCHEMA}.open_by_day AS cur (day, due_date, amount)
    SELECT day, due_date, sum(change) FROM diff GROUP BY day, due_date
    HAVING sum(change) <> 0 ORDER BY day, due_date
    ON CONFLICT (day, due_date) DO UPDATE SET amount = cur.amount + EXCLUDED.amount
    RETURNING day, due_date, amount
    """
)
_EMPTIED_BY_DAY_STATEMENT = text(
    f"DELETE FROM {SCHEMA}.open_by_day WHERE amount = 0 "
    "AND (day, due_date) IN (SELECT * FROM unnest(CAST(:days AS date[]), CAST(:dues AS date[])))"
)


async def _flush_customer_activity(session: AsyncSession, batch: Batch) -> None:
    if not batch.customer_days:
        return
    await insert_rows(
        session,
        CUSTOMER_DAYS,
        [
            {"customer_id": cid, "day": day, "kept_orders": kept}
            for (cid, day), kept in sorted(batch.customer_days.items())
        ],
        suffix="ON CONFLICT (customer_id, day) DO UPDATE SET "
        "kept_orders = cur.kept_orders + EXCLUDED.kept_orders",
    )
    by_month: dict[tuple[UUID, date], int] = defaultdict(int)
    for (customer_id, day), kept in batch.customer_days.items():
        by_month[(customer_id, day.replace(day=1))] += kept
    months = sorted(by_month.items())
    await session.execute(
        _CUSTOMER_MONTHS_STATEMENT,
        {
            "customer_id": [cid for (cid, _), _ in months],
            "day": [day for (_, day), _ in months],
            "kept": [kept for _, kept in months],
        },
    )


_CUSTOMER_MONTHS_STATEMENT = text(
    f"""
    WITH delta AS (
        SELECT * FROM unnest(CAST(:customer_id AS uuid[]), CAST(:day AS date[]),
                             CAST(:kept AS int[])) AS t(customer_id, day, kept)
    ), updated AS (
        INSERT INTO {SCHEMA}.customer_months AS cur (customer_id, day, kept_orders)
        SELECT customer_id, day, kept FROM delta ORDER BY customer_id, day
        ON CONFLICT (customer_id, day)
        DO UPDATE SET kept_orders = cur.kept_orders + EXCLUDED.kept_orders
        RETURNING cur.customer_id, cur.day, cur.kept_orders
    ), crossed AS (
        -- A row that was at zero before this delta (or did not exist) and is above it now
        -- adds an active customer to its month; one that went down to zero takes one away.
        SELECT u.day, sum(CASE WHEN u.kept_orders > 0 AND u.kept_orders - d.kept <= 0 THEN 1
                               WHEN u.kept_orders <= 0 AND u.kept_orders - d.kept > 0 THEN -1
                               ELSE 0 END) AS change
        FROM updated u JOIN delta d USING (customer_id, day)
        GROUP BY u.day
    )
    INSERT INTO {SCHEMA}.active_customers_by_month AS cur (day, customers)
    SELECT day, change FROM crossed WHERE change <> 0 ORDER BY day
    ON CONFLICT (day) DO UPDATE SET customers = cur.customers + EXCLUDED.customers
    """
)
