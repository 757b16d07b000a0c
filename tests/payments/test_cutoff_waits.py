"""The payments cutoff comes after the releases the order events committed before it cause:
a cancellation or a credit note of a paid order a moment before the close has its excess
released in the month being closed, not after the cutoff into the next one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from services.payments import cutoff
from services.registry import service_module
from shared.db import Database, plain_url
from shared.events.closing import PeriodCloseRequested
from shared.ids import new_id
from shared.messaging.postgres import PostgresSubscriber
from shared.periods import Period
from tests.conftest import AppClient, migrate_all
from tests.orders.factories import business_today
from tests.payments.factories import OrdersFeed, take_payment
from tests.payments.test_receive_checks import drain_replica
from tests.support.feed import publish
from tests.support.waiting import running_query


@pytest.fixture(scope="module")
async def db(own_database: str) -> str:
    return await migrate_all(own_database)


async def cut_off(url: str) -> None:
    """Apply the close events as the payments service's cutoff subscription would."""
    database = Database(url, pool_size=1)
    try:
        await PostgresSubscriber(database, cutoff.subscription).drain()
    finally:
        await database.dispose()


async def test_the_cutoff_waits_for_the_releases_of_earlier_order_events(
    app_client: AppClient, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cutoff, "REPLICA_WAIT_SECONDS", 600.0)  # it ends by the replica only
    feed = OrdersFeed(db)
    modules = [service_module("orders"), service_module("payments")]
    async with app_client(modules, run_workers=False, database_url=db) as client:
        customer = await feed.customer()
        order = await feed.confirmed(customer, "100.00")
        await drain_replica(db)
        paid = await take_payment(
            client, customer, "100.00", allocations=[{"order_id": str(order), "amount": "100.00"}]
        )
        assert paid.status_code == 201, paid.text
        # Cancelled a moment before the close: the replica has not read it yet.
        await feed.cancelled(customer, order, "100.00")
        period = str(Period.of(business_today()))
        requested = PeriodCloseRequested(
            period=period, close_id=new_id(), requested_by="fay", requested_at=datetime.now(UTC)
        )
        await publish(db, [(requested, "closing", "period-control", None)])
        cutting = asyncio.create_task(cut_off(db))
        await running_query(db, "%FROM payments.consumer_offsets WHERE consumer = $1 AND source%")
        assert not cutting.done()
        await drain_replica(db)
        await asyncio.wait_for(cutting, 30)
    connection = await asyncpg.connect(plain_url(db))
    try:
        written = [
            row["type"]
            for row in await connection.fetch(
                "SELECT type FROM payments.outbox WHERE type IN "
                "('payment.allocation_released', 'period.cutoff') ORDER BY id"
            )
        ]
    finally:
        await connection.close()
    assert written == ["payment.allocation_released", "period.cutoff"]
