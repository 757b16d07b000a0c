"""The order lifecycle: create, submit, approve, reject, confirm (the invoice), fulfil, cancel.
The rules each command asks (the statuses and moves between them, pricing, approvals, the
credit limit, what a cancellation reverses) are in domain.py.

Every transition locks the order row (SELECT … FOR UPDATE) first, so concurrent requests on
one order queue instead of losing updates; it appends to the status history, to the audit
log and to the outbox in the request's transaction.

Approvals: an order whose gross exceeds the n-th threshold of `approval_thresholds` needs n
approvals by distinct approvers, none of them its creator; below the first threshold,
submitting confirms it at once.

Credit limit: at submit, an order whose gross would push the customer's open receivable
(what confirmed and fulfilled orders still have outstanding) over the customer's
`credit_limit` is marked `credit_hold`, with the figures in its history. If it would have
been confirmed at once, it is held in `submitted` instead, needing one approval, and the
caller is told so (409). An approver's approval is the override: the approvals an order
needs (at least that one) confirm it, and the limit is not checked again then.

Order entry (`enter_order`, POST /orders, with or without `submit`) is a read and one write
statement, outside a transaction: the write commits as it ends. The read (the customer and
the products) is skipped when this process remembers them from an earlier order. The write
first holds the customer's row and the period open and checks that neither the period is
locked nor a remembered row changed (orders.hold_periods_open and read_still_current,
migration 0005; a changed row makes order entry read again and retry), then takes the SO
number (and the INV number of an order confirmed at once) from their gapless counters and
writes the order in its final state, its lines, schedule, history, audit entries and events
under the outbox's commit lock: the counters and that lock are held for that statement only.
With a credit limit and `submit`, or an Idempotency-Key, it runs in a transaction instead:
the customer's row locked, the customer and products read, the open receivable summed, then
the same write. The answer is built from what was written, with no read back.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.orders.customers import get_customer
from services.orders.cutoff import GUARD
from services.orders.domain import (
    RECEIVABLE_STATUSES,
    CreditHold,
    OrderStatus,
    PricedLine,
    approvals_needed,
    approvals_on_submit,
    can_move,
    cancellation_reversal,
    credit_hold,
    price_line,
    totals,
)
from services.orders.handlers import subscription as payment_events
from services.orders.models import (
    SCHEMA,
    ZERO,
    Approval,
    Customer,
    Instalment,
    Order,
    OrderLine,
    StatusChange,
    utcnow,
)
from services.orders.schemas import (
    HistoryEntry,
    InstalmentPublic,
    LinePublic,
    OrderCreate,
    OrderPublic,
    tidy,
)
from shared.audit import record_audit
from shared.auth import Actor
from shared.config import Settings
from shared.cutoff import held, hold_period
from shared.db import Database, after_commit, driver_connection, lock_or_404, raw_connection
from shared.errors import Conflict, IllegalTransition, InvalidInput, NotFound
from shared.events import orders as events
from shared.events import payments
from shared.events.envelope import Event
from shared.ids import new_id
from shared.limits import MAX_AMOUNT
from shared.memo import per_database, remember
from shared.messaging.outbox import emit, notify_channel, outbox_lock_key
from shared.messaging.postgres import look_again, wait_for_key
from shared.money import money_str, plain, round_money
from shared.numbering import next_number
from shared.periods import Period, period_closed, today
from shared.periods import ensure_open as ensure_period_open

log = logging.getLogger("salesbook.orders")

S = OrderStatus


@dataclass(frozen=True)
class Submission:
    order: Order
    credit_hold: CreditHold | None
    held: bool
    """The credit limit stopped a confirmation that would otherwise have happened now."""


async def lock_order(session: AsyncSession, order_id: UUID) -> Order:
    """The order, row-locked until the transaction ends; 404 if there is none."""
    return await lock_or_404(
        session, Order, order_id, missing=NotFound(f"order {order_id} not found")
    )


async def document_date(
    session: AsyncSession, requested: date | None, *, settings: Settings, field: str
) -> date:
    """The business date of a document being written now: `requested` or today, checked to
    be neither future (422) nor in a locked period (409)."""
    if requested is not None and requested > today(settings.zone):
        raise InvalidInput(field, f"{requested.isoformat()} is in the future; only earlier dates")
    now_day = today(settings.zone)
    day = requested or now_day
    await ensure_open(session, day, field=field, now_day=now_day)
    return day


async def ensure_open(session: AsyncSession, day: date, *, field: str, now_day: date) -> None:
    """Refuse (409) a document dated into a period closed to documents; hold the period open
    until commit."""
    period = str(Period.of(day))
    closed_by = await hold_period(session, GUARD, period, today=now_day)
    ensure_period_open(period, closed_by, field=field, day=day)


async def redate(
    session: AsyncSession, order: Order, business_date: date, *, actor: Actor, settings: Settings
) -> None:
    """Date a waiting order anew (its invoice takes the date): one dated into a period that
    was closed while it waited can be confirmed only so. Refused (422) for a future date or
    one after an instalment falls due, as at order entry; 409 in a locked period. Audited."""
    day = await document_date(session, business_date, settings=settings, field="business_date")
    first_due = (
        await session.execute(
            select(func.min(col(Instalment.due_date))).where(col(Instalment.order_id) == order.id)
        )
    ).scalar_one()
    if first_due is not None and first_due < day:
        raise InvalidInput(
            "business_date",
            f"the order's first instalment falls due on {first_due}, before {day}",
        )
    before, order.business_date = order.business_date, day
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action="order.redated",
        entity="order",
        entity_id=order.id,
        details={
            "number": order.number,
            "from": before.isoformat() if before else None,
            "to": day.isoformat(),
        },
    )


async def submit(
    *,
    session: AsyncSession,
    order_id: UUID,
    actor: Actor,
    settings: Settings,
    business_date: date | None = None,
    note: str | None = None,
) -> Submission:
    """Submit a draft: confirm it at once below the first approval threshold and within the
    customer's credit limit, otherwise leave it waiting for approvals (see module doc)."""
    unlocked = await session.get(Order, order_id)
    if unlocked is not None:  # else lock_order answers 404
        customer = await get_customer(session, unlocked.customer_id)
        if customer.credit_limit is not None:  # before the order and the customer are locked
            await _payments_counted(await raw_connection(session), customer.id, settings)
    order = await lock_order(session, order_id)
    _check_transition(order, S.SUBMITTED, "submitted")
    # The credit check holds the customer's row before the period's locks are taken, as
    # order entry does, so the two never wait on each other in opposite orders.
    hold = await credit_check(session, order)
    if business_date is not None:
        await redate(session, order, business_date, actor=actor, settings=settings)
    elif order.business_date is not None:
        await ensure_open(
            session, order.business_date, field="business_date", now_day=today(settings.zone)
        )
    needed = approvals_needed(order.gross, settings.approval_thresholds)
    approvals = approvals_on_submit(needed, hold)
    required = approvals.required
    if hold is not None:
        order.credit_hold = True
    order.approvals_required = required
    reason = hold.explain(order.number, order.id) if hold else note
    await _move(session, order, S.SUBMITTED, actor, reason)
    emit(
        session,
        events.OrderSubmitted(
            order=await order_facts(session, order),
            submitted_at=utcnow(),
            approvals_required=required,
            business_date=order.business_date or today(settings.zone),
        ),
        source=events.SOURCE,
        key=str(order.customer_id),
    )
    if required == 0:
        await confirm(
            session=session,
            order=order,
            actor=actor,
            settings=settings,
            reason="below the approval threshold",
        )
    return Submission(order=order, credit_hold=hold, held=approvals.held)


