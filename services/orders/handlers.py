"""Reactions to payment events: keep each order's `paid` (and so `outstanding`) right.

`paid` is the sum of the order's applied allocations: `payment.allocated` adds one,
`payment.allocation_released` with `was_applied` takes back what it released of it (all,
or a part: an allocation may be released in several parts). Each allocation and each
release is remembered by id, so neither a replay nor a release of an allocation we never
counted can move `paid` twice. The inbox (processed_events) makes every event apply once
anyway.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.orders.models import SCHEMA, ZERO, Order, PaymentAllocation, PaymentRelease, utcnow
from shared.events import payments
from shared.events.envelope import Event
from shared.messaging.consumer import Subscription, one_by_one

log = logging.getLogger("salesbook.orders.handlers")


async def on_payment_event(session: AsyncSession, event: Event) -> None:
    """Apply one payments event to the orders it concerns; other event types are ignored."""
    if event.type == payments.PaymentAllocated.TYPE:
        allocated = event.payload_as(payments.PaymentAllocated)
        await allocation_applied(
            session,
            allocation_id=allocated.allocation_id,
            payment_id=allocated.payment_id,
            order_id=allocated.order_id,
            amount=allocated.amount,
        )
    elif event.type == payments.AllocationReleased.TYPE:
        released = event.payload_as(payments.AllocationReleased)
        if released.was_applied:
            await allocation_released(session, released)


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


async def allocation_released(session: AsyncSession, released: payments.AllocationReleased) -> None:
    """Take one release (all or part of an allocation) out of its order's `paid`, once."""
    row = await _locked_allocation(session, released.allocation_id)
    release_id, remaining = released.release_id, released.remaining
    if release_id is None:
        # Version 1: the id is the allocation when released in full, else a new id of the
        # released part; see _legacy_part_of for which allocation such a part came from.
        release_id = released.allocation_id
        if row is None:
            row = await _legacy_part_of(session, released)
        else:
            remaining = ZERO
    recorded = await session.execute(
        insert(PaymentRelease)
        .values(
            release_id=release_id,
            allocation_id=row.allocation_id if row is not None else released.allocation_id,
            order_id=released.order_id,
            amount=released.amount,
            taken=ZERO,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing()
        .returning(col(PaymentRelease.release_id))
    )
    if recorded.first() is None:
        return  # this release was taken out already
    if row is None:
        # Released before we saw it allocated: remember it so a late allocation is not counted.
        await session.execute(
            insert(PaymentAllocation)
            .values(
                allocation_id=released.allocation_id,
                payment_id=released.payment_id,
                order_id=released.order_id,
                amount=released.amount,
                applied=False,
                updated_at=utcnow(),
            )
            .on_conflict_do_nothing()
        )
        return
    if not row.applied:
        return
    # What is left is the payments service's own figure when the event carries it, so a
    # release also mends any difference between what we counted and what the allocation
    # really held (rows repaired by migration 0004 by inference, see there).
    left = remaining if remaining is not None else max(row.amount - released.amount, ZERO)
    taken = row.amount - left
    if left == ZERO:
        row.applied = False
    else:
        row.amount = left
    row.updated_at = utcnow()
    await session.execute(
        update(PaymentRelease)
        .where(col(PaymentRelease.release_id) == release_id)
        .values(taken=taken)
    )
    await _add_paid(session, row.order_id, -taken)


async def _locked_allocation(
    session: AsyncSession, allocation_id: UUID
) -> PaymentAllocation | None:
    return (
        await session.execute(
            select(PaymentAllocation)
            .where(col(PaymentAllocation.allocation_id) == allocation_id)
            .with_for_update()
        )
    ).scalar_one_or_none()


async def _legacy_part_of(
    session: AsyncSession, released: payments.AllocationReleased
) -> PaymentAllocation | None:
    """The allocation a version 1 partial release came from: an applied allocation of the
    same payment to the same order that holds more than the part, the most recently moved
    first (the payments service releases its newest allocations first, and keeps releasing
    from the one it split). None when there is none."""
    return (
        await session.execute(
            select(PaymentAllocation)
            .where(
                col(PaymentAllocation.payment_id) == released.payment_id,
                col(PaymentAllocation.order_id) == released.order_id,
                col(PaymentAllocation.applied).is_(True),
                col(PaymentAllocation.amount) > released.amount,
            )
            .order_by(
                col(PaymentAllocation.updated_at).desc(), col(PaymentAllocation.allocation_id)
            )
            .limit(1)
            .with_for_update()
        )
    ).scalar_one_or_none()


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
