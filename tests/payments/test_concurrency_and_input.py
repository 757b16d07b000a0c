"""Concurrent allocations and refunds, idempotent retries, bad input, auth, events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from services.registry import service_module
from shared.db import Database
from shared.tables import common_tables
from tests.conftest import BOTH_TRANSPORTS, AppClient, auth
from tests.payments.factories import OrdersFeed, read_payment, take_payment
from tests.payments.test_payments import _applied_payment


@pytest.fixture
async def client(app_client: AppClient) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client([service_module("orders"), service_module("payments")]) as c:
        yield c


@pytest.fixture
def feed(migrated: str) -> OrdersFeed:
    return OrdersFeed(migrated)


@BOTH_TRANSPORTS
async def test_100_concurrent_allocations_never_over_allocate_an_order(client, feed) -> None:
    customer = await feed.customer()
    order = await feed.confirmed(customer, "100.00")
    await _applied_payment(client, feed, customer, order, "0.01")  # the replica knows the order now
    payments = [(await take_payment(client, customer, "10.00")).json()["id"] for _ in range(100)]

    async def allocate(payment_id: str) -> int:
        response = await client.post(
            f"/v1/payments/{payment_id}/allocations",
            json={"order_id": str(order), "amount": "5.00"},
            headers=auth("pos"),
        )
        assert response.status_code in (201, 409), response.text
        return response.status_code

    codes = await asyncio.gather(*(allocate(p) for p in payments))
    # 0.01 was already applied: 99.99 open, so 19 allocations of 5.00 fit and no more.
    assert codes.count(201) == 19
    applied = Decimal(0)
    for payment_id in payments:
        payment = await read_payment(client, payment_id)
        applied += sum(
            Decimal(a["amount"]) for a in payment["allocations"] if a["status"] == "applied"
        )
    assert applied == Decimal("95.00")


async def test_100_concurrent_refunds_never_over_refund(client, feed) -> None:
    customer = await feed.customer()
    payment = (await take_payment(client, customer, "50.00")).json()

    async def refund() -> int:
        response = await client.post(
            f"/v1/payments/{payment['id']}/refunds",
            json={"amount": "1.00"},
            headers=auth("finance"),
        )
        assert response.status_code in (201, 409), response.text
        return response.status_code

    codes = await asyncio.gather(*(refund() for _ in range(100)))
    assert codes.count(201) == 50
    final = await read_payment(client, payment["id"])
    assert final["refunded"] == "50.00" and final["unapplied"] == "0.00"
    assert len(final["refunds"]) == 50


@BOTH_TRANSPORTS
async def test_retry_with_same_idempotency_key_returns_the_first_payment(client, feed) -> None:
    customer = await feed.customer()
    body = {"customer_id": str(customer), "amount": "12.00", "method": "wechat"}
    headers = {**auth("pos", "till-9"), "Idempotency-Key": f"pos-9-receipt-{customer}"}
    results = await asyncio.gather(
        *(client.post("/v1/payments", json=body, headers=headers) for _ in range(5))
    )
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1
    listed = await client.get(
        "/v1/payments", params={"customer_id": str(customer)}, headers=auth("finance")
    )
    assert len(listed.json()["items"]) == 1
    other = await client.post("/v1/payments", json={**body, "amount": "13.00"}, headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-5.00"}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"amount": 12.345}, "amount"),
        ({"amount": "ten"}, "amount"),
        ({"method": "cheque"}, "method"),
        ({"currency": "USD"}, "currency"),
        ({"customer_id": "not-a-uuid"}, "customer_id"),
        ({"received_at": "2999-01-01T00:00:00Z"}, "received_at"),
        (
            {"allocations": [{"order_id": "00000000-0000-0000-0000-000000000001", "amount": "0"}]},
            "allocations.0.amount",
        ),
        (
            {
                "allocations": [
                    {"order_id": "00000000-0000-0000-0000-000000000001", "amount": "500.00"}
                ]
            },
            "allocations",
        ),
    ],
)
async def test_bad_payment_input_is_refused_naming_the_field(client, feed, change, field) -> None:
    customer = await feed.customer()
    body = {"customer_id": str(customer), "amount": "100.00", "method": "cash", **change}
    response = await client.post("/v1/payments", json=body, headers=auth("pos"))
    assert response.status_code in (409, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.json()["detail"]


async def test_malformed_json_and_unknown_ids(client, feed) -> None:
    malformed = await client.post(
        "/v1/payments",
        content=b"{not json",
        headers={**auth("pos"), "Content-Type": "application/json"},
    )
    assert malformed.status_code == 422
    unknown = await client.get(
        "/v1/payments/00000000-0000-0000-0000-000000000000", headers=auth("pos")
    )
    assert unknown.status_code == 404
    not_uuid = await client.get("/v1/payments/PAY-1", headers=auth("pos"))
    assert not_uuid.status_code == 422
    stranger = await take_payment(client, UUID("00000000-0000-0000-0000-0000000000ff"), "1.00")
    assert stranger.status_code == 422 and "customer_id" in stranger.json()["detail"]


async def test_roles(client, feed) -> None:
    customer = await feed.customer()
    body = {"customer_id": str(customer), "amount": "1.00", "method": "cash"}
    assert (await client.post("/v1/payments", json=body)).status_code == 401
    assert (
        await client.post("/v1/payments", json=body, headers={"Authorization": "Bearer nonsense"})
    ).status_code == 401
    assert (
        await client.post("/v1/payments", json=body, headers=auth("analyst"))
    ).status_code == 403
    assert (await client.get("/v1/payments/audit", headers=auth("finance"))).status_code == 403
    audit = await client.get("/v1/payments/audit", headers=auth("admin"))
    assert audit.status_code == 200 and audit.json()["items"]


@BOTH_TRANSPORTS
async def test_events_are_written_with_the_payment(client, feed, migrated) -> None:
    customer = await feed.customer()
    order = await feed.confirmed(customer, "30.00")
    payment = await _applied_payment(client, feed, customer, order, "50.00", allocation="30.00")
    await client.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": "25.00"}, headers=auth("finance")
    )
    db = Database(migrated, pool_size=1)
    outbox = common_tables("payments").outbox
    try:
        async with db.transaction() as session:
            rows = (
                await session.execute(
                    select(outbox.c.type, outbox.c.payload)
                    .where(outbox.c.key == str(customer))
                    .order_by(outbox.c.id)
                )
            ).all()
    finally:
        await db.dispose()
    mine = [(t, p["data"]) for t, p in rows if p["data"].get("payment_id") == payment["id"]]
    types = [t for t, _ in mine]
    assert types == [
        "payment.received",
        "payment.allocated",
        "payment.allocation_released",
        "payment.refunded",
    ]
    released = mine[2][1]
    assert released["amount"] == "5.00" and released["was_applied"] is True
    assert mine[3][1]["amount"] == "25.00"
    assert all(p["period"] == payment["period"] for _, p in rows if p.get("period"))