async def credit_check(session: AsyncSession, order: Order) -> CreditHold | None:
    """A hold if confirming `order` would push its customer's open receivable over the limit.

    The customer row is locked while a limit applies, so two orders of one customer cannot
    both pass the check against the same receivable.
    """
    customer = await get_customer(session, order.customer_id)
    if customer.credit_limit is None:
        return None
    customer = await lock_or_404(
        session, Customer, order.customer_id, missing=NotFound(f"customer {order.customer_id}")
    )
    if customer.credit_limit is None:
        return None
    open_receivable = await open_receivable_of(session, customer.id, excluding=order.id)
    return credit_hold(
        credit_limit=customer.credit_limit,
        open_receivable=open_receivable,
        order_gross=order.gross,
    )


PAYMENTS_WAIT_SECONDS = 2.0


async def _payments_counted(
    db: asyncpg.Connection[Any], customer_id: UUID, settings: Settings
) -> None:
    """Before a customer's credit limit is checked: wait (a bounded time) until this service
    has applied the customer's payment events committed so far, so a payment the payments
    service has acknowledged counts (a till that just took the money is not held over it).
    On the postgres transport, which reads the payments outbox; on Kafka the check counts
    what the subscription has applied."""
    if settings.effective_transport != "postgres":
        return
    await wait_for_key(
        db,
        schema=SCHEMA,
        consumer=payment_events.name,
        source=payments.SOURCE,
        key=str(customer_id),
        seconds=PAYMENTS_WAIT_SECONDS,
        why=f"the credit check of customer {customer_id}",
    )


def wait_for_release(session: AsyncSession, *, order_id: UUID, settings: Settings) -> None:
    """After a cancellation or a credit note (or a replay of one) commits: should the order
    be paid beyond what it still owes, the payments service releases the excess to the
    customer's unapplied credit when it reads the order's event, and this service learns of
    it from the release's event. The request waits for that (a bounded time) before it
    answers, so the client's next read of the order shows it paid no more than it owes.
    On the postgres transport it first counts the customer's payments acknowledged so far
    (one taken a moment before the return may not be applied here yet). One or two short
    reads when nothing is to be released."""
    after_commit(session, lambda db: _released(db, order_id, settings))


# Outside a transaction, each look a statement of its own on a connection taken for it.
_OVERPAID = (
    f"SELECT paid > CASE WHEN status = ANY($2::text[]) THEN gross - credited ELSE 0 END "
    f"FROM {SCHEMA}.orders WHERE id = $1"
)


async def _released(db: Database, order_id: UUID, settings: Settings) -> None:
    receivable = [status.value for status in RECEIVABLE_STATUSES]
    if settings.effective_transport == "postgres":
        async with db.connection() as connection:
            customer = f"SELECT customer_id FROM {SCHEMA}.orders WHERE id = $1"
            await _payments_counted(
                connection, await connection.fetchval(customer, order_id), settings
            )
    if not await db.fetchval(_OVERPAID, order_id, receivable):
        return
    if not await look_again(
        lambda: db.fetchval(_OVERPAID, order_id, receivable), PAYMENTS_WAIT_SECONDS
    ):
        log.warning(
            "order %s is still paid beyond what it owes after %.1fs: the payments service has "
            "not released the excess yet",
            order_id,
            PAYMENTS_WAIT_SECONDS,
        )


