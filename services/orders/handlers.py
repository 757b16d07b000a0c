"""Reactions to payment events: keep each order's `paid` (and so `outstanding`) right.

`paid` is the sum of the order's applied allocations: `payment.allocated` adds one,
`payment.allocation_released` with `was_applied` takes it back. Each allocation is
remembered, so neither a replay nor a release of an allocation we never counted can move
`paid` twice. The inbox (processed_events) makes every event apply once anyway.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.orders.models import SCHEMA, Order, PaymentAllocation, utcnow
from shared.events import payments
from shared.events.envelope import Event
from shared.messaging.consumer import Subscription, one_by_one

log = logging.getLogger("salesbook.orders.handlers")


async def on_payment_event(session: AsyncSession, event: Event) -> None:
    """Apply one payments event to the orders it concerns; other event types are ignored."""
    if event.type == payments.PaymentAllocated.TYPE:
        allocated = payments.PaymentAllocated.model_validate(event.data)
        await allocation_applied(
            session,
            allocation_id=allocated.allocation_id,
            payment_id=allocated.payment_id,
            order_id=allocated.order_id,
            amount=allocated.amount,
        )
    elif event.type == payments.AllocationReleased.TYPE:
        released = payments.AllocationReleased.model_validate(event.data)
        if released.was_applied:
            await allocation_released(
                session,
                allocation_id=released.allocation_id,
                payment_id=released.payment_id,
                order_id=released.order_id,
                amount=released.amount,
            )


async def allocation_applied(
    session: AsyncSession, *, allocation_id: UUID, payment_id: UUID, order_id: UUID, amount: Decimal
) -> None:
    """Count an allocation in its order's `paid`, once."""
    counted = await session.execute(
        insert(PaymentAllocation)
        .values(
            allocation_id=allocation_id,
            payment_id=payment_id,
            order_id=order_id,
            amount=amount,
            applied=True,
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing()
        .returning(col(PaymentAllocation.allocation_id))
    )
    if counted.first() is not None:
        await _add_paid(session, order_id, amount)


async def allocation_released(
    session: AsyncSession, *, allocation_id: UUID, payment_id: UUID, order_id: UUID, amount: Decimal
) -> None:
    """Take a released allocation back out of its order's `paid`, if it was counted."""
    row = (
        await session.execute(
            select(PaymentAllocation)
            .where(col(PaymentAllocation.allocation_id) == allocation_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        # Released before we saw it allocated: remember it so a late allocation is not counted.
        await session.execute(
            insert(PaymentAllocation)
            .values(
                allocation_id=allocation_id,
                payment_id=payment_id,
                order_id=order_id,
                amount=amount,
                applied=False,
                updated_at=utcnow(),
            )
            .on_conflict_do_nothing()
        )
        return
    if not row.applied:
        return
    row.applied = False
    row.updated_at = utcnow()
    await _add_paid(session, row.order_id, -row.amount)


async def _add_paid(session: AsyncSession, order_id: UUID, amount: Decimal) -> None:
    # One atomic UPDATE: it row-locks the order, so it queues behind any transition in flight.
    result = await session.execute(
        update(Order)
        .where(col(Order.id) == order_id)
        .values(paid=Order.paid + amount, updated_at=utcnow())
        .returning(col(Order.id))
    )
    if result.first() is None:
        log.warning("payment allocation for unknown order %s ignored", order_id)


subscription = Subscription(
    name="orders.payments",
    schema=SCHEMA,
    sources=(payments.SOURCE,),
    handle=one_by_one(on_payment_event),
)
