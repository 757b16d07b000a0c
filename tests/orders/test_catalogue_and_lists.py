"""Customers and products, and cursor pagination with filters over every list."""

from __future__ import annotations

from typing import Any

import httpx

from tests.orders.factories import (
    FINANCE,
    SALES,
    act,
    assert_problem,
    make_customer,
    make_order,
    make_product,
    ok,
    unique,
)


async def walk(client: httpx.AsyncClient, url: str, params: dict[str, Any]) -> list[dict]:
    """Every item of a list, page by page."""
    items: list[dict] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = ok(await client.get(url, params=query, headers=FINANCE))
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


async def test_customer_create_read_update(client: httpx.AsyncClient) -> None:
    customer = await make_customer(
        client, contact="+86 21 5555 0000", region="east", segment="vip", credit_limit="5000"
    )
    assert customer["credit_limit"] == "5000.00"
    assert customer["created_by"] == "sam"
    assert ok(await client.get(f"/v1/customers/{customer['id']}", headers=FINANCE)) == customer
    updated = ok(
        await client.patch(
            f"/v1/customers/{customer['id']}",
            json={"segment": "regular", "credit_limit": None, "payment_terms_days": 60},
            headers=SALES,
        )
    )
    assert (updated["segment"], updated["credit_limit"], updated["payment_terms_days"]) == (
        "regular",
        None,
        60,
    )
    assert updated["region"] == "east"  # untouched
    missing = "01900000-0000-7000-8000-000000000000"
    assert_problem(
        await client.patch(f"/v1/customers/{missing}", json={"name": "x"}, headers=SALES), 404
    )
    assert_problem(await client.get(f"/v1/customers/{missing}", headers=SALES), 404)


async def test_product_create_read_update(client: httpx.AsyncClient) -> None:
    product = await make_product(client, unit_price="12.5", tax_rate="0.09")
    assert (product["unit_price"], product["tax_rate"], product["active"]) == (
        "12.50",
        "0.09",
        True,
    )
    url = f"/v1/products/{product['sku']}"
    assert ok(await client.get(url, headers=FINANCE)) == product
    updated = ok(await client.patch(url, json={"unit_price": "13", "active": False}, headers=SALES))
    assert (updated["unit_price"], updated["active"]) == ("13.00", False)
    assert_problem(await client.patch(url, json={"unit_price": None}, headers=SALES), 422)
    assert_problem(
        await client.patch("/v1/products/NO-SUCH", json={"name": "x"}, headers=SALES), 404
    )


async def test_price_change_does_not_touch_existing_orders(client: httpx.AsyncClient) -> None:
    product = await make_product(client, unit_price="10")
    order = await make_order(client, lines=[{"sku": product["sku"], "quantity": "1"}])
    ok(
        await client.patch(
            f"/v1/products/{product['sku']}", json={"unit_price": "99"}, headers=SALES
        )
    )
    submitted = ok(await act(client, order, "submit", SALES))
    assert submitted["gross"] == "11.30"


async def test_customer_list_filters_and_pages(client: httpx.AsyncClient) -> None:
    region = unique("region")
    made = [
        await make_customer(client, region=region, segment="vip" if i % 2 else "regular")
        for i in range(7)
    ]
    everyone = await walk(client, "/v1/customers", {"region": region, "limit": 3})
    assert [c["id"] for c in everyone] == [c["id"] for c in made]  # creation order, no gaps
    vips = await walk(client, "/v1/customers", {"region": region, "segment": "vip", "limit": 2})
    assert [c["id"] for c in vips] == [c["id"] for c in made if c["segment"] == "vip"]
    by_name = ok(
        await client.get("/v1/customers", params={"name": made[0]["name"][-6:]}, headers=FINANCE)
    )
    assert [c["id"] for c in by_name["items"]] == [made[0]["id"]]


async def test_product_list_filters_and_pages(client: httpx.AsyncClient) -> None:
    category = unique("cat")
    made = [await make_product(client, category=category, active=i != 2) for i in range(5)]
    listed = await walk(client, "/v1/products", {"category": category, "limit": 2})
    assert [p["sku"] for p in listed] == sorted(p["sku"] for p in made)
    inactive = await walk(client, "/v1/products", {"category": category, "active": False})
    assert [p["sku"] for p in inactive] == [made[2]["sku"]]


async def test_order_list_is_stable_while_orders_are_added(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client)
    product = await make_product(client)
    lines = [{"sku": product["sku"], "quantity": "1"}]
    first = [await make_order(client, customer=customer, lines=lines) for _ in range(5)]
    page = ok(
        await client.get(
            "/v1/orders", params={"customer_id": customer["id"], "limit": 2}, headers=FINANCE
        )
    )
    # New orders arriving between pages land at the end, never shift or repeat a page.
    later = [await make_order(client, customer=customer, lines=lines) for _ in range(2)]
    rest = await walk(
        client,
        "/v1/orders",
        {"customer_id": customer["id"], "limit": 2, "cursor": page["next_cursor"]},
    )
    seen = [o["id"] for o in page["items"] + rest]
    assert seen == [o["id"] for o in first + later]


async def test_order_list_filters(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client)
    product = await make_product(client)
    lines = [{"sku": product["sku"], "quantity": "1"}]
    seller = unique("seller")
    draft = await make_order(client, customer=customer, lines=lines, salesperson=seller)
    online = await make_order(
        client, customer=customer, lines=lines, channel="online", salesperson=seller, submit=True
    )
    old = await make_order(
        client, customer=customer, lines=lines, business_date="2023-04-05", submit=True
    )

    async def ids(**params: Any) -> list[str]:
        return [
            o["id"]
            for o in await walk(client, "/v1/orders", {"customer_id": customer["id"], **params})
        ]

    assert await ids() == [draft["id"], online["id"], old["id"]]
    assert await ids(status="draft") == [draft["id"]]
    assert await ids(status="confirmed") == [online["id"], old["id"]]
    assert await ids(channel="online") == [online["id"]]
    assert await ids(salesperson=seller) == [draft["id"], online["id"]]
    assert await ids(period="2023-04") == [old["id"]]
    assert await ids(period="2023-05") == []
    assert await ids(created_by="till-1") == [draft["id"], online["id"], old["id"]]
