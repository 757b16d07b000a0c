"""The payments replica's consumer takes its locks in the service's order (order advisory
lock, payment rows, replicated order rows), as a refund does (payment row, then the orders it
releases from): the two never wait on each other in a circle."""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg

from services.registry import service_module
from shared.db import plain_url
from tests.conftest import AppClient, auth
from tests.payments.factories import OrdersFeed, take_payment
from tests.payments.test_receive_checks import drain_replica
from tests.support.waiting import eventually


async def test_the_consumer_locks_a_payment_before_the_order_rows_a_refund_locks_next(
    app_client: AppClient, migrated: str
) -> None:
    feed = OrdersFeed(migrated)
    modules = [service_module("orders"), service_module("payments")]
    async with app_client(modules, run_workers=False) as client:
        customer = await feed.customer()
        order = await feed.confirmed(customer, "100.00")
        await drain_replica(migrated)
        paid = await take_payment(
            client, customer, "100.00", allocations=[{"order_id": str(order), "amount": "100.00"}]
        )
        assert paid.status_code == 201, paid.text
        payment = UUID(paid.json()["id"])
        # A credit note leaves the order overpaid: the consumer releases part of the payment.
        await feed.returned(customer, order, "30.00")
        refund = await asyncpg.connect(plain_url(migrated))
        other = await asyncpg.connect(plain_url(migrated))
        try:
            # A refund's first lock: its payment row.
            refunding = refund.transaction()
            await refund_started(refunding, refund, payment)
            applying = asyncio.create_task(drain_replica(migrated))
            await blocked_on_a_lock(other, besides=refund)
            # The consumer waits for the payment without holding the order's replicated row,
            # which the refund locks next: it gets it at once.
            async with other.transaction():
                await other.execute(
                    "SELECT 1 FROM payments.known_orders WHERE order_id = $1 FOR UPDATE NOWAIT",
                    order,
                )
            await refunding.rollback()
            await asyncio.wait_for(applying, 30)
        finally:
            await refund.close()
            await other.close()
        settled = (
            await client.get(f"/v1/payments/{payment}", headers=auth("pos", "till-1"))
        ).json()
        assert settled["unapplied"] == "30.00", settled


async def refund_started(
    transaction: asyncpg.transaction.Transaction, connection: asyncpg.Connection, payment: UUID
) -> None:
    await transaction.start()
    await connection.execute("SELECT 1 FROM payments.payments WHERE id = $1 FOR UPDATE", payment)


async def blocked_on_a_lock(connection: asyncpg.Connection, *, besides: asyncpg.Connection) -> None:
    """Until a backend of this database other than these two waits for a lock."""
    skipped = await besides.fetchval("SELECT pg_backend_pid()")

    async def waiting() -> int:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid NOT IN (pg_backend_pid(), $1)",
                skipped,
            )
        )

    await eventually(waiting, lambda n: n > 0)
