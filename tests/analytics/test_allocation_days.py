"""An allocation counts from its invoice's day when its payment is older: the receivables of
the KPIs agree with the AR ageing on every day, whichever of the invoice and its allocation
analytics reads first."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
import pytest

from services.registry import service_module
from shared.clock import business_today
from shared.events.envelope import EventPayload
from shared.events.orders import OrderConfirmed
from shared.events.payments import PaymentAllocated
from shared.ids import new_id
from tests.conftest import AppClient, auth, migrate_all
from tests.payments.factories import OrdersFeed
from tests.support.database import fresh_database
from tests.support.feed import publish
from tests.support.waiting import eventually

ANALYST = auth("analyst", "ana")
URL = "/v1/analytics"
PAID_ON = date(2026, 3, 2)  # the payment's day
INVOICED_ON = date(2026, 3, 5)  # a later invoice it is allocated to
DAYS = [PAID_ON + timedelta(days=n) for n in range(7)]


def _invoice(customer: UUID, order: UUID) -> OrderConfirmed:
    return OrderConfirmed(
        order=OrdersFeed.facts(customer, Decimal("226.00"), order),
        invoice_number="INV-2026-000001",
        business_date=INVOICED_ON,
        due_date=INVOICED_ON,
        instalments=[],
        confirmed_at=datetime.now(UTC),
    )


def _allocation(customer: UUID, order: UUID) -> PaymentAllocated:
    return PaymentAllocated(
        allocation_id=new_id(),
        payment_id=new_id(),
        payment_number="PAY-2026-000001",
        customer_id=customer,
        order_id=order,
        amount=Decimal("100.00"),
        business_date=PAID_ON,
    )


async def _figures(client: httpx.AsyncClient) -> list[tuple[str, str, str]]:
    """Per day: receivables open by the KPIs, by the AR ageing, and collected that day."""
    rows = []
    for day in DAYS:
        kpis = (
            await client.get(
                f"{URL}/kpis", params={"from": str(day), "to": str(day)}, headers=ANALYST
            )
        ).json()
        ageing = (
            await client.get(f"{URL}/ar-ageing", params={"as_of": str(day)}, headers=ANALYST)
        ).json()
        rows.append((kpis["receivables_open"], ageing["totals"]["total"], kpis["collected"]))
    return rows


@pytest.fixture
def empty_database(pg_server: str) -> Iterator[str]:
    """A database of each test's own: the KPIs and the ageing sum every customer."""
    with fresh_database(pg_server) as url:
        yield url


@pytest.mark.parametrize("invoice_first", [True, False], ids=["invoice-first", "payment-first"])
async def test_an_allocation_counts_from_its_invoice_day(
    app_client: AppClient, empty_database: str, invoice_first: bool
) -> None:
    db = await migrate_all(empty_database)
    customer, order = new_id(), new_id()
    invoice: tuple[EventPayload, str, str, date | None] = (
        _invoice(customer, order),
        "orders",
        str(customer),
        INVOICED_ON,
    )
    allocation: tuple[EventPayload, str, str, date | None] = (
        _allocation(customer, order),
        "payments",
        str(customer),
        PAID_ON,
    )
    first, then = (invoice, allocation) if invoice_first else (allocation, invoice)
    async with app_client([service_module("analytics")], database_url=db) as client:
        client.app.dependency_overrides[business_today] = lambda: DAYS[-1]

        async def lifetime() -> dict[str, Any]:
            return (
                await client.get(f"{URL}/customers/{customer}/lifetime", headers=ANALYST)
            ).json()

        async def paid_on_its_day() -> dict[str, Any]:
            span = {"from": str(PAID_ON), "to": str(PAID_ON)}
            return (await client.get(f"{URL}/kpis", params=span, headers=ANALYST)).json()

        await publish(db, [first])
        if not invoice_first:  # the allocation is applied before its invoice comes
            await eventually(paid_on_its_day, lambda body: body["collected"] == "100.00")
        await publish(db, [then])
        await eventually(lifetime, lambda body: body.get("outstanding") == "126.00")
        figures = await _figures(client)
    before = [("0.00", "0.00", "0.00")] * (INVOICED_ON - PAID_ON).days
    after = [("126.00", "126.00", "100.00")] + [("126.00", "126.00", "0.00")] * 3
    assert figures == before + after
