"""Customers: who orders buy, on what payment terms, up to what credit limit."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.orders.models import SCHEMA, Customer, utcnow
from services.orders.schemas import CustomerCreate, CustomerUpdate
from shared.audit import record_audit
from shared.auth import Actor
from shared.db import lock_or_404
from shared.errors import InvalidInput, NotFound
from shared.events.orders import SOURCE, CustomerCreated, CustomerUpdated
from shared.messaging.outbox import emit
from shared.pagination import PageParams, cut_page

PROFILE = ("name", "contact", "region", "segment", "payment_terms_days", "credit_limit")


async def get_customer(session: AsyncSession, customer_id: UUID) -> Customer:
    """The customer, or 404."""
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} not found")
    return customer


async def create_customer(*, session: AsyncSession, data: CustomerCreate, actor: Actor) -> Customer:
    """Register a customer and announce it."""
    customer = Customer(**data.model_dump(), created_by=actor.subject)
    session.add(customer)
    await session.flush()
    emit(
        session,
        CustomerCreated(
            customer_id=customer.id,
            **{field: getattr(customer, field) for field in PROFILE},
            created_at=customer.created_at,
        ),
        source=SOURCE,
        key=str(customer.id),
    )
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action="customer.created",
        entity="customer",
        entity_id=customer.id,
        details=data.model_dump(mode="json"),
    )
    return customer


async def update_customer(
    *, session: AsyncSession, customer_id: UUID, data: CustomerUpdate, actor: Actor
) -> Customer:
    """Change the fields sent; announce and audit what actually changed."""
    customer = await lock_or_404(
        session, Customer, customer_id, missing=NotFound(f"customer {customer_id} not found")
    )
    sent = data.model_dump(exclude_unset=True)
    for required in ("name", "payment_terms_days"):
        if required in sent and sent[required] is None:
            raise InvalidInput(required, "cannot be cleared")
    changed = {k: v for k, v in sent.items() if getattr(customer, k) != v}
    if not changed:
        return customer
    before = {k: getattr(customer, k) for k in changed}
    for field, value in changed.items():
        setattr(customer, field, value)
    customer.updated_at = utcnow()
    await session.flush()
    emit(
        session,
        CustomerUpdated(
            customer_id=customer.id,
            **{field: getattr(customer, field) for field in PROFILE},
            changed=sorted(changed),
        ),
        source=SOURCE,
        key=str(customer.id),
    )
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action="customer.updated",
        entity="customer",
        entity_id=customer.id,
        details={"before": before, "after": changed},
    )
    return customer


async def list_customers(
    *,
    session: AsyncSession,
    page: PageParams,
    region: str | None = None,
    segment: str | None = None,
    name: str | None = None,
) -> tuple[list[Customer], str | None]:
    """Customers in creation order, filtered; returns the page and the next cursor."""
    query = select(Customer).order_by(col(Customer.id)).limit(page.limit + 1)
    if region is not None:
        query = query.where(col(Customer.region) == region)
    if segment is not None:
        query = query.where(col(Customer.segment) == segment)
    if name:
        query = query.where(col(Customer.name).icontains(name, autoescape=True))
    if page.after:
        query = query.where(col(Customer.id) > uuid_cursor(page.after))
    rows = (await session.execute(query)).scalars().all()
    return cut_page(rows, limit=page.limit, key=lambda c: str(c.id))


def uuid_cursor(after: str) -> UUID:
    """The id a cursor of an id-ordered list points after."""
    try:
        return UUID(after)
    except ValueError:
        raise InvalidInput("cursor", "not a cursor this API returned") from None
