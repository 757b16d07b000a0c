"""HTTP routes of the orders service: parse, authorise, call the service layer."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders import customers, products, queries, returns, service
from services.orders.domain import Channel, CreditHold, OrderStatus
from services.orders.schemas import (
    SKU_PATTERN,
    ApprovalIn,
    CreditNotePublic,
    CustomerCreate,
    CustomerPublic,
    CustomerUpdate,
    Filter,
    OrderCreate,
    OrderPublic,
    ProductCreate,
    ProductPublic,
    ProductUpdate,
    Reason,
    ReturnCreate,
    SubmitIn,
)
from shared.auth import ANY_ROLE, Actor, Role
from shared.auth import require as require_role
from shared.config import Settings
from shared.db import request_session
from shared.errors import problem
from shared.idempotency import IdempotencyKey, idempotent
from shared.limits import PeriodText
from shared.openapi import conflict
from shared.pagination import Page, PageParams, page_params
from shared.strict import StrictRoute

SCHEMA = "orders"

Session = Annotated[AsyncSession, Depends(request_session, scope="function")]
Paging = Annotated[PageParams, Depends(page_params)]
Reader = Annotated[Actor, Depends(require_role(*ANY_ROLE))]
Seller = Annotated[Actor, Depends(require_role(Role.SALES))]
OrderTaker = Annotated[Actor, Depends(require_role(Role.POS, Role.SALES))]
Approver = Annotated[Actor, Depends(require_role(Role.APPROVER))]
OptionalReason = Annotated[Reason | None, Body()]
SkuPath = Annotated[str, Path(pattern=SKU_PATTERN)]


async def settings_of(request: Request) -> Settings:
    # async: FastAPI runs a plain def dependency in its thread pool, a thread hop a request.
    return request.app.state.settings


AppSettings = Annotated[Settings, Depends(settings_of)]

TRANSITION_CONFLICT = "The order's status does not allow it, or its period is locked for closing"

router = APIRouter(route_class=StrictRoute)

# Customers ---------------------------------------------------------------------------------


@router.post("/customers", status_code=201, response_model=CustomerPublic, tags=["customers"])
async def create_customer(
    data: CustomerCreate, actor: Seller, session: Session, key: IdempotencyKey = None
) -> JSONResponse:
    """Register a customer."""

    async def create() -> CustomerPublic:
        customer = await customers.create_customer(session=session, data=data, actor=actor)
        return CustomerPublic.model_validate(customer, from_attributes=True)

    return await idempotent(
        session,
        schema=SCHEMA,
        actor=actor,
        key=key,
        endpoint="POST /customers",
        body=data,
        create=create,
    )


@router.get("/customers", response_model=Page[CustomerPublic], tags=["customers"])
async def list_customers(
    actor: Reader,
    session: Session,
    page: Paging,
    region: Filter | None = None,
    segment: Filter | None = None,
    name: Annotated[Filter | None, Query(description="Part of the name")] = None,
) -> Page[CustomerPublic]:
    """Customers, oldest first, filtered by region, segment or part of the name."""
    rows, cursor = await customers.list_customers(
        session=session, page=page, region=region, segment=segment, name=name
    )
    items = [CustomerPublic.model_validate(c, from_attributes=True) for c in rows]
    return Page[CustomerPublic](items=items, next_cursor=cursor)


@router.get("/customers/{customer_id}", response_model=CustomerPublic, tags=["customers"])
async def get_customer(customer_id: UUID, actor: Reader, session: Session) -> CustomerPublic:
    """One customer."""
    customer = await customers.get_customer(session, customer_id)
    return CustomerPublic.model_validate(customer, from_attributes=True)


@router.patch("/customers/{customer_id}", response_model=CustomerPublic, tags=["customers"])
async def update_customer(
    customer_id: UUID, data: CustomerUpdate, actor: Seller, session: Session
) -> CustomerPublic:
    """Change a customer's fields (only those sent)."""
    customer = await customers.update_customer(
        session=session, customer_id=customer_id, data=data, actor=actor
    )
    return CustomerPublic.model_validate(customer, from_attributes=True)


# Products ----------------------------------------------------------------------------------


