"""What POST /v1/payments answers before a payment exists: refusals that name no number
never issued, and a customer the replica does not hold (yet)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg
import httpx
import pytest

from services.payments import replica
from services.payments.cutoff import GUARD
from services.registry import service_module
from shared.cutoff import lift_cutoff, lock_period
from shared.db import Database, plain_url
from shared.ids import new_id
from shared.messaging.postgres import PostgresSubscriber
from tests.conftest import AppClient, auth
from tests.payments.factories import OrdersFeed, take_payment
from tests.support.waiting import eventually, waiting_for_events


@pytest.fixture
async def client(app_client: AppClient) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client([service_module("orders"), service_module("payments")]) as c:
        yield c


@pytest.fixture
def feed(migrated: str) -> OrdersFeed:
    return OrdersFeed(migrated)


async def test_over_allocation_of_a_new_payment_names_no_unissued_number(client, feed) -> None:
    customer = await feed.customer()
    order = await feed.confirmed(customer, "500.00")
    refused = await take_payment(
        client, customer, "100.00", allocations=[{"order_id": str(order), "amount": "150.00"}]
    )
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert "PAY-" not in detail and "this payment" in detail and "100.00" in detail
    # The number the refused payment took was rolled back: the next payment is given it.
    issued = await take_payment(client, customer, "1.00")
    assert issued.status_code == 201
    assert issued.json()["number"] not in detail


async def _replica_caught_up(client: httpx.AsyncClient, feed: OrdersFeed) -> None:
    """Wait until the replica holds a customer published last, so it has applied all before."""
    marker = await feed.customer()
    await eventually(
        lambda: take_payment(client, marker, "1.00"), lambda r: r.status_code == 201, seconds=15
    )


async def test_unknown_customer_is_refused_at_once(client, feed) -> None:
    await _replica_caught_up(client, feed)
    waits = replica.progress.waits
    refused = await take_payment(client, new_id(), "10.00")
    assert refused.status_code == 422, refused.text
    assert "customer_id" in refused.json()["detail"]
    assert replica.progress.waits == waits  # answered from the replica's position, no wait


async def test_a_customer_behind_a_busy_replica_is_asked_again_not_refused(
    client, feed, migrated, monkeypatch
) -> None:
    """A replica behind the orders outbox may yet bring the customer: when the wait runs out,
    the payment is 503 with Retry-After (the till sends it again), not 422 (wrong input)."""
    await _replica_caught_up(client, feed)
    monkeypatch.setattr(replica, "WAIT_SECONDS", 0.5)
    holder = await asyncpg.connect(plain_url(migrated))
    try:
        async with holder.transaction():
            # The replica's position row, locked: its next batch waits until this commits.
            await holder.execute(
                "SELECT position FROM payments.consumer_offsets "
                "WHERE consumer = $1 AND source = 'orders' FOR UPDATE",
                replica.SUBSCRIPTION,
            )
            customer = await feed.customer()
            asked = await take_payment(client, customer, "10.00")
            assert asked.status_code == 503, asked.text
            assert asked.headers["Retry-After"]
            assert "customer_id" in asked.json()["detail"]
            assert "send it again" in asked.json()["detail"]
    finally:
        await holder.close()
    monkeypatch.setattr(replica, "WAIT_SECONDS", 5.0)
    paid = await take_payment(client, customer, "10.00")  # the replica has moved on
    assert paid.status_code == 201, paid.text


async def replicate_customer(url: str, customer: UUID) -> None:
    """The customer put into the payments replica directly, with no consumer running."""
    connection = await asyncpg.connect(plain_url(url))
    try:
        await connection.execute(
            "INSERT INTO payments.known_customers (customer_id, name) VALUES ($1, 'Acme')",
            customer,
        )
    finally:
        await connection.close()


async def test_a_customer_another_process_replicated_is_seen_without_a_wake(
    app_client: AppClient, feed, migrated
) -> None:
    """The replica of another process (no consumer runs in this one) wakes no payment here:
    a waiting payment looks again, and takes the customer as soon as it is there."""
    modules = [service_module("orders"), service_module("payments")]
    async with app_client(modules, run_workers=False) as client:
        customer = await feed.customer()
        waits = replica.progress.waits

        async def waits_begun() -> int:
            return replica.progress.waits

        paying = asyncio.create_task(take_payment(client, customer, "10.00"))
        await eventually(waits_begun, lambda n: n > waits, seconds=4)  # the payment waits
        await replicate_customer(migrated, customer)  # as another process's replica would
        paid = await paying  # it used to sit out the wait's bound and answer 503
        assert paid.status_code == 201, paid.text


async def test_customer_created_a_moment_ago_can_pay_at_once(client) -> None:
    created = await client.post(
        "/v1/customers", json={"name": "Walk-in", "payment_terms_days": 0}, headers=auth("sales")
    )
    assert created.status_code == 201, created.text
    # No retry: the payment waits for the customer to reach the payments replica.
    paid = await take_payment(client, created.json()["id"], "25.00")
    assert paid.status_code == 201, paid.text
    assert paid.json()["unapplied"] == "25.00"


async def test_a_payment_dated_before_a_locked_period_is_refused(client) -> None:
    # Periods close in order: with 2012-06 locked, a payment received in 2012-04 (which
    # held none when 2012-06 closed) is refused as one received in 2012-06 is. 2012 is used
    # by no other test.
    created = await client.post(
        "/v1/customers", json={"name": "Early", "payment_terms_days": 0}, headers=auth("sales")
    )
    assert created.status_code == 201, created.text
    customer = created.json()["id"]
    db = client.app.state.db
    async with db.transaction() as session:
        await lock_period(session, GUARD, "2012-06")
    try:
        for received_at, period in (
            ("2012-04-10T10:00:00+08:00", "2012-04"),
            ("2012-06-10T10:00:00+08:00", "2012-06"),
        ):
            refused = await take_payment(client, customer, "5.00", received_at=received_at)
            assert refused.status_code == 409, refused.text
            problem = refused.json()
            assert (problem["period"], problem["closed_by"]) == (period, "2012-06")
        accepted = await take_payment(
            client, customer, "5.00", received_at="2012-07-01T10:00:00+08:00"
        )
        assert accepted.status_code == 201, accepted.text
    finally:
        async with db.transaction() as session:
            await lift_cutoff(session, GUARD, "2012-06", reopening=False)


async def drain_replica(url: str) -> None:
    """Apply everything the orders outbox holds to the payments replica, as its consumer would."""
    db = Database(url, pool_size=1)
    try:
        subscription = next(
            s for s in service_module("payments").subscriptions if s.name == replica.SUBSCRIPTION
        )
        await PostgresSubscriber(db, subscription).drain()
    finally:
        await db.dispose()


async def pay_while_the_replica_is_behind(
    client: httpx.AsyncClient, url: str, customer: UUID, order: UUID, amount: str
) -> httpx.Response:
    """Take a payment for `order` while the replica has not applied the orders outbox: it
    must wait for the replica, which is then brought up to date."""
    allocation = {"order_id": str(order), "amount": amount}
    paying = asyncio.create_task(take_payment(client, customer, amount, allocations=[allocation]))
    await waiting_for_events(url, "orders")  # the payment waits for the replica
    await drain_replica(url)
    # The wait's bound is lifted by the tests: it ends because the replica caught up.
    return await asyncio.wait_for(paying, 30)


async def test_an_order_entered_a_moment_ago_takes_its_payment_at_once(
    app_client: AppClient, feed, migrated, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An allocation to an order the replica has not applied yet waits for the replica to
    reach what orders had committed, and is applied, not left pending (a till rings up the
    order, then takes the money for it)."""
    monkeypatch.setattr(replica, "ORDERS_WAIT_SECONDS", 600.0)
    modules = [service_module("orders"), service_module("payments")]
    async with app_client(modules, run_workers=False) as client:
        customer = await feed.customer()
        await drain_replica(migrated)  # the customer, and what earlier tests left
        order = await feed.confirmed(customer, "40.00")
        paid = await pay_while_the_replica_is_behind(client, migrated, customer, order, "40.00")
        assert paid.status_code == 201, paid.text
        assert [a["status"] for a in paid.json()["allocations"]] == ["applied"]
        assert paid.json()["unapplied"] == "0.00"


async def test_an_allocation_just_after_a_return_is_checked_against_what_is_left(
    app_client: AppClient, feed, migrated, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replica knows the order, but not yet the credit note issued a moment ago: the
    allocation waits for it, and the order's whole former gross no longer fits."""
    monkeypatch.setattr(replica, "ORDERS_WAIT_SECONDS", 600.0)
    modules = [service_module("orders"), service_module("payments")]
    async with app_client(modules, run_workers=False) as client:
        customer = await feed.customer()
        order = await feed.confirmed(customer, "40.00")
        await drain_replica(migrated)
        await feed.returned(customer, order, "15.00")
        paid = await pay_while_the_replica_is_behind(client, migrated, customer, order, "40.00")
        assert paid.status_code == 409, paid.text
        assert paid.json()["open_amount"] == "25.00"
