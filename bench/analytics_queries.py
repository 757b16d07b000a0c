"""Analytics benchmark: N order lines (with credit notes, cancellations and payments) folded
into the read models by the analytics consumer, then p50/p95 latency of every endpoint.

Scale with SALESBOOK_BENCH_LINES (default 200,000) and SALESBOOK_BENCH_REQUESTS (per
endpoint, default 30). The database is a fresh one on the server of
SALESBOOK_BENCH_DATABASE_URL (or SALESBOOK_TEST_DATABASE_URL), else an embedded server.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from services.analytics.handlers import subscriptions
from services.registry import migration_targets, service_module
from shared.app import create_app
from shared.auth import Role, issue_token
from shared.config import Settings
from shared.db import Database, plain_url
from shared.embedded import EmbeddedPostgres
from shared.events.envelope import Event
from shared.events.orders import (
    OrderCancelled,
    OrderConfirmed,
    OrderFacts,
    OrderLine,
    OrderReturned,
    ReturnedLine,
)
from shared.events.payments import PaymentAllocated
from shared.messaging.consumer import apply_batch
from shared.migrations import upgrade
from shared.money import line_amounts

SECRET = "bench-secret-key-for-analytics-queries"
START = date(2025, 1, 1)
DAYS = 365
RATE = Decimal("0.13")
ZERO = Decimal("0.00")
BATCH = 2000


@contextmanager
def bench_server() -> Iterator[str]:
    url = os.environ.get("SALESBOOK_BENCH_DATABASE_URL") or os.environ.get(
        "SALESBOOK_TEST_DATABASE_URL"
    )
    if url:
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="salesbook-bench-"))
    server = EmbeddedPostgres(folder / "pgdata")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    name = f"salesbook_bench_analytics_{uuid.uuid4().hex[:8]}"
    admin = plain_url(server_url)
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    try:
        yield urlunsplit(urlsplit(admin)._replace(path="/" + name))
    finally:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


def documents(lines: int, rng: random.Random) -> Iterator[Event]:
    """Orders of 1–5 lines until `lines` lines, with credit notes, cancellations, payments."""
    customers = [uuid.uuid4() for _ in range(max(10, lines // 50))]
    skus = [
        (f"SKU-{i:04d}", f"cat-{i % 20}", Decimal(rng.randint(100, 20000)) / 100)
        for i in range(500)
    ]
    made = 0
    while made < lines:
        customer = rng.choice(customers)
        day = START + timedelta(days=rng.randrange(DAYS))
        order_lines = []
        for no, (sku, category, price) in enumerate(rng.sample(skus, rng.randint(1, 5)), 1):
            quantity = Decimal(rng.randint(1, 9))
            net, tax, gross = line_amounts(
                quantity=quantity, unit_price=price, discount=ZERO, tax_rate=RATE
            )
            order_lines.append(
                OrderLine(
                    line_no=no,
                    sku=sku,
                    name=sku,
                    category=category,
                    quantity=quantity,
                    unit_price=price,
                    discount=ZERO,
                    tax_rate=RATE,
                    net=net,
                    tax=tax,
                    gross=gross,
                )
            )
        made += len(order_lines)
        facts = OrderFacts(
            order_id=uuid.uuid4(),
            number="SO",
            customer_id=customer,
            customer_name="c",
            region=rng.choice(["east", "west", "north", None]),
            segment=None,
            channel=rng.choice(["pos", "web"]),
            salesperson=rng.choice(["alice", "bob", "carol", None]),
            created_by="bench",
            lines=order_lines,
            net=sum((x.net for x in order_lines), ZERO),
            tax=sum((x.tax for x in order_lines), ZERO),
            gross=sum((x.gross for x in order_lines), ZERO),
        )
        key = str(customer)

        def event(payload: object, source: str, on: date, key: str = key) -> Event:
            return Event.of(payload, source=source, key=key, business_date=on)  # type: ignore[arg-type]

        yield event(
            OrderConfirmed(
                order=facts,
                invoice_number="INV",
                business_date=day,
                due_date=day + timedelta(days=30),
                instalments=[],
                confirmed_at=datetime.now(UTC),
            ),
            "orders",
            day,
        )
        luck = rng.random()
        if luck < 0.1:
            x = order_lines[0]
            yield event(
                OrderReturned(
                    credit_note_id=uuid.uuid4(),
                    credit_note_number="CN",
                    order_id=facts.order_id,
                    customer_id=customer,
                    business_date=day + timedelta(days=5),
                    lines=[
                        ReturnedLine(
                            line_no=x.line_no,
                            sku=x.sku,
                            category=x.category,
                            quantity=x.quantity,
                            net=x.net,
                            tax=x.tax,
                            gross=x.gross,
                        )
                    ],
                    net=x.net,
                    tax=x.tax,
                    gross=x.gross,
                    reason=None,
                ),
                "orders",
                day + timedelta(days=5),
            )
        elif luck < 0.13:
            yield event(
                OrderCancelled(
                    order_id=facts.order_id,
                    number="SO",
                    customer_id=customer,
                    was_confirmed=True,
                    invoice_number="INV",
                    business_date=day + timedelta(days=2),
                    reversed_net=facts.net,
                    reversed_tax=facts.tax,
                    reversed_gross=facts.gross,
                    reason=None,
                ),
                "orders",
                day + timedelta(days=2),
            )
        elif luck < 0.6:
            on = day + timedelta(days=rng.randint(1, 60))
            yield event(
                PaymentAllocated(
                    allocation_id=uuid.uuid4(),
                    payment_id=uuid.uuid4(),
                    payment_number="PAY",
                    customer_id=customer,
                    order_id=facts.order_id,
                    amount=facts.gross,
                    business_date=on,
                ),
                "payments",
                on,
            )


async def load(url: str, lines: int) -> float:
    """Fold the documents into the read models in consumer-sized batches; seconds taken."""
    database = Database(url, pool_size=1)
    subscription = subscriptions()[0]
    started = time.perf_counter()
    try:
        batch: list[Event] = []
        for event in documents(lines, random.Random(42)):
            batch.append(event)
            if len(batch) >= BATCH:
                async with database.transaction() as session:
                    await apply_batch(session, subscription, batch)
                batch = []
        if batch:
            async with database.transaction() as session:
                await apply_batch(session, subscription, batch)
    finally:
        await database.dispose()
    return time.perf_counter() - started


ENDPOINTS = [
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


async def measure(url: str, requests: int) -> None:
    settings = Settings(secret_key=SECRET, data_dir=Path(tempfile.mkdtemp()), _env_file=None)  # type: ignore[call-arg]
    app = create_app(
        [service_module("analytics")], settings=settings, database_url=url, run_workers=False
    )
    token = issue_token(secret=SECRET, subject="bench", role=Role.ANALYST, ttl=timedelta(hours=1))
    headers = {"Authorization": f"Bearer {token}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            print(f"{'endpoint':28} {'p50 ms':>8} {'p95 ms':>8}")
            for name, path, params in ENDPOINTS:
                timings = []
                for _ in range(requests):
                    started = time.perf_counter()
                    answer = await client.get(path, params=params, headers=headers)
                    timings.append((time.perf_counter() - started) * 1000)
                    answer.raise_for_status()
                timings.sort()
                p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
                print(f"{name:28} {statistics.median(timings):8.1f} {p95:8.1f}", flush=True)


async def main() -> None:
    lines = int(os.environ.get("SALESBOOK_BENCH_LINES", "200000"))
    requests = int(os.environ.get("SALESBOOK_BENCH_REQUESTS", "30"))
    with bench_server() as server:
        async with fresh_database(server) as url:
            database = Database(url)
            try:
                await upgrade(database, migration_targets([service_module("analytics")]))
            finally:
                await database.dispose()
            seconds = await load(url, lines)
            print(
                f"loaded {lines:,} order lines in {seconds:.1f}s ({lines / seconds:,.0f} lines/s)"
            )
            await measure(url, requests)
