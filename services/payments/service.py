"""Payments: receiving money, applying it to orders, refunding it; the rules each command
asks (allocation statuses, what may be allocated, how a refund splits) are in domain.py.

Invariant kept by every function here: a payment's amount = allocated + unapplied + refunded,
where `allocated` counts applied and pending allocations. Lock order, to stay deadlock-free:
the advisory lock of each order being allocated to or reacting to an order event (by id),
then payment rows (by id), then replicated order rows (by id). The advisory lock makes an
allocation to a not-yet-known order and the arrival of that order take turns, so a pending
allocation is never left behind by an order event that did not see it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from services.payments import replica
from services.payments.cutoff import GUARD
from services.payments.domain import (
    ENDED,
    INVOICED,
    ZERO,
    allocation_status,
    check_unapplied_covers,
    split_refund,
    take_newest,
    unapplied,
)
from services.payments.domain import AllocationStatus as A
from services.payments.models import (
    SCHEMA,
    Allocation,
    KnownCustomer,
    KnownOrder,
    Payment,
    Refund,
)
from services.payments.schemas import AllocationRequest, PaymentCreate, RefundCreate
from shared.audit import record_audit
from shared.auth import Actor, Role
from shared.config import Settings
from shared.cutoff import hold_period
from shared.db import lock_or_404, raw_connection
from shared.errors import InvalidInput, NotFound, NotYetKnown
from shared.events.payments import (
    AllocationPending,
    AllocationReleased,
    AllocationState,
    PaymentAllocated,
    PaymentReceived,
    PaymentRefunded,
)
from shared.ids import new_id
from shared.limits import MAX_YEAR, MIN_YEAR
from shared.messaging.outbox import emit
from shared.messaging.postgres import wait_for_key
from shared.numbering import number_last, stand_in
from shared.periods import Period, business_date_of, check_not_future, ensure_open, today

# Who the audit log names for what the service does on reading an order's event: applying a
# pending allocation once the order is confirmed, releasing those of a rejected or cancelled
# order or that a credit note left overpaid.
ORDER_EVENTS = Actor(subject=replica.SUBSCRIPTION, role=Role.ADMIN)


async def audit_payment(
    session: AsyncSession, *, actor: Actor, action: str, payment_id: UUID, details: dict[str, Any]
) -> None:
    """One entry of the payments audit log about a payment."""
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action=action,
        entity="payment",
        entity_id=payment_id,
        details=details,
    )


class PaymentNotFound(NotFound):
    title = "Payment not found"


async def ensure_period_open(session: AsyncSession, period: str, *, now_day: date) -> None:
    """409 when the period is closed to documents; otherwise hold its shared locks until
    commit."""
    ensure_open(period, await hold_period(session, GUARD, period, today=now_day))


async def receive(
    *, session: AsyncSession, data: PaymentCreate, actor: Actor, settings: Settings
) -> tuple[Payment, list[Allocation]]:
    """Record money received from a customer and apply the requested allocations; returns
    the payment and its allocations as written."""
    if data.currency is not None and data.currency != settings.currency:
        raise InvalidInput("currency", f"this deployment keeps its books in {settings.currency}")
    await _ensure_known_customer(session, data.customer_id, settings)
    await _await_orders(session, data.customer_id, {r.order_id for r in data.allocations}, settings)
    now = datetime.now(UTC)
    received_at = data.received_at or now
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=UTC)
    # As the database reads it back, so the answer built from what was written says the same.
    received_at = received_at.astimezone(UTC)
    if received_at > now:
        raise InvalidInput("received_at", f"{received_at.isoformat()} is in the future")
    business_date = business_date_of(received_at, settings.zone)
    if not MIN_YEAR <= business_date.year <= MAX_YEAR:  # 2000-01-01T00:00+14:00 is 1999 here
        raise InvalidInput(
            "received_at",
            f"falls on {business_date.isoformat()} in the business time zone; "
            f"must be in the years {MIN_YEAR} to {MAX_YEAR}",
        )
    period = str(Period.of(business_date))
    await ensure_period_open(session, period, now_day=business_date_of(now, settings.zone))
    await guard_orders(session, {r.order_id for r in data.allocations})
    payment_id = new_id()
    payment = Payment(
        id=payment_id,
        number=stand_in(payment_id),  # the number is taken last, below
        customer_id=data.customer_id,
        amount=data.amount,
        method=data.method.value,
        received_at=received_at,
        business_date=business_date,
        period=period,
        reference=data.reference,
        unapplied=data.amount,
        created_by=actor.subject,
    )
    # Named "this payment" in any refusal: it has no number yet.
    allocations = await _plan(
        session, payment, data.allocations, field="allocations", name="this payment"
    )
    payment.allocated = sum((a.amount for a in allocations), ZERO)
    payment.unapplied = unapplied(
        amount=payment.amount, refunded=payment.refunded, allocated=payment.allocated
    )
    session.add(payment)
    await session.flush()
    session.add_all(allocations)
    await session.flush()
    # Events and audit name the payment by its stand-in until number_last takes the number.
    emit(
        session,
        PaymentReceived(
            payment_id=payment.id,
            number=payment.number,
            customer_id=payment.customer_id,
            amount=payment.amount,
            method=payment.method,
            received_at=payment.received_at,
            business_date=business_date,
            reference=payment.reference,
            allocations=[_state(a) for a in allocations],
        ),
        source=SCHEMA,
        key=str(payment.customer_id),
        business_date=business_date,
    )
    _emit_applied(session, payment, [a for a in allocations if a.status == A.APPLIED])
    _emit_pending(session, payment, [a for a in allocations if a.status == A.PENDING])
    number = await number_last(
        session,
        schema=SCHEMA,
        table="payments",
        document_id=payment.id,
        prefix="PAY",
        year=business_date.year,
        actor=actor,
        action="payment.received",
        entity="payment",
        entity_id=payment.id,
        details={
            "number": payment.number,
            "amount": payment.amount,
            "method": payment.method,
            "allocations": [_state(a).model_dump(mode="json") for a in allocations],
        },
    )
    set_committed_value(payment, "number", number)
    return payment, allocations


async def allocate(
    *,
    session: AsyncSession,
    payment_id: UUID,
    requests: list[AllocationRequest],
    actor: Actor,
    settings: Settings,
    field: str = "allocations",
) -> Payment:
    """Apply part of a payment's unapplied credit to orders; a refusal names the allocation
    under `field` ("" when the body is one allocation)."""
    known = await session.get(Payment, payment_id)  # its customer, before anything is locked
    if known is not None:
        await _await_orders(session, known.customer_id, {r.order_id for r in requests}, settings)
    await guard_orders(session, {r.order_id for r in requests})
    payment = await lock_payment(session, payment_id)
    allocations = await _allocate(session, payment, requests, field=field)
    _emit_applied(session, payment, [a for a in allocations if a.status == A.APPLIED])
    _emit_pending(session, payment, [a for a in allocations if a.status == A.PENDING])
    await audit_payment(
        session,
        actor=actor,
        action="payment.allocated",
        payment_id=payment.id,
        details={"allocations": [_state(a).model_dump(mode="json") for a in allocations]},
    )
    return payment


async def refund(
    *, session: AsyncSession, payment_id: UUID, data: RefundCreate, actor: Actor, settings: Settings
) -> Payment:
    """Pay money back: unapplied credit first, then the newest allocations are released."""
    business_date = data.business_date or today(settings.zone)
    check_not_future(business_date, zone=settings.zone, field="business_date")
    period = str(Period.of(business_date))
    await ensure_period_open(session, period, now_day=today(settings.zone))
    payment = await lock_payment(session, payment_id)
    await sync_totals(session, payment)
    split = split_refund(
        amount=data.amount,
        payment_amount=payment.amount,
        refunded=payment.refunded,
        unapplied=payment.unapplied,
        number=payment.number,
    )
    if business_date < payment.business_date:
        raise InvalidInput("business_date", "a refund cannot be dated before its payment")
    released = await release_newest(
        session, payment, split.to_release, reason="refund", day=business_date, actor=actor
    )
    payment.refunded += data.amount
    await sync_totals(session, payment)
    row = Refund(
        payment_id=payment.id,
        amount=data.amount,
        business_date=business_date,
        period=period,
        reason=data.reason,
        created_by=actor.subject,
    )
    session.add(row)
    await session.flush()
    emit(
        session,
        PaymentRefunded(
            refund_id=row.id,
            payment_id=payment.id,
            payment_number=payment.number,
            customer_id=payment.customer_id,
            amount=data.amount,
            method=payment.method,
            business_date=business_date,
            reason=data.reason,
            released_allocations=[a.id for a in released],
        ),
        source=SCHEMA,
        key=str(payment.customer_id),
        business_date=business_date,
    )
    await audit_payment(
        session,
        actor=actor,
        action="payment.refunded",
        payment_id=payment.id,
        details={"refund_id": row.id, "amount": data.amount, "reason": data.reason},
    )
    return payment


async def get_payment(session: AsyncSession, payment_id: UUID) -> Payment:
    payment = await session.get(Payment, payment_id)
    if payment is None:
        raise PaymentNotFound(f"no payment {payment_id}")
    return payment


async def lock_payment(session: AsyncSession, payment_id: UUID) -> Payment:
    """The payment, row-locked until the transaction ends; 404 if there is none."""
    return await lock_or_404(
        session, Payment, payment_id, missing=PaymentNotFound(f"no payment {payment_id}")
    )


async def release_newest(
    session: AsyncSession,
    payment: Payment,
    amount: Decimal,
    *,
    reason: str,
    day: date,
    actor: Actor,
) -> list[Allocation]:
    """Release `amount` of the payment's allocations, newest first, back to unapplied credit.

    The oldest allocation touched may be split: its released part becomes its own row.
    """
    if amount <= ZERO:
        return []
    live = (
        (
            await session.execute(
                select(Allocation)
                .where(
                    col(Allocation.payment_id) == payment.id, col(Allocation.status) != A.RELEASED
                )
                .order_by(col(Allocation.created_at).desc(), col(Allocation.id).desc())
            )
        )
        .scalars()
        .all()
    )
    orders = await lock_orders(session, {a.order_id for a in live})
    return [
        await release(
            session, payment, allocation, part, reason=reason, orders=orders, actor=actor, day=day
        )
        for allocation, part in take_newest(live, amount, amount_of=lambda a: a.amount)
    ]


async def release(
    session: AsyncSession,
    payment: Payment,
    allocation: Allocation,
    amount: Decimal,
    *,
    reason: str,
    orders: dict[UUID, KnownOrder],
    actor: Actor,
    day: date | None = None,
) -> Allocation:
    """Release `amount` of one allocation of `payment` back to its unapplied credit; the
    audit log records it as done by `actor` (ORDER_EVENTS when an order's event caused it).

    A partial release lowers the allocation and keeps the released part as a row of its own;
    the event names the allocation reduced either way (see AllocationReleased)."""
    was_applied = allocation.status == A.APPLIED
    if amount == allocation.amount:
        allocation.status = A.RELEASED
        allocation.was_applied = was_applied
        allocation.reason = reason
        allocation.released_at = datetime.now(UTC)
        released = allocation
        # The allocation keeps its amount as what it held when released; the release itself
        # needs an id of its own, distinct from the allocation's.
        release_id = new_id()
        remaining = ZERO
    else:
        allocation.amount -= amount
        released = Allocation(
            payment_id=allocation.payment_id,
            order_id=allocation.order_id,
            customer_id=allocation.customer_id,
            amount=amount,
            status=A.RELEASED,
            was_applied=was_applied,
            reason=reason,
            released_at=datetime.now(UTC),
        )
        session.add(released)
        await session.flush()
        release_id = released.id
        remaining = allocation.amount
    await session.flush()
    await sync_totals(session, payment)
    order = orders.get(allocation.order_id)
    if was_applied and order is not None:
        order.applied -= amount
    emit(
        session,
        AllocationReleased(
            allocation_id=allocation.id,
            release_id=release_id,
            payment_id=allocation.payment_id,
            customer_id=allocation.customer_id,
            order_id=allocation.order_id,
            amount=amount,
            remaining=remaining,
            was_applied=was_applied,
            reason=reason,
            business_date=day,
        ),
        source=SCHEMA,
        key=str(allocation.customer_id),
    )
    await audit_payment(
        session,
        actor=actor,
        action="payment.allocation_released",
        payment_id=allocation.payment_id,
        details={
            "allocation_id": allocation.id,
            "release_id": release_id,
            "order_id": allocation.order_id,
            "amount": amount,
            "remaining": remaining,
            "was_applied": was_applied,
            "reason": reason,
        },
    )
    return released


async def sync_totals(session: AsyncSession, payment: Payment) -> None:
    """Set the payment's allocated and unapplied from its allocation rows, the record of
    truth: allocated counts applied and pending allocations, unapplied is what remains."""
    allocated = (
        await session.execute(
            select(func.coalesce(func.sum(col(Allocation.amount)), 0)).where(
                col(Allocation.payment_id) == payment.id, col(Allocation.status) != A.RELEASED
            )
        )
    ).scalar_one()
    payment.allocated = Decimal(allocated)
    payment.unapplied = unapplied(
        amount=payment.amount, refunded=payment.refunded, allocated=payment.allocated
    )


async def guard_order(session: AsyncSession, order_id: UUID) -> None:
    """Take the order's advisory lock until commit (see the lock order above)."""
    await session.execute(
        select(func.pg_advisory_xact_lock(func.hashtext(_order_lock_key(order_id))))
    )


async def guard_orders(session: AsyncSession, order_ids: set[UUID]) -> None:
    """guard_order for each order, in id order, in one statement."""
    if order_ids:
        keys = [_order_lock_key(order_id) for order_id in sorted(order_ids)]
        await session.execute(
            text(
                "SELECT pg_advisory_xact_lock(hashtext(k)) "
                "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS u(k, n) ORDER BY n"
            ),
            {"keys": keys},
        )


def _order_lock_key(order_id: UUID) -> str:
    return f"salesbook.payments.order.{order_id}"


async def lock_orders(session: AsyncSession, order_ids: set[UUID]) -> dict[UUID, KnownOrder]:
    if not order_ids:
        return {}
    rows = (
        await session.execute(
            select(KnownOrder)
            .where(col(KnownOrder.order_id).in_(sorted(order_ids)))
            .order_by(col(KnownOrder.order_id))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalars()
    return {o.order_id: o for o in rows}


async def _allocate(
    session: AsyncSession,
    payment: Payment,
    requests: list[AllocationRequest],
    *,
    field: str,
) -> list[Allocation]:
    """Allocate more of a payment already written to orders."""
    await sync_totals(session, payment)
    created = await _plan(session, payment, requests, field=field)
    session.add_all(created)
    await session.flush()
    await sync_totals(session, payment)
    return created


async def _plan(
    session: AsyncSession,
    payment: Payment,
    requests: list[AllocationRequest],
    *,
    field: str,
    name: str | None = None,
) -> list[Allocation]:
    """The allocations of `requests` out of the payment's unapplied credit, checked against
    the replicated orders (locked; an applied allocation added to the order's `applied`);
    `name` is how a refusal names the payment (its number if None)."""
    total = sum((r.amount for r in requests), ZERO)
    check_unapplied_covers(total, unapplied=payment.unapplied, name=name or payment.number)
    orders = await lock_orders(session, {r.order_id for r in requests})
    # Only a known order that may still be confirmed takes pending allocations.
    awaiting = [o for o in orders.values() if o.status not in (*INVOICED, *ENDED)]
    waiting = await _waiting_for(session, awaiting)
    created: list[Allocation] = []
    for index, request in enumerate(requests):
        order = orders.get(request.order_id)
        status = allocation_status(
            order,
            payment.customer_id,
            request.amount,
            f"{field}.{index}" if field else "",
            waiting=waiting.get(request.order_id, ZERO),
        )
        if order is not None and status == A.APPLIED:
            order.applied += request.amount
        elif order is not None:
            waiting[order.order_id] = waiting.get(order.order_id, ZERO) + request.amount
        created.append(
            Allocation(
                payment_id=payment.id,
                order_id=request.order_id,
                customer_id=payment.customer_id,
                amount=request.amount,
                status=status,
            )
        )
    return created


async def _waiting_for(session: AsyncSession, orders: list[KnownOrder]) -> dict[UUID, Decimal]:
    """What pending allocations of each order's own customer ask of these (locked) orders.
    Another customer's, made before the order was known, can never apply (its confirmation
    releases them), so they take none of its room."""
    if not orders:
        return {}
    rows = await session.execute(
        select(col(Allocation.order_id), func.sum(col(Allocation.amount)))
        .where(
            tuple_(col(Allocation.order_id), col(Allocation.customer_id)).in_(
                [(o.order_id, o.customer_id) for o in orders]
            ),
            col(Allocation.status) == A.PENDING,
        )
        .group_by(col(Allocation.order_id))
    )
    return {order_id: Decimal(total) for order_id, total in rows.all()}


def _emit_applied(session: AsyncSession, payment: Payment, applied: list[Allocation]) -> None:
    for allocation in applied:
        emit_allocated(session, payment, allocation)


def _emit_pending(session: AsyncSession, payment: Payment, pending: list[Allocation]) -> None:
    now = datetime.now(UTC)
    for allocation in pending:
        emit(
            session,
            AllocationPending(
                allocation_id=allocation.id,
                payment_id=payment.id,
                payment_number=payment.number,
                customer_id=payment.customer_id,
                order_id=allocation.order_id,
                amount=allocation.amount,
                business_date=payment.business_date,
                created_at=now,
            ),
            source=SCHEMA,
            key=str(payment.customer_id),
        )


def emit_allocated(session: AsyncSession, payment: Payment, allocation: Allocation) -> None:
    emit(
        session,
        PaymentAllocated(
            allocation_id=allocation.id,
            payment_id=payment.id,
            payment_number=payment.number,
            customer_id=payment.customer_id,
            order_id=allocation.order_id,
            amount=allocation.amount,
            business_date=payment.business_date,
        ),
        source=SCHEMA,
        key=str(payment.customer_id),
    )


def _state(allocation: Allocation) -> AllocationState:
    return AllocationState(
        allocation_id=allocation.id,
        order_id=allocation.order_id,
        amount=allocation.amount,
        status=allocation.status,
    )


async def _ensure_known_customer(
    session: AsyncSession, customer_id: UUID, settings: Settings
) -> None:
    """422 naming customer_id unless the customer is, or is about to be, in the replica."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + replica.WAIT_SECONDS
    head: int | None = None
    while True:
        with replica.progress.watch() as advanced:
            if await session.get(KnownCustomer, customer_id, populate_existing=True) is not None:
                return
            position = None
            if settings.effective_transport == "postgres":
                # The customer, if it exists, was committed before this request: at or below
                # the head read now. It is looked up again after the position is read, so a
                # batch committed in between cannot make a customer just applied look unknown.
                position = await replica.replica_position(session)
                if head is None:
                    head = await replica.source_head(session)
                if position >= head and (
                    await session.get(KnownCustomer, customer_id, populate_existing=True) is None
                ):
                    raise InvalidInput("customer_id", f"unknown customer {customer_id}")
            left = deadline - loop.time()
            if left <= 0:
                if head is not None and position is not None:
                    # The replica has not reached what orders had committed when the payment
                    # came: the customer may be among it. The till tries again; not its input.
                    raise NotYetKnown(
                        "customer_id",
                        f"customer {customer_id} has not reached payments yet: its events "
                        f"are still being applied ({head - position} behind); send it again",
                    )
                raise InvalidInput("customer_id", f"unknown customer {customer_id}")
            # Woken at once by this process's replica; the replica of another process (or a
            # batch it had applied already) is seen by looking again a moment later.
            await replica.progress.wait(advanced, min(left, replica.LOOK_AGAIN_SECONDS))


async def _await_orders(
    session: AsyncSession, customer_id: UUID, order_ids: set[UUID], settings: Settings
) -> None:
    """Before allocations are planned: the replica's view of the customer's orders brought up
    to what the orders service had committed when the request came, so an order entered,
    approved, returned or cancelled a moment ago is checked as it now stands, and one just
    confirmed takes the allocation at once instead of as pending. Bounded: an order still
    unknown or unconfirmed then takes a pending allocation. On the postgres transport, which
    reads the orders outbox; on Kafka the replica is taken as it is."""
    if not order_ids or settings.effective_transport != "postgres":
        return
    await wait_for_key(
        await raw_connection(session),
        schema=SCHEMA,
        consumer=replica.SUBSCRIPTION,
        source=replica.SOURCE,
        key=str(customer_id),
        seconds=replica.ORDERS_WAIT_SECONDS,
        why=f"allocations of customer {customer_id}",
    )