async def open_receivable_of(
    session: AsyncSession, customer_id: UUID, *, excluding: UUID | None = None
) -> Decimal:
    """What the customer's confirmed and fulfilled orders still have outstanding."""
    query = select(
        func.coalesce(func.sum(col(Order.gross) - col(Order.credited) - col(Order.paid)), 0)
    ).where(col(Order.customer_id) == customer_id, col(Order.status).in_(RECEIVABLE_STATUSES))
    if excluding is not None:
        query = query.where(col(Order.id) != excluding)
    return round_money(Decimal((await session.execute(query)).scalar_one()))


async def approve(
    *,
    session: AsyncSession,
    order_id: UUID,
    actor: Actor,
    settings: Settings,
    note: str | None = None,
    business_date: date | None = None,
) -> Order:
    """Record one approver's approval, dating the order anew if asked (see `redate`); the
    last one needed confirms the order."""
    order = await lock_order(session, order_id)
    if order.status != S.SUBMITTED:
        raise _illegal(order, "approved")
    if actor.subject == order.created_by:
        raise Conflict(
            f"{actor.subject} created order {order.number} and cannot approve it",
            order_id=str(order.id),
        )
    if await session.get(Approval, (order.id, actor.subject)) is not None:
        raise Conflict(
            f"{actor.subject} has already approved order {order.number}; "
            "a second approval must come from another approver",
            order_id=str(order.id),
        )
    if business_date is not None:
        await redate(session, order, business_date, actor=actor, settings=settings)
    session.add(Approval(order_id=order.id, approver=actor.subject, role=actor.role, note=note))
    await session.flush()
    approvers = list(
        (
            await session.execute(
                select(col(Approval.approver))
                .where(col(Approval.order_id) == order.id)
                .order_by(col(Approval.at))
            )
        ).scalars()
    )
    order.updated_at = utcnow()
    emit(
        session,
        events.OrderApproved(
            order_id=order.id,
            customer_id=order.customer_id,
            approver=actor.subject,
            approvals=len(approvers),
            approvals_required=order.approvals_required,
        ),
        source=events.SOURCE,
        key=str(order.customer_id),
    )
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action="order.approved",
        entity="order",
        entity_id=order.id,
        details={
            "approvals": len(approvers),
            "approvals_required": order.approvals_required,
            "credit_hold": order.credit_hold,
            "note": note,
        },
    )
    if len(approvers) >= order.approvals_required:
        await confirm(
            session=session,
            order=order,
            actor=actor,
            settings=settings,
            reason="approved by " + ", ".join(approvers),
        )
    return order


async def confirm(
    *, session: AsyncSession, order: Order, actor: Actor, settings: Settings, reason: str
) -> Order:
    """Confirm a locked, submitted order: issue its invoice (gapless INV-YYYY-NNNNNN in the
    year of its business date), fix its business and due dates, and recognise the receivable."""
    day = await document_date(
        session, order.business_date, settings=settings, field="business_date"
    )
    customer = await get_customer(session, order.customer_id)
    order.business_date = day
    order.due_date = day + timedelta(days=customer.payment_terms_days)
    order.invoice_number = await next_number(session, schema=SCHEMA, prefix="INV", year=day.year)
    order.confirmed_at = utcnow()
    await _move(session, order, S.CONFIRMED, actor, reason)
    stated = (
        await session.execute(
            select(Instalment)
            .where(col(Instalment.order_id) == order.id)
            .order_by(col(Instalment.seq))
        )
    ).scalars()
    # Consumers always get the full schedule: without stated instalments, gross on due_date.
    schedule = [events.Instalment(due_date=i.due_date, amount=i.amount) for i in stated] or [
        events.Instalment(due_date=order.due_date, amount=order.gross)
    ]
    emit(
        session,
        events.OrderConfirmed(
            order=await order_facts(session, order, customer),
            invoice_number=order.invoice_number,
            business_date=day,
            due_date=order.due_date,
            instalments=schedule,
            confirmed_at=order.confirmed_at,
        ),
        source=events.SOURCE,
        key=str(order.customer_id),
        business_date=day,
    )
    return order


async def reject(
    *, session: AsyncSession, order_id: UUID, actor: Actor, reason: str | None
) -> Order:
    """Refuse a submitted order; it stays on record as rejected."""
    order = await lock_order(session, order_id)
    _check_transition(order, S.REJECTED, "rejected")
    await _move(session, order, S.REJECTED, actor, reason)
    emit(
        session,
        events.OrderRejected(
            order_id=order.id, customer_id=order.customer_id, by=actor.subject, reason=reason
        ),
        source=events.SOURCE,
        key=str(order.customer_id),
    )
    return order


async def fulfil(
    *, session: AsyncSession, order_id: UUID, actor: Actor, reason: str | None = None
) -> Order:
    """Mark a confirmed order as delivered; from then on it can be returned but not cancelled."""
    order = await lock_order(session, order_id)
    _check_transition(order, S.FULFILLED, "fulfilled")
    await _move(session, order, S.FULFILLED, actor, reason)
    emit(
        session,
        events.OrderFulfilled(
            order_id=order.id, customer_id=order.customer_id, fulfilled_at=order.updated_at
        ),
        source=events.SOURCE,
        key=str(order.customer_id),
    )
    return order


