"""The analytics service fed a seeded quarter of raw documents (backdated invoices, credit
notes, cancellations, payments and released allocations) through the real transport, every
answer checked against a recomputation from the same documents."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import text

from services.registry import service_module
from shared.clock import business_today
from shared.db import Database
from shared.events.envelope import Event
from shared.ids import new_id
from tests.analytics.world import ALL_TIME, END, START, World, build
from tests.conftest import AppClient, AppHttpClient, auth, migrate_all
from tests.support.feed import publish
from tests.support.migrating import migrate_service
from tests.support.waiting import eventually

ANALYST = auth("analyst", "ana")
FINANCE = auth("finance", "fin")
URL = "/v1/analytics"
ZERO = Decimal("0.00")
SPAN = {"from": str(START), "to": str(END)}


def r4(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.0001"), ROUND_HALF_UP)


@pytest.fixture(scope="module")
async def db(own_database: str) -> str:
    return await migrate_all(own_database)


@pytest.fixture(scope="module")
async def world(db: str) -> tuple[World, list[Event]]:
    w = build()
    return w, await publish(db, w.events)


@pytest.fixture
async def client(
    app_client: AppClient, db: str, world: tuple[World, list[Event]]
) -> AsyncIterator[AppHttpClient]:
    w, events = world
    newest = max(e.occurred_at for e in events)
    async with app_client([service_module("analytics")], database_url=db) as c:
        # The service reads the seeded quarter on its last day, whatever day the suite runs.
        c.app.dependency_overrides[business_today] = lambda: END

        async def probe() -> dict[str, Any]:
            return (await c.get(f"{URL}/kpis", params=ALL_TIME, headers=ANALYST)).json()

        await eventually(probe, lambda body: w.all_applied(body, newest), seconds=20)
        yield c


def _numbers(row: dict[str, Any]) -> dict[str, Decimal]:
    return {
        k: Decimal(row[k])
        for k in ("net", "tax", "gross", "orders", "units", "returns", "cancellations", "revenue")
    }


def _expected(groups: dict[Any, dict[str, Decimal]]) -> dict[Any, dict[str, Decimal]]:
    names = ("net", "tax", "gross", "orders", "units", "returns", "cancellations", "revenue")
    return {k: {n: g[n] for n in names} for k, g in groups.items()}


def _week(day: date) -> str:
    return str(day - timedelta(days=day.weekday()))


GROUPINGS: dict[str, Any] = {
    "day": lambda f: str(f.day),
    "week": lambda f: _week(f.day),
    "month": lambda f: f"{f.day:%Y-%m}",
    "product": lambda f: f.sku,
    "category": lambda f: f.category,
    "customer": lambda f: str(f.customer_id),
    "channel": lambda f: f.channel,
    "region": lambda f: f.region,
    "salesperson": lambda f: f.salesperson,
}


@pytest.mark.parametrize("group_by", list(GROUPINGS))
async def test_sales_by_every_grouping(
    client: httpx.AsyncClient, world: tuple[World, list[Event]], group_by: str
) -> None:
    w = world[0]
    answer = await client.get(f"{URL}/sales", params=SPAN | {"group_by": group_by}, headers=ANALYST)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["as_of"] and body["group_by"] == group_by and body["from"] == str(START)
    got = {row["key"]: _numbers(row) for row in body["rows"]}
    assert got == _expected(w.sales(START, END, GROUPINGS[group_by]))


@pytest.mark.parametrize(
    ("group_by", "filters"),
    [
        ("day", {"category": "tools"}),
        ("month", {"sku": "SKU-B", "channel": "pos"}),
        ("category", {"salesperson": "alice"}),
        ("product", {"region": "east", "channel": "web"}),
        ("salesperson", {"category": "tools", "channel": "pos"}),
    ],
)
async def test_sales_with_combined_filters(
    client: httpx.AsyncClient,
    world: tuple[World, list[Event]],
    group_by: str,
    filters: dict[str, str],
) -> None:
    w = world[0]
    answer = await client.get(
        f"{URL}/sales", params=SPAN | {"group_by": group_by} | filters, headers=ANALYST
    )
    got = {row["key"]: _numbers(row) for row in answer.json()["rows"]}
    assert got == _expected(w.sales(START, END, GROUPINGS[group_by], **filters))


@pytest.mark.parametrize(
    ("group_by", "filters"),
    [
        ("month", {}),
        ("product", {}),
        ("category", {"channel": "pos"}),
        ("region", {"sku": "SKU-B"}),
    ],
)
async def test_sales_over_part_months(
    client: httpx.AsyncClient,
    world: tuple[World, list[Event]],
    group_by: str,
    filters: dict[str, str],
) -> None:
    """A range that starts and ends inside a month: its whole months and its loose days
    come from rollups of different grains."""
    w = world[0]
    start, end = date(2025, 1, 10), date(2025, 3, 20)
    span = {"from": str(start), "to": str(end), "group_by": group_by}
    answer = await client.get(f"{URL}/sales", params=span | filters, headers=ANALYST)
    got = {row["key"]: _numbers(row) for row in answer.json()["rows"]}
    assert got == _expected(w.sales(start, end, GROUPINGS[group_by], **filters))


async def test_sales_filtered_by_customer_and_partial_range(
    client: httpx.AsyncClient, world: tuple[World, list[Event]]
) -> None:
    w = world[0]
    customer = w.customers[0].customer_id
    start, end = date(2025, 2, 1), date(2025, 2, 20)
    answer = await client.get(
        f"{URL}/sales",
        params={
            "from": str(start),
            "to": str(end),
            "group_by": "day",
            "customer_id": str(customer),
        },
        headers=ANALYST,
    )
    got = {row["key"]: _numbers(row) for row in answer.json()["rows"]}
    assert got == _expected(w.sales(start, end, GROUPINGS["day"], customer_id=customer))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2025, 2, 1), date(2025, 3, 15)),
        (date(2025, 2, 1), date(2025, 2, 28)),
        (date(2025, 1, 1), date(2025, 3, 31)),
        (date(2025, 1, 2), date(2025, 1, 2)),
    ],
    ids=["month and days", "one whole month", "whole months", "one day"],
)
async def test_kpis(
    client: httpx.AsyncClient, world: tuple[World, list[Event]], start: date, end: date
) -> None:
    w = world[0]
    body = (
        await client.get(
            f"{URL}/kpis", params={"from": str(start), "to": str(end)}, headers=ANALYST
        )
    ).json()
    total = w.sales(start, end, lambda f: "all").get("all")
    assert total is not None
    net, returns_net, orders, units = (
        total["net"],
        total["returns_net"],
        total["orders"],
        total["units"],
    )
    assert Decimal(body["revenue"]) == net - returns_net
    assert body["orders"] == orders
    assert Decimal(body["average_order_value"]) == (net / orders).quantize(
        Decimal("0.01"), ROUND_HALF_UP
    )
    assert Decimal(body["units_per_order"]) == r4(units / orders)
    assert Decimal(body["return_rate"]) == r4(returns_net / net)
    submitted = sum(1 for d in w.submitted if start <= d <= end)
    confirmed = sum(1 for i in w.invoices.values() if start <= i.day <= end)
    assert (body["submitted"], body["confirmed"]) == (submitted, confirmed)
    assert Decimal(body["conversion_rate"]) == r4(Decimal(confirmed) / submitted)

    first: dict[Any, date] = {}
    for inv in w.invoices.values():
        first[inv.customer_id] = min(first.get(inv.customer_id, inv.day), inv.day)
    # Active: a confirmed order in the range that its cancellation did not take back that day.
    counted = w.sales(start, end, lambda f: f.customer_id)
    ordering = {
        c
        for c in counted
        if any(i.customer_id == c and start <= i.day <= end for i in w.invoices.values())
    }
    new = {c for c in ordering if first[c] >= start}
    assert body["new_customers"] == len(new)
    assert body["returning_customers"] == len(ordering - new)

    ever = w.sales(date(2000, 1, 1), end, lambda f: "all")["all"]
    customers_ever = sum(1 for d in first.values() if d <= end)
    assert Decimal(body["average_customer_lifetime_value"]) == (
        ever["revenue"] / customers_ever
    ).quantize(Decimal("0.01"), ROUND_HALF_UP)

    opening = sum((w.open_at(i, start - timedelta(days=1)) for i in w.invoices.values()), ZERO)
    closing = sum((w.open_at(i, end) for i in w.invoices.values()), ZERO)
    invoiced = sum((i.gross for i in w.invoices.values() if start <= i.day <= end), ZERO)
    billed = ZERO
    for i in w.invoices.values():
        # The first move is the invoice; credits and cancellations follow; payments are
        # recognisable as the moves not produced by credit notes or cancellations, so
        # recompute collections as the change in open amounts net of billing.
        billed += sum((a for d, a in i.moves[:1] if start <= d <= end), ZERO)
    credits = sum(
        (f.gross for f in w.facts if f.kind in ("return", "cancel") and start <= f.day <= end),
        ZERO,
    )
    billed -= credits
    collected = opening + billed - closing
    assert Decimal(body["receivables_open"]) == closing
    assert Decimal(body["collected"]) == collected
    assert Decimal(body["days_sales_outstanding"]) == r4(
        closing * ((end - start).days + 1) / invoiced
    )
    assert Decimal(body["collection_rate"]) == r4(collected / (opening + billed))


async def test_customer_lifetime(
    client: httpx.AsyncClient, world: tuple[World, list[Event]]
) -> None:
    w = world[0]
    for customer in w.customers:
        cid = customer.customer_id
        answer = await client.get(f"{URL}/customers/{cid}/lifetime", headers=FINANCE)
        invoices = [i for i in w.invoices.values() if i.customer_id == cid]
        if not invoices:
            continue
        body = answer.json()
        total = w.sales(date(2000, 1, 1), date(2100, 1, 1), lambda f: "all", customer_id=cid)["all"]
        assert Decimal(body["revenue"]) == total["revenue"]
        assert body["orders"] == total["orders"]
        assert body["first_order_on"] == str(min(i.day for i in invoices))
        assert Decimal(body["outstanding"]) == sum(
            (w.open_at(i, date(2100, 1, 1)) for i in invoices), ZERO
        )
        assert body["name"].startswith("Customer")
    unknown = await client.get(f"{URL}/customers/{new_id()}/lifetime", headers=ANALYST)
    assert unknown.status_code == 404
    assert (await client.get(f"{URL}/customers/42/lifetime", headers=ANALYST)).status_code == 422


@pytest.mark.parametrize(
    ("dimension", "key"),
    [
        ("product", lambda f: f.sku),
        ("customer", lambda f: str(f.customer_id)),
        ("salesperson", lambda f: f.salesperson),
    ],
)
@pytest.mark.parametrize(
    "span",
    [
        (date(2000, 1, 1), date(2100, 1, 1)),  # every sale: customers from their lifetime sums
        (START, END),  # likewise, as the range holds every day with sales
        (date(2025, 1, 1), date(2025, 2, 28)),  # whole months
        (date(2025, 1, 10), date(2025, 3, 5)),  # whole months and days around them
    ],
    ids=["default", "every day", "whole months", "months and days"],
)
async def test_top(
    client: httpx.AsyncClient,
    world: tuple[World, list[Event]],
    dimension: str,
    key: Any,
    span: tuple[date, date],
) -> None:
    w = world[0]
    params: dict[str, str | int] = {"dimension": dimension, "limit": 2}
    if span[0].year != 2000:
        params |= {"from": str(span[0]), "to": str(span[1])}
    body = (await client.get(f"{URL}/top", params=params, headers=ANALYST)).json()
    expected = w.sales(*span, key)
    ranked = sorted(expected.items(), key=lambda kv: (-kv[1]["revenue"], str(kv[0])))[:2]
    assert [(r["key"], Decimal(r["revenue"])) for r in body["rows"]] == [
        (k, g["revenue"]) for k, g in ranked
    ]
    assert [r["rank"] for r in body["rows"]] == [1, 2]


@pytest.mark.parametrize("as_of", [date(2025, 1, 31), date(2025, 2, 28), date(2025, 6, 30)])
async def test_ar_ageing(
    client: httpx.AsyncClient, world: tuple[World, list[Event]], as_of: date
) -> None:
    w = world[0]
    expected: dict[str, dict[str, Decimal]] = defaultdict(
        lambda: dict.fromkeys(("current", "d1_30", "d31_60", "d61_90", "over_90", "total"), ZERO)
    )
    for i in w.invoices.values():
        for bucket, amount in w.aged_at(i, as_of).items():
            expected[str(i.customer_id)][bucket] += amount
            expected[str(i.customer_id)]["total"] += amount
    body = (
        await client.get(f"{URL}/ar-ageing", params={"as_of": str(as_of)}, headers=FINANCE)
    ).json()
    got = {
        r["customer_id"]: {k: Decimal(v) for k, v in r.items() if k != "customer_id"}
        for r in body["rows"]
    }
    assert got == {k: v for k, v in expected.items() if any(v.values())}
    assert body["as_of"]
    assert Decimal(body["totals"]["total"]) == sum((v["total"] for v in expected.values()), ZERO)
    assert Decimal(body["totals"]["over_90"]) == sum(
        (v["over_90"] for v in expected.values()), ZERO
    )


async def test_trend_with_forecast(
    client: httpx.AsyncClient, world: tuple[World, list[Event]]
) -> None:
    w = world[0]
    body = (
        await client.get(
            f"{URL}/trend",
            params=SPAN | {"metric": "revenue", "interval": "month", "forecast": 2},
            headers=ANALYST,
        )
    ).json()
    monthly = w.sales(START, END, lambda f: f.day.replace(day=1))
    history = [p for p in body["points"] if not p["forecast"]]
    assert [(p["bucket"], Decimal(p["value"])) for p in history] == [
        (str(date(2025, m, 1)), monthly.get(date(2025, m, 1), {"revenue": ZERO})["revenue"])
        for m in (1, 2, 3)
    ]
    ahead = [p for p in body["points"] if p["forecast"]]
    assert [p["bucket"] for p in ahead] == ["2025-04-01", "2025-05-01"]
    ys = [Decimal(p["value"]) for p in history]
    slope = (ys[2] - ys[0]) / 2  # least squares through three evenly spaced points
    assert Decimal(ahead[0]["value"]) == (sum(ys, Decimal(0)) / 3 + 2 * slope).quantize(
        Decimal("0.01"), ROUND_HALF_UP
    )
    assert "linear regression" in body["method"]
    units = (
        await client.get(
            f"{URL}/trend", params=SPAN | {"metric": "units", "interval": "week"}, headers=ANALYST
        )
    ).json()
    assert sum(Decimal(p["value"]) for p in units["points"]) == sum(
        g["units"] for g in w.sales(START, END, lambda f: "all").values()
    )
    assert units["method"] is None


async def test_trend_history_ends_today(
    client: AppHttpClient, world: tuple[World, list[Event]]
) -> None:
    """Months still to come are neither history nor zeros the forecast is fitted on."""
    w = world[0]
    client.app.dependency_overrides[business_today] = lambda: date(2025, 2, 15)
    try:
        body = (
            await client.get(
                f"{URL}/trend",
                params=SPAN | {"metric": "revenue", "interval": "month", "forecast": 2},
                headers=ANALYST,
            )
        ).json()
    finally:
        client.app.dependency_overrides[business_today] = lambda: END
    monthly = w.sales(START, END, lambda f: f.day.replace(day=1))
    history = [p for p in body["points"] if not p["forecast"]]
    assert [p["bucket"] for p in history] == ["2025-01-01", "2025-02-01"]
    so_far = w.sales(date(2025, 2, 1), date(2025, 2, 15), lambda f: "all")["all"]["revenue"]
    assert [Decimal(p["value"]) for p in history] == [
        monthly[date(2025, 1, 1)]["revenue"],
        so_far,
    ]
    ahead = [p for p in body["points"] if p["forecast"]]
    assert [p["bucket"] for p in ahead] == ["2025-03-01", "2025-04-01"]
    ys = [Decimal(p["value"]) for p in history]
    assert Decimal(ahead[0]["value"]) == (ys[1] + (ys[1] - ys[0])).quantize(
        Decimal("0.01"), ROUND_HALF_UP
    )


async def test_no_interval_is_predicted_past_the_last_year_the_books_hold(
    client: httpx.AsyncClient,
) -> None:
    body = (
        await client.get(
            f"{URL}/trend",
            params={"from": "2999-12-01", "to": "2999-12-31", "interval": "week", "forecast": 100},
            headers=ANALYST,
        )
    ).json()
    buckets = [p["bucket"] for p in body["points"]]
    assert buckets and all(b <= "2999-12-31" for b in buckets), buckets
    assert buckets[-1] == "2999-12-30"  # the last Monday of 2999


async def test_targets_and_attainment(
    client: httpx.AsyncClient, world: tuple[World, list[Event]]
) -> None:
    w = world[0]
    body = {
        "targets": [
            {"salesperson": "alice", "period": "2025-02", "amount": "100.00"},
            {"salesperson": "bob", "period": "2025-02", "amount": "0.00"},
        ]
    }
    assert (await client.put(f"{URL}/targets", json=body, headers=FINANCE)).status_code == 200
    assert (await client.put(f"{URL}/targets", json=body, headers=ANALYST)).status_code == 403
    body["targets"][0]["amount"] = "250.00"
    put = await client.put(f"{URL}/targets", json=body, headers=auth("admin"))
    assert put.status_code == 200
    answer = await client.get(
        f"{URL}/targets/attainment", params={"period": "2025-02"}, headers=ANALYST
    )
    rows = {r["salesperson"]: r for r in answer.json()["rows"]}
    # The answer to setting a target is its attainment as it stands, not a blank one.
    assert put.json()["targets"] == [rows["alice"], rows["bob"]]
    assert put.json()["as_of"] == answer.json()["as_of"]
    revenue = w.sales(date(2025, 2, 1), date(2025, 2, 28), lambda f: f.salesperson or "")
    alice = revenue.get("alice", {"revenue": ZERO})["revenue"]
    assert Decimal(rows["alice"]["revenue"]) == alice
    assert Decimal(rows["alice"]["target"]) == Decimal("250.00")
    assert Decimal(rows["alice"]["attainment"]) == r4(alice / Decimal(250))
    assert rows["bob"]["attainment"] is None  # a zero target has no attainment ratio
    log = (
        await client.get(f"{URL}/audit", params={"entity": "target"}, headers=auth("admin"))
    ).json()["items"]
    assert [
        (e["entity_id"], e["details"]["salesperson"], e["actor"], e["details"]["amount"])
        for e in log[-2:]
    ] == [
        ("2025-02", "alice", "tester", "250.00"),
        ("2025-02", "bob", "tester", "0.00"),
    ]


async def test_csv_answers(client: httpx.AsyncClient, world: tuple[World, list[Event]]) -> None:
    csv_headers = ANALYST | {"Accept": "text/csv"}
    answer = await client.get(
        f"{URL}/sales", params=SPAN | {"group_by": "month"}, headers=csv_headers
    )
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["key"] for r in rows] == ["2025-01", "2025-02", "2025-03"]
    expected = world[0].sales(START, END, GROUPINGS["month"])
    assert {r["key"]: Decimal(r["net"]) for r in rows} == {k: g["net"] for k, g in expected.items()}
    for path, params in [
        ("top", {"dimension": "customer"}),
        ("ar-ageing", {"as_of": "2025-03-31"}),
        ("trend", SPAN),
        ("targets/attainment", {"period": "2025-02"}),
        ("kpis", SPAN),
    ]:
        answer = await client.get(f"{URL}/{path}", params=params, headers=csv_headers)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        assert len(list(csv.DictReader(io.StringIO(answer.text)))) >= 1
        # How fresh the rows are, as the JSON answer says it in as_of.
        fresh = await client.get(f"{URL}/{path}", params=params, headers=ANALYST)
        assert answer.headers["X-As-Of"] == fresh.json()["as_of"], path


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("sales", SPAN | {"group_by": "planet"}, "group_by"),
        ("sales", {"from": "2025-03-01", "to": "2025-02-01"}, "from"),
        ("sales", {"from": "yesterday", "to": "2025-02-01"}, "from"),
        ("kpis", {"from": "2025-03-01", "to": "2025-02-01"}, "from"),
        ("top", {"dimension": "region"}, "dimension"),
        ("top", {"limit": 0}, "limit"),
        ("trend", SPAN | {"metric": "profit"}, "metric"),
        ("trend", SPAN | {"interval": "hour"}, "interval"),
        ("trend", SPAN | {"forecast": -1}, "forecast"),
        ("targets/attainment", {"period": "2025-13"}, "period"),
        ("ar-ageing", {"as_of": "soon"}, "as_of"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], field: str
) -> None:
    answer = await client.get(f"{URL}/{path}", params=params, headers=ANALYST)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in answer.text


async def test_bad_targets_are_422(client: httpx.AsyncClient) -> None:
    bodies: list[dict[str, Any]] = [
        {"targets": [{"salesperson": "x", "period": "2025-2", "amount": "1.00"}]},
        {"targets": [{"salesperson": "x", "period": "2025-02", "amount": "-1.00"}]},
        {"targets": []},
    ]
    for body in bodies:
        answer = await client.put(f"{URL}/targets", json=body, headers=FINANCE)
        assert answer.status_code == 422, answer.text


@pytest.mark.parametrize("path", ["sales", "kpis", "top", "ar-ageing", "trend"])
async def test_auth(client: httpx.AsyncClient, path: str) -> None:
    params = {"as_of": SPAN["to"]} if path == "ar-ageing" else SPAN
    assert (await client.get(f"{URL}/{path}", params=params)).status_code == 401
    wrong = await client.get(f"{URL}/{path}", params=params, headers=auth("pos"))
    assert wrong.status_code == 403
    assert (await client.get(f"{URL}/{path}", params=params, headers=FINANCE)).status_code == 200
    assert (
        await client.get(f"{URL}/{path}", params=params, headers=auth("admin"))
    ).status_code == 200


async def test_replayed_events_change_nothing(
    client: httpx.AsyncClient, db: str, world: tuple[World, list[Event]]
) -> None:
    from services.analytics.handlers import subscriptions
    from shared.db import Database
    from shared.messaging.consumer import apply_batch

    params = {"from": "2000-01-01", "to": "2100-01-01"}
    before = (await client.get(f"{URL}/kpis", params=params, headers=ANALYST)).json()
    sales_before = (
        await client.get(f"{URL}/sales", params=params | {"group_by": "product"}, headers=ANALYST)
    ).json()
    database = Database(db, pool_size=1)
    try:
        async with database.transaction() as session:
            assert await apply_batch(session, subscriptions()[0], world[1]) == 0
    finally:
        await database.dispose()
    assert (await client.get(f"{URL}/kpis", params=params, headers=ANALYST)).json() == before
    sales_after = (
        await client.get(f"{URL}/sales", params=params | {"group_by": "product"}, headers=ANALYST)
    ).json()
    assert sales_after == sales_before


async def test_bi_role_reads_the_views_only(
    client: httpx.AsyncClient, db: str, world: tuple[World, list[Event]]
) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from shared.db import Database

    expected = world[0].sales(date(2000, 1, 1), date(2100, 1, 1), lambda f: "all")["all"]
    database = Database(db, pool_size=1)
    try:
        async with database.transaction() as session:
            await session.execute(text("SET LOCAL ROLE analytics_bi"))
            revenue, orders = (
                await session.execute(
                    text("SELECT sum(revenue), sum(orders) FROM analytics.sales_daily")
                )
            ).one()
            assert (revenue, orders) == (expected["revenue"], expected["orders"])
            open_now = (
                await session.execute(
                    text("SELECT sum(open_amount) FROM analytics.invoice_balances")
                )
            ).scalar_one()
            assert open_now == sum(
                (world[0].open_at(i, date(2100, 1, 1)) for i in world[0].invoices.values()), ZERO
            )
            with pytest.raises(DBAPIError, match="permission denied"):
                await session.execute(text("SELECT 1 FROM analytics.daily_sales LIMIT 1"))
    finally:
        await database.dispose()


async def test_dashboard_is_served_locally(client: httpx.AsyncClient) -> None:
    page = await client.get(f"{URL}/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="dashboard.js">' in page.text and "http" not in page.text.split("<body>")[1]
    script = await client.get(f"{URL}/dashboard.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "Authorization" in script.text and "//cdn" not in script.text
    for path in ("kpis", "trend", "top", "sales", "ar-ageing"):
        assert f'api("{path}"' in script.text


@pytest.mark.parametrize("group_by", list(GROUPINGS))
async def test_sales_pages_follow_the_key_order(
    client: httpx.AsyncClient, world: tuple[World, list[Event]], group_by: str
) -> None:
    """Page by page, every grouping (a group with no key included) gives the whole answer."""
    whole = (
        await client.get(f"{URL}/sales", params=SPAN | {"group_by": group_by}, headers=ANALYST)
    ).json()["rows"]
    size = 7 if group_by == "day" else 1
    params: dict[str, Any] = SPAN | {"group_by": group_by, "limit": size}
    rows: list[dict[str, Any]] = []
    pages = 0
    while True:
        answer = await client.get(f"{URL}/sales", params=params, headers=ANALYST)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        rows += body["rows"]
        pages += 1
        if body["next_cursor"] is None:
            break
        assert body["next_cursor"], "an empty cursor would end the paging early"
        params["cursor"] = body["next_cursor"]
    assert rows == whole
    expected = world[0].sales(START, END, GROUPINGS[group_by])
    assert {row["key"] for row in rows} == set(expected)
    assert pages == -(-len(expected) // size)
    bad = await client.get(f"{URL}/sales", params=SPAN | {"cursor": "_w"}, headers=ANALYST)
    assert bad.status_code == 422 and "cursor" in bad.text


@pytest.mark.parametrize("as_of", [date(2025, 2, 10), END])
async def test_ar_ageing_pages_visit_every_customer_once(
    client: httpx.AsyncClient, as_of: date
) -> None:
    """Page by page, by customer id, each customer with something open comes once, and the
    totals every page carries are those of all customers: the sum of the pages' rows."""
    params: dict[str, Any] = {"as_of": str(as_of)}
    whole = (await client.get(f"{URL}/ar-ageing", params=params, headers=FINANCE)).json()
    assert len(whole["rows"]) > 1 and whole["next_cursor"] is None
    rows: list[dict[str, Any]] = []
    while True:
        answer = await client.get(f"{URL}/ar-ageing", params=params | {"limit": 1}, headers=FINANCE)
        assert "X-Next-Cursor" not in answer.headers  # JSON carries it in the body
        body = answer.json()
        assert body["totals"] == whole["totals"]
        rows += body["rows"]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert rows == whole["rows"]
    ids = [r["customer_id"] for r in rows]
    assert ids == sorted(set(ids), key=UUID)
    for name, total in whole["totals"].items():
        assert Decimal(total) == sum((Decimal(r[name]) for r in rows), ZERO), name
    as_csv = await client.get(
        f"{URL}/ar-ageing",
        params={"as_of": str(as_of), "limit": 1},
        headers=FINANCE | {"Accept": "text/csv"},
    )
    assert as_csv.headers["X-Next-Cursor"]
    assert [r["customer_id"] for r in csv.DictReader(io.StringIO(as_csv.text))] == ids[:1]
    bad = await client.get(f"{URL}/ar-ageing", params={"cursor": "_w"}, headers=FINANCE)
    assert bad.status_code == 422 and "cursor" in bad.text


