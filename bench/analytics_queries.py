"""Analytics benchmark: N order lines (with credit notes, cancellations and payments) folded
into the read models by the analytics consumer, then p50/p95 latency of every endpoint.

Scale with SALESBOOK_BENCH_LINES (default 200,000), SALESBOOK_BENCH_REQUESTS (per
endpoint, default 30) and SALESBOOK_BENCH_CONSUMERS (consumer processes, default 2). The
database is a fresh one on the server of SALESBOOK_BENCH_DATABASE_URL (or
SALESBOOK_TEST_DATABASE_URL), else an embedded server; SALESBOOK_BENCH_KEEP keeps it and
SALESBOOK_BENCH_REUSE=<database> measures a kept one again, migrated to the current head.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from sqlalchemy.exc import DBAPIError

from bench._server import bench_server
from services.analytics.handlers import subscriptions
from services.registry import migration_targets, service_module
from shared.app import create_app
from shared.auth import Role, issue_token
from shared.config import Settings
from shared.db import Database, plain_url
from shared.events.envelope import Event
from shared.ids import new_id
from shared.messaging.consumer import Subscription, apply_batch
from shared.migrations import upgrade
from shared.money import line_amounts, money_str
from shared.periods import Period

SECRET = "bench-secret-key-for-analytics-queries"
START = date(2025, 1, 1)
DAYS = 365
RATE = Decimal("0.13")
ZERO = Decimal("0.00")
BATCH = 2000
CHUNK = 50_000  # lines a worker process generates at a time


@asynccontextmanager
async def bench_database(server_url: str) -> AsyncIterator[tuple[str, bool]]:
    """The database to measure and whether it still needs loading: the one named by
    SALESBOOK_BENCH_REUSE (loaded and kept by an earlier run), else a fresh one, dropped
    afterwards unless SALESBOOK_BENCH_KEEP is set."""
    admin = plain_url(server_url)
    reused = os.environ.get("SALESBOOK_BENCH_REUSE")
    if reused:
        yield urlunsplit(urlsplit(admin)._replace(path="/" + reused)), False
        return
    name = f"salesbook_bench_analytics_{uuid.uuid4().hex[:8]}"
    await _admin(admin, f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(admin)._replace(path="/" + name)), True
    finally:
        if os.environ.get("SALESBOOK_BENCH_KEEP"):
            print(f"kept database {name} (SALESBOOK_BENCH_REUSE={name} measures it again)")
        else:
            await _admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _event(kind: str, source: str, key: str, on: date, data: dict[str, Any]) -> Event:
    """An envelope around a JSON-shaped payload, as the consumer receives it off the wire;
    `check_payloads` proves the shapes against the payload models once per run."""
    return Event.model_construct(
        event_id=new_id(),
        type=kind,
        version=1,
        source=source,
        key=key,
        occurred_at=datetime.now(UTC),
        business_date=on,
        period=str(Period.of(on)),
        request_id=None,
        data=data,
    )


def _order_lines(rng: random.Random, skus: list[tuple[str, str, Decimal]]) -> list[dict]:
    lines = []
    for no, (sku, category, price) in enumerate(rng.sample(skus, rng.randint(1, 5)), 1):
        quantity = Decimal(rng.randint(1, 9))
        net, tax, gross = line_amounts(
            quantity=quantity, unit_price=price, discount=ZERO, tax_rate=RATE
        )
        lines.append(
            {
                "line_no": no,
                "sku": sku,
                "name": sku,
                "category": category,
                "quantity": str(quantity),
                "unit_price": money_str(price),
                "discount": "0.00",
                "tax_rate": "0.13",
                "net": money_str(net),
                "tax": money_str(tax),
                "gross": money_str(gross),
            }
        )
    return lines


def _total(lines: list[dict], name: str) -> Decimal:
    return sum((Decimal(line[name]) for line in lines), ZERO)


def _follow_up(rng: random.Random, order: dict[str, Any], day: date, key: str) -> Event | None:
    """A credit note (10%), a cancellation (3%), a payment (47%) or nothing for an order."""
    luck = rng.random()
    customer, order_id = order["customer_id"], order["order_id"]
    if luck < 0.1:
        x = order["lines"][0]
        on = day + timedelta(days=5)
        returned = {k: x[k] for k in ("line_no", "sku", "category", "quantity")} | {
            k: x[k] for k in ("net", "tax", "gross")
        }
        data = {
            "credit_note_id": str(uuid.uuid4()),
            "credit_note_number": "CN",
            "order_id": order_id,
            "customer_id": customer,
            "business_date": on.isoformat(),
            "lines": [returned],
            "net": x["net"],
            "tax": x["tax"],
            "gross": x["gross"],
            "reason": None,
        }
        return _event("order.returned", "orders", key, on, data)
    if luck < 0.13:
        on = day + timedelta(days=2)
        data = {
            "order_id": order_id,
            "number": "SO",
            "customer_id": customer,
            "was_confirmed": True,
            "invoice_number": "INV",
            "business_date": on.isoformat(),
            "reversed_net": order["net"],
            "reversed_tax": order["tax"],
            "reversed_gross": order["gross"],
            "reason": None,
        }
        return _event("order.cancelled", "orders", key, on, data)
    if luck < 0.6:
        on = day + timedelta(days=rng.randint(1, 60))
        data = {
            "allocation_id": str(uuid.uuid4()),
            "payment_id": str(uuid.uuid4()),
            "payment_number": "PAY",
            "customer_id": customer,
            "order_id": order_id,
            "amount": order["gross"],
            "business_date": on.isoformat(),
        }
        return _event("payment.allocated", "payments", key, on, data)
    return None


Catalogue = tuple[list[str], list[tuple[str, str, Decimal]]]


@cache
def catalogue(lines: int) -> Catalogue:
    """Customers (one per 50 lines) and 500 products, the same in every process."""
    rng = random.Random(7)
    customers = [
        str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(max(10, lines // 50))
    ]
    skus = [
        (f"SKU-{i:04d}", f"cat-{i % 20}", Decimal(rng.randint(100, 20000)) / 100)
        for i in range(500)
    ]
    return customers, skus


def documents(lines: int, rng: random.Random, known: Catalogue) -> Iterator[Event]:
    """Orders of 1–5 lines until `lines` lines, with credit notes, cancellations, payments."""
    customers, skus = known
    made = 0
    while made < lines:
        customer = rng.choice(customers)
        day = START + timedelta(days=rng.randrange(DAYS))
        order_lines = _order_lines(rng, skus)
        made += len(order_lines)
        order = {
            "order_id": str(uuid.uuid4()),
            "number": "SO",
            "customer_id": customer,
            "customer_name": "c",
            "region": rng.choice(["east", "west", "north", None]),
            "segment": None,
            "channel": rng.choice(["pos", "web"]),
            "salesperson": rng.choice(["alice", "bob", "carol", None]),
            "created_by": "bench",
            "lines": order_lines,
            "net": money_str(_total(order_lines, "net")),
            "tax": money_str(_total(order_lines, "tax")),
            "gross": money_str(_total(order_lines, "gross")),
        }
        confirmed = {
            "order": order,
            "invoice_number": "INV",
            "business_date": day.isoformat(),
            "due_date": (day + timedelta(days=30)).isoformat(),
            "instalments": [],
            "confirmed_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        yield _event("order.confirmed", "orders", customer, day, confirmed)
        follow_up = _follow_up(rng, order, day, customer)
        if follow_up is not None:
            yield follow_up


def check_payloads(events: Iterator[Event]) -> None:
    """Every kind of generated payload is what its model would have produced."""
    seen: set[str] = set()
    for event in events:
        if event.type not in seen:
            seen.add(event.type)
            payload = event.payload()
            assert payload.model_dump(mode="json") == event.data, event.type
            Event.model_validate(event.model_dump())


def chunk_of_documents(total_lines: int, number: int, lines: int) -> list[Event]:
    """One worker process's share of the documents, the same for the same arguments."""
    return list(documents(lines, random.Random(number), catalogue(total_lines)))


