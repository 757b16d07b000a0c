"""Idempotency-Key on every creating POST: a retry answers the same and creates nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import text

from tests.conftest import auth
from tests.orders.factories import (
    POS,
    SALES,
    assert_problem,
    database,
    make_customer,
    make_order,
    make_product,
    ok,
)


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def count_orders(client: httpx.AsyncClient, customer_id: str) -> int:
    page = ok(await client.get("/v1/orders", params={"customer_id": customer_id}, headers=SALES))
    return len(page["items"])


async def _one_line_order(client: httpx.AsyncClient, *, submit: bool) -> dict[str, Any]:
    """The body of an order of one unit of a new product for a new customer."""
    customer = await make_customer(client)
    product = await make_product(client)
    return {
        "customer_id": customer["id"],
        "channel": "pos",
        "lines": [{"sku": product["sku"], "quantity": "1"}],
        "submit": submit,
    }


async def test_order_retry_returns_first_response(client: httpx.AsyncClient) -> None:
    body = await _one_line_order(client, submit=True)
    key = str(uuid.uuid4())
    first = await client.post("/v1/orders", json=body, headers=keyed(POS, key))
    again = await client.post("/v1/orders", json=body, headers=keyed(POS, key))
    assert first.status_code == again.status_code == 201
    assert again.content == first.content  # the same bytes, keys in the same order
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert await count_orders(client, body["customer_id"]) == 1

    changed = {**body, "lines": [{**body["lines"][0], "quantity": "2"}]}
    response = await client.post("/v1/orders", json=changed, headers=keyed(POS, key))
    assert_problem(response, 422, "Idempotency-Key", "different request body")
    # Keys are per caller: another till may use the same key for its own order.
    other = await client.post("/v1/orders", json=body, headers=keyed(auth("pos", "till-2"), key))
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


async def test_concurrent_same_key_creates_one_order(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client)
    product = await make_product(client)
    body = {
        "customer_id": customer["id"],
        "channel": "pos",
        "lines": [{"sku": product["sku"], "quantity": "1"}],
        "submit": True,
    }
    key = str(uuid.uuid4())
    responses = await asyncio.gather(
        *(client.post("/v1/orders", json=body, headers=keyed(POS, key)) for _ in range(8))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.json()["invoice_number"] for r in responses}) == 1
    assert await count_orders(client, customer["id"]) == 1


async def test_failed_first_attempt_can_be_retried(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client)
    key = str(uuid.uuid4())
    body = {
        "customer_id": customer["id"],
        "channel": "pos",
        "lines": [{"sku": "NOPE", "quantity": "1"}],
    }
    assert_problem(await client.post("/v1/orders", json=body, headers=keyed(POS, key)), 422)
    assert_problem(await client.post("/v1/orders", json=body, headers=keyed(POS, key)), 422)


async def test_credit_hold_answer_is_replayed_too(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client, credit_limit="5.00")
    product = await make_product(client)
    body = {
        "customer_id": customer["id"],
        "channel": "pos",
        "lines": [{"sku": product["sku"], "quantity": "1"}],
        "submit": True,
    }
    key = str(uuid.uuid4())
    held = await client.post("/v1/orders", json=body, headers=keyed(POS, key))
    replayed = await client.post("/v1/orders", json=body, headers=keyed(POS, key))
    assert_problem(held, 409, "credit limit")
    assert_problem(replayed, 409, "credit limit")
    assert replayed.content == held.content
    assert await count_orders(client, customer["id"]) == 1


async def test_customer_product_and_return_retries(client: httpx.AsyncClient) -> None:
    key = str(uuid.uuid4())
    body = {"name": "Retry Co"}
    a = ok(await client.post("/v1/customers", json=body, headers=keyed(SALES, key)), 201)
    b = ok(await client.post("/v1/customers", json=body, headers=keyed(SALES, key)), 201)
    assert a == b

    product = {"sku": f"R-{key[:8]}", "name": "x", "unit_price": "1", "tax_rate": "0"}
    p1 = ok(await client.post("/v1/products", json=product, headers=keyed(SALES, key)), 201)
    p2 = ok(await client.post("/v1/products", json=product, headers=keyed(SALES, key)), 201)
    assert p1 == p2
    # Without a key a second create of the same SKU is a conflict.
    assert_problem(
        await client.post("/v1/products", json=product, headers=SALES), 409, "already exists"
    )

    order = await make_order(client, quantity="2", submit=True)
    ret = {"lines": [{"sku": order["lines"][0]["sku"], "quantity": "1"}]}
    url = f"/v1/orders/{order['id']}/returns"
    n1 = ok(await client.post(url, json=ret, headers=keyed(POS, key)), 201)
    n2 = ok(await client.post(url, json=ret, headers=keyed(POS, key)), 201)
    assert n1 == n2
    final = ok(await client.get(f"/v1/orders/{order['id']}", headers=SALES))
    assert len(final["credit_notes"]) == 1
    # The same key on another order's returns is a different request.
    other = await make_order(client, submit=True)
    ok(
        await client.post(
            f"/v1/orders/{other['id']}/returns",
            json={"lines": [{"sku": other["lines"][0]["sku"], "quantity": "1"}]},
            headers=keyed(POS, key),
        ),
        201,
    )


async def test_bad_key_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/customers", json={"name": "x"}, headers=keyed(SALES, "k" * 201)
    )
    assert_problem(response, 422, "Idempotency-Key")


async def test_an_answer_kept_as_an_object_is_replayed_as_well(client: httpx.AsyncClient) -> None:
    """Answers kept before they were kept as the text first sent were kept as JSON objects:
    a retry of one still gets the same answer, its keys in the database's order."""
    body = await _one_line_order(client, submit=False)
    key = str(uuid.uuid4())
    first = await client.post("/v1/orders", json=body, headers=keyed(POS, key))
    assert first.status_code == 201
    kind = text("SELECT jsonb_typeof(response) FROM orders.idempotency_keys WHERE key = :key")
    async with database(client).transaction() as session:
        assert await session.scalar(kind, {"key": key}) == "string"  # the text first sent
        await session.execute(
            text(
                "UPDATE orders.idempotency_keys SET response = (response #>> '{}')::jsonb "
                "WHERE key = :key"
            ),
            {"key": key},
        )
        assert await session.scalar(kind, {"key": key}) == "object"
    again = await client.post("/v1/orders", json=body, headers=keyed(POS, key))
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
