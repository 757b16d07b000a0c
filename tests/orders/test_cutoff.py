"""The orders side of the month-end close: a close request locks the period and reports the
control totals the closing ledger will count from our events."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import httpx

from services.orders.models import PeriodLock
from shared.events.closing import CONTROL_KEY, PeriodCloseRequested, PeriodReopened
from shared.events.envelope import Event, EventPayload
from shared.ids import new_id
from shared.messaging.outbox import write_to_outbox
from tests.orders.factories import (
    POS,
    SALES,
    act,
    assert_problem,
    database,
    make_customer,
    make_order,
    make_product,
    ok,
    outbox_events,
)
from tests.support.waiting import eventually


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
    await make_order(client, customer=customer, lines=lines, business_date="2017-03-04")  # a draft
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
