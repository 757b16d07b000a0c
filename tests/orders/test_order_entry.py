"""Order entry (POST /orders) writes everything in its last statement and answers from
memory: the answer must be what a read gives back, the numbers it takes at the end must stay
gapless when that statement is refused, and its events must carry those numbers in order."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text

from services.orders.cutoff import GUARD
from shared.cutoff import lift_cutoff, lock_period
from tests.orders.factories import (
    FINANCE,
    POS,
    SALES,
    assert_problem,
    business_today,
    database,
    get_order,
    make_customer,
    make_order,
    make_product,
    ok,
    outbox_events,
    until_a_backend_waits_on_an_advisory_lock,
)


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
        await lock_period(session, GUARD, "2014-03")
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
            await lift_cutoff(session, GUARD, "2014-03", reopening=False)
    entered = [ok(r, 201) for r, day in zip(responses, days, strict=True) if day >= "2014-04"]
    for response, day in zip(responses, days, strict=True):
        if day < "2014-04":
            assert_problem(response, 409, "2014-03", "closed")
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


async def test_an_order_waiting_on_a_cutoff_is_refused_once_it_commits(
    client: httpx.AsyncClient,
) -> None:
    # The order's single statement holds its period open with a shared lock; a cutoff that
    # holds the lock exclusively and commits while the order waits must be seen by the check
    # that follows, though the statement began before the cutoff committed.
    db = database(client)
    customer = await make_customer(client)
    product = await make_product(client)
    before = await outbox_events(client, customer["id"])
    async with db.transaction() as session:
        await lock_period(session, GUARD, "2013-07")
        entering = asyncio.ensure_future(
            client.post(
                "/v1/orders",
                json={
                    "customer_id": customer["id"],
                    "channel": "pos",
                    "lines": [{"sku": product["sku"], "quantity": "1"}],
                    "business_date": "2013-07-05",
                    "submit": True,
                },
                headers=POS,
            )
        )
        await until_a_backend_waits_on_an_advisory_lock(session)
    try:
        assert_problem(await entering, 409, "2013-07", "closed")
    finally:
        async with db.transaction() as session:
            await lift_cutoff(session, GUARD, "2013-07", reopening=False)
    assert await outbox_events(client, customer["id"]) == before
    listed = ok(
        await client.get("/v1/orders", params={"customer_id": customer["id"]}, headers=FINANCE)
    )
    assert listed["items"] == []


async def test_orders_against_one_credit_limit_are_checked_one_at_a_time(
    client: httpx.AsyncClient,
) -> None:
    # Each order fits the limit alone; together they exceed it: exactly as many are
    # confirmed as the limit holds, the rest are held for approval.
    product = await make_product(client, unit_price="10.00")
    customer = await make_customer(client, credit_limit="50.00")
    lines = [{"sku": product["sku"], "quantity": "1"}]  # 11.30 with tax

    def enter() -> Any:
        return client.post(
            "/v1/orders",
            json={"customer_id": customer["id"], "channel": "pos", "lines": lines, "submit": True},
            headers=POS,
        )

    responses = await asyncio.gather(*(enter() for _ in range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 4 + [409] * 4, statuses


async def test_an_order_after_a_change_is_entered_from_the_changed_rows(
    client: httpx.AsyncClient,
) -> None:
    # Order entry remembers the customer and products it read; a change to either, through
    # the API or straight in the database (another process), is what the next order uses.
    product = await make_product(client, unit_price="10.00")
    customer = await make_customer(client, name="Before")
    lines = [{"sku": product["sku"], "quantity": "2"}]
    first = await make_order(client, customer=customer, lines=lines, submit=True)
    assert first["gross"] == "22.60"
    ok(
        await client.patch(
            f"/v1/products/{product['sku']}", json={"unit_price": "20.00"}, headers=SALES
        )
    )
    second = await make_order(client, customer=customer, lines=lines, submit=True)
    assert second["gross"] == "45.20"

    async with database(client).transaction() as session:
        await session.execute(
            text("UPDATE orders.products SET unit_price = 5, name = 'Renamed' WHERE sku = :sku"),
            {"sku": product["sku"]},
        )
        await session.execute(
            text("UPDATE orders.customers SET name = 'After' WHERE id = :id"),
            {"id": customer["id"]},
        )
    third = await make_order(client, customer=customer, lines=lines, submit=True)
    assert (third["gross"], third["lines"][0]["name"]) == ("11.30", "Renamed")
    events = await outbox_events(client, customer["id"])
    confirmed = [e for e in events if e["type"] == "order.confirmed"]
    assert [e["data"]["order"]["customer_name"] for e in confirmed] == ["Before"] * 2 + ["After"]
    assert [e["data"]["order"]["gross"] for e in confirmed] == ["22.60", "45.20", "11.30"]

    ok(await client.patch(f"/v1/products/{product['sku']}", json={"active": False}, headers=SALES))
    assert_problem(
        await client.post(
            "/v1/orders",
            json={"customer_id": customer["id"], "channel": "pos", "lines": lines},
            headers=POS,
        ),
        422,
        "not active",
    )


async def _until_waiting_on_locks(db_url: str, count: int) -> None:
    watcher = await asyncpg.connect(db_url)
    try:
        for _ in range(1000):
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
            if waiting >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{count} backends never waited on locks at once")
    finally:
        await watcher.close()


async def _holding_the_so_counter(db_url: str) -> asyncpg.Connection:
    """A connection in a transaction holding this year's SO counter row: order entry waits
    on it with whatever it locked before taking the number."""
    blocker = await asyncpg.connect(db_url)
    await blocker.execute("BEGIN")
    await blocker.execute(
        "UPDATE orders.document_numbers SET last = last WHERE prefix = 'SO' AND year = $1",
        business_today().year,
    )
    return blocker


async def test_a_limit_set_while_an_order_is_written_counts_it(client: httpx.AsyncClient) -> None:
    # An order entered from a remembered customer (no limit) is being written when a credit
    # limit is set: the change waits for the order (it cannot slip in between the order's
    # check and its commit), and the next order is checked against the limit, counting the
    # first, though it was entered from the customer as remembered before the limit.
    db = database(client)
    product = await make_product(client, unit_price="10.00")
    customer = await make_customer(client)
    lines = [{"sku": product["sku"], "quantity": "1"}]  # 11.30 with tax
    await make_order(client, customer=customer, lines=lines)  # remembered from here on
    body = {"customer_id": customer["id"], "channel": "pos", "lines": lines, "submit": True}
    blocker = await _holding_the_so_counter(db.url)
    try:
        first = asyncio.ensure_future(client.post("/v1/orders", json=body, headers=POS))
        await _until_waiting_on_locks(db.url, 1)
        limit = asyncio.ensure_future(
            client.patch(
                f"/v1/customers/{customer['id']}", json={"credit_limit": "15.00"}, headers=SALES
            )
        )
        await _until_waiting_on_locks(db.url, 2)
        assert not limit.done()
    finally:
        await blocker.execute("ROLLBACK")
        await blocker.close()
    assert [(await first).status_code, (await limit).status_code] == [201, 200]
    second = await client.post("/v1/orders", json=body, headers=POS)
    assert_problem(second, 409, "credit limit")
    listed = ok(
        await client.get("/v1/orders", params={"customer_id": customer["id"]}, headers=FINANCE)
    )
    assert sorted(o["status"] for o in listed["items"]) == ["confirmed", "draft", "submitted"]


async def test_a_draft_beside_a_credit_check_of_its_customer_waits_its_turn(
    client: httpx.AsyncClient,
) -> None:
    # A draft for a customer with a limit, and a submitted order holding that customer's row
    # for its credit check, both wait on the SO counter: neither may deadlock the other.
    db = database(client)
    product = await make_product(client, unit_price="10.00")
    customer = await make_customer(client, credit_limit="1000.00")
    lines = [{"sku": product["sku"], "quantity": "1"}]
    await make_order(client, customer=customer, lines=lines, submit=True)
    blocker = await _holding_the_so_counter(db.url)
    try:
        body = {"customer_id": customer["id"], "channel": "pos", "lines": lines}
        draft = asyncio.ensure_future(client.post("/v1/orders", json=body, headers=POS))
        await _until_waiting_on_locks(db.url, 1)
        submitted = asyncio.ensure_future(
            client.post("/v1/orders", json=body | {"submit": True}, headers=POS)
        )
        await _until_waiting_on_locks(db.url, 2)
    finally:
        await blocker.execute("ROLLBACK")
        await blocker.close()
    assert [(await draft).status_code, (await submitted).status_code] == [201, 201]
