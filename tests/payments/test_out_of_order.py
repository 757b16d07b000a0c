"""Order events that reach the payments replica out of order (one published again after a
broker lost it comes after newer ones) never take an order back: its status only moves
forward, and a later event of an order not held yet is kept until its submission comes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
import pytest

from services.registry import service_module
from shared.ids import new_id
from tests.conftest import AppClient
from tests.payments.factories import OrdersFeed, payment_settles, take_payment
from tests.support.migrating import query


@pytest.fixture
async def client(app_client: AppClient) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client([service_module("payments")]) as c:
        yield c


@pytest.fixture
def feed(migrated: str) -> OrdersFeed:
    return OrdersFeed(migrated)


async def _all_applied(feed: OrdersFeed, customer: UUID) -> None:
    """Every event published so far is applied: the replica applies them in order, and this
    one comes last."""
    marker = await feed.confirmed(customer, "1.00")
    await feed.replicated(marker)


async def _held(feed: OrdersFeed, order_id: UUID) -> dict[str, Any]:
    rows = await query(
        feed.database_url,
        "SELECT order_id, number, status, gross::text, credited::text FROM payments.known_orders",
    )
    found = {r[0]: r for r in rows}[order_id]
    return dict(zip(("order_id", "number", "status", "gross", "credited"), found, strict=True))


async def test_late_events_never_take_an_order_back(client, feed) -> None:
    customer = await feed.customer()
    confirmed, cancelled, returned = new_id(), new_id(), new_id()
    await feed.confirmed(customer, "100.00", confirmed)
    await feed.submitted(customer, "100.00", confirmed)  # published again, late
    await feed.cancelled(customer, cancelled, "50.00")
    await feed.confirmed(customer, "50.00", cancelled)  # its confirmation, late
    await feed.returned(customer, returned, "30.00")
    await feed.submitted(customer, "100.00", returned)  # both late
    await feed.confirmed(customer, "100.00", returned)
    await _all_applied(feed, customer)
    assert (await _held(feed, confirmed))["status"] == "confirmed"
    late_cancel = await _held(feed, cancelled)
    assert (late_cancel["status"], late_cancel["gross"]) == ("cancelled", "50.00")
    assert late_cancel["number"] == "SO-2026-999999"
    credited = await _held(feed, returned)
    assert (credited["status"], credited["gross"], credited["credited"]) == (
        "confirmed",
        "100.00",
        "30.00",
    )
    # The replica refuses what those orders can no longer carry.
    over = await take_payment(
        client, customer, "80.00", allocations=[{"order_id": str(returned), "amount": "80.00"}]
    )
    assert over.status_code == 409, over.text
    gone = await take_payment(
        client, customer, "5.00", allocations=[{"order_id": str(cancelled), "amount": "5.00"}]
    )
    assert gone.status_code == 409, gone.text


async def test_a_late_submission_leaves_an_order_with_allocations_confirmed(client, feed) -> None:
    # Orders with allocations go through the replica one event at a time.
    customer = await feed.customer()
    order = new_id()
    waiting = await take_payment(
        client, customer, "10.00", allocations=[{"order_id": str(order), "amount": "10.00"}]
    )
    assert waiting.status_code == 201, waiting.text
    assert waiting.json()["allocations"][0]["status"] == "pending"
    await feed.confirmed(customer, "100.00", order)
    await payment_settles(client, waiting.json()["id"], allocated="10.00")
    await feed.submitted(customer, "100.00", order)  # published again, late
    await _all_applied(feed, customer)
    assert (await _held(feed, order))["status"] == "confirmed"
    more = await take_payment(
        client, customer, "20.00", allocations=[{"order_id": str(order), "amount": "20.00"}]
    )
    assert more.status_code == 201, more.text
    assert more.json()["allocations"][0]["status"] == "applied"
    assert Decimal(more.json()["allocated"]) == Decimal("20.00")