async def cancel(
    *, session: AsyncSession, order_id: UUID, actor: Actor, settings: Settings, reason: str | None
) -> Order:
    """Cancel an order before fulfilment; a confirmed one has what is left of its invoice
    (after credit notes) reversed, dated today in an open period."""
    order = await lock_order(session, order_id)
    _check_transition(order, S.CANCELLED, "cancelled")
    was_confirmed = order.status == S.CONFIRMED
    if was_confirmed:
        day = await document_date(session, None, settings=settings, field="business_date")
    else:
        day = today(settings.zone)
    reversal = cancellation_reversal(
        was_confirmed=was_confirmed,
        net=order.net,
        tax=order.tax,
        credited_net=order.credited_net,
        credited_tax=order.credited_tax,
    )
    order.cancelled_on = day
    order.reversed_net, order.reversed_tax = reversal.net, reversal.tax
    order.reversed_gross = reversal.gross
    await _move(session, order, S.CANCELLED, actor, reason)
    wait_for_release(session, order_id=order.id, settings=settings)
    emit(
        session,
        events.OrderCancelled(
            order_id=order.id,
            number=order.number,
            customer_id=order.customer_id,
            was_confirmed=was_confirmed,
            invoice_number=order.invoice_number,
            business_date=day,
            reversed_net=reversal.net,
            reversed_tax=reversal.tax,
            reversed_gross=reversal.gross,
            reason=reason,
        ),
        source=events.SOURCE,
        key=str(order.customer_id),
        business_date=day,
    )
    return order


async def order_facts(
    session: AsyncSession, order: Order, customer: Customer | None = None
) -> events.OrderFacts:
    """The order as every consumer of its events needs it."""
    customer = customer or await get_customer(session, order.customer_id)
    lines = (
        await session.execute(
            select(OrderLine)
            .where(col(OrderLine.order_id) == order.id)
            .order_by(col(OrderLine.line_no))
        )
    ).scalars()
    return events.OrderFacts(
        order_id=order.id,
        number=order.number,
        customer_id=order.customer_id,
        customer_name=customer.name,
        region=customer.region,
        segment=customer.segment,
        channel=order.channel,
        salesperson=order.salesperson,
        created_by=order.created_by,
        lines=[
            events.OrderLine(
                line_no=line.line_no,
                sku=line.sku,
                name=line.name,
                category=line.category,
                quantity=tidy(line.quantity),
                unit_price=line.unit_price,
                discount=line.discount,
                tax_rate=tidy(line.tax_rate),
                net=line.net,
                tax=line.tax,
                gross=line.gross,
            )
            for line in lines
        ],
        net=order.net,
        tax=order.tax,
        gross=order.gross,
    )


def _illegal(order: Order, verb: str) -> IllegalTransition:
    return IllegalTransition(
        f"order {order.number} is {order.status} and cannot be {verb}",
        order_id=str(order.id),
        order_status=order.status,
    )


def _check_transition(order: Order, to: OrderStatus, verb: str) -> None:
    if not can_move(order.status, to):
        raise _illegal(order, verb)


def _history(
    order: Order, from_status: str | None, to: OrderStatus, actor: Actor, reason: str | None
) -> StatusChange:
    return StatusChange(
        order_id=order.id,
        actor=actor.subject,
        role=actor.role,
        from_status=from_status,
        to_status=to,
        reason=reason,
    )


async def _move(
    session: AsyncSession, order: Order, to: OrderStatus, actor: Actor, reason: str | None
) -> None:
    """Change the status of a locked order, with its history entry and audit record."""
    _check_transition(order, to, to.value)
    from_status = order.status
    order.status = to
    order.updated_at = utcnow()
    session.add(_history(order, from_status, to, actor, reason))
    await session.flush()
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action=f"order.{to.value}",
        entity="order",
        entity_id=order.id,
        details={"number": order.number, "from": from_status, "to": to.value, "reason": reason},
    )


# Order entry ----------------------------------------------------------------------------
# Where the SO number goes in what is decided before it is taken: replaced by the last
# statement in history reasons and audit details (text this module writes, never a client's).
NUMBER = "{number}"
# What orders.hold_periods_open raises for a locked period, and orders.read_still_current for
# a customer or product that changed since order entry read it (migration 0005_entry_guards).
PERIOD_LOCKED_STATE = "SB409"
READ_CHANGED_STATE = "SB412"
# Order entry reads again and retries when what it read changed before it wrote: this often.
_ATTEMPTS = 3


class _ReadChanged(Exception):
    """The customer or a product changed between order entry's read and its write."""


@dataclass(frozen=True)
class _Read:
    """The customer and products an order is entered from, with the row versions (xmin) they
    were read at, which the write checks; `remembered` when kept from an earlier order."""

    customer: Mapping[str, Any]
    products: dict[str, Mapping[str, Any]]
    remembered: bool = False


