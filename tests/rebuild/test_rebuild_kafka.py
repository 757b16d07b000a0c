"""`salesbook rebuild` beside consumers on Kafka: the broker keeps their offsets, so the
inbox alone keeps what the rebuild applied from being applied again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest

from services.rebuild import rebuild
from services.registry import all_modules
from shared.db import Database
from tests.conftest import AppClient, migrate_all
from tests.rebuild.test_rebuild import ANALYST, SALES, ok, order, tables
from tests.support.waiting import eventually

SPAN = {"from": "2026-11-01", "to": "2026-11-30"}


@pytest.fixture(scope="module")
async def db(own_database: str) -> str:
    return await migrate_all(own_database)


@pytest.fixture
async def client(app_client: AppClient, db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(all_modules(), database_url=db) as c:
        yield c


async def kpis(client: httpx.AsyncClient) -> dict:
    return ok(await client.get("/v1/analytics/kpis", params=SPAN, headers=ANALYST))


@pytest.mark.parametrize("transport", ["kafka"], indirect=True)
async def test_a_rebuild_beside_kafka_consumers(client: httpx.AsyncClient, db: str) -> None:
    customer = ok(await client.post("/v1/customers", json={"name": "Kim"}, headers=SALES), 201)
    product = {"sku": "K1", "name": "k", "unit_price": "10.00", "tax_rate": "0.13"}
    ok(await client.post("/v1/products", json=product, headers=SALES), 201)
    for day in ("2026-11-02", "2026-11-03"):
        await order(client, customer["id"], [{"sku": "K1", "quantity": "1"}], day)
    before = await eventually(lambda: kpis(client), lambda k: k["orders"] == 2, seconds=60)
    incremental = await tables(db, "analytics")
    database = Database(db)
    try:
        assert await rebuild(database, "analytics", progress=False, transport="kafka") > 0
    finally:
        await database.dispose()
    assert await tables(db, "analytics") == incremental
    assert await kpis(client) == before
    await order(client, customer["id"], [{"sku": "K1", "quantity": "2"}], "2026-11-04")
    after = await eventually(lambda: kpis(client), lambda k: k["orders"] == 3, seconds=60)
    assert Decimal(after["net_sales"]) == Decimal(before["net_sales"]) + 20
