"""Payment events from the payments outbox keep an order's paid and outstanding right."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
import pytest

from services.orders import service
from services.orders.handlers import subscription
from services.registry import service_module
from shared.db import Database
from shared.events.envelope import Event, EventPayload
from shared.events.payments import AllocationReleased, PaymentAllocated
from shared.ids import new_id
from shared.messaging.consumer import apply_batch
from shared.messaging.outbox import write_to_outbox
from shared.messaging.postgres import PostgresSubscriber
from tests.conftest import AppClient, migrate_all
from tests.orders.factories import (
    POS,
    act,
    assert_problem,
    database,
    get_order,
    make_customer,
    make_order,
    ok,
)
from tests.support.waiting import eventually, waiting_for_events


async def publish(client: httpx.AsyncClient, payload: EventPayload, key: str) -> Event:
    event = Event.of(payload, source="payments", key=key, business_date=date.today())
    await resend(client, event)
    return event


async def resend(client: httpx.AsyncClient, event: Event) -> None:
    async with database(client).transaction() as session:
        await write_to_outbox(session, [event])


async def redeliver(client: httpx.AsyncClient, event: Event) -> int:
    """Hand an already delivered event to the consumer again, as an at-least-once transport
    may; returns how many events it applied."""
    async with database(client).transaction() as session:
        return await apply_batch(session, subscription, [event])


def allocated(
    order: dict[str, Any], amount: str, allocation_id: UUID | None = None
) -> PaymentAllocated:
    return PaymentAllocated(
        allocation_id=allocation_id or new_id(),
        payment_id=new_id(),
        payment_number="PAY-2026-000001",
        customer_id=order["customer_id"],
        order_id=order["id"],
        amount=Decimal(amount),
        business_date=date.today(),
    )


def released(
    order: dict[str, Any],
    alloc: PaymentAllocated,
    *,
    was_applied: bool,
    amount: str | None = None,
    remaining: str = "0.00",
) -> AllocationReleased:
    """A release of all of `alloc` (or `amount` of it, leaving `remaining`), as version 2."""
    return AllocationReleased(
        allocation_id=alloc.allocation_id,
        release_id=new_id(),
        payment_id=alloc.payment_id,
        customer_id=order["customer_id"],
        order_id=order["id"],
        amount=Decimal(amount) if amount else alloc.amount,
        remaining=Decimal(remaining),
        was_applied=was_applied,
        reason="refund",
    )


async def publish_v1(client: httpx.AsyncClient, payload: AllocationReleased) -> None:
    """A release as version 1 wrote it: no release_id, no remaining."""
    event = Event.of(payload, source="payments", key=str(payload.customer_id))
    data = payload.model_dump(mode="json", exclude={"release_id", "remaining"})
    await resend(client, event.model_copy(update={"version": 1, "data": data}))


async def paid_becomes(client: httpx.AsyncClient, order: dict[str, Any], paid: str) -> dict:
    return await eventually(
        lambda: get_order(client, order["id"]), lambda o: o["paid"] == paid, seconds=15
    )


async def test_allocations_and_releases_move_paid_and_outstanding(
    client: httpx.AsyncClient,
) -> None:
    order = await make_order(client, unit_price="100", submit=True)  # gross 113.00
    first = allocated(order, "50.00")
    event = await publish(client, first, order["customer_id"])
    current = await paid_becomes(client, order, "50.00")
    assert current["outstanding"] == "63.00"

    # A redelivered event (same event_id) changes nothing.
    assert await redeliver(client, event) == 0
    second = allocated(order, "13.00")
    await publish(client, second, order["customer_id"])
    current = await paid_becomes(client, order, "63.00")
    assert current["outstanding"] == "50.00"

    # Releasing a pending (never applied) allocation changes nothing; an applied one does.
    await publish(
        client, released(order, allocated(order, "7.00"), was_applied=False), order["customer_id"]
    )
    await publish(client, released(order, first, was_applied=True), order["customer_id"])
    current = await paid_becomes(client, order, "13.00")
    assert current["outstanding"] == "100.00"
    # The same release once more (a new event about the same allocation) is not counted twice.
    await publish(client, released(order, first, was_applied=True), order["customer_id"])
    marker = allocated(order, "0.01")
    await publish(client, marker, order["customer_id"])
    current = await paid_becomes(client, order, "13.01")


async def test_payment_for_unknown_order_is_ignored(client: httpx.AsyncClient) -> None:
    ghost = {"id": str(new_id()), "customer_id": str(new_id())}
    await publish(client, allocated(ghost, "10.00"), ghost["customer_id"])
    order = await make_order(client, submit=True)
    await publish(client, allocated(order, "1.00"), order["customer_id"])
    await paid_becomes(client, order, "1.00")  # the consumer went on past the unknown order


async def test_payments_free_credit_limit(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client, credit_limit="150.00")
    first = await make_order(client, customer=customer, unit_price="100", submit=True)  # 113.00
    product_line = [{"sku": first["lines"][0]["sku"], "quantity": "1"}]
    draft = await make_order(client, customer=customer, lines=product_line)
    assert_problem(await act(client, draft, "submit", POS), 409, "credit limit")

    await publish(client, allocated(first, "113.00"), customer["id"])
    paid = await paid_becomes(client, first, "113.00")
    assert paid["outstanding"] == "0.00"
    fresh = await make_order(client, customer=customer, lines=product_line)
    assert ok(await act(client, fresh, "submit", POS))["status"] == "confirmed"


# A wait that could only end at its bound would outlast the test's deadline: the tests
# below see a wait end because the payments were applied, or not begin at all.
WAIT_FOR_EVER = 600.0
DEADLINE = 30.0


async def drain_payment_events(url: str) -> int:
    """Apply the payments outbox as this service's subscription does, moving its position."""
    db = Database(url, pool_size=1)
    try:
        return await PostgresSubscriber(db, subscription).drain()
    finally:
        await db.dispose()


