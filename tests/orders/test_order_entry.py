"""Order entry (POST /orders) writes everything in its last statement and answers from
memory: the answer must be what a read gives back, the numbers it takes at the end must stay
gapless when that statement is refused, and its events must carry those numbers in order."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from services.orders.models import SCHEMA, PeriodLock
from shared.cutoff import lift_cutoff, lock_period
from shared.tables import table_of
from tests.orders.factories import (
    POS,
    assert_problem,
    database,
    get_order,
    make_customer,
    make_order,
    make_product,
    ok,
    outbox_events,
)

LOCKS = table_of(PeriodLock)


async def test_the_answer_is_what_a_read_gives_back(client: httpx.AsyncClient) -> None:
    product = await make_product(client, unit_price="12.35")
    other = await make_product(client, unit_price="7")
    lines = [
        {"sku": product["sku"], "quantity": "1.5", "discount": "0.50"},
        {"sku": other["sku"], "quantity": "3", "unit_price": "6.99"},
    ]
    limited = await make_customer(client, credit_limit="10.00")
    answers = [
        await make_order(client, lines=lines, note="draft", business_date="2022-02-03"),
        await make_order(client, lines=lines, submit=True),
        await make_order(client, lines=lines, submit=True, business_date="2022-02-04"),
        # Above the first approval threshold: submitted, waiting for an approver.
        await make_order(client, lines=[{"sku": product["sku"], "quantity": "900"}], submit=True),
        await make_order(
            client,
            lines=lines,
            submit=True,
            instalments=[
                {"due_date": "2031-01-01", "amount": "20.00"},
                {"due_date": "2030-01-01", "amount": "24.07"},
            ],
        ),
    ]
    held = assert_problem(
        await client.post(
            "/v1/orders",
            json={"customer_id": limited["id"], "channel": "pos", "lines": lines, "submit": True},
            headers=POS,
        ),
        409,
        "credit limit",
    )
    answers.append(held["order"])
    assert held["order_number"] in held["detail"]
    for answer in answers:
        assert await get_order(client, answer["id"]) == answer
    statuses = [a["status"] for a in answers]
    assert statuses == ["draft", "confirmed", "confirmed", "submitted", "confirmed", "submitted"]
    assert answers[-1]["credit_hold"] and answers[-1]["history"][-1]["reason"].startswith(
        f"order {held['order_number']} "
    )


async def test_numbers_stay_gapless_when_the_last_statement_is_refused(
    client: httpx.AsyncClient,
) -> None:
    # 2014 is used by no other test, so its invoice numbers start at 1 here. Orders into a
    # locked month take numbers in their last statement and give them back with the 409.
    db = database(client)
    async with db.transaction() as session:
        await lock_period(session, schema=SCHEMA, locks=LOCKS, period="2014-04")
    try:
        customer = await make_customer(client)
        product = await make_product(client)

        def enter(day: str) -> Any:
            return client.post(
                "/v1/orders",
                json={
                    "customer_id": customer["id"],
                    "channel": "pos",
                    "lines": [{"sku": product["sku"], "quantity": "1"}],
                    "business_date": day,
                    "submit": True,
                },
                headers=POS,
            )

        days = ["2014-03-10", "2014-04-10"] * 12
        responses = await asyncio.gather(*(enter(day) for day in days))
    finally:
        async with db.transaction() as session:
            await lift_cutoff(session, locks=LOCKS, period="2014-04")
    entered = [ok(r, 201) for r, day in zip(responses, days, strict=True) if day < "2014-04"]
    for response, day in zip(responses, days, strict=True):
        if day >= "2014-04":
            assert_problem(response, 409, "2014-04", "closed")
    assert sorted(o["invoice_number"] for o in entered) == [
        f"INV-2014-{n:06d}" for n in range(1, 13)
    ]
    numbers = sorted(int(o["number"].rsplit("-", 1)[1]) for o in entered)
    assert numbers == list(range(numbers[0], numbers[0] + 12)), "SO numbers have no gaps"


async def test_events_carry_the_numbers_taken_last_in_order(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client)
    first = await make_order(client, customer=customer, submit=True)
    second = await make_order(client, customer=customer, submit=True)
    events = await outbox_events(client, customer["id"])
    order_events = [e for e in events if e["type"].startswith("order.")]
    assert [(e["type"], e["data"]["order"]["order_id"]) for e in order_events] == [
        ("order.submitted", first["id"]),
        ("order.confirmed", first["id"]),
        ("order.submitted", second["id"]),
        ("order.confirmed", second["id"]),
    ]
    for event, order in zip(order_events, [first, first, second, second], strict=True):
        assert event["data"]["order"]["number"] == order["number"]
    assert order_events[1]["data"]["invoice_number"] == first["invoice_number"]
    assert order_events[3]["data"]["invoice_number"] == second["invoice_number"]
