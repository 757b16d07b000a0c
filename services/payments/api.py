"""HTTP routes of the payments service: parse, authorise, call the service layer."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments import queries, service
from services.payments.models import SCHEMA
from services.payments.schemas import (
    AllocationsCreate,
    Method,
    PaymentCreate,
    PaymentPublic,
    RefundCreate,
)
from shared.audit import audit_router
from shared.auth import ANY_ROLE, Actor, Role, require
from shared.config import Settings
from shared.db import request_session
from shared.idempotency import IdempotencyKey, idempotent
from shared.limits import PeriodText
from shared.openapi import conflict
from shared.pagination import Page, PageParams, page_params
from shared.strict import StrictRoute

router = APIRouter(route_class=StrictRoute, tags=["payments"])
router.include_router(audit_router(schema=SCHEMA, path="/payments/audit"))

Session = Depends(request_session, scope="function")
TAKES_MONEY = (Role.POS, Role.SALES, Role.FINANCE)
ALLOCATION_CONFLICT = (
    "More than the payment or the order has open, an order of another customer or not "
    "confirmed, or the period is locked for closing"
)


def _settings(request: Request) -> Settings:
    return request.app.state.settings


@router.post(
    "/payments",
    status_code=201,
    response_model=PaymentPublic,
    responses=conflict(ALLOCATION_CONFLICT),
)
async def receive_payment(
    body: PaymentCreate,
    request: Request,
    idempotency_key: IdempotencyKey = None,
    session: AsyncSession = Session,
    actor: Actor = Depends(require(*TAKES_MONEY)),
) -> JSONResponse:
    """Record a payment received from a customer, optionally applied to orders at once."""
    settings = _settings(request)

    async def create() -> PaymentPublic:
        payment, allocations = await service.receive(
            session=session, data=body, actor=actor, settings=settings
        )
        # From what was written (the server's created_at came back with each INSERT).
        return queries.public_of(payment, allocations, [], settings)

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
    period: Annotated[PeriodText | None, Query(description="YYYY-MM of the business date")] = None,
    page: PageParams = Depends(page_params),
    session: AsyncSession = Session,
    _: Actor = Depends(require(*ANY_ROLE)),
) -> Page[PaymentPublic]:
    """Payments, oldest first, filtered by customer, method and period."""
    return await queries.list_payments(
        session,
        customer_id=customer_id,
        method=method,
        period=period,
        page=page,
        settings=_settings(request),
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
    return await queries.to_public(session, payment, _settings(request))


@router.post(
    "/payments/{payment_id}/allocations",
    status_code=201,
    response_model=PaymentPublic,
    responses=conflict(ALLOCATION_CONFLICT),
)
async def allocate_payment(
    payment_id: UUID,
    body: AllocationsCreate,
    request: Request,
    idempotency_key: IdempotencyKey = None,
    session: AsyncSession = Session,
    actor: Actor = Depends(require(*TAKES_MONEY)),
) -> JSONResponse:
    """Apply unapplied credit of a payment to orders."""
    settings = _settings(request)

    async def create() -> PaymentPublic:
        payment = await service.allocate(
            session=session,
            payment_id=payment_id,
            requests=body.requests(),
            actor=actor,
            settings=settings,
            field="allocations" if body.allocations else "",
        )
        return await queries.to_public(session, payment, settings)

    return await idempotent(
        session,
        schema=SCHEMA,
        actor=actor,
        key=idempotency_key,
        endpoint=f"POST /v1/payments/{payment_id}/allocations",
        body=body,
        create=create,
    )


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=201,
    response_model=PaymentPublic,
    responses=conflict("More than the payment holds, or its period is locked for closing"),
)
async def refund_payment(
    payment_id: UUID,
    body: RefundCreate,
    request: Request,
    idempotency_key: IdempotencyKey = None,
    session: AsyncSession = Session,
    actor: Actor = Depends(require(*TAKES_MONEY)),
) -> JSONResponse:
    """Refund money: unapplied credit first, then the newest allocations are released."""
    settings = _settings(request)

    async def create() -> PaymentPublic:
        payment = await service.refund(
            session=session, payment_id=payment_id, data=body, actor=actor, settings=settings
        )
        return await queries.to_public(session, payment, settings)

    return await idempotent(
        session,
        schema=SCHEMA,
        actor=actor,
        key=idempotency_key,
        endpoint=f"POST /v1/payments/{payment_id}/refunds",
        body=body,
        create=create,
    )
