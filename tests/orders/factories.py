"""Small builders of customers, products and orders through the HTTP API, plus readers of
what the orders service wrote (outbox events, audit entries)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.periods import today
from shared.tables import common_tables
from tests.conftest import auth

PROBLEM = "application/problem+json"

SALES = auth("sales", "sam")
POS = auth("pos", "till-1")
APPROVER = auth("approver", "ann")
APPROVER_2 = auth("approver", "abe")
FINANCE = auth("finance", "fay")
ADMIN = auth("admin", "root")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def business_today() -> date:
    return today(ZoneInfo("Asia/Shanghai"))


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON answer (an object or an array) of a response that has `status`."""
    assert response.status_code == status, response.text[:600]
    return response.json()


async def make_customer(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": unique("Customer"), "payment_terms_days": 30, **fields}
    return ok(await client.post("/v1/customers", json=body, headers=SALES), 201)


async def make_product(
    client: httpx.AsyncClient,
    *,
    unit_price: str = "10.00",
    tax_rate: str = "0.13",
    **fields: Any,
) -> dict[str, Any]:
    body = {
        "sku": unique("SKU"),
        "name": "Widget",
        "category": "tools",
        "unit_price": unit_price,
        "tax_rate": tax_rate,
        **fields,
    }
    return ok(await client.post("/v1/products", json=body, headers=SALES), 201)


async def make_order(
    client: httpx.AsyncClient,
    *,
    customer: dict[str, Any] | None = None,
    lines: list[dict[str, Any]] | None = None,
    unit_price: str = "10.00",
    quantity: str = "1",
    submit: bool = False,
    headers: dict[str, str] = POS,
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    """An order (one line of a fresh product unless `lines` are given)."""
    customer = customer or await make_customer(client)
    if lines is None:
        product = await make_product(client, unit_price=unit_price)
        lines = [{"sku": product["sku"], "quantity": quantity}]
    body = {
        "customer_id": customer["id"],
        "channel": "pos",
        "salesperson": "sally",
        "lines": lines,
        "submit": submit,
        **fields,
    }
    return ok(await client.post("/v1/orders", json=body, headers=headers), expect)


async def act(
    client: httpx.AsyncClient,
    order: dict[str, Any],
    action: str,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    return await client.post(f"/v1/orders/{order['id']}/{action}", json=body, headers=headers)


async def get_order(client: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    return ok(await client.get(f"/v1/orders/{order_id}", headers=FINANCE))


def database(client: httpx.AsyncClient) -> Database:
    return client.app.state.db  # type: ignore[attr-defined]  # the test client keeps its app


async def outbox_events(client: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    """Every event the orders outbox holds under `key` (a customer id or a SKU), in order."""
    outbox = common_tables("orders").outbox
    async with database(client).sessions() as session:
        rows = await session.execute(
            select(outbox.c.payload).where(outbox.c.key == key).order_by(outbox.c.id)
        )
        return [row.payload for row in rows]


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    """The response is problem+json with `status` and a detail mentioning every word."""
    assert response.status_code == status, response.text[:600]
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status
    for word in words:
        assert word in body["detail"], (word, body["detail"])
    return body


async def until_a_backend_waits_on_an_advisory_lock(session: AsyncSession) -> None:
    """Return once some backend waits for an advisory lock (one the caller holds)."""
    for _ in range(1000):
        waiting = await session.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("nothing waited on the lock")