async def test_a_released_allocation_counts_from_its_own_date(
    client: httpx.AsyncClient, world: tuple[World, list[Event]]
) -> None:
    from shared.events.payments import AllocationReleased

    w = world[0]
    releases = [e[0] for e in w.events if isinstance(e[0], AllocationReleased)]
    assert releases, "the world should hold a released allocation"
    release = releases[0]
    assert release.business_date is not None
    invoice = w.invoices[release.order_id]
    for day in (release.business_date - timedelta(days=1), release.business_date):
        body = (
            await client.get(f"{URL}/ar-ageing", params={"as_of": str(day)}, headers=FINANCE)
        ).json()
        owed = {r["customer_id"]: Decimal(r["total"]) for r in body["rows"]}
        expected = sum(
            (
                w.open_at(i, day)
                for i in w.invoices.values()
                if i.customer_id == invoice.customer_id
            ),
            ZERO,
        )
        assert owed.get(str(invoice.customer_id), ZERO) == expected


async def test_the_customer_rollups_filled_by_their_migration_equal_the_kept_ones(
    client: httpx.AsyncClient, db: str
) -> None:
    """Migration 0007 fills its tables from what an existing database already holds; what it
    fills must equal what the consumer kept up to date event by event."""
    tables = (
        "sales_by_month_customer",
        "sales_by_customer",
        "active_customers_by_month",
        "new_customers_by_month",
        "first_orders_by_day",
    )
    kept = await _rows(db, tables)
    assert all(kept.values())
    await migrate_service(db, "analytics", "downgrade", "0006_customer_months")
    await migrate_service(db, "analytics", "upgrade", "head")
    assert await _rows(db, tables) == kept


async def test_the_open_amounts_filled_by_their_migration_equal_the_kept_ones(
    client: httpx.AsyncClient, db: str
) -> None:
    """Migration 0009 fills the open amounts per instalment and day from the receivable
    moves and instalments already held, as the consumer kept them event by event."""
    tables = ("open_changes", "open_now", "open_by_day")
    kept = await _rows(db, tables)
    assert all(kept.values())
    await migrate_service(db, "analytics", "downgrade", "0008_invoice_instalments")
    await migrate_service(db, "analytics", "upgrade", "head")
    assert await _rows(db, tables) == kept


async def _rows(url: str, tables: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    database = Database(url)
    try:
        async with database.sessions() as session:
            return {
                table: sorted(
                    tuple(row)
                    for row in await session.execute(text(f"SELECT * FROM analytics.{table}"))
                )
                for table in tables
            }
    finally:
        await database.dispose()
