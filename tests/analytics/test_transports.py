"""The analytics consumer gives the same figures on either event transport."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from functools import partial
from operator import eq
from typing import Any

import pytest

from services.registry import service_module
from shared.app import ServiceModule
from tests.analytics.world import build
from tests.conftest import BOTH_TRANSPORTS, AppClient, auth, migrate_all
from tests.support.feed import publish
from tests.support.waiting import eventually

ANALYST = auth("analyst")
EVER = {"from": "2000-01-01", "to": "2100-01-01"}


@pytest.fixture(scope="module")
async def db(own_database: str) -> str:
    return await migrate_all(own_database)


@BOTH_TRANSPORTS
async def test_sales_per_customer_on_either_transport(app_client: AppClient, db: str) -> None:
    # Fresh customers per run, so both transports' worlds share the database and stay apart.
    world = build(seed=11, orders=12)
    # On kafka the sources' relays must run to carry their outboxes to the broker; these
    # stand-ins relay and nothing else, so the orders and payments services do not react
    # to the test's made-up documents.
    relays = [ServiceModule(name="orders", routers=[]), ServiceModule(name="payments", routers=[])]
    async with app_client([service_module("analytics"), *relays], database_url=db) as client:
        await publish(db, world.events)
        for customer in world.customers:
            cid = customer.customer_id
            if not any(i.customer_id == cid for i in world.invoices.values()):
                continue
            expected = world.sales(
                date(2000, 1, 1), date(2100, 1, 1), lambda f: f.sku, customer_id=cid
            )
            owed = sum(
                (
                    world.open_at(i, date(2100, 1, 1))
                    for i in world.invoices.values()
                    if i.customer_id == cid
                ),
                Decimal("0.00"),
            )

            async def probe(cid: Any = cid) -> tuple[dict[str, Decimal], Decimal | None]:
                sales = await client.get(
                    "/v1/analytics/sales",
                    params=EVER | {"group_by": "product", "customer_id": str(cid)},
                    headers=ANALYST,
                )
                life = await client.get(f"/v1/analytics/customers/{cid}/lifetime", headers=ANALYST)
                owes = Decimal(life.json()["outstanding"]) if life.status_code == 200 else None
                return {r["key"]: Decimal(r["revenue"]) for r in sales.json()["rows"]}, owes

            want = ({k: g["revenue"] for k, g in expected.items()}, owed)
            await eventually(probe, partial(eq, want), seconds=30)
