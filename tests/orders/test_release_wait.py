"""A credit note or a cancellation that leaves an order paid beyond what it owes answers once
the payments service has released the excess and the orders service has applied the release:
the client's next read adds up (never a negative outstanding)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import httpx
import pytest

from services.orders import service
from services.orders.handlers import subscription as payment_events
from services.payments import replica
from services.registry import service_module
from shared.config import Settings
from shared.db import Database
from shared.messaging.postgres import PostgresSubscriber
from tests.conftest import BOTH_TRANSPORTS, AppClient, migrate_all
from tests.orders.factories import (
    POS,
    SALES,
    get_order,
    make_customer,
    make_order,
    make_product,
    ok,
    unique,
)
from tests.support.waiting import eventually, running_query, waiting_for_events

FINANCE_VIEW = {"paid", "credited", "outstanding", "status"}


async def drain(url: str, module: str, name: str) -> None:
    """Apply what the subscription `name` of `module` has not applied yet, as its worker would."""
    db = Database(url, pool_size=1)
    try:
        subscription = next(s for s in service_module(module).subscriptions if s.name == name)
        await PostgresSubscriber(db, subscription).drain()
    finally:
        await db.dispose()


async def settle(url: str) -> None:
    """The payments replica reads the orders outbox; then the orders service reads the
    payments outbox (what the replica's reactions wrote)."""
    await drain(url, "payments", replica.SUBSCRIPTION)
    await drain(url, "orders", payment_events.name)


async def waiting_for_release(url: str, answer: asyncio.Task[httpx.Response]) -> None:
    """Until the request `answer` waits, repeating the read of service._released; fails with
    its answer should it come first."""
    waiting = asyncio.ensure_future(running_query(url, "%SELECT paid > CASE WHEN status = ANY%"))
    await asyncio.wait([waiting, answer], return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        waiting.cancel()
        answered = answer.result()
        raise AssertionError(f"answered without waiting: {answered.status_code} {answered.text}")
    waiting.result()


@asynccontextmanager
async def paid_order(
    app_client: AppClient, url: str, *, known_paid: bool = True
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """An app whose workers do not run (the test applies events itself), and a confirmed
    order of 3 × 10.00 + 13% tax, paid in full by one payment: (client, product, order,
    payment). Unless `known_paid`, the orders service has not applied the payment yet."""
    modules = [service_module("orders"), service_module("payments")]
    async with app_client(modules, run_workers=False, database_url=url) as client:
        product = await make_product(client, unit_price="10.00")
        customer = await make_customer(client)
        order = await make_order(
            client,
            customer=customer,
            lines=[{"sku": product["sku"], "quantity": "3"}],
            submit=True,
        )
        assert (order["status"], order["gross"]) == ("confirmed", "33.90")
        await settle(url)
        body = {
            "customer_id": customer["id"],
            "amount": "33.90",
            "method": "cash",
            "allocations": [{"order_id": order["id"], "amount": "33.90"}],
        }
        payment = ok(await client.post("/v1/payments", json=body, headers=POS), 201)
        assert [a["status"] for a in payment["allocations"]] == ["applied"]
        if known_paid:
            await settle(url)
        expected = "33.90" if known_paid else "0.00"
        assert (await get_order(client, order["id"]))["paid"] == expected
        yield client, product, order, payment


def returning(
    client: httpx.AsyncClient, product: dict[str, Any], order: dict[str, Any], quantity: str
) -> Coroutine[Any, Any, httpx.Response]:
    body = {"lines": [{"sku": product["sku"], "quantity": quantity}]}
    return client.post(f"/v1/orders/{order['id']}/returns", json=body, headers=POS)


def cancelling(
    client: httpx.AsyncClient, product: dict[str, Any], order: dict[str, Any], quantity: str
) -> Coroutine[Any, Any, httpx.Response]:
    return client.post(f"/v1/orders/{order['id']}/cancel", json={}, headers=SALES)


async def figures(client: httpx.AsyncClient, order: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in (await get_order(client, order["id"])).items() if k in FINANCE_VIEW}


async def unapplied(client: httpx.AsyncClient, payment: dict[str, Any]) -> str:
    return str(ok(await client.get(f"/v1/payments/{payment['id']}", headers=POS))["unapplied"])


@pytest.mark.parametrize(
    ("move", "status", "figures_after", "unapplied_after"),
    [
        # A credit note of 11.30 on an order paid 33.90: 11.30 goes back to the payment.
        (returning, 201, ("confirmed", "22.60", "11.30", "0.00"), "11.30"),
        # A cancellation gives back every allocation.
        (cancelling, 200, ("cancelled", "0.00", "0.00", "0.00"), "33.90"),
    ],
    ids=["return", "cancel"],
)
async def test_a_move_that_overpays_an_order_answers_once_the_excess_is_released(
    app_client: AppClient,
    migrated: str,
    monkeypatch: pytest.MonkeyPatch,
    move: Callable[..., Coroutine[Any, Any, httpx.Response]],
    status: int,
    figures_after: tuple[str, str, str, str],
    unapplied_after: str,
) -> None:
    # The bound is lifted: the request can only end because the release was applied.
    monkeypatch.setattr(service, "PAYMENTS_WAIT_SECONDS", 600.0)
    async with paid_order(app_client, migrated) as (client, product, order, payment):
        answer = asyncio.create_task(move(client, product, order, "1"))
        await waiting_for_release(migrated, answer)
        await settle(migrated)
        answered = await asyncio.wait_for(answer, 30)
        assert answered.status_code == status, answered.text
        after = await figures(client, order)
        assert tuple(after[k] for k in ("status", "paid", "credited", "outstanding")) == (
            figures_after
        )
        assert await unapplied(client, payment) == unapplied_after


async def test_a_return_that_leaves_nothing_overpaid_does_not_wait(
    app_client: AppClient, migrated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "PAYMENTS_WAIT_SECONDS", 600.0)
    modules = [service_module("orders"), service_module("payments")]
    async with app_client(modules, run_workers=False) as client:
        product = await make_product(client, unit_price="10.00")
        order = await make_order(
            client, lines=[{"sku": product["sku"], "quantity": "3"}], submit=True
        )
        # Unpaid: nothing to release, so nothing is applied and the answer comes at once.
        returned = await asyncio.wait_for(returning(client, product, order, "1"), 30)
        assert returned.status_code == 201, returned.text
        assert (await figures(client, order))["outstanding"] == "22.60"


async def test_the_wait_is_bounded_and_says_so(
    app_client: AppClient,
    migrated: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(service, "PAYMENTS_WAIT_SECONDS", 0.05)
    async with paid_order(app_client, migrated) as (client, product, order, _):
        with caplog.at_level(logging.WARNING, logger="salesbook.orders"):
            returned = await asyncio.wait_for(returning(client, product, order, "1"), 30)
        assert returned.status_code == 201, returned.text
        assert "still paid beyond what it owes" in caplog.text
        # Nothing was applied: the order shows the release still to come, until it is.
        assert (await figures(client, order))["outstanding"] == "-11.30"
        await settle(migrated)
        assert (await figures(client, order))["outstanding"] == "0.00"


async def test_a_replayed_return_answers_once_the_excess_is_released_too(
    app_client: AppClient, migrated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A till that timed out retries with its key: the replay, like the first answer, comes
    once the release has been applied."""
    monkeypatch.setattr(service, "PAYMENTS_WAIT_SECONDS", 600.0)
    waits: list[UUID] = []
    released = service._released

    async def counted(db: Database, order_id: UUID, settings: Settings) -> None:
        waits.append(order_id)
        await released(db, order_id, settings)

    monkeypatch.setattr(service, "_released", counted)
    async with paid_order(app_client, migrated) as (client, product, order, _):
        body = {"lines": [{"sku": product["sku"], "quantity": "1"}]}
        key = POS | {"Idempotency-Key": unique("till-return")}
        url = f"/v1/orders/{order['id']}/returns"
        first = asyncio.create_task(client.post(url, json=body, headers=key))
        await waiting_for_release(migrated, first)
        retry = asyncio.create_task(client.post(url, json=body, headers=key))
        await eventually(lambda: asyncio.sleep(0, len(waits)), lambda n: n == 2)
        assert not retry.done()
        await settle(migrated)
        answers = await asyncio.wait_for(asyncio.gather(first, retry), 30)
        assert [a.status_code for a in answers] == [201, 201]
        assert answers[1].headers["Idempotent-Replayed"] == "true"
        assert (await figures(client, order))["outstanding"] == "0.00"


@BOTH_TRANSPORTS
async def test_the_read_after_a_return_on_a_paid_order_adds_up(app_client: AppClient) -> None:
    """With the workers running, on either transport: no waiting by the client."""
    modules = [service_module("orders"), service_module("payments")]
    async with app_client(modules) as client:
        product = await make_product(client, unit_price="10.00")
        customer = await make_customer(client)
        order = await make_order(
            client, customer=customer, lines=[{"sku": product["sku"], "quantity": "3"}], submit=True
        )
        body = {
            "customer_id": customer["id"],
            "amount": "33.90",
            "method": "cash",
            "allocations": [{"order_id": order["id"], "amount": "33.90"}],
        }
        payment = ok(await client.post("/v1/payments", json=body, headers=POS), 201)
        # On Kafka the allocation may wait (pending) for the replica to hear of the order.
        await eventually(lambda: figures(client, order), lambda f: f["paid"] == "33.90")
        assert await unapplied(client, payment) == "0.00"
        returned = await returning(client, product, order, "1")
        assert returned.status_code == 201, returned.text
        assert (await figures(client, order))["outstanding"] == "0.00"
        assert await unapplied(client, payment) == "11.30"


async def test_a_return_right_after_the_payment_counts_the_payment_first(
    app_client: AppClient, scratch_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The till takes the money, then the customer returns a unit at once: the orders service
    has not applied the payment yet. The return counts it first (postgres transport), so it
    sees the order overpaid and waits for the release. On a database of its own: nothing
    but the test applies the events."""
    migrated = await migrate_all(scratch_database)
    monkeypatch.setattr(service, "PAYMENTS_WAIT_SECONDS", 600.0)
    async with paid_order(app_client, migrated, known_paid=False) as (
        client,
        product,
        order,
        payment,
    ):
        answer = asyncio.create_task(returning(client, product, order, "1"))
        await waiting_for_events(migrated, "payments")
        await drain(migrated, "orders", payment_events.name)  # the payment, counted
        await waiting_for_release(migrated, answer)
        await settle(migrated)
        returned = await asyncio.wait_for(answer, 30)
        assert returned.status_code == 201, returned.text
        assert await figures(client, order) == {
            "status": "confirmed",
            "paid": "22.60",
            "credited": "11.30",
            "outstanding": "0.00",
        }
        assert await unapplied(client, payment) == "11.30"
