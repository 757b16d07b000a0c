"""Reads of the payments service: a payment with its allocations and refunds, lists."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

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
                .where(Allocation.payment_id == payment.id)
                .order_by(Allocation.created_at, Allocation.id)
            )
        ).scalars()
    )
    # Derived from the allocation rows read here, so the totals always match the list.
    allocated = domain.allocated((a.status, a.amount) for a in allocations)
    refunds = (
        await session.execute(
            select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.created_at)
        )
    ).scalars()
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
        created_at=payment.created_at,  # type: ignore[arg-type]
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
    query = select(Payment).order_by(Payment.id).limit(page.limit + 1)
    if customer_id:
        query = query.where(Payment.customer_id == customer_id)
    if method:
        query = query.where(Payment.method == method.value)
    if period:
        query = query.where(Payment.period == period)
    if page.after:
        query = query.where(Payment.id > cursor_uuid(page.after))
    rows = (await session.execute(query)).scalars().all()
    kept, cursor = cut_page(rows, limit=page.limit, key=lambda p: str(p.id))
    return Page[PaymentPublic](
        items=[await to_public(session, p, settings) for p in kept], next_cursor=cursor
    )
