"""Reactions to order events: the replica of customers and orders that allocations are
checked against, settling pending allocations and releasing what no longer fits."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from sqlalchemy import Select, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.payments import cutoff, replica
from services.payments.domain import (
    LIVE,
    check_allocation,
    take_newest,
)
from services.payments.domain import AllocationStatus as A
from services.payments.models import SCHEMA, Allocation, KnownOrder, Payment
from services.payments.service import (
    ORDER_EVENTS,
    audit_payment,
    emit_allocated,
    guard_order,
    lock_orders,
    release,
)
from shared.errors import DomainError
from shared.events.envelope import Event
from shared.events.orders import (
    OrderCancelled,
    OrderConfirmed,
    OrderRejected,
    OrderReturned,
)
from shared.messaging.consumer import BatchHandler, Subscription, caused_by


def subscriptions() -> list[Subscription]:
    return [
        Subscription(
            name=replica.SUBSCRIPTION,
            schema=SCHEMA,
            sources=(replica.SOURCE,),
            handle=_signalling(apply_order_events),
        ),
        cutoff.subscription,
    ]


def _signalling(handle: BatchHandler) -> BatchHandler:
    """Wake payments waiting on the replica once a batch is committed (not before: until then
    they could not see it)."""

    async def run(session: AsyncSession, events: list[Event]) -> None:
        await handle(session, events)
        sa_event.listen(
            session.sync_session, "after_commit", lambda _: replica.progress.advanced(), once=True
        )

    return run


# The order events that do something to an order's allocations (see on_event).
REACTIONS = frozenset({"order.confirmed", "order.rejected", "order.cancelled", "order.returned"})


async def apply_order_events(session: AsyncSession, events: list[Event]) -> None:
    """Apply a batch to the replica set-wise; an event that settles or releases allocations
    goes one by one, in order, through `on_event`, and so does every later event of its
    order (the projection set-wise comes first: only what came before may go there)."""
    order_ids = sorted({replica.order_id_of(e) for e in events if e.type.startswith("order.")})
    await _guard_orders(session, order_ids)
    live = await _live_allocations(session, order_ids)
    allocated = {order_id for order_id, _ in live}
    # Their payments are locked before any replicated order row is written (the lock order of
    # service.py): a refund holds its payment, then locks the orders it releases from.
    await _lock_payments(session, {payment_id for _, payment_id in live})
    reacting: set[UUID] = set()  # orders whose first reaction in this batch has come
    one_by_one: list[Event] = []
    at_once: list[Event] = []
    for event in events:
        order_id = replica.order_id_of(event) if event.type.startswith("order.") else None
        if order_id in allocated and (event.type in REACTIONS or order_id in reacting):
            reacting.add(order_id)
            one_by_one.append(event)
        else:
            at_once.append(event)
    await replica.project(session, at_once)
    for event in one_by_one:
        with caused_by(session, event):
            await on_event(session, event)


async def _guard_orders(session: AsyncSession, order_ids: list[UUID]) -> None:
    """`guard_order` for many orders in one statement, in one order (no deadlocks)."""
    if order_ids:
        await session.execute(
            text(
                "SELECT pg_advisory_xact_lock(hashtext('salesbook.payments.order.' || o)) "
                "FROM unnest(CAST(:ids AS text[])) AS o ORDER BY o"
            ),
            {"ids": [str(o) for o in order_ids]},
        )


async def _live_allocations(
    session: AsyncSession, order_ids: list[UUID]
) -> list[tuple[UUID, UUID]]:
    """(order, payment) of every pending or applied allocation to the orders."""
    if not order_ids:
        return []
    rows = await session.execute(
        select(col(Allocation.order_id), col(Allocation.payment_id))
        .where(col(Allocation.order_id).in_(order_ids), col(Allocation.status).in_(LIVE))
        .distinct()
    )
    return [(order_id, payment_id) for order_id, payment_id in rows]


async def on_event(session: AsyncSession, event: Event) -> None:
    """One event into the replica (as a batch of one, so both paths keep it the same way),
    then what it does to the allocations of its order."""
    if event.type.startswith("order."):
        await guard_order(session, UUID(_order_id_of(event)))
    await replica.project(session, [event])
    match event.type:
        case "order.confirmed":
            await settle_pending(session, event.payload_as(OrderConfirmed).order.order_id)
        case "order.rejected":
            rejected = event.payload_as(OrderRejected)
            await _end_order(session, rejected.order_id, "rejected", event.business_date)
        case "order.cancelled":
            cancelled = event.payload_as(OrderCancelled)
            await _end_order(session, cancelled.order_id, "cancelled", cancelled.business_date)
        case "order.returned":
            returned = event.payload_as(OrderReturned)
            await _release_overpaid(session, returned.order_id, returned.business_date)


def _order_id_of(event: Event) -> str:
    data = event.data
    return data["order"]["order_id"] if "order" in data else data["order_id"]


async def _locked_allocations(
    session: AsyncSession, order_id: UUID, statuses: tuple[str, ...]
) -> tuple[list[Allocation], dict[UUID, Payment], dict[UUID, KnownOrder]]:
    """An order's allocations in the given states, read only after their payments are locked
    (a refund may release one meanwhile), with the payments and the order row locked too."""

    def query() -> Select[Allocation]:
        return (
            select(Allocation)
            .where(col(Allocation.order_id) == order_id, col(Allocation.status).in_(statuses))
            .order_by(col(Allocation.created_at), col(Allocation.id))
        )

    candidates = (await session.execute(query())).scalars().all()
    payments = await _lock_payments(session, {a.payment_id for a in candidates})
    fresh = query().execution_options(populate_existing=True)
    allocations = [a for a in (await session.execute(fresh)).scalars() if a.payment_id in payments]
    return allocations, payments, await lock_orders(session, {order_id})


async def _lock_payments(session: AsyncSession, payment_ids: set[UUID]) -> dict[UUID, Payment]:
    if not payment_ids:
        return {}
    rows = (
        await session.execute(
            select(Payment)
            .where(col(Payment.id).in_(sorted(payment_ids)))
            .order_by(col(Payment.id))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalars()
    return {p.id: p for p in rows}


async def settle_pending(session: AsyncSession, order_id: UUID) -> None:
    """Check an order's pending allocations, oldest first: apply what fits, release the rest."""
    pending, payments, orders = await _locked_allocations(session, order_id, (A.PENDING,))
    order = orders[order_id]
    for allocation in pending:
        payment = payments[allocation.payment_id]
        try:
            check_allocation(order, allocation.customer_id, allocation.amount, "")
        except DomainError as refused:
            await release(
                session,
                payment,
                allocation,
                allocation.amount,
                reason=refused.detail,
                orders=orders,
                actor=ORDER_EVENTS,
            )
            continue
        allocation.status = A.APPLIED
        order.applied += allocation.amount
        emit_allocated(session, payment, allocation)
        await audit_payment(
            session,
            actor=ORDER_EVENTS,
            action="payment.allocation_applied",
            payment_id=payment.id,
            details={
                "allocation_id": allocation.id,
                "order_id": allocation.order_id,
                "amount": allocation.amount,
            },
        )


async def _end_order(session: AsyncSession, order_id: UUID, status: str, day: date | None) -> None:
    """A rejected or cancelled order gives back every allocation made to it."""
    live, payments, orders = await _locked_allocations(session, order_id, LIVE)
    for allocation in live:
        await release(
            session,
            payments[allocation.payment_id],
            allocation,
            allocation.amount,
            reason=f"order {status}",
            orders=orders,
            actor=ORDER_EVENTS,
            day=day,
        )


async def _release_overpaid(session: AsyncSession, order_id: UUID, day: date) -> None:
    """A credit note (counted in the replica already) lowers what the order can carry:
    release the newest allocations it can no longer carry."""
    live, payments, orders = await _locked_allocations(session, order_id, (A.APPLIED,))
    order = orders[order_id]
    for allocation, part in take_newest(
        reversed(live), -order.open_amount, amount_of=lambda a: a.amount
    ):
        await release(
            session,
            payments[allocation.payment_id],
            allocation,
            part,
            reason="credit note left the order overpaid",
            orders=orders,
            actor=ORDER_EVENTS,
            day=day,
        )
