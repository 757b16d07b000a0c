"""Document numbers and dates: gapless SO/INV/CRN per year under concurrency, due dates,
instalments, business dates (earlier only, never future, never into a locked period)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import httpx

from services.orders.cutoff import GUARD
from shared.cutoff import lift_cutoff, lock_period
from tests.orders.factories import (
    APPROVER,
    POS,
    act,
    assert_problem,
    business_today,
    database,
    get_order,
    make_customer,
    make_order,
    make_product,
    ok,
)


async def test_numbers_have_the_documented_format(client: httpx.AsyncClient) -> None:
    order = await make_order(client, submit=True)
    year = business_today().year
    assert order["number"].startswith(f"SO-{year}-") and len(order["number"]) == 14
    assert order["invoice_number"].startswith(f"INV-{year}-")
    note = ok(
        await client.post(
            f"/v1/orders/{order['id']}/returns",
            json={"lines": [{"sku": order["lines"][0]["sku"], "quantity": "1"}]},
            headers=POS,
        ),
        201,
    )
    assert note["number"].startswith(f"CRN-{year}-") and len(note["number"]) == 15


async def test_concurrent_confirmations_take_gapless_invoice_numbers(
    client: httpx.AsyncClient,
) -> None:
    # 2019 is used by no other test, so its invoice numbers start at 1 here.
    customer = await make_customer(client)
    product = await make_product(client)
    drafts = await asyncio.gather(
        *(
            make_order(
                client,
                customer=customer,
                lines=[{"sku": product["sku"], "quantity": "1"}],
                business_date="2019-06-15",
            )
            for _ in range(30)
        )
    )
    responses = await asyncio.gather(*(act(client, d, "submit", POS) for d in drafts))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    numbers = sorted(r.json()["invoice_number"] for r in responses)
    assert numbers == [f"INV-2019-{n:06d}" for n in range(1, 31)]
    assert {r.json()["business_date"] for r in responses} == {"2019-06-15"}
    assert {r.json()["period"] for r in responses} == {"2019-06"}


async def test_invoice_year_follows_the_business_date(client: httpx.AsyncClient) -> None:
    order = await make_order(client, business_date="2018-12-31", submit=True)
    assert order["invoice_number"] == "INV-2018-000001"
    assert order["business_date"] == "2018-12-31"
    assert order["due_date"] == "2019-01-30"  # 30 days of terms from the factory


async def test_due_date_is_business_date_plus_terms(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client, payment_terms_days=45)
    order = await make_order(client, customer=customer, submit=True)
    day = date.fromisoformat(order["business_date"])
    assert day == business_today()
    assert date.fromisoformat(order["due_date"]) == day + timedelta(days=45)
    cash = await make_customer(client, payment_terms_days=0)
    assert (await make_order(client, customer=cash, submit=True))["due_date"] == order[
        "business_date"
    ]


async def test_instalments_are_stored_and_read_back(client: httpx.AsyncClient) -> None:
    # One line of 100.00 at 13%: gross 113.00.
    order = await make_order(
        client,
        unit_price="100",
        instalments=[
            {"due_date": "2030-03-01", "amount": "50.00"},
            {"due_date": "2030-01-01", "amount": "63"},
        ],
        submit=True,
    )
    assert order["instalments"] == [
        {"due_date": "2030-01-01", "amount": "63.00"},
        {"due_date": "2030-03-01", "amount": "50.00"},
    ]
    assert (await get_order(client, order["id"]))["instalments"] == order["instalments"]
    plain = await make_order(client, submit=True)
    assert plain["instalments"] == []


async def test_instalments_must_sum_to_gross(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client)
    product = await make_product(client, unit_price="100")
    response = await client.post(
        "/v1/orders",
        json={
            "customer_id": customer["id"],
            "channel": "online",
            "lines": [{"sku": product["sku"], "quantity": "1"}],
            "instalments": [{"due_date": "2030-01-01", "amount": "100.00"}],
        },
        headers=POS,
    )
    body = assert_problem(response, 422, "instalments", "100.00", "113.00")
    assert body["field"] == "instalments"


async def test_an_instalment_cannot_fall_due_before_the_order(client: httpx.AsyncClient) -> None:
    customer = await make_customer(client)
    product = await make_product(client, unit_price="100")  # 113.00 with tax
    body = {
        "customer_id": customer["id"],
        "channel": "online",
        "lines": [{"sku": product["sku"], "quantity": "1"}],
        "submit": True,
        "instalments": [
            {"due_date": "2999-04-10", "amount": "100.00"},
            {"due_date": "2020-03-09", "amount": "13.00"},
        ],
    }
    problem = assert_problem(
        await client.post("/v1/orders", json=body, headers=POS), 422, "2020-03-09", "before"
    )
    assert problem["field"] == "instalments.1.due_date"
    created = ok(await client.post("/v1/orders", json=body | {"instalments": []}, headers=POS), 201)
    today = created["business_date"]
    body["instalments"][1]["due_date"] = today  # on the order's own date: due at once
    created = ok(await client.post("/v1/orders", json=body, headers=POS), 201)
    assert [i["due_date"] for i in created["instalments"]] == [today, "2999-04-10"]


async def test_future_business_date_is_422(client: httpx.AsyncClient) -> None:
    tomorrow = (business_today() + timedelta(days=1)).isoformat()
    customer = await make_customer(client)
    product = await make_product(client)
    response = await client.post(
        "/v1/orders",
        json={
            "customer_id": customer["id"],
            "channel": "pos",
            "lines": [{"sku": product["sku"], "quantity": "1"}],
            "business_date": tomorrow,
        },
        headers=POS,
    )
    body = assert_problem(response, 422, "business_date", "future")
    assert body["field"] == "business_date"


async def test_locked_period_refuses_documents_dated_into_it(client: httpx.AsyncClient) -> None:
    db = database(client)
    customer = await make_customer(client)
    product = await make_product(client)
    lines = [{"sku": product["sku"], "quantity": "1"}]
    # Invoiced in the month before, while it was open.
    order = await make_order(
        client, customer=customer, lines=lines, business_date="2020-02-29", submit=True
    )
    assert order["period"] == "2020-02"
    async with db.transaction() as session:
        await lock_period(session, GUARD, "2020-03")
    try:
        body = {
            "customer_id": customer["id"],
            "channel": "pos",
            "lines": lines,
            "business_date": "2020-03-31",
        }
        problem = assert_problem(
            await client.post("/v1/orders", json=body, headers=POS), 409, "2020-03", "closed"
        )
        assert problem["period"] == "2020-03"
        # The month before is closed with it (periods close in order); a return into the
        # locked one is refused too.
        earlier = {**body, "business_date": "2020-02-28"}
        problem = assert_problem(
            await client.post("/v1/orders", json=earlier, headers=POS), 409, "2020-02", "2020-03"
        )
        assert (problem["period"], problem["closed_by"]) == ("2020-02", "2020-03")
        returned = await client.post(
            f"/v1/orders/{order['id']}/returns",
            json={"lines": lines, "business_date": "2020-03-01"},
            headers=POS,
        )
        assert_problem(returned, 409, "2020-03")
        assert (await get_order(client, order["id"]))["credited"] == "0.00"
        # A draft dated into a period locked after its creation cannot be confirmed.
        draft = await make_order(
            client, customer=customer, lines=lines, business_date="2020-04-01", unit_price="20000"
        )
        async with db.transaction() as session:
            await lock_period(session, GUARD, "2020-04")
        assert_problem(await act(client, draft, "submit", POS), 409, "2020-04")
    finally:
        async with db.transaction() as session:
            await lift_cutoff(session, GUARD, "2020-03", reopening=False)
            await lift_cutoff(session, GUARD, "2020-04", reopening=False)


async def test_return_cannot_predate_the_invoice(client: httpx.AsyncClient) -> None:
    order = await make_order(client, business_date="2021-05-10", submit=True)
    response = await client.post(
        f"/v1/orders/{order['id']}/returns",
        json={
            "lines": [{"sku": order["lines"][0]["sku"], "quantity": "1"}],
            "business_date": "2021-05-09",
        },
        headers=POS,
    )
    body = assert_problem(response, 422, "business_date", "before the invoice date")
    assert body["field"] == "business_date"
    note = ok(
        await client.post(
            f"/v1/orders/{order['id']}/returns",
            json={
                "lines": [{"sku": order["lines"][0]["sku"], "quantity": "1"}],
                "business_date": "2021-06-01",
            },
            headers=POS,
        ),
        201,
    )
    assert (note["business_date"], note["period"]) == ("2021-06-01", "2021-06")


async def test_approval_confirms_on_the_requested_business_date(client: httpx.AsyncClient) -> None:
    order = await make_order(client, unit_price="20000", business_date="2022-02-02", submit=True)
    confirmed = ok(await act(client, order, "approve", APPROVER))
    assert (confirmed["business_date"], confirmed["invoice_number"][:8]) == (
        "2022-02-02",
        "INV-2022",
    )
    assert confirmed["period"] == "2022-02"
