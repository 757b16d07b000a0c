"""Close benchmark: one month of N invoices and N payments for C customers, closed by the
event-driven close, against a naive SQL GROUP BY over the same documents, in the same run.
The close is timed with the ledger's subscriber running as in the service (woken by the
outbox's NOTIFY), from writing the sources' cutoffs and from their commit to `closed`.

Ids are UUIDv7, as the services make them (time-ordered: index inserts land at the end).
Scale with SALESBOOK_BENCH_INVOICES (default 1,000,000; as many payments) and
SALESBOOK_BENCH_CUSTOMERS (default 100,000). The database is a fresh one on the server of
SALESBOOK_BENCH_DATABASE_URL (or SALESBOOK_TEST_DATABASE_URL), else an embedded server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench._server import bench_server
from services.closing import service as closing
from services.closing.handlers import subscriptions as closing_subscriptions
from services.registry import all_modules, migration_targets
from shared.auth import Actor, Role
from shared.collector import tune_garbage_collection
from shared.db import Database, plain_url
from shared.events.closing import ControlTotal, PeriodCutoff
from shared.events.envelope import Event
from shared.ids import new_id
from shared.messaging.outbox import notify_channel, write_to_outbox
from shared.messaging.postgres import PostgresSubscriber
from shared.migrations import upgrade

PERIOD = "2025-01"
METHODS = ("cash", "card", "alipay", "wechat", "bank_transfer")


def _database(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(plain_url(server_url))._replace(path="/" + name))


def _invoice(i: int, customer: str, day: int, cents: int) -> tuple:
    order_id = str(new_id())
    net = Decimal(cents) / 100
    tax = (net * Decimal("0.13")).quantize(Decimal("0.01"))
    gross = net + tax
    bd = f"{PERIOD}-{day:02d}"
    line = {
        "line_no": 1,
        "sku": "SKU-1",
        "name": "Widget",
        "category": "tools",
        "quantity": "1",
        "unit_price": str(net),
        "discount": "0.00",
        "tax_rate": "0.13",
        "net": str(net),
        "tax": str(tax),
        "gross": str(gross),
    }
    facts = {
        "order_id": order_id,
        "number": f"SO-2025-{i:07d}",
        "customer_id": customer,
        "customer_name": "c",
        "region": "east",
        "segment": "regular",
        "channel": "pos",
        "salesperson": "ann",
        "created_by": "ann",
        "lines": [line],
        "net": str(net),
        "tax": str(tax),
        "gross": str(gross),
    }
    event_id = str(new_id())
    payload = {
        "event_id": event_id,
        "type": "order.confirmed",
        "version": 1,
        "source": "orders",
        "key": customer,
        "occurred_at": f"{bd}T02:00:00Z",
        "business_date": bd,
        "period": PERIOD,
        "request_id": None,
        "data": {
            "order": facts,
            "invoice_number": f"INV-2025-{i:07d}",
            "business_date": bd,
            "due_date": f"{PERIOD}-{min(day + 15, 28):02d}",
            "instalments": [],
            "confirmed_at": f"{bd}T02:00:00Z",
        },
    }
    return (uuid.UUID(event_id), "order.confirmed", customer, json.dumps(payload)), gross


def _payment(i: int, customer: str, day: int, cents: int) -> tuple:
    payment_id = str(new_id())
    amount = Decimal(cents) / 100
    bd = f"{PERIOD}-{day:02d}"
    event_id = str(new_id())
    payload = {
        "event_id": event_id,
        "type": "payment.received",
        "version": 1,
        "source": "payments",
        "key": customer,
        "occurred_at": f"{bd}T03:00:00Z",
        "business_date": bd,
        "period": PERIOD,
        "request_id": None,
        "data": {
            "payment_id": payment_id,
            "number": f"PAY-2025-{i:07d}",
            "customer_id": customer,
            "amount": str(amount),
            "method": METHODS[i % len(METHODS)],
            "received_at": f"{bd}T03:00:00Z",
            "business_date": bd,
            "reference": None,
            "allocations": [],
        },
    }
    return (uuid.UUID(event_id), "payment.received", customer, json.dumps(payload)), amount


async def generate(url: str, *, invoices: int, customers: int) -> dict[str, tuple[int, Decimal]]:
    """Write the month's events straight into the sources' outboxes with COPY."""
    rng = random.Random(2025)
    people = [str(new_id()) for _ in range(customers)]
    conn = await asyncpg.connect(url)
    totals: dict[str, tuple[int, Decimal]] = {
        "invoice": (0, Decimal(0)),
        "payment": (0, Decimal(0)),
    }
    try:
        for kind, table, build in (
            ("invoice", "orders", _invoice),
            ("payment", "payments", _payment),
        ):
            chunk: list[tuple] = []
            for i in range(invoices):
                row, amount = build(
                    i,
                    people[rng.randrange(customers)],
                    rng.randint(1, 28),
                    rng.randint(100, 500_000),
                )
                count, total = totals[kind]
                totals[kind] = (count + 1, total + amount)
                chunk.append(row)
                if len(chunk) == 50_000 or i == invoices - 1:
                    await conn.copy_records_to_table(
                        "outbox",
                        schema_name=table,
                        records=chunk,
                        columns=["event_id", "type", "key", "payload"],
                    )
                    chunk = []
    finally:
        await conn.close()
    return totals


NAIVE_SQL = """
SELECT key AS customer_id,
       SUM(CASE WHEN type = 'order.confirmed' THEN (payload->'data'->'order'->>'gross')::numeric
                ELSE 0 END) AS invoiced,
       SUM(CASE WHEN type = 'payment.received' THEN (payload->'data'->>'amount')::numeric
                ELSE 0 END) AS received
  FROM (SELECT key, type, payload FROM orders.outbox
        UNION ALL SELECT key, type, payload FROM payments.outbox) documents
 WHERE payload->>'period' = $1
 GROUP BY key
