"""Consumer benchmark: how fast a subscription that is behind catches up, and how fast a read
model is rebuilt from the retained events, against writing the same events with COPY.

A year of documents (orders of 1–5 lines with credit notes, cancellations, payments and their
allocations) is written straight into the orders and payments outboxes; then the ledger
(closing.ledger) and analytics (analytics.read_models) subscriptions drain them as a
subscription that was down would, each timed on its own; then `salesbook rebuild` of both
read models from the same outboxes. The baseline is COPY of the same events into a table of
the outbox's shape, in the same run.

Scale with SALESBOOK_BENCH_EVENTS (default 100,000). The database is a fresh one on the
server of SALESBOOK_BENCH_DATABASE_URL (or SALESBOOK_TEST_DATABASE_URL), else an embedded
server.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench._server import bench_server
from bench.analytics_queries import _event, catalogue, check_payloads, documents
from services.rebuild import rebuild as rebuild_model
from services.registry import all_modules, migration_targets, service_module
from shared.collector import tune_garbage_collection
from shared.db import Database, plain_url
from shared.events.envelope import Event
from shared.messaging.postgres import PostgresSubscriber
from shared.migrations import upgrade

CHUNK = 20_000
SUBSCRIPTIONS = {"closing": "closing.ledger", "analytics": "analytics.read_models"}
METHODS = ("cash", "card", "alipay", "wechat", "bank_transfer")


def events(total: int) -> Iterator[Event]:
    """About `total` events: documents, and a payment received for every allocation."""
    rng = random.Random(14)
    made = 0
    # One line in three becomes an event of its own: lines ~ 3 per order, ~1.6 events per order.
    for event in documents(total * 2, rng, catalogue(total * 2)):
        if made >= total:
            return
        if event.type == "payment.allocated":
            data = event.data
            received = {
                "payment_id": data["payment_id"],
                "number": f"PAY-{made:07d}",
                "customer_id": data["customer_id"],
                "amount": data["amount"],
                "method": METHODS[made % len(METHODS)],
                "received_at": f"{data['business_date']}T03:00:00Z",
                "business_date": data["business_date"],
                "reference": None,
                "allocations": [],
            }
            assert event.business_date is not None  # an allocation is dated
            yield _event("payment.received", "payments", event.key, event.business_date, received)
            made += 1
        yield event
        made += 1


def _records(batch: list[Event]) -> list[tuple[Any, ...]]:
    return [(e.event_id, e.type, e.key, json.dumps(e.model_dump(mode="json"))) for e in batch]


async def generate(url: str, total: int) -> int:
    """Write the events into their sources' outboxes; how many."""
    check_payloads(events(200))
    connection = await asyncpg.connect(url)
    written = 0
    try:
        pending: dict[str, list[Event]] = {"orders": [], "payments": []}

        async def copy(source: str) -> None:
            nonlocal written
            records = _records(pending[source])
            await connection.copy_records_to_table(
                "outbox",
                schema_name=source,
                records=records,
                columns=["event_id", "type", "key", "payload"],
            )
            written += len(records)
            pending[source] = []

        for event in events(total):
            pending[event.source].append(event)
            if len(pending[event.source]) == CHUNK:
                await copy(event.source)
        for source in pending:
            if pending[source]:
                await copy(source)
    finally:
        await connection.close()
    return written


async def copy_baseline(url: str) -> tuple[int, float]:
    """COPY of every outbox row (read back out of the outboxes) into a table of their shape."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "CREATE TABLE bench_events (LIKE orders.outbox INCLUDING DEFAULTS)"
        )
        await connection.execute("ALTER TABLE bench_events ADD PRIMARY KEY (id)")
        await connection.execute("CREATE UNIQUE INDEX ON bench_events (event_id)")
        rows = await connection.fetch(
            "SELECT id, event_id, type, key, payload::text FROM orders.outbox "
            "UNION ALL SELECT id + 1000000000, event_id, type, key, payload::text "
            "FROM payments.outbox"
        )
        started = time.perf_counter()
        await connection.copy_records_to_table(
            "bench_events",
            records=[tuple(r) for r in rows],
            columns=["id", "event_id", "type", "key", "payload"],
        )
        return len(rows), time.perf_counter() - started
    finally:
        await connection.close()


async def catch_up(url: str, service: str) -> tuple[int, float]:
    db = Database(url)
    try:
        subscription = next(
            s for s in service_module(service).subscriptions if s.name == SUBSCRIPTIONS[service]
        )
        consumer = PostgresSubscriber(db, subscription)
        started = time.perf_counter()
        applied = await consumer.drain()
        return applied, time.perf_counter() - started
    finally:
        await db.dispose()


async def rebuild(url: str, model: str) -> tuple[int, float]:
    db = Database(url)
    try:
        started = time.perf_counter()
        applied = await rebuild_model(db, model, progress=False)
        return applied, time.perf_counter() - started
    finally:
        await db.dispose()


async def measure(url: str, total: int) -> None:
    db = Database(url)
    try:
        await upgrade(db, migration_targets(all_modules()))
    finally:
        await db.dispose()
    written = await generate(plain_url(url), total)
    print(f"generated {written:,} events into the orders and payments outboxes", flush=True)
    copied, baseline = await copy_baseline(plain_url(url))
    copy_rate = copied / baseline
    print(f"baseline: COPY of the {copied:,} events: {baseline:.2f}s ({copy_rate:,.0f} events/s)")
    results = []
    for service in ("closing", "analytics"):
        applied, seconds = await catch_up(url, service)
        results.append((f"catch-up {service}", applied, seconds))
        print(f"catch-up {service}: {applied:,} events in {seconds:.2f}s", flush=True)
    for model in (
        ("closing", "analytics") if os.environ.get("SALESBOOK_BENCH_REBUILD", "1") == "1" else ()
    ):
        applied, seconds = await rebuild(url, model)
        results.append((f"rebuild {model}", applied, seconds))
        print(f"rebuild {model}: {applied:,} events in {seconds:.2f}s", flush=True)
    print(f"{'what':22} {'events':>9} {'seconds':>8} {'events/s':>9} {'/ COPY':>7}")
    for name, applied, seconds in results:
        rate = applied / seconds
        print(f"{name:22} {applied:9,} {seconds:8.2f} {rate:9,.0f} {rate / copy_rate:7.3f}")


async def main() -> None:
    total = int(os.environ.get("SALESBOOK_BENCH_EVENTS", "100000"))
    tune_garbage_collection()  # as every process of the services does
    with bench_server() as server:
        admin = plain_url(server)
        name = f"salesbook_bench_consumers_{uuid.uuid4().hex[:8]}"
        connection = await asyncpg.connect(admin)
        await connection.execute(f'CREATE DATABASE "{name}"')
        await connection.close()
        try:
            await measure(urlunsplit(urlsplit(admin)._replace(path="/" + name)), total)
        finally:
            connection = await asyncpg.connect(admin)
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await connection.close()
