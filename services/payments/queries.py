"""Reads of the payments service: a payment with its allocations and refunds, lists."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.payments import domain
from services.payments.models import Allocation, Payment, Refund
from services.payments.schemas import AllocationPublic, Method, PaymentPublic, RefundPublic
from shared.config import Settings
from shared.pagination import Page, PageParams, cursor_uuid, cut_page


async def to_public(session: AsyncSession, payment: Payment, settings: Settings) -> PaymentPublic:
    allocations = list(
        (
            await session.execute(
                select(Allocation)
                .where(col(Allocation.payment_id) == payment.id)
                .order_by(col(Allocation.created_at), col(Allocation.id))
            )
        ).scalars()
    )
    refunds = (
        await session.execute(
            select(Refund)
            .where(col(Refund.payment_id) == payment.id)
            .order_by(col(Refund.created_at))
        )
    ).scalars()
    return public_of(payment, allocations, list(refunds), settings)


def public_of(
    payment: Payment, allocations: list[Allocation], refunds: list[Refund], settings: Settings
) -> PaymentPublic:
    """The public form of a payment with its allocations (in the order they were made) and
    refunds."""
    # Derived from the allocation rows, so the totals always match the list.
    allocated = domain.allocated((a.status, a.amount) for a in allocations)
    return PaymentPublic(
        id=payment.id,
        number=payment.number,
        customer_id=payment.customer_id,
        amount=payment.amount,
        currency=settings.currency,
        method=payment.method,
        received_at=payment.received_at,
        business_date=payment.business_date,
        period=payment.period,
        reference=payment.reference,
        allocated=allocated,
        unapplied=domain.unapplied(
            amount=payment.amount, refunded=payment.refunded, allocated=allocated
        ),
        refunded=payment.refunded,
        allocations=[AllocationPublic.model_validate(a, from_attributes=True) for a in allocations],
        refunds=[RefundPublic.model_validate(r, from_attributes=True) for r in refunds],
        created_by=payment.created_by,
        created_at=payment.created_at,
    )


async def list_payments(
    session: AsyncSession,
    *,
    customer_id: UUID | None,
    method: Method | None,
    period: str | None,
    page: PageParams,
    settings: Settings,
) -> Page[PaymentPublic]:
    """Payments, oldest first, filtered by customer, method and period."""
    query = select(Payment).order_by(col(Payment.id)).limit(page.limit + 1)
    if customer_id:
        query = query.where(col(Payment.customer_id) == customer_id)
    if method:
        query = query.where(col(Payment.method) == method.value)
    if period:
        query = query.where(col(Payment.period) == period)
    if page.after:
        query = query.where(col(Payment.id) > cursor_uuid(page.after))
    rows = (await session.execute(query)).scalars().all()
    kept, cursor = cut_page(rows, limit=page.limit, key=lambda p: str(p.id))
    return Page[PaymentPublic](
        items=[await to_public(session, p, settings) for p in kept], next_cursor=cursor
    )
