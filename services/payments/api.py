"""HTTP routes of the payments service: parse, authorise, call the service layer."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments import service
from services.payments.models import SCHEMA, Allocation, Payment, Refund
from services.payments.schemas import (
    AllocationPublic,
    AllocationsCreate,
    Method,
    PaymentCreate,
    PaymentPublic,
    RefundCreate,
    RefundPublic,
)
from shared.audit import audit_router
from shared.auth import ANY_ROLE, Actor, Role, require
from shared.config import Settings
from shared.db import request_session
from shared.idempotency import HEADER as IDEMPOTENCY_HEADER
from shared.idempotency import idempotent
from shared.limits import Period
from shared.pagination import Page, PageParams, cursor_uuid, cut_page, page_params

router = APIRouter(tags=["payments"])
router.include_router(audit_router(schema=SCHEMA, path="/payments/audit"))

Session = Depends(request_session, scope="function")
TAKES_MONEY = (Role.POS, Role.SALES, Role.FINANCE)


def _settings(request: Request) -> Settings:
    return request.app.state.settings


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
    allocated = sum((a.amount for a in allocations if a.status != "released"), Decimal("0.00"))
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
        unapplied=payment.amount - payment.refunded - allocated,
        refunded=payment.refunded,
        allocations=[AllocationPublic.model_validate(a, from_attributes=True) for a in allocations],
        refunds=[RefundPublic.model_validate(r, from_attributes=True) for r in refunds],
        created_by=payment.created_by,
        created_at=payment.created_at,  # type: ignore[arg-type]
    )


@router.post("/payments", status_code=201, response_model=PaymentPublic)
async def receive_payment(
    body: PaymentCreate,
    request: Request,
    idempotency_key: str | None = Header(default=None, alias=IDEMPOTENCY_HEADER),
    session: AsyncSession = Session,
    actor: Actor = Depends(require(*TAKES_MONEY)),
) -> JSONResponse:
    """Record a payment received from a customer, optionally applied to orders at once."""
    settings = _settings(request)

    async def create() -> PaymentPublic:
        payment = await service.receive(session=session, data=body, actor=actor, settings=settings)
        await session.refresh(payment)
        return await to_public(session, payment, settings)

    return await idempotent(
        session,
        schema=SCHEMA,
        actor=actor,
        key=idempotency_key,
        endpoint="POST /v1/payments",
        body=body,
        create=create,
    )


@router.get("/payments", response_model=Page[PaymentPublic])
async def list_payments(
    request: Request,
    customer_id: UUID | None = None,
    method: Method | None = None,
    period: Annotated[Period | None, Query(description="YYYY-MM of the business date")] = None,
    page: PageParams = Depends(page_params),
    session: AsyncSession = Session,
    _: Actor = Depends(require(*ANY_ROLE)),
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
    settings = _settings(request)
    return Page[PaymentPublic](
        items=[await to_public(session, p, settings) for p in kept], next_cursor=cursor
    )


@router.get("/payments/{payment_id}", response_model=PaymentPublic)
async def read_payment(
    payment_id: UUID,
    request: Request,
    session: AsyncSession = Session,
    _: Actor = Depends(require(*ANY_ROLE)),
) -> PaymentPublic:
    """One payment with its allocations and refunds."""
    payment = await service.get_payment(session, payment_id)
    return await to_public(session, payment, _settings(request))


@router.post("/payments/{payment_id}/allocations", status_code=201, response_model=PaymentPublic)
async def allocate_payment(
    payment_id: UUID,
    body: AllocationsCreate,
    request: Request,
    idempotency_key: str | None = Header(default=None, alias=IDEMPOTENCY_HEADER),
    session: AsyncSession = Session,
    actor: Actor = Depends(require(*TAKES_MONEY)),
) -> JSONResponse:
    """Apply unapplied credit of a payment to orders."""
    settings = _settings(request)

    async def create() -> PaymentPublic:
        payment = await service.allocate(
            session=session, payment_id=payment_id, requests=body.requests(), actor=actor
        )
        return await to_public(session, payment, settings)

    return await idempotent(
        session,
        schema=SCHEMA,
        actor=actor,
        key=idempotency_key,
        endpoint=f"POST /v1/payments/{payment_id}/allocations",
        body=body,
        create=create,
    )


@router.post("/payments/{payment_id}/refunds", status_code=201, response_model=PaymentPublic)
async def refund_payment(
    payment_id: UUID,
    body: RefundCreate,
    request: Request,
    idempotency_key: str | None = Header(default=None, alias=IDEMPOTENCY_HEADER),
    session: AsyncSession = Session,
    actor: Actor = Depends(require(*TAKES_MONEY)),
) -> JSONResponse:
    """Refund money: unapplied credit first, then the newest allocations are released."""
    settings = _settings(request)

    async def create() -> PaymentPublic:
        payment = await service.refund(
            session=session, payment_id=payment_id, data=body, actor=actor, settings=settings
        )
        return await to_public(session, payment, settings)

    return await idempotent(
        session,
        schema=SCHEMA,
        actor=actor,
        key=idempotency_key,
        endpoint=f"POST /v1/payments/{payment_id}/refunds",
        body=body,
        create=create,
    )