"""


async def _until_closed(url: str) -> None:
    """Returns once the period reads `closed`: looked at whenever an outbox is written to (the
    close writes period.closed to closing's), and every 50 ms besides."""
    conn = await asyncpg.connect(plain_url(url))
    written = asyncio.Event()
    await conn.add_listener(notify_channel("closing"), lambda *_: written.set())
    try:
        query = "SELECT status FROM closing.periods WHERE period = $1"
        while await conn.fetchval(query, PERIOD) != "closed":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(written.wait(), 0.05)
            written.clear()
    finally:
        await conn.close()


async def measure(url: str, invoices: int, customers: int) -> None:
    db = Database(url)
    await upgrade(db, migration_targets(all_modules()))
    started = time.perf_counter()
    totals = await generate(plain_url(url), invoices=invoices, customers=customers)
    generated = time.perf_counter() - started
    print(
        f"generated {invoices:,} invoices + {invoices:,} payments for {customers:,} customers "
        f"in {generated:.1f}s",
        flush=True,
    )

    subscription = closing_subscriptions()[0]
    consumer = PostgresSubscriber(
        db, subscription, batch_size=int(os.environ.get("SALESBOOK_BENCH_BATCH", "5000"))
    )
    started = time.perf_counter()
    applied = await consumer.drain()
    ingest = time.perf_counter() - started
    print(
        f"ledger ingest: {applied:,} events in {ingest:.1f}s ({applied / ingest:,.0f} events/s)",
        flush=True,
    )

    actor = Actor(subject="bench", role=Role.FINANCE)
    async with db.transaction() as session:
        row = await closing.request_close(
            session=session, period=PERIOD, actor=actor, today=datetime.now(UTC).date()
        )
        close_id = row.close_id
    cutoffs = []
    for source, kinds in (
        ("orders", ("invoice", "credit_note", "cancellation")),
        ("payments", ("payment", "refund")),
    ):
        control = {
            k: ControlTotal(count=totals.get(k, (0, 0))[0], amount=totals.get(k, (0, 0))[1])
            for k in kinds
        }
        cutoffs.append(
            Event.of(
                PeriodCutoff(
                    period=PERIOD,
                    close_id=close_id,
                    source=source,
                    control_totals=control,
                    locked_at=datetime.now(UTC),
                ),
                source=source,
                key="period-control",
            )
        )
    # The ledger's subscriber runs as in the service, idle and woken by the outbox's NOTIFY;
    # the close is timed from writing the cutoffs, and from their commit, to `closed`.
    running = asyncio.create_task(consumer.run())
    started = time.perf_counter()
    async with db.transaction() as session:
        await write_to_outbox(session, cutoffs)
    committed = time.perf_counter()
    await asyncio.wait_for(_until_closed(url), timeout=3600)
    close_seconds = time.perf_counter() - started
    after_commit = time.perf_counter() - committed
    consumer.stop()
    await running
    async with db.transaction() as session:
        period = await closing.lock_period(session, PERIOD)
        assert period.status == "closed", period.status
        assert period.totals is not None and period.hash is not None
        print(
            f"period {PERIOD} closed: {period.totals['customers']:,} customers, "
            f"closing total {period.totals['closing']}, hash {period.hash[:16]}…",
            flush=True,
        )

    conn = await asyncpg.connect(plain_url(url))
    try:
        started = time.perf_counter()
        naive_rows = await conn.fetch(NAIVE_SQL, PERIOD)
        naive = time.perf_counter() - started
        stored = {
            str(r["customer_id"]): r["closing"]
            for r in await conn.fetch(
                "SELECT customer_id, closing FROM closing.closed_balances WHERE period = $1", PERIOD
            )
        }
    finally:
        await conn.close()
    mismatches = sum(
        1 for r in naive_rows if stored.get(r["customer_id"]) != r["invoiced"] - r["received"]
    )
    print(
        f"close after the last event: {close_seconds:.2f}s from writing it, "
        f"{after_commit:.2f}s from its commit to closed (balances, ageing, trial balance, hash)"
    )
    print(
        f"naive GROUP BY over the raw documents: {naive:.2f}s ({len(naive_rows):,} customers, "
        f"{mismatches} disagreeing with the close)"
    )
    print(
        f"ratio close / naive GROUP BY: {close_seconds / naive:.2f} "
        f"(from the last event's commit to closed: {after_commit / naive:.2f})"
    )
    await db.dispose()
    if mismatches:
        raise SystemExit("the close disagrees with the naive recomputation")


async def run(invoices: int, customers: int) -> None:
    with bench_server() as server:
        name = f"salesbook_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(plain_url(server))
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        try:
            await measure(_database(server, name), invoices, customers)
        finally:
            admin = await asyncpg.connect(plain_url(server))
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


def main() -> None:
    # The close logs how long each of its steps took.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("salesbook.closing").setLevel(logging.INFO)
    invoices = int(os.environ.get("SALESBOOK_BENCH_INVOICES", "1000000"))
    customers = int(os.environ.get("SALESBOOK_BENCH_CUSTOMERS", "100000"))
    tune_garbage_collection()  # as every process of the services does
    asyncio.run(run(invoices, customers))


if __name__ == "__main__":
    main()
