"""A month of real traffic through orders and payments, closed by the real protocol (both
sources answer for themselves), checked to the cent against figures worked out by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import httpx
import pytest

from services.registry import all_modules
from tests.conftest import AppClient, auth, migrate_all
from tests.support.waiting import eventually

SALES, POS, FINANCE = auth("sales", "sam"), auth("pos", "till"), auth("finance", "fay")
APPROVER = auth("approver", "ann")
MONTH = "2026-10"


@pytest.fixture(scope="module")
async def db(own_database: str) -> str:
    return await migrate_all(own_database)


@pytest.fixture
async def client(app_client: AppClient, db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(all_modules(), database_url=db) as c:
        yield c


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text[:500]
    return response.json()


async def order(client, customer: dict, sku: str, quantity: str, day: str) -> dict:
    body = {
        "customer_id": customer["id"],
        "channel": "pos",
        "salesperson": "sam",
        "lines": [{"sku": sku, "quantity": quantity}],
        "business_date": day,
        "submit": True,
    }
    return ok(await client.post("/v1/orders", json=body, headers=POS), 201)


async def pay(client, customer: dict, amount: str, day: str, order_id: str, allocate: str) -> dict:
    body = {
        "customer_id": customer["id"],
        "amount": amount,
        "method": "bank_transfer",
        "received_at": f"{day}T10:00:00+08:00",
        "allocations": [{"order_id": order_id, "amount": allocate}],
    }
    return ok(await client.post("/v1/payments", json=body, headers=POS), 201)


async def test_a_month_closes_to_the_cent(client: httpx.AsyncClient) -> None:
    alice = ok(
        await client.post(
            "/v1/customers", json={"name": "Alice Ltd", "payment_terms_days": 30}, headers=SALES
        ),
        201,
    )
    bob = ok(
        await client.post(
            "/v1/customers", json={"name": "Bob Co", "payment_terms_days": 0}, headers=SALES
        ),
        201,
    )
    ok(
        await client.post(
            "/v1/products",
            json={
                "sku": "P1",
                "name": "Pump",
                "category": "pumps",
                "unit_price": "100.00",
                "tax_rate": "0.13",
            },
            headers=SALES,
        ),
        201,
    )
    ok(
        await client.post(
            "/v1/products",
            json={
                "sku": "P2",
                "name": "Pipe",
                "category": "pipes",
                "unit_price": "50.00",
                "tax_rate": "0.06",
            },
            headers=SALES,
        ),
        201,
    )

    first = await order(client, alice, "P1", "3", "2026-10-05")  # 300 + 39 = 339.00
    assert first["status"] == "confirmed" and first["gross"] == "339.00"
    big = await order(client, bob, "P1", "300", "2026-10-10")  # 30000 + 3900 = 33900.00
    assert big["status"] == "submitted"
    big = ok(await client.post(f"/v1/orders/{big['id']}/approve", headers=APPROVER))
    assert big["status"] == "confirmed" and big["due_date"] == "2026-10-10"
    third = await order(client, alice, "P2", "2", "2026-10-12")  # 100 + 6 = 106.00
    ok(
        await client.post(
            f"/v1/orders/{third['id']}/cancel", json={"reason": "duplicate"}, headers=SALES
        )
    )
    credit = ok(
        await client.post(
            f"/v1/orders/{first['id']}/returns",
            json={"lines": [{"sku": "P1", "quantity": "1"}], "business_date": "2026-10-20"},
            headers=POS,
        ),
        201,
    )
    assert credit["gross"] == "113.00"
    await pay(client, alice, "200.00", "2026-10-15", first["id"], "200.00")
    bobs = await pay(client, bob, "30000.00", "2026-10-25", big["id"], "30000.00")
    refund = await client.post(
        f"/v1/payments/{bobs['id']}/refunds",
        json={"amount": "1000.00", "business_date": "2026-10-28"},
        headers=FINANCE,
    )
    assert refund.status_code == 201, refund.text

    # The order reads back what payments and returns did to it.
    read = await eventually(
        lambda: client.get(f"/v1/orders/{first['id']}", headers=SALES),
        lambda r: r.json()["paid"] == "200.00",
    )
    assert read.json()["credited"] == "113.00" and read.json()["outstanding"] == "26.00"

    # Two orders of the month still wait when it closes: one for its approval, one a draft.
    carol = ok(await client.post("/v1/customers", json={"name": "Carol"}, headers=SALES), 201)
    waiting = await order(client, carol, "P1", "200", "2026-10-29")  # 22600.00: approval
    assert waiting["status"] == "submitted"
    draft = ok(
        await client.post(
            "/v1/orders",
            json={
                "customer_id": carol["id"],
                "channel": "pos",
                "lines": [{"sku": "P2", "quantity": "1"}],  # 50 + 3 = 53.00
                "business_date": "2026-10-29",
                "instalments": [{"due_date": "2026-11-02", "amount": "53.00"}],
            },
            headers=POS,
        ),
        201,
    )
    assert draft["status"] == "draft"

    closing = ok(await client.post(f"/v1/closing/periods/{MONTH}/close", headers=FINANCE), 202)
    assert closing["status"] in ("closing", "closed")
    period = await eventually(
        lambda: client.get(f"/v1/closing/periods/{MONTH}", headers=FINANCE),
        lambda r: r.json()["status"] == "closed",
        seconds=30,
    )
    period = period.json()
    assert set(period["control_totals"]) == {"orders", "payments"}
    assert period["control_totals"]["orders"]["invoice"] == {"count": 3, "amount": "34345.00"}
    # A cancellation is dated on the day it happens (today), so it reverses in a later month.
    assert period["control_totals"]["orders"]["cancellation"] == {"count": 0, "amount": "0.00"}

    # Both sources now refuse documents dated into the closed month.
    late_order = await client.post(
        "/v1/orders",
        json={
            "customer_id": alice["id"],
            "channel": "pos",
            "lines": [{"sku": "P1", "quantity": "1"}],
            "business_date": "2026-10-30",
            "submit": True,
        },
        headers=POS,
    )
    assert late_order.status_code == 409 and MONTH in late_order.json()["detail"]
    late_payment = await client.post(
        "/v1/payments",
        json={
            "customer_id": alice["id"],
            "amount": "1.00",
            "method": "cash",
            "received_at": "2026-10-30T10:00:00+08:00",
        },
        headers=POS,
    )
    assert late_payment.status_code == 409

    # The orders that waited are dated into the closed month: confirming them as they are
    # is refused, naming the date; the approver (or the submitter) dates them anew.
    approve = f"/v1/orders/{waiting['id']}/approve"
    refused = await client.post(approve, headers=APPROVER)
    assert refused.status_code == 409 and refused.json()["field"] == "business_date"
    future = await client.post(approve, json={"business_date": "2999-01-01"}, headers=APPROVER)
    assert future.status_code == 422, future.text
    still_closed = await client.post(
        approve, json={"business_date": "2026-10-31"}, headers=APPROVER
    )
    assert still_closed.status_code == 409
    approved = ok(
        await client.post(approve, json={"business_date": "2026-11-02"}, headers=APPROVER)
    )
    assert (approved["status"], approved["business_date"], approved["period"]) == (
        "confirmed",
        "2026-11-02",
        "2026-11",
    )
    assert approved["invoice_number"].startswith("INV-2026-")
    submit = f"/v1/orders/{draft['id']}/submit"
    assert (await client.post(submit, headers=POS)).status_code == 409
    # Not after its instalment falls due, as at order entry.
    overdue = await client.post(submit, json={"business_date": "2026-11-03"}, headers=POS)
    assert overdue.status_code == 422 and overdue.json()["field"] == "business_date"
    submitted = ok(
        await client.post(
            submit, json={"business_date": "2026-11-02", "reason": "closed in October"}, headers=POS
        )
    )
    assert (submitted["status"], submitted["business_date"]) == ("confirmed", "2026-11-02")
    assert any(h["reason"] == "closed in October" for h in submitted["history"])

    rows = {
        r["customer_id"]: r
        for r in ok(await client.get(f"/v1/closing/periods/{MONTH}/balances", headers=FINANCE))[
            "items"
        ]
    }
    a, b = rows[alice["id"]], rows[bob["id"]]
    assert (
        a["opening"],
        a["invoiced"],
        a["returned"],
        a["received"],
        a["refunded"],
        a["closing"],
    ) == ("0.00", "445.00", "113.00", "200.00", "0.00", "132.00")
    assert (b["invoiced"], b["received"], b["refunded"], b["closing"]) == (
        "33900.00",
        "30000.00",
        "1000.00",
        "4900.00",
    )
    assert a["ageing"]["current"] == "132.00"  # due 2026-11-04 and 11-11, after the month's end
    assert b["ageing"]["d1_30"] == "4900.00"  # due 2026-10-10, 21 days late at 2026-10-31

    trial = ok(await client.get(f"/v1/closing/periods/{MONTH}/trial-balance", headers=FINANCE))
    assert trial["balanced"]
    accounts = {line["account"]: line for line in trial["lines"]}
    assert accounts["revenue"]["credit"] == "30400.00" and accounts["revenue"]["debit"] == "0.00"
    assert accounts["sales_returns"]["debit"] == "100.00"
    assert ok(await client.get(f"/v1/closing/periods/{MONTH}/verify", headers=FINANCE))["ok"]

    statement = ok(
        await client.get(
            f"/v1/closing/customers/{alice['id']}/statement",
            params={"from": "2026-10-01", "to": "2026-10-31"},
            headers=FINANCE,
        )
    )
    assert [line["kind"] for line in statement["lines"]] == [
        "invoice",
        "invoice",
        "payment",
        "credit_note",
    ]
    assert statement["closing"] == "132.00"
    assert date.fromisoformat(statement["lines"][-1]["date"]) == date(2026, 10, 20)
