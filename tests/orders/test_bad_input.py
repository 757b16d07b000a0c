"""Bad input is 422 problem+json naming the field; nothing a client sends is a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.orders.factories import (
    POS,
    SALES,
    assert_problem,
    make_customer,
    make_product,
)


@pytest.fixture(scope="module")
async def base(client: httpx.AsyncClient) -> dict[str, Any]:
    customer = await make_customer(client)
    product = await make_product(client, unit_price="10")
    inactive = await make_product(client, active=False)
    return {"customer": customer, "product": product, "inactive": inactive}


def order_body(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {
        "customer_id": base["customer"]["id"],
        "channel": "pos",
        "lines": [{"sku": base["product"]["sku"], "quantity": "2"}],
    }
    return {**body, **changes}


def line(base: dict[str, Any], **changes: Any) -> list[dict[str, Any]]:
    return [{"sku": base["product"]["sku"], "quantity": "2", **changes}]


ORDER_CASES: list[tuple[str, Any, str]] = [
    ("zero quantity", lambda b: order_body(b, lines=line(b, quantity="0")), "lines.0.quantity"),
    (
        "negative quantity",
        lambda b: order_body(b, lines=line(b, quantity="-1")),
        "lines.0.quantity",
    ),
    (
        "4 decimals quantity",
        lambda b: order_body(b, lines=line(b, quantity="1.0001")),
        "lines.0.quantity",
    ),
    ("huge quantity", lambda b: order_body(b, lines=line(b, quantity="1e30")), "lines.0.quantity"),
    ("NaN quantity", lambda b: order_body(b, lines=line(b, quantity="NaN")), "lines.0.quantity"),
    ("text quantity", lambda b: order_body(b, lines=line(b, quantity="two")), "lines.0.quantity"),
    ("bool quantity", lambda b: order_body(b, lines=line(b, quantity=True)), "lines.0.quantity"),
    (
        "3 decimals price",
        lambda b: order_body(b, lines=line(b, unit_price="1.005")),
        "lines.0.unit_price",
    ),
    (
        "negative price",
        lambda b: order_body(b, lines=line(b, unit_price="-1")),
        "lines.0.unit_price",
    ),
    (
        "negative discount",
        lambda b: order_body(b, lines=line(b, discount="-0.01")),
        "lines.0.discount",
    ),
    (
        "discount over amount",
        lambda b: order_body(b, lines=line(b, discount="20.01")),
        "lines.0.discount",
    ),
    ("unknown sku", lambda b: order_body(b, lines=line(b, sku="NO-SUCH")), "lines.0.sku"),
    (
        "unknown sku on line 2",
        lambda b: order_body(b, lines=[*line(b), {"sku": "NO-SUCH", "quantity": "1"}]),
        "lines.1.sku",
    ),
    (
        "inactive sku",
        lambda b: order_body(b, lines=line(b, sku=b["inactive"]["sku"])),
        "lines.0.sku",
    ),
    ("no lines", lambda b: order_body(b, lines=[]), "lines"),
    ("lines not a list", lambda b: order_body(b, lines="x"), "lines"),
    ("missing sku", lambda b: order_body(b, lines=[{"quantity": "1"}]), "lines.0.sku"),
    (
        "unknown customer",
        lambda b: order_body(b, customer_id="01900000-0000-7000-8000-000000000000"),
        "customer_id",
    ),
    ("customer not a uuid", lambda b: order_body(b, customer_id="abc"), "customer_id"),
    (
        "missing customer",
        lambda b: {k: v for k, v in order_body(b).items() if k != "customer_id"},
        "customer_id",
    ),
    ("bad channel", lambda b: order_body(b, channel="fax"), "channel"),
    ("other currency", lambda b: order_body(b, currency="USD"), "currency"),
    ("bad date", lambda b: order_body(b, business_date="2024-02-30"), "business_date"),
    ("unknown field", lambda b: order_body(b, colour="red"), "colour"),
    ("NUL in note", lambda b: order_body(b, note="a\x00b"), "note"),
    (
        "instalment of zero",
        lambda b: order_body(b, instalments=[{"due_date": "2030-01-01", "amount": "0"}]),
        "instalments.0.amount",
    ),
    ("submit not bool", lambda b: order_body(b, submit="maybe"), "submit"),
    ("body not an object", lambda b: [1, 2], "body"),
]


@pytest.mark.parametrize(("case", "make", "field"), ORDER_CASES, ids=[c[0] for c in ORDER_CASES])
async def test_bad_order_input(
    client: httpx.AsyncClient, base: dict[str, Any], case: str, make: Any, field: str
) -> None:
    response = await client.post("/v1/orders", json=make(base), headers=POS)
    body = assert_problem(response, 422)
    fields = {e["field"] for e in body.get("errors", [])} | {body.get("field")}
    assert field in fields, body
    assert field in body["detail"]


async def test_same_currency_is_accepted(client: httpx.AsyncClient, base: dict[str, Any]) -> None:
    response = await client.post("/v1/orders", json=order_body(base, currency="CNY"), headers=POS)
    assert response.status_code == 201, response.text
    assert response.json()["currency"] == "CNY"


async def test_malformed_json(client: httpx.AsyncClient) -> None:
    for url in ("/v1/orders", "/v1/customers", "/v1/products"):
        response = await client.post(
            url, content=b'{"name": ', headers={**SALES, "Content-Type": "application/json"}
        )
        body = assert_problem(response, 422, "malformed JSON")
        assert body["errors"][0]["field"] == "body"


CUSTOMER_CASES: list[tuple[dict[str, Any], str]] = [
    ({}, "name"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "x", "payment_terms_days": -1}, "payment_terms_days"),
    ({"name": "x", "payment_terms_days": "soon"}, "payment_terms_days"),
    ({"name": "x", "credit_limit": "-5"}, "credit_limit"),
    ({"name": "x", "credit_limit": "1.234"}, "credit_limit"),
    ({"name": "x", "credit_limit": "1e30"}, "credit_limit"),
    ({"name": "x", "credit_limit": "123456789012345678901234567890.12"}, "credit_limit"),
    ({"name": "x", "region": ["a"]}, "region"),
]


@pytest.mark.parametrize(("body", "field"), CUSTOMER_CASES)
async def test_bad_customer_input(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(
        await client.post("/v1/customers", json=body, headers=SALES), 422, field
    )
    assert problem["errors"][0]["field"] == field


PRODUCT_CASES: list[tuple[dict[str, Any], str]] = [
    ({"name": "x", "unit_price": "1", "tax_rate": "0.13"}, "sku"),
    ({"sku": "a/b", "name": "x", "unit_price": "1", "tax_rate": "0.13"}, "sku"),
    ({"sku": "ok-1", "name": "x", "unit_price": "1", "tax_rate": "1.5"}, "tax_rate"),
    ({"sku": "ok-1", "name": "x", "unit_price": "1", "tax_rate": "0.12345"}, "tax_rate"),
    ({"sku": "ok-1", "name": "x", "unit_price": "-1", "tax_rate": "0.13"}, "unit_price"),
    ({"sku": "ok-1", "name": "x", "unit_price": 1.001, "tax_rate": "0.13"}, "unit_price"),
    (
        {"sku": "ok-1", "name": "x", "unit_price": "1", "tax_rate": "0.13", "active": "perhaps"},
        "active",
    ),
]


@pytest.mark.parametrize(("body", "field"), PRODUCT_CASES)
async def test_bad_product_input(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(
        await client.post("/v1/products", json=body, headers=SALES), 422, field
    )
    assert problem["errors"][0]["field"] == field


async def test_bad_update_and_query_input(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client)
    url = f"/v1/customers/{customer['id']}"
    assert_problem(await client.patch(url, json={"name": None}, headers=SALES), 422, "name")
    assert_problem(
        await client.patch(url, json={"credit_limit": "x"}, headers=SALES), 422, "credit_limit"
    )
    assert_problem(
        await client.get("/v1/orders", params={"status": "lost"}, headers=SALES), 422, "status"
    )
    assert_problem(
        await client.get("/v1/orders", params={"period": "2024-13"}, headers=SALES), 422, "period"
    )
    assert_problem(await client.get("/v1/orders", params={"limit": 0}, headers=SALES), 422, "limit")
    assert_problem(
        await client.get("/v1/orders", params={"cursor": "bm90LWEtdXVpZA"}, headers=SALES),
        422,
        "cursor",
    )
    assert_problem(await client.get("/v1/customers/nope", headers=SALES), 422, "customer_id")
    assert_problem(await client.get("/v1/products/NO-SUCH", headers=SALES), 404, "NO-SUCH")


async def test_bad_return_input(client: httpx.AsyncClient) -> None:
    from tests.orders.factories import make_order

    order = await make_order(client, submit=True)
    url = f"/v1/orders/{order['id']}/returns"
    sku = order["lines"][0]["sku"]
    for body, field in [
        ({"lines": []}, "lines"),
        ({"lines": [{"sku": sku, "quantity": "0"}]}, "lines.0.quantity"),
        ({"lines": [{"sku": sku, "quantity": "-1"}]}, "lines.0.quantity"),
        (
            {"lines": [{"sku": sku, "quantity": "1"}], "business_date": "3000-01-01"},
            "business_date",
        ),
    ]:
        problem = assert_problem(await client.post(url, json=body, headers=POS), 422, field)
        assert field in {e["field"] for e in problem.get("errors", [])} | {problem.get("field")}


async def test_nul_bytes_anywhere_are_422(client: httpx.AsyncClient) -> None:
    for url, params in [
        ("/v1/customers", {"region": "a\x00"}),
        ("/v1/customers", {"name": "a\x00"}),
        ("/v1/products", {"category": "a\x00"}),
        ("/v1/orders", {"salesperson": "a\x00"}),
        ("/v1/products/a%00b", {}),
    ]:
        assert_problem(await client.get(url, params=params, headers=SALES), 422)
    body = {"name": "a\x00b"}
    assert_problem(await client.post("/v1/customers", json=body, headers=SALES), 422, "name")


async def test_openapi_is_published(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/v1/orders", "/v1/orders/{order_id}/returns", "/v1/customers/{customer_id}"):
        assert path in spec["paths"]
    assert spec["paths"]["/v1/orders"]["post"]["description"].startswith("Create an order")
