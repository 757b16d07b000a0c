"""A refund or a return that releases only part of an allocation: orders, payments, analytics
and the closed month all read the same paid and open amounts, to the cent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from functools import partial
from typing import Any
from uuid import UUID

import httpx
import pytest

from services.registry import all_modules, service_module
from shared.ids import new_id
from tests.conftest import AppClient, auth, migrate_all
from tests.orders.factories import (
    FINANCE,
    POS,
    act,
    assert_problem,
    get_order,
    make_customer,
    make_order,
    make_product,
    ok,
)
from tests.payments.factories import read_payment, take_payment
from tests.support.migrating import migrate_service, query, run_sql
from tests.support.waiting import eventually

MONTH = "2026-11"
ANALYST = auth("analyst", "ava")


@pytest.fixture(scope="module")
async def db(own_database: str) -> str:
    return await migrate_all(own_database)


@pytest.fixture
async def client(app_client: AppClient, db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(all_modules(), database_url=db) as c:
        yield c


async def paid_order(
    client: httpx.AsyncClient, product: dict[str, Any], customer: dict[str, Any], day: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order of 3 × 100.00 + 13% = 339.00 dated `day` of the month, paid in full next day."""
    order = await make_order(
        client,
        customer=customer,
        lines=[{"sku": product["sku"], "quantity": "3"}],
        submit=True,
        business_date=f"{MONTH}-{day:02d}",
    )
    assert order["status"] == "confirmed" and order["gross"] == "339.00"
    response = await take_payment(
        client,
        customer["id"],
        "339.00",
        allocations=[{"order_id": order["id"], "amount": "339.00"}],
        received_at=f"{MONTH}-{day + 1:02d}T10:00:00+08:00",
    )
    paid = ok(response, 201)
    # Pending until the order's confirmation reaches the payments service, then applied.
    await eventually(
        lambda: read_payment(client, paid["id"]),
        lambda p: p["allocations"][0]["status"] == "applied",
    )
    await order_reads(client, order, "339.00", "0.00")
    return order, paid


async def refund(client: httpx.AsyncClient, payment: dict[str, Any], amount: str, day: int) -> None:
    body = {"amount": amount, "business_date": f"{MONTH}-{day:02d}", "reason": "goodwill"}
    ok(await client.post(f"/v1/payments/{payment['id']}/refunds", json=body, headers=FINANCE), 201)


async def order_reads(
    client: httpx.AsyncClient, order: dict[str, Any], paid: str, outstanding: str
) -> dict[str, Any]:
    read = await eventually(
        lambda: get_order(client, order["id"]), lambda o: o["paid"] == paid, seconds=20
    )
    assert read["outstanding"] == outstanding, read
    return read


async def payment_reads(
    client: httpx.AsyncClient,
    payment: dict[str, Any],
    allocated: str,
    unapplied: str,
    refunded: str,
) -> None:
    read = await read_payment(client, payment["id"])
    assert (read["allocated"], read["unapplied"], read["refunded"]) == (
        allocated,
        unapplied,
        refunded,
    ), read


