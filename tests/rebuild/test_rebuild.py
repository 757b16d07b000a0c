"""`salesbook rebuild`: a read model rebuilt from the retained events equals the one the
consumers built as the events arrived, table by table, and the service answers from the old
model until the new one is swapped in."""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from services.rebuild import MODELS, rebuild
from services.registry import all_modules
from shared.db import Database
from tests.cli.processes import clean_env, salesbook_command
from tests.conftest import AppClient, auth, migrate_all
from tests.support.waiting import eventually

SALES, POS, FINANCE = auth("sales", "sam"), auth("pos", "till"), auth("finance", "fay")
APPROVER, ANALYST = auth("approver", "ann"), auth("analyst", "al")
MONTH = "2026-10"
# Counters that batching may leave at zero (a customer's first order moved to an earlier day
# by a later batch): a zero count is no count.
COUNTERS = {"first_orders_by_day", "new_customers_by_month", "active_customers_by_month"}


@pytest.fixture(scope="module")
async def db(own_database: str) -> str:
    return await migrate_all(own_database)


@pytest.fixture
async def client(app_client: AppClient, db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(all_modules(), database_url=db) as c:
        yield c


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text[:500]
    return response.json()


async def order(client: httpx.AsyncClient, customer: str, lines: list, day: str) -> dict:
    body = {
        "customer_id": customer,
        "channel": "pos",
        "salesperson": "sam",
        "lines": lines,
        "business_date": day,
        "submit": True,
    }
    return ok(await client.post("/v1/orders", json=body, headers=POS), 201)


async def pay(
    client: httpx.AsyncClient, customer: str, amount: str, day: str, to: tuple = ()
) -> dict:
    """A payment, allocated to `to` = (order id, amount) if given."""
    body: dict[str, Any] = {
        "customer_id": customer,
        "amount": amount,
        "method": "wechat",
        "received_at": f"{day}T10:00:00+08:00",
    }
    if to:
        body["allocations"] = [{"order_id": to[0], "amount": to[1]}]
    return ok(await client.post("/v1/payments", json=body, headers=POS), 201)


async def traffic(client: httpx.AsyncClient) -> None:
    """Two months of documents of every kind, the first of them closed."""
    customers = []
    for name, terms in (("Alice Ltd", 30), ("Bob Co", 0), ("Carol", 15)):
        body = {"name": name, "payment_terms_days": terms, "region": "east"}
        customers.append(ok(await client.post("/v1/customers", json=body, headers=SALES), 201))
    for sku, category, price in (("P1", "pumps", "100.00"), ("P2", "pipes", "50.00")):
        body = {"sku": sku, "name": sku, "category": category, "unit_price": price}
        body["tax_rate"] = "0.13"
        ok(await client.post("/v1/products", json=body, headers=SALES), 201)
    alice, bob, carol = (c["id"] for c in customers)
    first = await order(client, alice, [{"sku": "P1", "quantity": "3"}], f"{MONTH}-05")
    big = await order(client, bob, [{"sku": "P1", "quantity": "300"}], f"{MONTH}-10")
    ok(await client.post(f"/v1/orders/{big['id']}/approve", headers=APPROVER))
    mixed = [{"sku": "P1", "quantity": "1"}, {"sku": "P2", "quantity": "4"}]
    third = await order(client, carol, mixed, f"{MONTH}-12")
    ok(await client.post(f"/v1/orders/{third['id']}/cancel", json={"reason": "x"}, headers=SALES))
    returns = {"lines": [{"sku": "P1", "quantity": "1"}], "business_date": f"{MONTH}-20"}
    ok(await client.post(f"/v1/orders/{first['id']}/returns", json=returns, headers=POS), 201)
    await pay(client, alice, "200.00", f"{MONTH}-15", to=(first["id"], "200.00"))
    bobs = await pay(client, bob, "30000.00", f"{MONTH}-25", to=(big["id"], "30000.00"))
    refund = {"amount": "1000.00", "business_date": f"{MONTH}-28", "reason": "damaged"}
    ok(await client.post(f"/v1/payments/{bobs['id']}/refunds", json=refund, headers=FINANCE), 201)
    ok(await client.post(f"/v1/closing/periods/{MONTH}/close", headers=FINANCE), 202)
    await eventually(
        lambda: client.get(f"/v1/closing/periods/{MONTH}", headers=FINANCE),
        lambda r: r.json()["status"] == "closed",
        seconds=30,
    )
    # One day of everything for one customer: the statement lists it in the order it
    # happened, which a rebuild (reading one source after the other) must not change.
    dora = ok(await client.post("/v1/customers", json={"name": "Dora"}, headers=SALES), 201)
    day = "2026-11-02"
    sold = await order(client, dora["id"], [{"sku": "P2", "quantity": "2"}], day)
    await pay(client, dora["id"], "7.00", day)
    back = {"lines": [{"sku": "P2", "quantity": "1"}], "business_date": day}
    ok(await client.post(f"/v1/orders/{sold['id']}/returns", json=back, headers=POS), 201)
    paid = await pay(client, dora["id"], "100.00", day)
    refund = {"amount": "2.00", "business_date": day, "reason": "change"}
    ok(await client.post(f"/v1/payments/{paid['id']}/refunds", json=refund, headers=FINANCE), 201)
    later = await order(client, carol, mixed, "2026-11-03")
    await pay(client, carol, "100.00", "2026-11-04", to=(later["id"], "80.00"))
    await pay(client, alice, "50.00", "2026-11-05")


async def caught_up(url: str) -> None:
    """Until every subscription has applied everything its sources hold."""

    async def behind() -> int:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetchval(
                """
                SELECT count(*) FROM (VALUES ('closing', 'closing.ledger', 'orders'),
                    ('closing', 'closing.ledger', 'payments'),
                    ('analytics', 'analytics.read_models', 'orders'),
                    ('analytics', 'analytics.read_models', 'payments'),
                    ('payments', 'payments.orders', 'orders')) AS s(schema, consumer, source)
                WHERE coalesce((SELECT max(id) FROM orders.outbox WHERE s.source = 'orders'),
                               (SELECT max(id) FROM payments.outbox WHERE s.source = 'payments'),
                               0)
                   <> coalesce((SELECT position FROM closing.consumer_offsets o
                                 WHERE s.schema = 'closing' AND o.consumer = s.consumer
                                   AND o.source = s.source),
                               (SELECT position FROM analytics.consumer_offsets o
                                 WHERE s.schema = 'analytics' AND o.consumer = s.consumer
                                   AND o.source = s.source),
                               (SELECT position FROM payments.consumer_offsets o
                                 WHERE s.schema = 'payments' AND o.consumer = s.consumer
                                   AND o.source = s.source), 0)
                """
            )
        finally:
            await connection.close()

    async def probe() -> int:
        return await behind()

    await eventually(probe, lambda n: n == 0, seconds=30)


async def tables(url: str, model: str) -> dict[str, list[tuple]]:
    """Every row of every table of the model, without the columns a sequence or the clock
    fills in, in a stable order."""
    spec = MODELS[model]
    connection = await asyncpg.connect(url)
    try:
        found = {}
        for table in spec.table_names():
            columns = await connection.fetch(
                """
                SELECT column_name FROM information_schema.columns
                 WHERE table_schema = $1 AND table_name = $2
                   AND coalesce(column_default, '') NOT LIKE 'nextval%'
                   AND coalesce(column_default, '') NOT LIKE '%now()%'
                 ORDER BY ordinal_position
                """,
                spec.schema,
                table,
            )
            names = ", ".join(f'"{c["column_name"]}"' for c in columns)
            rows = await connection.fetch(f"SELECT {names} FROM {spec.schema}.{table}")
            kept = [tuple(r) for r in rows if not (table in COUNTERS and r["customers"] == 0)]
            found[table] = sorted(kept, key=repr)
        return found
    finally:
        await connection.close()


async def figures(client: httpx.AsyncClient) -> dict[str, Any]:
    """What the services answer from the read models."""
    span = {"from": "2026-10-01", "to": "2026-11-30"}
    customers = ok(await client.get("/v1/customers", params={"limit": 500}, headers=SALES))
    statements = {
        c["name"]: ok(
            await client.get(
                f"/v1/closing/customers/{c['id']}/statement", params=span, headers=FINANCE
            )
        )
        for c in customers["items"]
    }
    return {
        "statements": statements,
        "kpis": ok(await client.get("/v1/analytics/kpis", params=span, headers=ANALYST)),
        "balances": ok(await client.get(f"/v1/closing/periods/{MONTH}/balances", headers=FINANCE)),
        "trial": ok(await client.get("/v1/closing/periods/2026-11/trial-balance", headers=FINANCE)),
    }


async def test_a_rebuilt_model_equals_the_incremental_one(
    client: httpx.AsyncClient, db: str
) -> None:
    await traffic(client)
    await caught_up(db)
    before = await figures(client)
    database = Database(db)
    try:
        for model in MODELS:
            incremental = await tables(db, model)
            assert any(incremental.values()), model
            read = await rebuild(database, model, progress=False)
            assert read > 0
            rebuilt = await tables(db, model)
            for table, rows in incremental.items():
                assert rebuilt[table] == rows, f"{model}: {table} differs after the rebuild"
    finally:
        await database.dispose()
    assert await figures(client) == before


async def test_reads_during_a_rebuild_answer_the_old_figures(
    client: httpx.AsyncClient, db: str
) -> None:
    customer = ok(await client.post("/v1/customers", json={"name": "Dave"}, headers=SALES), 201)
    await caught_up(db)
    before = await figures(client)
    database = Database(db)
    seen: list[dict[str, Any]] = []

    async def midway() -> None:
        # The shadow is complete, the live tables untouched: the old figures, in full.
        seen.append(await figures(client))
        # An order arriving now reaches the old model through the live consumer, and the new
        # one through the rebuild's last catch-up: after the swap it counts once.
        await order(client, customer["id"], [{"sku": "P2", "quantity": "2"}], "2026-11-20")
        await caught_up(db)

    try:
        await rebuild(database, "analytics", progress=False, before_swap=midway)
    finally:
        await database.dispose()
    assert seen == [before]
    await caught_up(db)
    after = await figures(client)
    assert after["kpis"]["orders"] == before["kpis"]["orders"] + 1
    assert Decimal(after["kpis"]["net_sales"]) - Decimal(before["kpis"]["net_sales"]) == 100


async def test_the_rebuild_command_shows_its_progress_and_rate(
    client: httpx.AsyncClient, db: str, tmp_path
) -> None:
    customer = ok(await client.post("/v1/customers", json={"name": "Eve"}, headers=SALES), 201)
    sku = f"E-{uuid.uuid4().hex[:8]}"
    product = {"sku": sku, "name": "e", "unit_price": "9.00", "tax_rate": "0.13"}
    ok(await client.post("/v1/products", json=product, headers=SALES), 201)
    await order(client, customer["id"], [{"sku": sku, "quantity": "1"}], "2026-11-21")
    await caught_up(db)
    incremental = await tables(db, "closing")
    result = await asyncio.to_thread(
        subprocess.run,
        [*salesbook_command(), "rebuild", "closing"],
        env=clean_env(tmp_path, SALESBOOK_DATABASE_URL=db),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "rebuild closing: 100%" in result.stderr  # the progress bar, at its end
    assert "events/s" in result.stderr
    assert re.fullmatch(
        r"rebuilt closing from \d+ events in [\d.]+s \([\d,]+ events/s\)\n", result.stdout
    )
    assert await tables(db, "closing") == incremental