def load_partition(url: str, lines: int, partition: int, partitions: int) -> None:
    """One consumer process: generates and applies every `partitions`-th chunk, as one
    consumer per Kafka partition would, concurrently with the others."""
    chunks = range(partition, -(-lines // CHUNK), partitions)
    asyncio.run(_apply_chunks(url, lines, chunks))


async def _apply_chunks(url: str, lines: int, chunks: range) -> None:
    database = Database(url, pool_size=1)
    subscription = subscriptions()[0]
    try:
        for number in chunks:
            size = min(CHUNK, lines - number * CHUNK)
            events = chunk_of_documents(lines, number, size)
            for start in range(0, len(events), BATCH):
                await _apply(database, subscription, events[start : start + BATCH])
    finally:
        await database.dispose()


async def _apply(database: Database, subscription: Subscription, events: list[Event]) -> None:
    """Apply a batch; again after a deadlock with another consumer, as a consumer does."""
    for attempt in range(3):
        try:
            async with database.transaction() as session:
                await apply_batch(session, subscription, events)
            return
        except DBAPIError as failure:
            if "deadlock detected" not in str(failure) or attempt == 2:
                raise
            print("deadlock between consumers; applying the batch again", flush=True)


async def load(url: str, lines: int, consumers: int) -> float:
    """Fold the documents into the read models through the consumer's own apply path, in
    consumer-sized batches by `consumers` processes at once; seconds taken."""
    check_payloads(documents(100, random.Random(1), catalogue(100)))
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=consumers) as pool:
        await asyncio.gather(
            *(
                loop.run_in_executor(pool, load_partition, url, lines, partition, consumers)
                for partition in range(consumers)
            )
        )
    return time.perf_counter() - started


ENDPOINTS: list[tuple[str, str, dict[str, str | int]]] = [
    ("sales by day", "/v1/analytics/sales", {"from": "2025-01-01", "to": "2025-12-31"}),
    (
        "sales by month, filtered",
        "/v1/analytics/sales",
        {
            "from": "2025-01-01",
            "to": "2025-12-31",
            "group_by": "month",
            "channel": "pos",
            "region": "east",
        },
    ),
    (
        "sales by product",
        "/v1/analytics/sales",
        {"from": "2025-01-01", "to": "2025-12-31", "group_by": "product"},
    ),
    ("kpis", "/v1/analytics/kpis", {"from": "2025-03-01", "to": "2025-03-31"}),
    ("top customers", "/v1/analytics/top", {"dimension": "customer", "limit": 10}),
    ("ar ageing", "/v1/analytics/ar-ageing", {"as_of": "2025-06-30"}),
    (
        "trend + forecast",
        "/v1/analytics/trend",
        {"from": "2025-01-01", "to": "2025-12-31", "interval": "week", "forecast": 4},
    ),
    ("attainment", "/v1/analytics/targets/attainment", {"period": "2025-05"}),
]


async def vacuum(url: str) -> None:
    """What autovacuum does soon after a bulk load: statistics and visibility maps."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


RAW_LINES = """
CREATE TABLE IF NOT EXISTS bench_order_lines AS
SELECT i.business_date AS day, l.sku, l.category, i.customer_id, i.region, i.channel,
       i.salesperson, CAST(l.quantity AS numeric) AS quantity, CAST(l.net AS numeric) AS net,
       CAST(l.tax AS numeric) AS tax, CAST(l.gross AS numeric) AS gross
FROM analytics.invoices i,
     jsonb_to_recordset(i.lines) AS l(sku text, category text, quantity text, net text,
                                      tax text, gross text)
"""
SUMS = "sum(net), sum(tax), sum(gross), count(*), sum(quantity)"
BASELINES = {
    "sales by day": f"SELECT day, {SUMS} FROM bench_order_lines "
    "WHERE day BETWEEN '2025-01-01' AND '2025-12-31' GROUP BY day ORDER BY day",
    "sales by month, filtered": f"SELECT date_trunc('month', day), {SUMS} FROM bench_order_lines "
    "WHERE day BETWEEN '2025-01-01' AND '2025-12-31' AND channel = 'pos' AND region = 'east' "
    "GROUP BY 1 ORDER BY 1",
    "sales by product": f"SELECT sku, {SUMS} FROM bench_order_lines "
    "WHERE day BETWEEN '2025-01-01' AND '2025-12-31' GROUP BY sku ORDER BY sku",
    "kpis": f"SELECT {SUMS}, count(DISTINCT customer_id) FROM bench_order_lines "
    "WHERE day BETWEEN '2025-03-01' AND '2025-03-31'",
}
"""The same questions answered the naive way: a GROUP BY over every invoiced line."""


def percentiles(timings: list[float]) -> tuple[float, float]:
    ordered = sorted(timings)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


async def baselines(url: str, repeats: int) -> dict[str, float]:
    """Median ms of each naive query, over a table of the invoiced lines built for it."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(RAW_LINES)
        await connection.execute("ANALYZE bench_order_lines")
        medians = {}
        for name, query in BASELINES.items():
            timings = []
            for _ in range(repeats):
                started = time.perf_counter()
                await connection.fetch(query)
                timings.append((time.perf_counter() - started) * 1000)
            medians[name] = statistics.median(timings)
        return medians
    finally:
        await connection.close()


@asynccontextmanager
async def analytics_client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the analytics service on `url`, in this process, signed in as an analyst."""
    settings = Settings(secret_key=SECRET, data_dir=Path(tempfile.mkdtemp()), _env_file=None)
    app = create_app(
        [service_module("analytics")], settings=settings, database_url=url, run_workers=False
    )
    token = issue_token(secret=SECRET, subject="bench", role=Role.ANALYST, ttl=timedelta(hours=1))
    headers = {"Authorization": f"Bearer {token}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers
        ) as client:
            yield client


async def measure(url: str, requests: int) -> dict[str, tuple[float, float]]:
    """p50 and p95 ms of each endpoint over HTTP."""
    found = {}
    async with analytics_client(url) as client:
        for name, path, params in ENDPOINTS:
            (await client.get(path, params=params)).raise_for_status()
            timings: list[float] = []
            # A slow endpoint gets fewer requests: at least 5, for about 20 seconds.
            while len(timings) < requests and (len(timings) < 5 or sum(timings) < 20_000):
                started = time.perf_counter()
                answer = await client.get(path, params=params)
                timings.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
            found[name] = percentiles(timings)
            print(f"measured {name}: {len(timings)} requests", flush=True)
    return found


def report(latencies: dict[str, tuple[float, float]], naive: dict[str, float]) -> None:
    print(f"{'endpoint':28} {'p50 ms':>8} {'p95 ms':>8} {'naive ms':>9} {'naive/p50':>9}")
    for name, (p50, p95) in latencies.items():
        baseline = naive.get(name)
        extra = f" {baseline:9.1f} {baseline / p50:8.0f}x" if baseline is not None else ""
        print(f"{name:28} {p50:8.1f} {p95:8.1f}{extra}", flush=True)


async def main() -> None:
    lines = int(os.environ.get("SALESBOOK_BENCH_LINES", "200000"))
    requests = int(os.environ.get("SALESBOOK_BENCH_REQUESTS", "30"))
    consumers = int(os.environ.get("SALESBOOK_BENCH_CONSUMERS", "2"))
    with bench_server() as server:
        async with bench_database(server) as (url, empty):
            database = Database(url)
            try:
                await upgrade(database, migration_targets([service_module("analytics")]))
            finally:
                await database.dispose()
            if empty:
                seconds = await load(url, lines, consumers)
                print(
                    f"loaded {lines:,} order lines in {seconds:.1f}s "
                    f"({lines / seconds:,.0f} lines/s, {consumers} consumers)",
                    flush=True,
                )
            await vacuum(url)
            latencies = await measure(url, requests)
            report(latencies, await baselines(url, max(3, requests // 10)))
