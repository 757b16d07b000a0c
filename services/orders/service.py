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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.orders.customers import get_customer
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
from services.orders.models import (
    SCHEMA,
    ZERO,
    Approval,
    Customer,
    Instalment,
    Order,
    OrderLine,
    PeriodLock,
    Product,
    StatusChange,
    utcnow,
)
from services.orders.schemas import OrderCreate, tidy
from shared.audit import record_audit
from shared.auth import Actor
from shared.config import Settings
from shared.cutoff import hold_period
from shared.db import lock_or_404
from shared.errors import Conflict, IllegalTransition, InvalidInput, NotFound, PeriodLocked
from shared.events import orders as events
from shared.limits import MAX_AMOUNT
from shared.messaging.outbox import emit
from shared.money import money_str, plain, round_money
from shared.numbering import next_number
from shared.periods import Period, today

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
    day = requested or today(settings.zone)
    await ensure_open(session, day, field=field)
    return day


async def ensure_open(session: AsyncSession, day: date, *, field: str) -> None:
    """Refuse (409) a document dated into a locked period; hold the period open until commit."""
    period = str(Period.of(day))
    if await hold_period(session, schema=SCHEMA, locks=PeriodLock.__table__, period=period):
        raise PeriodLocked(
            f"period {period} is closed to new documents (its month-end close has begun); "
            f"{field} {day.isoformat()} cannot be used, date the document into a later period",
            field=field,
            period=period,
        )


async def create_order(
    *, session: AsyncSession, data: OrderCreate, actor: Actor, settings: Settings
) -> Order:
    """Price the lines server-side and record a draft order (`submit` is the caller's next step)."""
    if data.currency is not None and data.currency != settings.currency:
        raise InvalidInput("currency", f"only {settings.currency} is accepted")
    customer = await session.get(Customer, data.customer_id)
    if customer is None:
        raise InvalidInput("customer_id", f"no customer {data.customer_id}")
    if data.business_date is not None:
        await document_date(session, data.business_date, settings=settings, field="business_date")

    skus = {line.sku for line in data.lines}
    products = {
        p.sku: p
        for p in (
            await session.execute(select(Product).where(col(Product.sku).in_(skus)))
        ).scalars()
    }
    priced_lines: list[tuple[Product, PricedLine]] = []
    for i, line in enumerate(data.lines):
        product = products.get(line.sku)
        if product is None:
            raise InvalidInput(f"lines.{i}.sku", f"no product {line.sku}")
        if not product.active:
            raise InvalidInput(f"lines.{i}.sku", f"product {line.sku} is not active")
        unit_price = product.unit_price if line.unit_price is None else line.unit_price
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
        priced = price_line(
            quantity=line.quantity,
            unit_price=unit_price,
            discount=line.discount,
            tax_rate=product.tax_rate,
        )
        if priced.gross > MAX_AMOUNT:
            raise InvalidInput(
                f"lines.{i}",
                f"the line comes to {money_str(priced.gross)} with tax; "
                f"a line may come to at most {money_str(MAX_AMOUNT)}",
            )
        priced_lines.append((product, priced))
    total = totals(priced for _, priced in priced_lines)
    if total.gross > MAX_AMOUNT:
        raise InvalidInput(
            "lines",
            f"the order comes to {money_str(total.gross)}; "
            f"an order may come to at most {money_str(MAX_AMOUNT)}",
        )
    if data.instalments:
        scheduled = sum((i.amount for i in data.instalments), ZERO)
        if scheduled != total.gross:
            raise InvalidInput(
                "instalments", f"sum to {scheduled} but the order's gross is {total.gross}"
            )

    number = await next_number(session, schema=SCHEMA, prefix="SO", year=today(settings.zone).year)
    order = Order(
        number=number,
        customer_id=customer.id,
        status=S.DRAFT,
        channel=data.channel,
        salesperson=data.salesperson,
        note=data.note,
        business_date=data.business_date,
        net=total.net,
        tax=total.tax,
        gross=total.gross,
        created_by=actor.subject,
    )
    session.add(order)
    await session.flush()
    session.add_all(
        OrderLine(
            order_id=order.id,
            line_no=n,
            sku=product.sku,
            name=product.name,
            category=product.category,
            quantity=priced.quantity,
            unit_price=priced.unit_price,
            discount=priced.discount,
            tax_rate=priced.tax_rate,
            net=priced.net,
            tax=priced.tax,
            gross=priced.gross,
        )
        for n, (product, priced) in enumerate(priced_lines, start=1)
    )
    schedule = sorted(data.instalments, key=lambda i: i.due_date)
    session.add_all(
        Instalment(order_id=order.id, seq=n, due_date=i.due_date, amount=i.amount)
        for n, i in enumerate(schedule, start=1)
    )
    session.add(_history(order, None, S.DRAFT, actor, None))
    await session.flush()
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action="order.created",
        entity="order",
        entity_id=order.id,
        details={"number": order.number, "gross": order.gross, "lines": len(priced_lines)},
    )
    return order


async def submit(
    *, session: AsyncSession, order_id: UUID, actor: Actor, settings: Settings
) -> Submission:
    """Submit a draft: confirm it at once below the first approval threshold and within the
    customer's credit limit, otherwise leave it waiting for approvals (see module doc)."""
    order = await lock_order(session, order_id)
    _check_transition(order, S.SUBMITTED, "submitted")
    if order.business_date is not None:
        await ensure_open(session, order.business_date, field="business_date")
    hold = await credit_check(session, order)
    needed = approvals_needed(order.gross, settings.approval_thresholds)
    approvals = approvals_on_submit(needed, hold)
    required = approvals.required
    if hold is not None:
        order.credit_hold = True
    order.approvals_required = required
    reason = hold.explain(order.number, order.id) if hold else None
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
) -> Order:
    """Record one approver's approval; the last one needed confirms the order."""
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