@router.post(
    "/products",
    status_code=201,
    response_model=ProductPublic,
    tags=["products"],
    responses=conflict("A product with this sku exists"),
)
async def create_product(
    data: ProductCreate, actor: Seller, session: Session, key: IdempotencyKey = None
) -> JSONResponse:
    """Add a product to the catalogue."""

    async def create() -> ProductPublic:
        product = await products.create_product(session=session, data=data, actor=actor)
        return ProductPublic.model_validate(product, from_attributes=True)

    return await idempotent(
        session,
        schema=SCHEMA,
        actor=actor,
        key=key,
        endpoint="POST /products",
        body=data,
        create=create,
    )


@router.get("/products", response_model=Page[ProductPublic], tags=["products"])
async def list_products(
    actor: Reader,
    session: Session,
    page: Paging,
    category: Filter | None = None,
    active: bool | None = None,
) -> Page[ProductPublic]:
    """Products in SKU order, filtered by category or active flag."""
    rows, cursor = await products.list_products(
        session=session, page=page, category=category, active=active
    )
    items = [ProductPublic.model_validate(p, from_attributes=True) for p in rows]
    return Page[ProductPublic](items=items, next_cursor=cursor)


@router.get("/products/{sku}", response_model=ProductPublic, tags=["products"])
async def get_product(sku: SkuPath, actor: Reader, session: Session) -> ProductPublic:
    """One product."""
    product = await products.get_product(session, sku)
    return ProductPublic.model_validate(product, from_attributes=True)


@router.patch("/products/{sku}", response_model=ProductPublic, tags=["products"])
async def update_product(
    sku: SkuPath, data: ProductUpdate, actor: Seller, session: Session
) -> ProductPublic:
    """Change a product's fields (only those sent); existing orders keep their prices."""
    product = await products.update_product(session=session, sku=sku, data=data, actor=actor)
    return ProductPublic.model_validate(product, from_attributes=True)


# Orders ------------------------------------------------------------------------------------


def _held(hold: CreditHold | None, view: OrderPublic) -> JSONResponse:
    """The 409 of an order held by the credit limit: committed, but not confirmed."""
    assert hold is not None
    return problem(
        409,
        "Credit limit exceeded",
        hold.explain(view.number, view.id),
        order_id=str(view.id),
        order_number=view.number,
        order_status=view.status.value,
        credit_limit=str(hold.credit_limit),
        open_receivable=str(hold.open_receivable),
        order_gross=str(hold.order_gross),
        order=jsonable_encoder(view),
    )