class _EntryReads:
    """Per database, the customers and products order entry read last, so a till's next
    order skips the read: the write refuses them if their rows have changed since (and the
    order is entered again from a fresh read), so nothing stale is ever written."""

    SIZE = 10_000

    def __init__(self) -> None:
        self.customers: OrderedDict[UUID, Mapping[str, Any]] = OrderedDict()
        self.products: OrderedDict[str, Mapping[str, Any]] = OrderedDict()

    def lookup(self, customer_id: UUID, skus: list[str]) -> _Read | None:
        customer = self.customers.get(customer_id)
        products = {sku: self.products.get(sku) for sku in skus}
        if customer is None or any(p is None or not p["active"] for p in products.values()):
            return None  # an unknown or inactive one is only ever refused on a fresh read
        return _Read(customer, {sku: p for sku, p in products.items() if p}, remembered=True)

    def keep(self, read: _Read, customer_id: UUID) -> None:
        remember(self.customers, customer_id, read.customer, self.SIZE)
        for sku, product in read.products.items():
            remember(self.products, sku, product, self.SIZE)

    def forget(self, customer_id: UUID, skus: list[str]) -> None:
        self.customers.pop(customer_id, None)
        for sku in skus:
            self.products.pop(sku, None)


async def _read(
    db: asyncpg.Connection[Any], reads: _EntryReads, customer_id: UUID, skus: list[str]
) -> _Read:
    rows = await db.fetch(_READ, customer_id, skus)
    customer = rows[0]
    if customer["name"] is None:
        raise InvalidInput("customer_id", f"no customer {customer_id}")
    products: dict[str, Mapping[str, Any]] = {
        r["sku"]: {**r, "version": r["product_version"]} for r in rows if r["sku"] is not None
    }
    read = _Read(dict(customer), products)
    reads.keep(read, customer_id)
    return read


CONFIRMED_BELOW_THRESHOLD = "below the approval threshold"

_READ = f"""
SELECT c.name, c.region, c.segment, c.payment_terms_days, c.credit_limit,
       c.xmin::text AS version,
       p.sku, p.name AS product_name, p.category, p.unit_price, p.tax_rate, p.active,
       p.xmin::text AS product_version
FROM (SELECT 1) AS one
LEFT JOIN {SCHEMA}.customers AS c ON c.id = $1
LEFT JOIN {SCHEMA}.products AS p ON p.sku = ANY($2::text[])
"""

# A submitted order checked against a credit limit: the customer's row locked until commit,
# so that customer's orders are checked one at a time.
_LOCK_CUSTOMER = f"SELECT 1 FROM {SCHEMA}.customers WHERE id = $1 FOR UPDATE"

# In a statement of its own, after the row lock: its snapshot sees every order of the
# customer committed before the lock was granted.
_OPEN_RECEIVABLE = f"""
SELECT c.credit_limit,
       coalesce((SELECT sum(o.gross - o.credited - o.paid) FROM {SCHEMA}.orders AS o
                 WHERE o.customer_id = c.id AND o.status IN ('confirmed', 'fulfilled')), 0)
FROM {SCHEMA}.customers AS c WHERE c.id = $1
"""

_WRITE = f"""
WITH guard AS (
    -- First, before any number is taken: the period held open, or the statement refused.
    SELECT {SCHEMA}.hold_periods_open($50::text[], $49::text)
       AND {SCHEMA}.read_still_current($4::uuid, $51::text, $53::text[], $52::text[]) AS open
), so AS (
    INSERT INTO {SCHEMA}.document_numbers AS d (prefix, year, last)
    SELECT 'SO', $2::int, 1 FROM guard
    ON CONFLICT (prefix, year) DO UPDATE SET last = d.last + 1
    RETURNING 'SO-' || $2::int || '-' || lpad(d.last::text, 6, '0') AS number
), inv AS (
    INSERT INTO {SCHEMA}.document_numbers AS d (prefix, year, last)
    SELECT 'INV', $3::int, 1 FROM guard WHERE $3::int IS NOT NULL
    ON CONFLICT (prefix, year) DO UPDATE SET last = d.last + 1
    RETURNING 'INV-' || $3::int || '-' || lpad(d.last::text, 6, '0') AS number
), o AS (
    INSERT INTO {SCHEMA}.orders (
        id, number, customer_id, status, channel, salesperson, note, business_date,
        net, tax, gross, paid, credited_net, credited_tax, credited, approvals_required,
        credit_hold, invoice_number, due_date, created_by, created_at, updated_at,
        confirmed_at, cancelled_on, reversed_net, reversed_tax, reversed_gross)
    SELECT $1::uuid, so.number, $4::uuid, $5::text, $6::text, $7::text, $8::text, $9::date,
           $10::numeric, $11::numeric, $12::numeric, 0, 0, 0, 0, $13::int, $14::bool,
           (SELECT number FROM inv), $15::date, $16::text, $17::timestamptz, $18::timestamptz,
           $19::timestamptz, NULL, 0, 0, 0
    FROM so
    RETURNING number, invoice_number
), lines AS (
    INSERT INTO {SCHEMA}.order_lines (
        order_id, line_no, sku, name, category, quantity, unit_price, discount, tax_rate,
        net, tax, gross, returned_quantity, returned_net, returned_tax)
    SELECT $1::uuid, l.*, 0, 0, 0 FROM unnest(
        $20::int[], $21::text[], $22::text[], $23::text[], $24::numeric[], $25::numeric[],
        $26::numeric[], $27::numeric[], $28::numeric[], $29::numeric[], $30::numeric[]) AS l
), schedule AS (
    INSERT INTO {SCHEMA}.order_instalments (order_id, seq, due_date, amount)
    SELECT $1::uuid, i.* FROM unnest($31::int[], $32::date[], $33::numeric[]) AS i
), history AS (
    INSERT INTO {SCHEMA}.order_status_history (
        id, order_id, at, actor, role, from_status, to_status, reason)
    SELECT h.id, $1::uuid, h.at, $34::text, $35::text, h.from_status, h.to_status,
           replace(h.reason, '{NUMBER}', o.number)
    FROM o, unnest($36::uuid[], $37::timestamptz[], $38::text[], $39::text[], $40::text[])
        AS h(id, at, from_status, to_status, reason)
), audit AS (
    INSERT INTO {SCHEMA}.audit_log (actor, role, action, entity, entity_id, details, request_id)
    SELECT $34::text, $35::text, a.action, 'order', $1::uuid::text,
           replace(a.details, '{NUMBER}', o.number)::jsonb, $41::text
    FROM o, unnest($42::text[], $43::text[]) WITH ORDINALITY AS a(action, details, n)
    ORDER BY a.n
), outbox_lock AS (
    SELECT pg_advisory_xact_lock(hashtext($44::text)) FROM o
    WHERE cardinality($45::uuid[]) > 0
), raised AS (
    SELECT e.event_id, e.type, e.payload::jsonb AS payload, e.n
    FROM unnest($45::uuid[], $46::text[], $47::text[]) WITH ORDINALITY
        AS e(event_id, type, payload, n)
), outbox AS (
    -- Ids come from the outbox sequence once its lock is held: in commit order.
    INSERT INTO {SCHEMA}.outbox (event_id, type, key, payload)
    SELECT e.event_id, e.type, $48::text, CASE
        WHEN e.payload -> 'data' ? 'invoice_number' THEN jsonb_set(
            jsonb_set(e.payload, '{{data,order,number}}', to_jsonb(o.number)),
            '{{data,invoice_number}}', to_jsonb(o.invoice_number))
        ELSE jsonb_set(e.payload, '{{data,order,number}}', to_jsonb(o.number)) END
    FROM outbox_lock, o, raised AS e
    ORDER BY e.n
    RETURNING id
), notified AS (
    SELECT pg_notify('{notify_channel(SCHEMA)}', '{SCHEMA}')
    FROM (SELECT 1 FROM outbox LIMIT 1) AS x
)
SELECT o.number, o.invoice_number, (SELECT count(*) FROM notified) AS notified
FROM o
"""