async def lifetime(client: httpx.AsyncClient, customer: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(
        f"/v1/analytics/customers/{customer['id']}/lifetime", headers=ANALYST
    )
    return response.json() if response.status_code == 200 else {}


def _pays(amount: str, figures: dict[str, Any]) -> bool:
    return figures.get("paid") == amount


async def test_partial_releases_agree_everywhere(client: httpx.AsyncClient) -> None:
    product = await make_product(client, unit_price="100.00", tax_rate="0.13")
    refunded = await make_customer(client, payment_terms_days=0)
    returned = await make_customer(client, payment_terms_days=0)
    twice = await make_customer(client, payment_terms_days=0)

    # A refund of 100.00 from a payment that paid its order in full.
    first, first_payment = await paid_order(client, product, refunded, 3)
    await refund(client, first_payment, "100.00", 6)
    await order_reads(client, first, "239.00", "100.00")
    await payment_reads(client, first_payment, "239.00", "0.00", "100.00")

    # A return of one unit of a paid order: the credit note leaves it overpaid by 113.00.
    second, second_payment = await paid_order(client, product, returned, 3)
    ok(
        await act(
            client,
            second,
            "returns",
            POS,
            {"lines": [{"sku": product["sku"], "quantity": "1"}], "business_date": f"{MONTH}-07"},
        ),
        201,
    )
    read = await order_reads(client, second, "226.00", "0.00")
    assert read["credited"] == "113.00"
    await eventually(
        lambda: read_payment(client, second_payment["id"]), lambda p: p["allocated"] == "226.00"
    )
    await payment_reads(client, second_payment, "226.00", "113.00", "0.00")

    # Two partial refunds of one allocation, then the rest of it.
    third, third_payment = await paid_order(client, product, twice, 3)
    await refund(client, third_payment, "100.00", 6)
    await order_reads(client, third, "239.00", "100.00")
    await refund(client, third_payment, "50.00", 7)
    await order_reads(client, third, "189.00", "150.00")
    await payment_reads(client, third_payment, "189.00", "0.00", "150.00")
    statuses = sorted(
        (a["status"], a["amount"])
        for a in (await read_payment(client, third_payment["id"]))["allocations"]
    )
    assert statuses == [("applied", "189.00"), ("released", "100.00"), ("released", "50.00")]

    # Analytics: what each customer paid on account and still owes.
    expected = {refunded["id"]: "100.00", returned["id"]: "0.00", twice["id"]: "150.00"}
    paid = {refunded["id"]: "239.00", returned["id"]: "226.00", twice["id"]: "189.00"}
    for customer in (refunded, returned, twice):
        figures = await eventually(
            partial(lifetime, client, customer),
            partial(_pays, paid[customer["id"]]),
            seconds=20,
        )
        assert figures["outstanding"] == expected[customer["id"]], figures
    ageing = ok(await client.get(f"/v1/analytics/ar-ageing?as_of={MONTH}-30", headers=ANALYST))
    open_by_customer = {r["customer_id"]: r["total"] for r in ageing["rows"]}
    assert open_by_customer.get(refunded["id"]) == "100.00"
    assert returned["id"] not in open_by_customer  # nothing open: the credit note covers it
    assert open_by_customer.get(twice["id"]) == "150.00"

    # The closed month: balances from the ledger and ageing from the allocations agree.
    ok(await client.post(f"/v1/closing/periods/{MONTH}/close", headers=FINANCE), 202)
    await eventually(
        lambda: client.get(f"/v1/closing/periods/{MONTH}", headers=FINANCE),
        lambda r: r.json()["status"] == "closed",
        seconds=40,
    )
    rows = {
        r["customer_id"]: r
        for r in ok(await client.get(f"/v1/closing/periods/{MONTH}/balances", headers=FINANCE))[
            "items"
        ]
    }

    def closed(customer: dict[str, Any]) -> tuple[str, ...]:
        row = rows[customer["id"]]
        return tuple(row[k] for k in ("invoiced", "returned", "received", "refunded", "closing"))

    def aged(customer: dict[str, Any]) -> Decimal:
        return sum((Decimal(v) for v in rows[customer["id"]]["ageing"].values()), Decimal(0))

    assert closed(refunded) == ("339.00", "0.00", "339.00", "100.00", "100.00")
    assert aged(refunded) == Decimal("100.00")
    assert closed(returned) == ("339.00", "113.00", "339.00", "0.00", "-113.00")
    assert aged(returned) == Decimal("0.00")
    assert closed(twice) == ("339.00", "0.00", "339.00", "150.00", "150.00")
    assert aged(twice) == Decimal("150.00")


async def test_credit_limit_counts_what_a_partial_refund_left_open(
    client: httpx.AsyncClient,
) -> None:
    customer = await make_customer(client, credit_limit="150.00", payment_terms_days=0)
    product = await make_product(client, unit_price="100.00", tax_rate="0.13")
    line = [{"sku": product["sku"], "quantity": "1"}]
    first = await make_order(client, customer=customer, lines=line, submit=True)  # 113.00
    assert first["status"] == "confirmed"
    payment = ok(
        await take_payment(
            client,
            customer["id"],
            "113.00",
            allocations=[{"order_id": first["id"], "amount": "113.00"}],
        ),
        201,
    )
    await order_reads(client, first, "113.00", "0.00")
    ok(
        await client.post(
            f"/v1/payments/{payment['id']}/refunds",
            json={"amount": "100.00", "reason": "goodwill"},
            headers=FINANCE,
        ),
        201,
    )
    await order_reads(client, first, "13.00", "100.00")
    # 100.00 still open + 113.00 is over the 150.00 limit: the second order is held.
    second = await make_order(client, customer=customer, lines=line)
    assert_problem(await act(client, second, "submit", POS), 409, "credit limit")


async def test_migration_0004_takes_earlier_partial_releases_out_of_paid(
    app_client: AppClient, scratch_database: str
) -> None:
    """Rows as version 1 releases left them: each part released from an allocation that still
    counts stored as an unapplied row of its own, and never taken out of `paid`."""
    url = scratch_database
    await migrate_all(url)
    async with app_client([service_module("orders")], database_url=url) as c:
        product = await make_product(c, unit_price="100.00", tax_rate="0.13")
        line = [{"sku": product["sku"], "quantity": "3"}]
        orders = [await make_order(c, lines=line, submit=True) for _ in range(3)]
    split, two_splits, ambiguous = (UUID(o["id"]) for o in orders)
    p1, p2, p3 = new_id(), new_id(), new_id()
    a1, b1, b2, c1 = new_id(), new_id(), new_id(), new_id()
    s1, s2, s3 = new_id(), new_id(), new_id()
    legacy = [  # allocation, payment, order, amount, applied, minutes ago
        (a1, p1, split, "339.00", True, 9),
        (s1, p1, split, "100.00", False, 5),
        (b1, p2, two_splits, "200.00", True, 9),
        (b2, p2, two_splits, "139.00", True, 8),
        (s2, p2, two_splits, "50.00", False, 4),
        (s3, p2, two_splits, "30.00", False, 3),
        (c1, p3, ambiguous, "39.00", True, 9),
        (new_id(), p3, ambiguous, "300.00", False, 2),  # released in full, or a part?
    ]
    paid_before = {split: "339.00", two_splits: "339.00", ambiguous: "39.00"}
    await run_sql(
        url,
        [
            (
                "INSERT INTO orders.payment_allocations VALUES (:a, :p, :o, :amount, :applied,"
                " now() - make_interval(mins => :ago))",
                {"a": a, "p": p, "o": o, "amount": Decimal(m), "applied": ap, "ago": ago},
            )
            for a, p, o, m, ap, ago in legacy
        ]
        + [
            ("UPDATE orders.orders SET paid = :paid WHERE id = :id", {"id": o, "paid": p})
            for o, p in paid_before.items()
        ],
    )
    await migrate_service(url, "orders", "downgrade", "0003_cancellation_dates")
    await migrate_service(url, "orders", "upgrade", "head")
    paid = dict(await query(url, "SELECT id, paid::text FROM orders.orders"))
    assert (paid[split], paid[two_splits], paid[ambiguous]) == ("239.00", "259.00", "39.00")
    rows = dict(
        await query(url, "SELECT allocation_id, amount::text FROM orders.payment_allocations")
    )
    assert rows[a1] == "239.00" and s1 not in rows
    assert (rows[b1], rows[b2]) == ("200.00", "59.00")  # parts of the one moved last
    assert rows[c1] == "39.00" and len(rows) == 5  # the ambiguous pair is left as it was
    releases = set(
        await query(url, "SELECT release_id, allocation_id FROM orders.payment_releases")
    )
    assert releases == {(s1, a1), (s2, b2), (s3, b2)}