@router.post(
    "/orders",
    status_code=201,
    response_model=OrderPublic,
    tags=["orders"],
    responses=conflict(
        "Created and submitted, but held by the credit limit; or its period is locked for closing"
    ),
)
async def create_order(
    data: OrderCreate,
    actor: OrderTaker,
    session: Session,
    settings: AppSettings,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Create an order (a draft; with `"submit": true` also submitted, the POS path).

    Amounts are computed here from the products' prices and tax rates. A submitted order
    that would exceed the customer's credit limit is still created, held for approval, and
    answered with 409 naming the limit, the open receivable and the order.
    """

    async def create() -> OrderPublic | JSONResponse:
        entered = await service.enter_order(
            session=session, data=data, actor=actor, settings=settings
        )
        if entered.held:
            return _held(entered.credit_hold, entered.view)
        return entered.view

    return await idempotent(
        session,
        schema=SCHEMA,
        actor=actor,
        key=key,
        endpoint="POST /orders",
        body=data,
        create=create,
    )


@router.get("/orders", response_model=Page[OrderPublic], tags=["orders"])
async def list_orders(
    actor: Reader,
    session: Session,
    page: Paging,
    settings: AppSettings,
    customer_id: UUID | None = None,
    status: OrderStatus | None = None,
    channel: Channel | None = None,
    salesperson: Filter | None = None,
    created_by: Filter | None = None,
    period: Annotated[PeriodText | None, Query(description="YYYY-MM of the business date")] = None,
) -> Page[OrderPublic]:
    """Orders, oldest first, filtered by customer, status, channel, salesperson or period."""
    items, cursor = await queries.list_orders(
        session=session,
        page=page,
        settings=settings,
        customer_id=customer_id,
        status=status,
        channel=channel,
        salesperson=salesperson,
        created_by=created_by,
        period=period,
    )
    return Page[OrderPublic](items=items, next_cursor=cursor)


@router.get("/orders/{order_id}", response_model=OrderPublic, tags=["orders"])
async def get_order(
    order_id: UUID, actor: Reader, session: Session, settings: AppSettings
) -> OrderPublic:
    """One order with its lines, amounts, schedule, approvals, credit notes and history."""
    return await queries.get_order_view(session, order_id, settings=settings)


@router.post(
    "/orders/{order_id}/submit",
    response_model=OrderPublic,
    tags=["orders"],
    responses=conflict(
        "Not a draft, held by the credit limit, or its period is locked for closing"
    ),
)
async def submit_order(
    order_id: UUID,
    actor: OrderTaker,
    session: Session,
    settings: AppSettings,
    body: Annotated[SubmitIn | None, Body()] = None,
) -> OrderPublic | JSONResponse:
    """Submit a draft: confirmed at once below the approval threshold and within the credit
    limit; otherwise it waits for approvals (409 when held by the credit limit)."""
    submission = await service.submit(
        session=session,
        order_id=order_id,
        actor=actor,
        settings=settings,
        business_date=body.business_date if body else None,
        note=body.reason if body else None,
    )
    view = await queries.order_view(session, submission.order, settings=settings)
    return _held(submission.credit_hold, view) if submission.held else view


@router.post(
    "/orders/{order_id}/approve",
    response_model=OrderPublic,
    tags=["orders"],
    responses=conflict(TRANSITION_CONFLICT),
)
async def approve_order(
    order_id: UUID,
    actor: Approver,
    session: Session,
    settings: AppSettings,
    body: Annotated[ApprovalIn | None, Body()] = None,
) -> OrderPublic:
    """Approve a submitted order (not one's own); the last approval needed confirms it."""
    order = await service.approve(
        session=session,
        order_id=order_id,
        actor=actor,
        settings=settings,
        note=body.reason if body else None,
        business_date=body.business_date if body else None,
    )
    return await queries.order_view(session, order, settings=settings)


@router.post(
    "/orders/{order_id}/reject",
    response_model=OrderPublic,
    tags=["orders"],
    responses=conflict(TRANSITION_CONFLICT),
)
async def reject_order(
    order_id: UUID,
    actor: Approver,
    session: Session,
    settings: AppSettings,
    body: OptionalReason = None,
) -> OrderPublic:
    """Reject a submitted order."""
    order = await service.reject(
        session=session, order_id=order_id, actor=actor, reason=body.reason if body else None
    )
    return await queries.order_view(session, order, settings=settings)


@router.post(
    "/orders/{order_id}/fulfil",
    response_model=OrderPublic,
    tags=["orders"],
    responses=conflict(TRANSITION_CONFLICT),
)
async def fulfil_order(
    order_id: UUID,
    actor: Seller,
    session: Session,
    settings: AppSettings,
    body: OptionalReason = None,
) -> OrderPublic:
    """Mark a confirmed order as delivered."""
    order = await service.fulfil(
        session=session, order_id=order_id, actor=actor, reason=body.reason if body else None
    )
    return await queries.order_view(session, order, settings=settings)


@router.post(
    "/orders/{order_id}/cancel",
    response_model=OrderPublic,
    tags=["orders"],
    responses=conflict(TRANSITION_CONFLICT),
)
async def cancel_order(
    order_id: UUID,
    actor: Seller,
    session: Session,
    settings: AppSettings,
    body: OptionalReason = None,
) -> OrderPublic:
    """Cancel an order before fulfilment; a confirmed one is reversed (less credit notes)."""
    order = await service.cancel(
        session=session,
        order_id=order_id,
        actor=actor,
        settings=settings,
        reason=body.reason if body else None,
    )
    return await queries.order_view(session, order, settings=settings)


@router.post(
    "/orders/{order_id}/returns",
    status_code=201,
    response_model=CreditNotePublic,
    tags=["orders"],
    responses=conflict(
        "The order was not delivered, more than was delivered and not yet returned, "
        "or the period is locked for closing"
    ),
)
async def return_order_lines(
    order_id: UUID,
    data: ReturnCreate,
    actor: OrderTaker,
    session: Session,
    settings: AppSettings,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Return quantities of a confirmed or fulfilled order's lines: issues a credit note."""
    # The first answer and its replays alike come once what the credit note releases has
    # been released.
    service.wait_for_release(session, order_id=order_id, settings=settings)

    async def create() -> CreditNotePublic:
        note, lines = await returns.create_return(
            session=session, order_id=order_id, data=data, actor=actor, settings=settings
        )
        return queries.credit_note_public(note, lines)

    return await idempotent(
        session,
        schema=SCHEMA,
        actor=actor,
        key=key,
        endpoint=f"POST /orders/{order_id}/returns",
        body=data,
        create=create,
    )
