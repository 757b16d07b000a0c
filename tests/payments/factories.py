"""Order events as the orders service publishes them, written straight into its outbox, so the
payments service can be exercised on its own through the real transport."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
from sqlalchemy import text

from shared.db import Database
from shared.events.envelope import EventPayload
from shared.events.orders import (
    CustomerCreated,
    OrderCancelled,
    OrderConfirmed,
    OrderFacts,
    OrderLine,
    OrderReturned,
    OrderSubmitted,
    ReturnedLine,
)
from shared.ids import new_id
from tests.conftest import auth
from tests.orders.factories import business_today
from tests.support.feed import publish
from tests.support.waiting import eventually


class OrdersFeed:
    """Publishes order events for one test database."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    async def publish(
        self, payload: EventPayload, *, key: UUID, business_date: date | None = None
    ) -> None:
        await publish(self.database_url, [(payload, "orders", str(key), business_date)])

    async def replicated(self, order_id: UUID, status: str = "confirmed") -> None:
        """Wait until the payments service's replica holds the order in `status`."""
        db = Database(self.database_url, pool_size=1)

        async def seen() -> str | None:
            async with db.sessions() as session:
                found = await session.execute(
                    text("SELECT status FROM payments.known_orders WHERE order_id = :id"),
                    {"id": order_id},
                )
                return found.scalar_one_or_none()

        try:
            await eventually(seen, lambda known: known == status, seconds=30)
        finally:
            await db.dispose()

    async def customer(self, name: str = "Acme") -> UUID:
        customer_id = new_id()
        await self.publish(
            CustomerCreated(
                customer_id=customer_id,
                name=name,
                contact=None,
                region="east",
                segment="vip",
                payment_terms_days=30,
                credit_limit=None,
                created_at=datetime.now(UTC),
            ),
            key=customer_id,
        )
        return customer_id

    @staticmethod
    def facts(customer_id: UUID, gross: Decimal, order_id: UUID | None = None) -> OrderFacts:
        line = OrderLine(
            line_no=1,
            sku="SKU-1",
            name="Widget",
            category="tools",
            quantity=Decimal(1),
            unit_price=gross,
            discount=Decimal(0),
            tax_rate=Decimal(0),
            net=gross,
            tax=Decimal(0),
            gross=gross,
        )
        return OrderFacts(
            order_id=order_id or new_id(),
            number="SO-2026-999999",
            customer_id=customer_id,
            customer_name="Acme",
            region="east",
            segment="vip",
            channel="pos",
            salesperson="ann",
            created_by="ann",
            lines=[line],
            net=gross,
            tax=Decimal(0),
            gross=gross,
        )

    async def submitted(self, customer_id: UUID, gross: str, order_id: UUID | None = None) -> UUID:
        facts = self.facts(customer_id, Decimal(gross), order_id)
        await self.publish(
            OrderSubmitted(order=facts, submitted_at=datetime.now(UTC), approvals_required=1),
            key=customer_id,
        )
        return facts.order_id

    async def confirmed(self, customer_id: UUID, gross: str, order_id: UUID | None = None) -> UUID:
        facts = self.facts(customer_id, Decimal(gross), order_id)
        today = business_today()
        await self.publish(
            OrderConfirmed(
                order=facts,
                invoice_number="INV-2026-999999",
                business_date=today,
                due_date=today + timedelta(days=30),
                instalments=[],
                confirmed_at=datetime.now(UTC),
            ),
            key=customer_id,
            business_date=today,
        )
        return facts.order_id

    async def cancelled(self, customer_id: UUID, order_id: UUID, gross: str) -> None:
        today = business_today()
        await self.publish(
            OrderCancelled(
                order_id=order_id,
                number="SO-2026-999999",
                customer_id=customer_id,
                was_confirmed=True,
                invoice_number="INV-2026-999999",
                business_date=today,
                reversed_net=Decimal(gross),
                reversed_tax=Decimal(0),
                reversed_gross=Decimal(gross),
                reason="test",
            ),
            key=customer_id,
            business_date=today,
        )

    async def returned(self, customer_id: UUID, order_id: UUID, gross: str) -> None:
        today = business_today()
        amount = Decimal(gross)
        await self.publish(
            OrderReturned(
                credit_note_id=new_id(),
                credit_note_number="CRN-2026-999999",
                order_id=order_id,
                customer_id=customer_id,
                business_date=today,
                lines=[
                    ReturnedLine(
                        line_no=1,
                        sku="SKU-1",
                        category="tools",
                        quantity=Decimal(1),
                        net=amount,
                        tax=Decimal(0),
                        gross=amount,
                    )
                ],
                net=amount,
                tax=Decimal(0),
                gross=amount,
                reason="damaged",
            ),
            key=customer_id,
            business_date=today,
        )


async def read_payment(client: httpx.AsyncClient, payment_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/payments/{payment_id}", headers=auth("finance"))
    assert response.status_code == 200, response.text
    return response.json()


async def payment_settles(
    client: httpx.AsyncClient, payment_id: str, **expected: str
) -> dict[str, Any]:
    """Wait until the payment reads back with the expected field values."""
    return await eventually(
        lambda: read_payment(client, payment_id),
        lambda p: all(p[k] == v for k, v in expected.items()),
    )


async def take_payment(
    client: httpx.AsyncClient,
    customer_id: UUID,
    amount: str,
    *,
    allocations: list[dict[str, str]] | None = None,
    **extra: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"customer_id": str(customer_id), "amount": amount, "method": "cash"}
    if allocations is not None:
        body["allocations"] = allocations
    body.update(extra)
    return await client.post("/v1/payments", json=body, headers=auth("pos", "till-1"))
