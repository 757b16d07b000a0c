"""The payments service over HTTP, fed by order events through the real transport."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from uuid import UUID

import asyncpg
import httpx
import pytest

from services.registry import service_module
from shared.db import plain_url
from shared.ids import new_id
from tests.conftest import BOTH_TRANSPORTS, AppClient, auth
from tests.payments.factories import OrdersFeed, payment_settles, read_payment, take_payment


@pytest.fixture
async def client(app_client: AppClient) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client([service_module("orders"), service_module("payments")]) as c:
        yield c


@pytest.fixture
def feed(migrated: str) -> OrdersFeed:
    return OrdersFeed(migrated)


def assert_balanced(payment: dict) -> None:
    parts = (
        Decimal(payment["allocated"]) + Decimal(payment["unapplied"]) + Decimal(payment["refunded"])
    )
    assert parts == Decimal(payment["amount"]), payment


async def test_payment_without_allocations_is_unapplied_credit(client, feed) -> None:
    customer = await feed.customer()
    response = await take_payment(client, customer, "100.50", reference="till receipt 7")
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["number"].startswith("PAY-") and len(payment["number"]) == 15
    assert payment["amount"] == "100.50"
    assert payment["unapplied"] == "100.50"
    assert payment["allocated"] == "0.00"
    assert payment["period"] == payment["business_date"][:7]
    assert_balanced(payment)


@BOTH_TRANSPORTS
async def test_allocation_to_a_known_order_is_applied_at_once(client, feed) -> None:
    customer = await feed.customer()
    order = await feed.confirmed(customer, "300.00")
    response = await take_payment(
        client, customer, "500.00", allocations=[{"order_id": str(order), "amount": "200.00"}]
    )
    assert response.status_code == 201, response.text
    # Applied at once when the replica already has the order, else as soon as it arrives.
    await _wait_status(client, response.json()["id"], "applied")
    response = await client.get(f"/v1/payments/{response.json()['id']}", headers=auth("pos"))
    payment = response.json()
    assert payment["allocations"][0]["status"] == "applied"
    assert payment["allocated"] == "200.00" and payment["unapplied"] == "300.00"
    # 100.00 is still open on the order: 150 is too much, 100 fits exactly.
    too_much = await client.post(
        f"/v1/payments/{payment['id']}/allocations",
        json={"order_id": str(order), "amount": "150.00"},
        headers=auth("pos"),
    )
    assert too_much.status_code == 409
    assert too_much.headers["content-type"].startswith("application/problem+json")
    assert "100.00" in too_much.json()["detail"]
    fits = await client.post(
        f"/v1/payments/{payment['id']}/allocations",
        json={"allocations": [{"order_id": str(order), "amount": "100.00"}]},
        headers=auth("pos"),
    )
    assert fits.status_code == 201, fits.text
    assert fits.json()["unapplied"] == "200.00"
    assert_balanced(fits.json())


async def test_allocation_to_another_customers_order_is_refused(client, feed) -> None:
    alice, bob = await feed.customer("Alice"), await feed.customer("Bob")
    bobs_order = await feed.confirmed(bob, "50.00")
    paid = await take_payment(client, alice, "50.00")
    payment_id = paid.json()["id"]

    async def attempt() -> httpx.Response:
        return await client.post(
            f"/v1/payments/{payment_id}/allocations",
            json={"order_id": str(bobs_order), "amount": "50.00"},
            headers=auth("pos"),
        )

    # Until the replica has Bob's order the allocation would be pending; once known, 409.
    await feed.replicated(bobs_order)
    response = await attempt()
    assert response.status_code == 409
    assert "another customer" in response.json()["detail"]


async def test_a_known_order_awaiting_approval_takes_no_more_than_its_gross(client, feed) -> None:
    customer = await feed.customer()
    order = await feed.submitted(customer, "300.00")
    await feed.replicated(order, "submitted")
    first = await take_payment(
        client, customer, "500.00", allocations=[{"order_id": str(order), "amount": "200.00"}]
    )
    assert first.status_code == 201, first.text
    assert first.json()["allocations"][0]["status"] == "pending"
    # 200.00 already waits for the order's confirmation: 100.01 more could never apply.
    too_much = await take_payment(
        client, customer, "500.00", allocations=[{"order_id": str(order), "amount": "100.01"}]
    )
    assert too_much.status_code == 409, too_much.text
    assert too_much.json()["open_amount"] == "100.00"
    # Two lines of one request to the order count together.
    split = await take_payment(
        client,
        customer,
        "500.00",
        allocations=[
            {"order_id": str(order), "amount": "60.00"},
            {"order_id": str(order), "amount": "60.00"},
        ],
    )
    assert split.status_code == 409, split.text
    assert split.json()["field"] == "allocations.1.amount"
    # A body that is one allocation names its own field.
    alone = await client.post(
        f"/v1/payments/{first.json()['id']}/allocations",
        json={"order_id": str(order), "amount": "100.01"},
        headers=auth("pos"),
    )
    assert alone.status_code == 409, alone.text
    assert alone.json()["field"] == "amount" and alone.json()["open_amount"] == "100.00"
    fits = await client.post(
        f"/v1/payments/{first.json()['id']}/allocations",
        json={"order_id": str(order), "amount": "100.00"},
        headers=auth("pos"),
    )
    assert fits.status_code == 201, fits.text
    assert [a["status"] for a in fits.json()["allocations"]] == ["pending", "pending"]


async def test_another_customers_pending_allocation_takes_no_room_on_an_order(client, feed) -> None:
    """One made before the order was known can never apply (confirmation releases it)."""
    alice, bob = await feed.customer("Alice"), await feed.customer("Bob")
    from shared.ids import new_id

    order_id = new_id()
    bobs = await take_payment(
        client, bob, "300.00", allocations=[{"order_id": str(order_id), "amount": "300.00"}]
    )
    assert bobs.json()["allocations"][0]["status"] == "pending"
    await feed.submitted(alice, "300.00", order_id=order_id)
    await feed.replicated(order_id, "submitted")
    alices = await take_payment(
        client, alice, "300.00", allocations=[{"order_id": str(order_id), "amount": "300.00"}]
    )
    assert alices.status_code == 201, alices.text
    assert alices.json()["allocations"][0]["status"] == "pending"


@BOTH_TRANSPORTS
async def test_payment_before_its_order_is_pending_then_applied(client, feed) -> None:
    customer = await feed.customer()
    from shared.ids import new_id

    order_id = new_id()
    response = await take_payment(
        client, customer, "80.00", allocations=[{"order_id": str(order_id), "amount": "80.00"}]
    )
    assert response.status_code == 201
    payment = response.json()
    assert payment["allocations"][0]["status"] == "pending"
    assert payment["allocated"] == "80.00" and payment["unapplied"] == "0.00"
    await feed.confirmed(customer, "120.00", order_id=order_id)
    settled = await payment_settles(client, payment["id"], allocated="80.00")
    await_applied = await payment_settles(client, payment["id"], unapplied="0.00")
    assert await_applied["allocations"][0]["status"] in ("applied", "pending")
    final = await _wait_status(client, payment["id"], "applied")
    assert final["allocations"][0]["status"] == "applied"
    assert_balanced(settled)


@BOTH_TRANSPORTS
async def test_pending_allocation_that_fails_is_released_to_credit(client, feed) -> None:
    customer = await feed.customer()
    from shared.ids import new_id

    order_id = new_id()
    response = await take_payment(
        client, customer, "500.00", allocations=[{"order_id": str(order_id), "amount": "500.00"}]
    )
    assert response.json()["allocations"][0]["status"] == "pending"
    await feed.confirmed(customer, "200.00", order_id=order_id)  # smaller than the allocation
    released = await _wait_status(client, response.json()["id"], "released")
    assert released["unapplied"] == "500.00" and released["allocated"] == "0.00", json.dumps(
        released
    )
    assert "exceeds" in released["allocations"][0]["reason"]
    assert_balanced(released)


@BOTH_TRANSPORTS
async def test_cancelled_order_releases_its_allocations(client, feed) -> None:
    customer = await feed.customer()
    order = await feed.confirmed(customer, "60.00")
    payment = await _applied_payment(client, feed, customer, order, "60.00")
    await feed.cancelled(customer, order, "60.00")
    released = await _wait_status(client, payment["id"], "released")
    assert released["unapplied"] == "60.00"
    assert released["allocations"][0]["reason"] == "order cancelled"
    again = await client.post(
        f"/v1/payments/{payment['id']}/allocations",
        json={"order_id": str(order), "amount": "1.00"},
        headers=auth("pos"),
    )
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]


@BOTH_TRANSPORTS
async def test_credit_note_releases_the_excess_only(client, feed) -> None:
    customer = await feed.customer()
    order = await feed.confirmed(customer, "100.00")
    payment = await _applied_payment(client, feed, customer, order, "100.00")
    await feed.returned(customer, order, "30.00")
    after = await payment_settles(client, payment["id"], unapplied="30.00")
    assert after["allocated"] == "70.00"
    statuses = sorted((a["status"], a["amount"]) for a in after["allocations"])
    assert statuses == [("applied", "70.00"), ("released", "30.00")]
    assert_balanced(after)


@BOTH_TRANSPORTS
async def test_refund_takes_unapplied_first_then_newest_allocations(client, feed) -> None:
    customer = await feed.customer()
    first = await feed.confirmed(customer, "40.00")
    second = await feed.confirmed(customer, "40.00")
    payment = await _applied_payment(client, feed, customer, first, "100.00", allocation="40.00")
    more = await client.post(
        f"/v1/payments/{payment['id']}/allocations",
        json={"order_id": str(second), "amount": "40.00"},
        headers=auth("pos"),
    )
    assert more.status_code == 201 and more.json()["unapplied"] == "20.00"
    refund = await client.post(
        f"/v1/payments/{payment['id']}/refunds",
        json={"amount": "30.00", "reason": "customer asked"},
        headers=auth("finance"),
    )
    assert refund.status_code == 201, refund.text
    body = refund.json()
    assert (
        body["refunded"] == "30.00" and body["unapplied"] == "0.00" and body["allocated"] == "70.00"
    )
    by_order: dict[tuple[str, str], Decimal] = {}
    for a in body["allocations"]:
        by_order.setdefault((a["order_id"], a["status"]), Decimal(0))
        by_order[(a["order_id"], a["status"])] += Decimal(a["amount"])
    assert by_order[(str(second), "released")] == Decimal("10.00")  # the newest gave way
    assert by_order[(str(first), "applied")] == Decimal("40.00")
    assert body["refunds"][0]["amount"] == "30.00"
    over = await client.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": "70.01"}, headers=auth("finance")
    )
    assert over.status_code == 409 and "70.00" in over.json()["detail"]
    assert_balanced(body)


async def _applied_payment(
    client, feed: OrdersFeed, customer, order, amount: str, allocation: str | None = None
) -> dict:
    """A payment allocated to `order`, applied at once: taken once the replica knows it."""
    await feed.replicated(order)
    response = await take_payment(
        client,
        customer,
        amount,
        allocations=[{"order_id": str(order), "amount": allocation or amount}],
    )
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["allocations"][0]["status"] == "applied", payment
    return payment


async def _wait_status(client, payment_id: str, status: str) -> dict:
    from tests.support.waiting import eventually

    return await eventually(
        lambda: read_payment(client, payment_id),
        lambda p: all(a["status"] == status for a in p["allocations"]),
    )


async def test_a_payment_its_events_and_its_audit_carry_its_number(client, feed, migrated) -> None:
    """The number is taken by the payment's last statement, which writes its audit entry and
    events too: each names the number, none the stand-in the payment was written under."""
    customer = await feed.customer()
    order = await feed.confirmed(customer, "30.00")
    unknown = new_id()  # an order not entered yet: its allocation is pending
    response = await take_payment(
        client,
        customer,
        "50.00",
        allocations=[
            {"order_id": str(order), "amount": "30.00"},
            {"order_id": str(unknown), "amount": "5.00"},
        ],
    )
    assert response.status_code == 201, response.text
    payment = response.json()
    assert re.fullmatch(r"PAY-[0-9]{4}-[0-9]{6}", payment["number"]), payment["number"]
    connection = await asyncpg.connect(plain_url(migrated))
    try:
        stored = await connection.fetchval(
            "SELECT number FROM payments.payments WHERE id = $1", UUID(payment["id"])
        )
        events = await connection.fetch(
            "SELECT type, payload::text AS payload FROM payments.outbox "
            "WHERE payload -> 'data' ->> 'payment_id' = $1 ORDER BY id",
            payment["id"],
        )
        audit = await connection.fetchval(
            "SELECT details::text FROM payments.audit_log WHERE entity_id = $1",
            payment["id"],
        )
    finally:
        await connection.close()
    assert stored == payment["number"]
    assert [e["type"] for e in events] == [
        "payment.received",
        "payment.allocated",
        "payment.allocation_pending",
    ]
    for text in [*(e["payload"] for e in events), audit]:
        assert payment["number"] in text and "~" not in text, text


async def test_what_order_events_do_to_allocations_is_in_the_audit_log(client, feed) -> None:
    """Applying a pending allocation once its order is confirmed, and releasing one that a
    cancellation or a credit note leaves overpaid, are state changes of the payment the
    service makes by itself: each is in its audit log, by the subscription that made it."""
    customer = await feed.customer()
    later = new_id()  # not entered yet: its allocation waits
    kept = await feed.confirmed(customer, "40.00")
    response = await take_payment(
        client,
        customer,
        "100.00",
        allocations=[
            {"order_id": str(later), "amount": "60.00"},
            {"order_id": str(kept), "amount": "40.00"},
        ],
    )
    assert response.status_code == 201, response.text
    payment = response.json()
    await feed.confirmed(customer, "60.00", order_id=later)
    await _wait_status(client, payment["id"], "applied")
    await feed.cancelled(customer, later, "60.00")
    await feed.returned(customer, kept, "15.00")
    await payment_settles(client, payment["id"], unapplied="75.00")

    async def audit() -> list[dict]:
        answer = await client.get(
            "/v1/payments/audit",
            params={"entity": "payment", "entity_id": payment["id"]},
            headers=auth("admin", "root"),
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["items"]

    entries = await audit()
    received = entries[0]
    assert received["action"] == "payment.received"
    assert {
        (a["order_id"], a["amount"], a["status"]) for a in received["details"]["allocations"]
    } == {
        (str(later), "60.00", "pending"),
        (str(kept), "40.00", "applied"),
    }
    by_system = [
        (e["actor"], e["action"], e["details"]["order_id"], e["details"]["amount"])
        + ((e["details"]["reason"],) if "reason" in e["details"] else ())
        for e in entries[1:]
    ]
    assert by_system == [
        ("payments.orders", "payment.allocation_applied", str(later), "60.00"),
        ("payments.orders", "payment.allocation_released", str(later), "60.00", "order cancelled"),
        (
            "payments.orders",
            "payment.allocation_released",
            str(kept),
            "15.00",
            "credit note left the order overpaid",
        ),
    ]