@dataclass(frozen=True)
class Entered:
    """An order as order entry wrote it: its public form, and a credit hold if the limit
    stopped a confirmation that would otherwise have happened now."""

    view: OrderPublic
    credit_hold: CreditHold | None
    held: bool


@dataclass
class _Step:
    from_status: OrderStatus | None
    to: OrderStatus
    reason: str | None
    id: UUID = field(default_factory=new_id)
    at: datetime = field(default_factory=utcnow)


async def enter_order(
    *, session: AsyncSession, data: OrderCreate, actor: Actor, settings: Settings
) -> Entered:
    """Record an order priced server-side, a draft or (with `submit`) submitted: confirmed
    and invoiced at once below the first approval threshold and within the credit limit."""
    if data.currency is not None and data.currency != settings.currency:
        raise InvalidInput("currency", f"only {settings.currency} is accepted")
    now_day = today(settings.zone)
    if data.business_date is not None and data.business_date > now_day:
        raise InvalidInput(
            "business_date",
            f"{data.business_date.isoformat()} is in the future; only earlier dates",
        )
    # The period the order may be dated into: held open (shared lock) by the write until it
    # commits.
    day = data.business_date or now_day
    guarded = data.business_date is not None or data.submit
    keys = held(SCHEMA, _period_of(day), now_day) if guarded else []
    skus = list(dict.fromkeys(line.sku for line in data.lines))

    # Outside a transaction unless the request already began one (an Idempotency-Key's
    # claim) or the credit check below needs one: then the write is a single statement that
    # commits as it ends, and no lock it takes (the numbers, the outbox) waits on this process.
    db = await raw_connection(session)
    reads = per_database(session, _EntryReads)
    remembered = None if db.is_in_transaction() else reads.lookup(data.customer_id, skus)
    for attempt in range(1, _ATTEMPTS + 1):
        read = remembered or await _read(db, reads, data.customer_id, skus)
        if data.submit and read.customer["credit_limit"] is not None:
            await _payments_counted(db, data.customer_id, settings)  # before the customer is locked
            # Checked against the limit in a transaction holding the customer's row, so that
            # customer's orders are checked one at a time; read again under that lock.
            db = await driver_connection(session)
            await db.execute(_LOCK_CUSTOMER, data.customer_id)
            read = await _read(db, reads, data.customer_id, skus)
        try:
            return await _enter(
                db, session, data, actor, settings, read, day=day, now_day=now_day, keys=keys
            )
        except (InvalidInput, _ReadChanged) as problem:
            retry = not db.is_in_transaction() and (
                read.remembered or isinstance(problem, _ReadChanged)
            )
            if not retry:
                raise
            if attempt == _ATTEMPTS:
                raise Conflict(
                    "the customer or the products of this order kept changing while it was "
                    "entered; send it again"
                ) from None
            reads.forget(data.customer_id, skus)
            remembered = None
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _enter(
    db: asyncpg.Connection[Any],
    session: AsyncSession,
    data: OrderCreate,
    actor: Actor,
    settings: Settings,
    read: _Read,
    *,
    day: date,
    now_day: date,
    keys: list[str],
) -> Entered:
    """Price the order from what was read, decide its status and write it in one statement;
    raises _ReadChanged when the customer or a product changed since `read` was taken."""
    customer, products = read.customer, read.products
    priced: list[tuple[Any, PricedLine]] = []
    for i, line in enumerate(data.lines):
        product = products.get(line.sku)
        if product is None:
            raise InvalidInput(f"lines.{i}.sku", f"no product {line.sku}")
        if not product["active"]:
            raise InvalidInput(f"lines.{i}.sku", f"product {line.sku} is not active")
        unit_price = product["unit_price"] if line.unit_price is None else line.unit_price
        before_discount = line.quantity * unit_price
        if before_discount > MAX_AMOUNT:
            raise InvalidInput(
                f"lines.{i}",
                f"{plain(line.quantity)} × {money_str(unit_price)} comes to "
                f"{money_str(before_discount)}; a line may come to at most {money_str(MAX_AMOUNT)}",
            )
        if line.discount > before_discount:
            raise InvalidInput(
                f"lines.{i}.discount",
                f"{money_str(line.discount)} exceeds the line amount {money_str(before_discount)}",
            )
        priced_line = price_line(
            quantity=line.quantity,
            unit_price=unit_price,
            discount=line.discount,
            tax_rate=product["tax_rate"],
        )
        if priced_line.gross > MAX_AMOUNT:
            raise InvalidInput(
                f"lines.{i}",
                f"the line comes to {money_str(priced_line.gross)} with tax; "
                f"a line may come to at most {money_str(MAX_AMOUNT)}",
            )
        priced.append((product, priced_line))
    total = totals(p for _, p in priced)
    if total.gross > MAX_AMOUNT:
        raise InvalidInput(
            "lines",
            f"the order comes to {money_str(total.gross)}; "
            f"an order may come to at most {money_str(MAX_AMOUNT)}",
        )
    if data.instalments:
        for i, instalment in enumerate(data.instalments):
            if instalment.due_date < day:
                raise InvalidInput(
                    f"instalments.{i}.due_date",
                    f"falls due on {instalment.due_date}, before the order's date {day}",
                )
        scheduled = sum((i.amount for i in data.instalments), ZERO)
        if scheduled != total.gross:
            raise InvalidInput(
                "instalments", f"sum to {scheduled} but the order's gross is {total.gross}"
            )
    schedule = sorted(data.instalments, key=lambda i: i.due_date)

    order_id = new_id()
    hold: CreditHold | None = None
    required, held = 0, False
    steps = [_Step(None, S.DRAFT, None)]
    if data.submit:
        if customer["credit_limit"] is not None:
            # In the transaction the caller began for it, holding the customer's row.
            limit, owed = await db.fetchrow(_OPEN_RECEIVABLE, data.customer_id)
            hold = credit_hold(
                credit_limit=limit,
                open_receivable=round_money(Decimal(owed)),
                order_gross=total.gross,
            )
        approvals = approvals_on_submit(
            approvals_needed(total.gross, settings.approval_thresholds), hold
        )
        required, held = approvals.required, approvals.held
        reason = hold.explain(NUMBER, order_id) if hold else None
        steps.append(_Step(S.DRAFT, S.SUBMITTED, reason))
        if required == 0:
            steps.append(_Step(S.SUBMITTED, S.CONFIRMED, CONFIRMED_BELOW_THRESHOLD))
    status = steps[-1].to
    confirmed = status == S.CONFIRMED
    confirmed_at = steps[-1].at if confirmed else None
    due_date = day + timedelta(days=customer["payment_terms_days"]) if confirmed else None
    business_date = day if confirmed else data.business_date
    created_at = steps[0].at
    updated_at = steps[-1].at

    # Built from values priced and rounded above: constructed, not validated again (the
    # serialisers still write them out); tests/orders hold this equal to the validated form.
    view_lines = [
        LinePublic.model_construct(
            line_no=n,
            sku=product["sku"],
            name=product["product_name"],
            category=product["category"],
            quantity=tidy(p.quantity),
            unit_price=p.unit_price,
            discount=p.discount,
            tax_rate=tidy(p.tax_rate),
            net=p.net,
            tax=p.tax,
            gross=p.gross,
            returned_quantity=Decimal("0"),
        )
        for n, (product, p) in enumerate(priced, start=1)
    ]
    request_id = session.info.get("request_id")
    outbox = _events(
        data=data,
        order_id=order_id,
        customer=customer,
        actor=actor,
        lines=view_lines,
        total=total,
        steps=steps,
        required=required,
        day=day,
        due_date=due_date,
        schedule=schedule,
        request_id=request_id,
    )
    audit = _audit(steps, gross=total.gross, lines=len(priced))
    write_arguments = (
        order_id,
        now_day.year,
        day.year if confirmed else None,
        data.customer_id,
        status.value,
        data.channel.value,
        data.salesperson,
        data.note,
        business_date,
        total.net,
        total.tax,
        total.gross,
        required,
        hold is not None,
        due_date,
        actor.subject,
        created_at,
        updated_at,
        confirmed_at,
        [line.line_no for line in view_lines],
        [line.sku for line in view_lines],
        [line.name for line in view_lines],
        [line.category for line in view_lines],
        [p.quantity for _, p in priced],
        [p.unit_price for _, p in priced],
        [p.discount for _, p in priced],
        [p.tax_rate for _, p in priced],
        [p.net for _, p in priced],
        [p.tax for _, p in priced],
        [p.gross for _, p in priced],
        list(range(1, len(schedule) + 1)),
        [i.due_date for i in schedule],
        [i.amount for i in schedule],
        actor.subject,
        actor.role.value,
        [s.id for s in steps],
        [s.at for s in steps],
        [s.from_status.value if s.from_status else None for s in steps],
        [s.to.value for s in steps],
        [s.reason for s in steps],
        request_id,
        [action for action, _ in audit],
        [details for _, details in audit],
        outbox_lock_key(SCHEMA),
        [e.event_id for e in outbox],
        [e.type for e in outbox],
        [e.model_dump_json() for e in outbox],
        str(data.customer_id),
        _period_of(day) if (confirmed or data.business_date is not None) else None,
        keys,
        # A remembered or autocommit read is checked against the rows; in a transaction the
        # read is the transaction's own.
        None if db.is_in_transaction() else customer["version"],
        [product["version"] for product in products.values()],
        list(products),
    )
    try:
        written = await db.fetchrow(_WRITE, *write_arguments)
    except asyncpg.PostgresError as exc:
        # Nothing was written: the numbers it took are given back.
        if exc.sqlstate == PERIOD_LOCKED_STATE:
            # The function names the locked period that closes the order's in its detail.
            period = _period_of(day)
            closed_by = getattr(exc, "detail", None) or period
            raise period_closed(period, closed_by, field="business_date", day=day) from None
        if exc.sqlstate == READ_CHANGED_STATE:
            raise _ReadChanged from None
        raise
    number: str = written["number"]
    view = OrderPublic.model_construct(
        id=order_id,
        number=number,
        customer_id=data.customer_id,
        status=status,
        channel=data.channel,
        salesperson=data.salesperson,
        note=data.note,
        currency=settings.currency,
        lines=view_lines,
        net=total.net,
        tax=total.tax,
        gross=total.gross,
        paid=ZERO,
        credited=ZERO,
        outstanding=total.gross if confirmed else ZERO,
        business_date=business_date,
        period=_period_of(business_date) if business_date else None,
        invoice_number=written["invoice_number"],
        due_date=due_date,
        instalments=[InstalmentPublic(due_date=i.due_date, amount=i.amount) for i in schedule],
        approvals_required=required,
        approvals=[],
        credit_hold=hold is not None,
        credit_notes=[],
        history=[
            HistoryEntry(
                at=s.at,
                actor=actor.subject,
                role=actor.role.value,
                from_status=s.from_status,
                to_status=s.to,
                reason=s.reason.replace(NUMBER, number) if s.reason else None,
            )
            for s in steps
        ],
        created_by=actor.subject,
        created_at=created_at,
        updated_at=updated_at,
    )
    return Entered(view=view, credit_hold=hold, held=held)


