"""Products: what can be sold, at what list price and tax rate."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.orders.models import SCHEMA, Product, utcnow
from services.orders.schemas import ProductCreate, ProductUpdate, tidy
from shared.audit import record_audit
from shared.auth import Actor
from shared.db import lock_or_404
from shared.errors import Conflict, InvalidInput, NotFound
from shared.events.orders import SOURCE, ProductCreated, ProductUpdated
from shared.messaging.outbox import emit
from shared.pagination import PageParams, cut_page

CATALOGUE = ("name", "category", "unit_price", "tax_rate", "active")


def _catalogue(product: Product) -> dict[str, Any]:
    fields = {f: getattr(product, f) for f in CATALOGUE}
    fields["tax_rate"] = tidy(product.tax_rate)
    return fields


async def get_product(session: AsyncSession, sku: str) -> Product:
    """The product, or 404."""
    product = await session.get(Product, sku)
    if product is None:
        raise NotFound(f"product {sku} not found")
    return product


async def create_product(*, session: AsyncSession, data: ProductCreate, actor: Actor) -> Product:
    """Add a product to the catalogue; a SKU already taken is a conflict."""
    now = utcnow()
    # ON CONFLICT instead of catching IntegrityError: the transaction stays usable.
    inserted = await session.execute(
        insert(Product)
        .values(**data.model_dump(), created_at=now, updated_at=now)
        .on_conflict_do_nothing()
        .returning(col(Product.sku))
    )
    if inserted.first() is None:
        raise Conflict(f"product {data.sku} already exists", field="sku")
    product = await get_product(session, data.sku)
    emit(
        session,
        ProductCreated(sku=product.sku, **_catalogue(product)),
        source=SOURCE,
        key=product.sku,
    )
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action="product.created",
        entity="product",
        entity_id=product.sku,
        details=data.model_dump(mode="json"),
    )
    return product


async def update_product(
    *, session: AsyncSession, sku: str, data: ProductUpdate, actor: Actor
) -> Product:
    """Change the fields sent; prices of existing orders are not touched."""
    product = await lock_or_404(session, Product, sku, missing=NotFound(f"product {sku} not found"))
    sent = data.model_dump(exclude_unset=True)
    for required in ("name", "unit_price", "tax_rate", "active"):
        if required in sent and sent[required] is None:
            raise InvalidInput(required, "cannot be cleared")
    changed = {k: v for k, v in sent.items() if getattr(product, k) != v}
    if not changed:
        return product
    before = {k: getattr(product, k) for k in changed}
    for field, value in changed.items():
        setattr(product, field, value)
    product.updated_at = utcnow()
    await session.flush()
    emit(
        session,
        ProductUpdated(
            sku=product.sku,
            **_catalogue(product),
            changed=sorted(changed),
        ),
        source=SOURCE,
        key=product.sku,
    )
    await record_audit(
        session,
        schema=SCHEMA,
        actor=actor,
        action="product.updated",
        entity="product",
        entity_id=product.sku,
        details={"before": before, "after": changed},
    )
    return product


async def list_products(
    *,
    session: AsyncSession,
    page: PageParams,
    category: str | None = None,
    active: bool | None = None,
) -> tuple[list[Product], str | None]:
    """Products in SKU order, filtered; returns the page and the next cursor."""
    query = select(Product).order_by(col(Product.sku)).limit(page.limit + 1)
    if category is not None:
        query = query.where(col(Product.category) == category)
    if active is not None:
        query = query.where(col(Product.active) == active)
    if page.after:
        query = query.where(col(Product.sku) > page.after)
    rows = (await session.execute(query)).scalars().all()
    return cut_page(rows, limit=page.limit, key=lambda p: p.sku)
