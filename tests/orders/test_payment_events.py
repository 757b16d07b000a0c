"""Payment events from the payments outbox keep an order's paid and outstanding right."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx

from services.orders.handlers import subscription
from shared.events.envelope import Event, EventPayload
from shared.events.payments import AllocationReleased, PaymentAllocated
from shared.ids import new_id
from shared.messaging.consumer import apply_batch
from shared.messaging.outbox import write_to_outbox
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
from tests.support.waiting import eventually


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
    order: dict[str, Any], alloc: PaymentAllocated, *, was_applied: bool
) -> AllocationReleased:
    return AllocationReleased(
        allocation_id=alloc.allocation_id,
        payment_id=alloc.payment_id,
        customer_id=order["customer_id"],
        order_id=order["id"],
        amount=alloc.amount,
        was_applied=was_applied,
        reason="refund",
    )


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
