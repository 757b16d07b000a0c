"""Returns within what is still returnable (also concurrently) and cancel reversals."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx

from tests.orders.factories import (
    POS,
    SALES,
    act,
    assert_problem,
    get_order,
    make_order,
    make_product,
    ok,
    outbox_events,
)


async def returning(
    client: httpx.AsyncClient, order: dict, lines: list[dict], **extra: object
) -> httpx.Response:
    return await client.post(
        f"/v1/orders/{order['id']}/returns", json={"lines": lines, **extra}, headers=POS
    )


async def test_return_issues_credit_note_and_lowers_outstanding(client: httpx.AsyncClient) -> None:
    order = await make_order(client, unit_price="10", quantity="4", submit=True)  # 45.20
    sku = order["lines"][0]["sku"]
    note = ok(await returning(client, order, [{"sku": sku, "quantity": "1"}], reason="broken"), 201)
    assert (note["net"], note["tax"], note["gross"], note["reason"]) == (
        "10.00",
        "1.30",
        "11.30",
        "broken",
    )
    assert note["lines"] == [
        {"line_no": 1, "sku": sku, "quantity": "1", "net": "10.00", "tax": "1.30", "gross": "11.30"}
    ]
    after = await get_order(client, order["id"])
    assert (after["credited"], after["outstanding"]) == ("11.30", "33.90")
    assert after["lines"][0]["returned_quantity"] == "1"
    assert [n["number"] for n in after["credit_notes"]] == [note["number"]]


async def test_over_return_is_409_and_changes_nothing(client: httpx.AsyncClient) -> None:
    order = await make_order(client, quantity="2", submit=True)
    sku = order["lines"][0]["sku"]
    body = assert_problem(
        await returning(client, order, [{"sku": sku, "quantity": "3"}]), 409, "only 2"
    )
    assert body["field"] == "lines.0.quantity"
    ok(await returning(client, order, [{"sku": sku, "quantity": "1.5"}]), 201)
    assert_problem(
        await returning(client, order, [{"sku": sku, "quantity": "0.501"}]), 409, "only 0.5"
    )
    # Two request lines of one SKU count together.
    assert_problem(
        await returning(
            client, order, [{"sku": sku, "quantity": "0.3"}, {"sku": sku, "quantity": "0.3"}]
        ),
        409,
    )
    assert (await get_order(client, order["id"]))["lines"][0]["returned_quantity"] == "1.5"


async def test_sku_on_several_lines_and_line_no(client: httpx.AsyncClient) -> None:
    product = await make_product(client, unit_price="5")
    sku = product["sku"]
    order = await make_order(
        client,
        lines=[{"sku": sku, "quantity": "1"}, {"sku": sku, "quantity": "2", "unit_price": "4"}],
        submit=True,
    )
    note = ok(await returning(client, order, [{"sku": sku, "quantity": "2"}]), 201)
    assert [(n["line_no"], n["quantity"]) for n in note["lines"]] == [(1, "1"), (2, "1")]
    pinned = ok(await returning(client, order, [{"sku": sku, "quantity": "1", "line_no": 2}]), 201)
    assert [(n["line_no"], n["quantity"]) for n in pinned["lines"]] == [(2, "1")]
    assert_problem(await returning(client, order, [{"sku": sku, "quantity": "1"}]), 409)
    other = await make_product(client)
    body = assert_problem(
        await returning(client, order, [{"sku": other["sku"], "quantity": "1"}]),
        422,
        "not on this order",
    )
    assert body["field"] == "lines.0.sku"
    body = assert_problem(
        await returning(client, order, [{"sku": sku, "quantity": "1", "line_no": 9}]), 422
    )
    assert body["field"] == "lines.0.line_no"


async def test_returns_only_on_confirmed_or_fulfilled(client: httpx.AsyncClient) -> None:
    draft = await make_order(client)
    sku = draft["lines"][0]["sku"]
    body = assert_problem(
        await returning(client, draft, [{"sku": sku, "quantity": "1"}]), 409, "draft"
    )
    assert body["order_status"] == "draft"
    fulfilled = ok(await act(client, await make_order(client, submit=True), "fulfil", SALES))
    ok(
        await returning(
            client, fulfilled, [{"sku": fulfilled["lines"][0]["sku"], "quantity": "1"}]
        ),
        201,
    )
    cancelled = ok(await act(client, await make_order(client, submit=True), "cancel", SALES))
    assert_problem(
        await returning(
            client, cancelled, [{"sku": cancelled["lines"][0]["sku"], "quantity": "1"}]
        ),
        409,
        "cancelled",
    )


async def test_concurrent_returns_never_over_return(client: httpx.AsyncClient) -> None:
    order = await make_order(client, unit_price="3.33", quantity="10", submit=True)
    sku = order["lines"][0]["sku"]
    responses = await asyncio.gather(
        *(returning(client, order, [{"sku": sku, "quantity": "1"}]) for _ in range(14))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 10 + [409] * 4
    final = await get_order(client, order["id"])
    assert final["lines"][0]["returned_quantity"] == "10"
    assert final["credited"] == final["gross"]
    assert sum(Decimal(n["gross"]) for n in final["credit_notes"]) == Decimal(final["gross"])
    numbers = sorted(n["number"] for n in final["credit_notes"])
    assert len(set(numbers)) == 10


async def test_cancel_confirmed_reverses_what_credit_notes_left(client: httpx.AsyncClient) -> None:
    order = await make_order(client, unit_price="10", quantity="3", submit=True)  # 30.00 + 3.90
    ok(await returning(client, order, [{"sku": order["lines"][0]["sku"], "quantity": "1"}]), 201)
    cancelled = ok(await act(client, order, "cancel", SALES, {"reason": "customer left"}))
    assert cancelled["status"] == "cancelled"
    assert cancelled["outstanding"] == "0.00"
    events = [
        e
        for e in await outbox_events(client, order["customer_id"])
        if e["type"] == "order.cancelled"
    ]
    assert len(events) == 1
    data = events[0]["data"]
    assert (data["reversed_net"], data["reversed_tax"], data["reversed_gross"]) == (
        "20.00",
        "2.60",
        "22.60",
    )
    assert data["was_confirmed"] is True
    assert data["invoice_number"] == order["invoice_number"]
    assert data["reason"] == "customer left"
    assert (
        events[0]["business_date"] == cancelled["history"][-1]["at"][:10]
        or events[0]["business_date"]
    )


async def test_fulfilled_order_cannot_be_cancelled(client: httpx.AsyncClient) -> None:
    order = ok(await act(client, await make_order(client, submit=True), "fulfil", SALES))
    assert_problem(
        await act(client, order, "cancel", SALES), 409, "fulfilled", "cannot be cancelled"
    )
