"""Every change raises its event in the same commit: types, payloads, keys and dates."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import text

from shared.events import orders as ev
from tests.orders.factories import (
    ADMIN,
    APPROVER,
    POS,
    SALES,
    act,
    business_today,
    database,
    make_customer,
    make_order,
    make_product,
    ok,
    outbox_events,
)


def of_type(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == type_]


async def test_order_life_events(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client, region="north", segment="vip", payment_terms_days=10)
    product = await make_product(client, unit_price="20000", tax_rate="0.13", category="big")
    order = await make_order(
        client,
        customer=customer,
        lines=[{"sku": product["sku"], "quantity": "1", "discount": "0.50"}],
        instalments=[
            {"due_date": "2031-01-01", "amount": "10000"},
            {"due_date": "2031-02-01", "amount": "12599.44"},
        ],
        submit=True,
    )
    ok(await act(client, order, "approve", APPROVER))
    ok(await act(client, order, "fulfil", SALES))
    note = ok(
        await client.post(
            f"/v1/orders/{order['id']}/returns",
            json={"lines": [{"sku": product["sku"], "quantity": "0.25"}], "reason": "scratched"},
            headers=POS,
        ),
        201,
    )
    events = await outbox_events(client, customer["id"])
    assert [e["type"] for e in events] == [
        "customer.created",
        "order.submitted",
        "order.approved",
        "order.confirmed",
        "order.fulfilled",
        "order.returned",
    ]
    assert all(e["source"] == "orders" and e["key"] == customer["id"] for e in events)

    submitted = ev.OrderSubmitted.model_validate(events[1]["data"])
    assert submitted.approvals_required == 1
    assert submitted.business_date == business_today()  # not backdated: the day submitted
    facts = submitted.order
    assert (facts.customer_name, facts.region, facts.segment) == (customer["name"], "north", "vip")
    assert (facts.channel, facts.salesperson, facts.created_by) == ("pos", "sally", "till-1")
    assert (facts.net, facts.tax, facts.gross) == (
        Decimal("19999.50"),
        Decimal("2599.94"),
        Decimal("22599.44"),
    )
    line = facts.lines[0]
    assert (line.sku, line.category, line.quantity, line.discount) == (
        product["sku"],
        "big",
        Decimal(1),
        Decimal("0.50"),
    )
    assert events[1]["data"]["order"]["lines"][0]["tax_rate"] == "0.13"

    approved = ev.OrderApproved.model_validate(events[2]["data"])
    assert (approved.approver, approved.approvals, approved.approvals_required) == ("ann", 1, 1)

    confirmed = ev.OrderConfirmed.model_validate(events[3]["data"])
    today = business_today()
    assert confirmed.invoice_number.startswith(f"INV-{today.year}-")
    assert confirmed.business_date == today
    assert (confirmed.due_date - today).days == 10
    assert [(i.due_date.isoformat(), str(i.amount)) for i in confirmed.instalments] == [
        ("2031-01-01", "10000.00"),
        ("2031-02-01", "12599.44"),
    ]
    assert events[3]["business_date"] == today.isoformat()
    assert events[3]["period"] == today.isoformat()[:7]

    returned = ev.OrderReturned.model_validate(events[5]["data"])
    assert returned.reason == "scratched"
    assert (returned.net, returned.tax, returned.gross) == (
        Decimal("4999.88"),
        Decimal("649.99"),
        Decimal("5649.87"),
    )
    assert returned.lines[0].quantity == Decimal("0.25")
    assert returned.lines[0].category == "big"
    # The number is taken by the return's last statement, which writes its event and its
    # audit entry too: both name it, as the credit note does.
    assert returned.credit_note_number == note["number"]
    assert note["number"].startswith(f"CRN-{business_today().year}-")
    assert events[5]["data"]["lines"][0]["quantity"] == "0.25"
    audit = ok(
        await client.get(
            "/v1/orders/audit", params={"entity": "order", "entity_id": order["id"]}, headers=ADMIN
        )
    )
    assert audit["items"][-1]["action"] == "order.returned"
    assert audit["items"][-1]["details"]["credit_note"] == note["number"]
    async with database(client).sessions() as session:
        stored = await session.execute(
            text("SELECT number FROM orders.credit_notes WHERE order_id = :id"),
            {"id": order["id"]},
        )
        assert stored.scalars().all() == [note["number"]]


async def test_confirmation_without_instalments_dues_the_gross(client: httpx.AsyncClient) -> None:
    order = await make_order(client, submit=True)
    events = of_type(await outbox_events(client, order["customer_id"]), "order.confirmed")
    assert events[0]["data"]["instalments"] == [
        {"due_date": order["due_date"], "amount": order["gross"]}
    ]


async def test_reject_and_cancel_events(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client)
    big = await make_order(client, customer=customer, unit_price="50000", submit=True)
    ok(await act(client, big, "reject", APPROVER, {"reason": "too big"}))
    draft = await make_order(client, customer=customer)
    ok(await act(client, draft, "cancel", SALES))
    events = await outbox_events(client, customer["id"])
    rejected = of_type(events, "order.rejected")[0]["data"]
    assert (rejected["order_id"], rejected["by"], rejected["reason"]) == (
        big["id"],
        "ann",
        "too big",
    )
    cancelled = of_type(events, "order.cancelled")[0]["data"]
    assert cancelled["was_confirmed"] is False
    assert cancelled["invoice_number"] is None
    assert cancelled["reversed_gross"] == "0.00"
    # The draft never reached the ledger: no submitted or confirmed event for it.
    assert all(
        e["data"].get("order", {}).get("order_id") != draft["id"]
        for e in of_type(events, "order.submitted")
    )


async def test_failed_request_writes_no_event(client: httpx.AsyncClient) -> None:
    order = await make_order(client, submit=True)
    before = await outbox_events(client, order["customer_id"])
    response = await client.post(
        f"/v1/orders/{order['id']}/returns",
        json={"lines": [{"sku": order["lines"][0]["sku"], "quantity": "5"}]},
        headers=POS,
    )
    assert response.status_code == 409
    assert await outbox_events(client, order["customer_id"]) == before


async def test_customer_and_product_events(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client, credit_limit="100")
    ok(
        await client.patch(
            f"/v1/customers/{customer['id']}",
            json={"credit_limit": "250.5", "region": customer["region"]},
            headers=SALES,
        )
    )
    ok(await client.patch(f"/v1/customers/{customer['id']}", json={}, headers=SALES))
    events = await outbox_events(client, customer["id"])
    assert [e["type"] for e in events] == ["customer.created", "customer.updated"]
    created = ev.CustomerCreated.model_validate(events[0]["data"])
    assert created.credit_limit == Decimal("100.00")
    assert events[1]["data"]["changed"] == ["credit_limit"]
    assert events[1]["data"]["credit_limit"] == "250.50"

    product = await make_product(client, tax_rate="0.06")
    ok(await client.patch(f"/v1/products/{product['sku']}", json={"active": False}, headers=SALES))
    events = await outbox_events(client, product["sku"])
    assert [e["type"] for e in events] == ["product.created", "product.updated"]
    assert events[0]["data"]["tax_rate"] == "0.06"
    assert (events[1]["data"]["active"], events[1]["data"]["changed"]) == (False, ["active"])