@asynccontextmanager
async def lone_orders_app(
    app_client: AppClient, database: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The orders service alone on a database of its own, its consumers not running (no
    other app's consumer may apply a payment meanwhile), its credit check's wait unbounded;
    with that database's URL."""
    monkeypatch.setattr(service, "PAYMENTS_WAIT_SECONDS", WAIT_FOR_EVER)
    url = await migrate_all(database)
    async with app_client([service_module("orders")], run_workers=False, database_url=url) as c:
        yield c, url


@pytest.mark.parametrize("path", ["entry", "submit"])
async def test_a_hold_waits_for_the_payments_already_acknowledged(
    app_client: AppClient, scratch_database: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payment the payments service has acknowledged, but this service has not applied
    yet, is counted before an order is held over the credit limit: the check waits for it,
    on order entry with `"submit": true` and on the submit of a draft."""
    async with lone_orders_app(app_client, scratch_database, monkeypatch) as (client, url):
        customer = await make_customer(client, credit_limit="150.00")
        first = await make_order(client, customer=customer, unit_price="100", submit=True)
        line = [{"sku": first["lines"][0]["sku"], "quantity": "1"}]
        draft = await make_order(client, customer=customer, lines=line)
        await publish(client, allocated(first, "113.00"), customer["id"])
        body = {"customer_id": customer["id"], "channel": "pos", "lines": line, "submit": True}
        entering = asyncio.create_task(
            client.post("/v1/orders", json=body, headers=POS)
            if path == "entry"
            else act(client, draft, "submit", POS)
        )
        await waiting_for_events(url, "payments")  # the order waits
        assert not entering.done()
        assert await drain_payment_events(url) == 1  # the consumer applies the payment
        entered = await asyncio.wait_for(entering, DEADLINE)
        assert entered.status_code == (201 if path == "entry" else 200), entered.text
        assert entered.json()["status"] == "confirmed"


async def test_other_customers_payments_do_not_hold_up_a_credit_check(
    app_client: AppClient, scratch_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Payments of another customer that this service has not applied yet are no reason to
    wait: the order over its limit is held at once."""
    async with lone_orders_app(app_client, scratch_database, monkeypatch) as (client, _):
        customer = await make_customer(client, credit_limit="150.00")
        first = await make_order(client, customer=customer, unit_price="100", submit=True)
        other = await make_order(client, unit_price="100", submit=True)
        await publish(client, allocated(other, "113.00"), other["customer_id"])
        line = [{"sku": first["lines"][0]["sku"], "quantity": "1"}]
        body = {"customer_id": customer["id"], "channel": "pos", "lines": line, "submit": True}
        held = await asyncio.wait_for(client.post("/v1/orders", json=body, headers=POS), DEADLINE)
        assert_problem(held, 409, "credit limit")


async def test_partial_releases_take_each_part_out_of_paid_once(
    client: httpx.AsyncClient,
) -> None:
    order = await make_order(client, unit_price="100", quantity="3", submit=True)  # 339.00
    key = order["customer_id"]
    whole = allocated(order, "339.00")
    await publish(client, whole, key)
    await paid_becomes(client, order, "339.00")

    part = released(order, whole, was_applied=True, amount="100.00", remaining="239.00")
    event = await publish(client, part, key)
    current = await paid_becomes(client, order, "239.00")
    assert current["outstanding"] == "100.00"
    assert await redeliver(client, event) == 0
    await publish(client, part, key)  # the same release in a new event: taken out once only
    # A pending allocation released in part never counted, so it changes nothing either.
    pending = allocated(order, "20.00")
    await publish(
        client,
        released(order, pending, was_applied=False, amount="5.00", remaining="15.00"),
        key,
    )
    second = released(order, whole, was_applied=True, amount="50.00", remaining="189.00")
    await publish(client, second, key)
    current = await paid_becomes(client, order, "189.00")
    assert current["outstanding"] == "150.00"
    await publish(client, released(order, whole, was_applied=True, amount="189.00"), key)
    current = await paid_becomes(client, order, "0.00")
    assert current["outstanding"] == "339.00"


async def test_version_1_partial_release_is_taken_from_its_allocation(
    client: httpx.AsyncClient,
) -> None:
    """Version 1 named a part by an id of its own; it is taken from the applied allocation of
    the same payment and order, and the later full release takes only what was left."""
    order = await make_order(client, unit_price="100", quantity="3", submit=True)  # 339.00
    key = order["customer_id"]
    whole = allocated(order, "339.00")
    await publish(client, whole, key)
    await paid_becomes(client, order, "339.00")
    part = released(order, whole, was_applied=True, amount="100.00")
    await publish_v1(client, part.model_copy(update={"allocation_id": new_id()}))
    current = await paid_becomes(client, order, "239.00")
    assert current["outstanding"] == "100.00"
    await publish_v1(client, released(order, whole, was_applied=True, amount="239.00"))
    await paid_becomes(client, order, "0.00")
