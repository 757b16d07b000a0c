"""The orders side of the month-end close: a close request locks the period and reports the
control totals the closing ledger will count from our events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import delete
from sqlmodel import col

from services.orders.app import module
from services.orders.cutoff import GUARD
from services.orders.models import Order, PeriodLock
from shared.cutoff import hold_period, lift_cutoff, lock_period
from shared.events.closing import CONTROL_KEY, PeriodCloseRequested, PeriodReopened
from shared.events.envelope import Event, EventPayload
from shared.ids import new_id
from shared.messaging.outbox import write_to_outbox
from tests.conftest import migrate_all, serving
from tests.orders.factories import (
    POS,
    SALES,
    act,
    assert_problem,
    business_today,
    database,
    make_customer,
    make_order,
    make_product,
    ok,
    outbox_events,
    until_a_backend_waits_on_an_advisory_lock,
)
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
async def client(
    own_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """An orders app on a database of this module's own: its tests lock periods, and a lock
    closes the months before it to documents for whoever shares the database (the close's
    requests also reach any payments service that later reads this closing outbox)."""
    url = await migrate_all(own_database)
    async with serving(
        [module()], database_url=url, data_dir=tmp_path_factory.mktemp("cutoff")
    ) as client:
        yield client


async def closing_says(client: httpx.AsyncClient, payload: EventPayload) -> None:
    async with database(client).transaction() as session:
        await write_to_outbox(session, [Event.of(payload, source="closing", key=CONTROL_KEY)])


async def cutoff_for(client: httpx.AsyncClient, close_id: str) -> dict[str, Any]:
    events = await eventually(
        lambda: outbox_events(client, CONTROL_KEY),
        lambda found: any(e["data"]["close_id"] == close_id for e in found),
    )
    return next(e["data"] for e in events if e["data"]["close_id"] == close_id)


async def period_locked(client: httpx.AsyncClient, period: str) -> bool:
    async with database(client).sessions() as session:
        return await session.get(PeriodLock, period, populate_existing=True) is not None


async def forget_the_year(client: httpx.AsyncClient, year: int) -> None:
    """Unlock every period of `year` and forget its reopenings: a lock closes the months
    before it too, and each test here dates documents into a year of its own."""
    async with database(client).transaction() as session:
        for table in (GUARD.locks, GUARD.reopened):
            await session.execute(delete(table).where(table.c.period.like(f"{year}-%")))


async def request_close(client: httpx.AsyncClient, period: str) -> dict[str, Any]:
    close_id = new_id()
    await closing_says(
        client,
        PeriodCloseRequested(
            period=period, close_id=close_id, requested_by="fin", requested_at=datetime.now(UTC)
        ),
    )
    return await cutoff_for(client, str(close_id))


async def test_cutoff_locks_in_order_and_reports_control_totals(client: httpx.AsyncClient) -> None:
    # 2017 is used by no other test.
    try:
        customer = await make_customer(client)
        product = await make_product(client, unit_price="100")  # 113.00 a unit
        lines = [{"sku": product["sku"], "quantity": "1"}]
        early = await make_order(
            client, customer=customer, lines=lines, business_date="2017-01-20", submit=True
        )
        a = await make_order(
            client, customer=customer, lines=lines, business_date="2017-03-02", submit=True
        )
        b = await make_order(
            client,
            customer=customer,
            lines=[{**lines[0], "quantity": "2"}],
            business_date="2017-03-03",
            submit=True,
        )
        await make_order(
            client, customer=customer, lines=lines, business_date="2017-03-04"
        )  # a draft
        ok(
            await client.post(
                f"/v1/orders/{b['id']}/returns",
                json={"lines": lines, "business_date": "2017-03-05"},
                headers=POS,
            ),
            201,
        )
        # Cancelling today reverses into today's period, not 2017-03; the early invoice stays.
        ok(await act(client, a, "cancel", SALES))

        refused = await request_close(client, "2017-03")
        assert refused["refused"] and "2017-01" in refused["refused"]
        assert refused["source"] == "orders"
        # Still open: a document may be dated into it.
        await make_order(client, customer=customer, lines=lines, business_date="2017-03-31")

        first = await request_close(client, "2017-01")
        assert first["refused"] is None
        assert first["control_totals"]["invoice"] == {"count": 1, "amount": early["gross"]}

        cutoff = await request_close(client, "2017-03")
        assert cutoff["refused"] is None
        assert cutoff["control_totals"] == {
            "invoice": {"count": 2, "amount": "339.00"},
            "credit_note": {"count": 1, "amount": "113.00"},
            "cancellation": {"count": 0, "amount": "0.00"},
        }
        body = {
            "customer_id": customer["id"],
            "channel": "pos",
            "lines": lines,
            "business_date": "2017-03-31",
        }
        assert_problem(await client.post("/v1/orders", json=body, headers=POS), 409, "2017-03")

        await closing_says(
            client,
            PeriodReopened(
                period="2017-03",
                version=1,
                reason="late invoice",
                reopened_by="chief",
                reopened_at=datetime.now(UTC),
            ),
        )
        await eventually(partial(period_locked, client, "2017-03"), lambda locked: not locked)
        created = ok(await client.post("/v1/orders", json=body, headers=POS), 201)
        assert created["business_date"] == "2017-03-31"
    finally:
        await forget_the_year(client, 2017)


async def test_cancellation_counts_in_its_own_period(client: httpx.AsyncClient) -> None:
    from services.orders.cutoff import control_totals
    from tests.orders.factories import business_today

    order = await make_order(client, unit_price="10", quantity="2", submit=True)  # 22.60
    ok(
        await client.post(
            f"/v1/orders/{order['id']}/returns",
            json={"lines": [{"sku": order["lines"][0]["sku"], "quantity": "1"}]},
            headers=POS,
        ),
        201,
    )
    period = business_today().isoformat()[:7]
    async with database(client).sessions() as session:
        before = await control_totals(session, period)
    ok(await act(client, order, "cancel", SALES))
    async with database(client).sessions() as session:
        after = await control_totals(session, period)
    assert after["cancellation"].count == before["cancellation"].count + 1
    assert after["cancellation"].amount - before["cancellation"].amount == Decimal("11.30")


async def test_a_lock_closes_the_months_before_it_unless_they_were_reopened(
    client: httpx.AsyncClient,
) -> None:
    # 2016 is used by no other test. Periods close in order: with 2016-05 locked, a document
    # dated into 2016-02 (which held none when 2016-05 closed) would change a balance the
    # close of 2016-05 carried forward, so it is refused as 2016-05 itself is.
    customer = await make_customer(client)
    product = await make_product(client, unit_price="10")
    lines = [{"sku": product["sku"], "quantity": "1"}]

    def order_on(day: str, *, submit: bool = True) -> Any:
        body = {"customer_id": customer["id"], "channel": "pos", "lines": lines}
        return client.post(
            "/v1/orders", json={**body, "business_date": day, "submit": submit}, headers=POS
        )

    june = ok(await order_on("2016-06-01"), 201)
    db = database(client)
    async with db.transaction() as session:
        await lock_period(session, GUARD, "2016-05")
        await lock_period(session, GUARD, "2016-07")
    try:
        for submit in (True, False):
            refused = assert_problem(await order_on("2016-02-10", submit=submit), 409, "2016-02")
            assert refused["closed_by"] == "2016-07" and refused["field"] == "business_date"
            assert "after 2016-07" in refused["detail"]
        # Through the transaction of a return (its own check of the lock tables).
        returned = assert_problem(
            await client.post(
                f"/v1/orders/{june['id']}/returns",
                json={"lines": lines, "business_date": "2016-06-20"},
                headers=POS,
            ),
            409,
            "2016-06",
            "2016-07",
        )
        assert returned["closed_by"] == "2016-07"
        assert_problem(await order_on("2016-07-02"), 409, "its month-end close has begun")
        assert ok(await order_on("2016-08-01"), 201)["status"] == "confirmed"

        # Reopened, 2016-05 takes documents again though 2016-07 stays locked (it is stale
        # until closed again); the months before it are still closed by 2016-07.
        async with db.transaction() as session:
            await lift_cutoff(session, GUARD, "2016-05", reopening=True)
        assert ok(await order_on("2016-05-09"), 201)["business_date"] == "2016-05-09"
        assert assert_problem(await order_on("2016-04-30"), 409)["closed_by"] == "2016-07"
        # Closed again, it is closed again.
        async with db.transaction() as session:
            await lock_period(session, GUARD, "2016-05")
        assert assert_problem(await order_on("2016-05-09"), 409)["closed_by"] == "2016-05"
    finally:
        await forget_the_year(client, 2016)


async def test_a_cutoff_waits_for_a_document_dated_into_an_earlier_month(
    client: httpx.AsyncClient,
) -> None:
    # 2015 is used by no other test. A document being dated into 2015-02 holds its source's
    # lock shared; a cutoff of 2015-04 waits for it, then sees it and refuses the close,
    # instead of closing 2015-04 over a month that now holds a document.
    customer = await make_customer(client)
    db = database(client)
    invoice = Order(
        number=f"SO-2015-{new_id().hex[:8]}",
        customer_id=UUID(customer["id"]),
        status="confirmed",
        channel="pos",
        business_date=date(2015, 2, 3),
        net=Decimal("0.00"),
        tax=Decimal("0.00"),
        gross=Decimal("0.00"),
        invoice_number=f"INV-2015-{new_id().hex[:8]}",
        created_by="till-1",
    )
    try:
        async with db.transaction() as writing:
            assert await hold_period(writing, GUARD, "2015-02", today=business_today()) is None
            cutting = asyncio.ensure_future(request_close(client, "2015-04"))
            await until_a_backend_waits_on_an_advisory_lock(writing)
            writing.add(invoice)
        cutoff = await cutting
        assert cutoff["refused"] and "2015-02" in cutoff["refused"]
        assert not await period_locked(client, "2015-04")
    finally:
        async with db.transaction() as session:
            await session.execute(delete(Order).where(col(Order.id) == invoice.id))
        await forget_the_year(client, 2015)