def _audit(steps: list[_Step], *, gross: Decimal, lines: int) -> list[tuple[str, str]]:
    """(action, details as JSON) of each step, as record_audit would write them."""
    # Amounts as decimal strings, as record_audit writes them (never a float).
    entries = [("order.created", {"number": NUMBER, "gross": money_str(gross), "lines": lines})]
    for step in steps[1:]:
        entries.append(
            (
                f"order.{step.to.value}",
                {
                    "number": NUMBER,
                    "from": step.from_status.value if step.from_status else None,
                    "to": step.to.value,
                    "reason": step.reason,
                },
            )
        )
    return [(action, json.dumps(details)) for action, details in entries]


_LINE_FACTS = tuple(events.OrderLine.model_fields)


def _events(
    *,
    data: OrderCreate,
    order_id: UUID,
    customer: Any,
    actor: Actor,
    lines: list[LinePublic],
    total: Any,
    steps: list[_Step],
    required: int,
    day: date,
    due_date: date | None,
    schedule: list[Any],
    request_id: str | None,
) -> list[Event]:
    """order.submitted and order.confirmed as the order reaches them, numbers left blank
    for the last statement to fill in."""
    if len(steps) < 2:
        return []
    facts = events.OrderFacts(
        order_id=order_id,
        number="",
        customer_id=data.customer_id,
        customer_name=customer["name"],
        region=customer["region"],
        segment=customer["segment"],
        channel=data.channel.value,
        salesperson=data.salesperson,
        created_by=actor.subject,
        # The public lines carry the same fields, quantities and rates already tidied.
        lines=[
            events.OrderLine.model_construct(**{name: getattr(line, name) for name in _LINE_FACTS})
            for line in lines
        ],
        net=total.net,
        tax=total.tax,
        gross=total.gross,
    )
    key = str(data.customer_id)
    raised = [
        Event.of(
            events.OrderSubmitted(
                order=facts,
                submitted_at=steps[1].at,
                approvals_required=required,
                business_date=day,
            ),
            source=events.SOURCE,
            key=key,
            request_id=request_id,
        )
    ]
    if len(steps) == 3 and due_date is not None:
        raised.append(
            Event.of(
                events.OrderConfirmed(
                    order=facts,
                    invoice_number="",
                    business_date=day,
                    due_date=due_date,
                    instalments=[
                        events.Instalment(due_date=i.due_date, amount=i.amount) for i in schedule
                    ]
                    or [events.Instalment(due_date=due_date, amount=total.gross)],
                    confirmed_at=steps[2].at,
                ),
                source=events.SOURCE,
                key=key,
                business_date=day,
                request_id=request_id,
            )
        )
    return raised


def _period_of(day: date) -> str:
    return str(Period.of(day))
