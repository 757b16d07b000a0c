"""AR ageing benchmark: every page of GET /v1/analytics/ar-ageing (p50/p95 per page, totals
over all customers on each) at N order lines, against the exact computation from every
receivable move per invoice (what each request ran before the open amounts were kept), in
the same run, which every page is also checked against.

The read model is seeded in bulk with SQL, not through the consumer (10M lines through the
consumer take over 20 minutes here): invoices of 3 lines on average (N / 3 invoices, one
customer per 50 lines, dated over 2025, one in five due in three instalments), with the
receivable moves and instalment rows the consumer writes for them: the invoice; a credit
note of 30% (10%), a cancellation (3%), a payment in full (47%) or of half (10%) dated after
it. The open amounts the endpoint reads are then filled from those rows by migration 0009,
the same rule the consumer applies per batch (tests/analytics/test_open_amounts.py holds
the two equal to the Python reference).

Scale with SALESBOOK_BENCH_LINES (default 10,000,000) and SALESBOOK_BENCH_PAGE (customers
per page, default 1000). Database: as bench/analytics_queries.py (SALESBOOK_BENCH_KEEP,
SALESBOOK_BENCH_REUSE).
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from bench._server import bench_server
from bench.analytics_queries import analytics_client, bench_database, percentiles, vacuum
from services.registry import migration_targets, service_module
from shared.db import Database, plain_url
from shared.migrations import migrate_schema, upgrade

BEFORE_OPEN_AMOUNTS = "0008_invoice_instalments"
AS_OF = (date(2026, 3, 31), date(2025, 6, 30))  # after every move, and mid-year
BUCKETS = ("current", "d1_30", "d31_60", "d61_90", "over_90", "total")

SEED = """
CREATE TEMP TABLE seed AS
SELECT g, md5('o' || g)::uuid AS order_id,
       md5('c' || (g * 7919) % :customers)::uuid AS customer_id,
       DATE '2025-01-01' + ((g * 37) % 365)::int AS day,
       (10 + ((g * 131) % 100000) / 100.0)::numeric(18, 2) AS gross,
       (g * 2654435761) % 100 AS luck
FROM generate_series(1::bigint, :invoices) AS g;

INSERT INTO analytics.invoice_instalments
       (order_id, seq, customer_id, due_date, amount, upto, gross)
SELECT order_id, 0, customer_id, day + 30, gross, gross, gross FROM seed WHERE g % 5 <> 0
UNION ALL
SELECT order_id, k - 1, customer_id, day + 30 * k,
       CASE WHEN k < 3 THEN round(gross / 3, 2) ELSE gross - 2 * round(gross / 3, 2) END,
       CASE WHEN k < 3 THEN k * round(gross / 3, 2) ELSE gross END, gross
FROM seed, generate_series(1, 3) AS k WHERE g % 5 = 0;

INSERT INTO analytics.receivable_moves (order_id, customer_id, day, kind, amount)
SELECT order_id, customer_id, day, 'invoice', gross FROM seed
UNION ALL
SELECT order_id, customer_id,
       CASE WHEN luck < 10 THEN day + 5 WHEN luck < 13 THEN day + 2
            ELSE day + 1 + (g % 60)::int END,
       CASE WHEN luck < 13 THEN (CASE WHEN luck < 10 THEN 'credit' ELSE 'cancel' END)
            ELSE 'allocated' END,
       -CASE WHEN luck < 10 THEN round(gross * 0.3, 2) WHEN luck < 60 THEN gross
             ELSE round(gross / 2, 2) END
FROM seed WHERE luck < 70;

INSERT INTO analytics.freshness (id, as_of) VALUES (1, now());
"""

EXACT = """
WITH moved AS (
    SELECT order_id,
           coalesce(sum(-amount) FILTER (WHERE kind IN ('allocated', 'released')), 0) AS paid,
           coalesce(sum(-amount) FILTER (WHERE kind IN ('credit', 'cancel')), 0) AS credited
    FROM analytics.receivable_moves WHERE day <= $1
    GROUP BY order_id HAVING bool_or(kind = 'invoice')
), aged AS (
    SELECT i.customer_id, $1 - i.due_date AS late,
           greatest(0, i.amount
               - least(i.amount, greatest(0, greatest(least(m.paid, i.gross), 0)
                                             - (i.upto - i.amount)))
               - least(i.amount, greatest(0, m.credited - (i.gross - i.upto)))) AS open
    FROM moved m JOIN analytics.invoice_instalments i ON i.order_id = m.order_id
)
SELECT customer_id,
       coalesce(sum(open) FILTER (WHERE late <= 0), 0) AS current,
       coalesce(sum(open) FILTER (WHERE late BETWEEN 1 AND 30), 0) AS d1_30,
       coalesce(sum(open) FILTER (WHERE late BETWEEN 31 AND 60), 0) AS d31_60,
       coalesce(sum(open) FILTER (WHERE late BETWEEN 61 AND 90), 0) AS d61_90,
       coalesce(sum(open) FILTER (WHERE late > 90), 0) AS over_90,
       sum(open) AS total
FROM aged GROUP BY customer_id HAVING sum(open) <> 0 ORDER BY customer_id
"""
"""Each invoice's moves up to the day summed and placed on its instalments, per request."""


async def _migrate_analytics(url: str, direction: str, revision: str) -> None:
    ((schema, folder),) = migration_targets([service_module("analytics")])
    database = Database(url)
    try:
        await migrate_schema(database, schema, folder, direction=direction, revision=revision)
    finally:
        await database.dispose()


async def seed(url: str, lines: int) -> None:
    """The read model of `lines` order lines, bulk-loaded, then filled by migration 0009."""
    await _migrate_analytics(url, "downgrade", BEFORE_OPEN_AMOUNTS)
    invoices, customers = lines // 3, max(10, lines // 50)
    started = time.perf_counter()
    connection = await asyncpg.connect(plain_url(url))
    try:
        statements = SEED.replace(":invoices", str(invoices)).replace(":customers", str(customers))
        await connection.execute(statements)
        moves = await connection.fetchval("SELECT count(*) FROM analytics.receivable_moves")
    finally:
        await connection.close()
    print(
        f"seeded {invoices:,} invoices of {customers:,} customers ({moves:,} receivable moves) "
        f"in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    started = time.perf_counter()
    await _migrate_analytics(url, "upgrade", "head")
    print(f"migration 0009 filled the open amounts in {time.perf_counter() - started:.1f}s")


async def exact(url: str, as_of: date, repeats: int) -> tuple[float, list[Any]]:
    """Median ms of the exact computation (once: minutes at 10M lines), and its rows."""
    connection = await asyncpg.connect(plain_url(url))
    try:
        timings, rows = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            rows = await connection.fetch(EXACT, as_of)
            timings.append((time.perf_counter() - started) * 1000)
        return statistics.median(timings), rows
    finally:
        await connection.close()


async def walk(
    client: httpx.AsyncClient, as_of: date, page: int
) -> tuple[list[float], list[dict[str, Any]], list[dict[str, str]]]:
    """Every page of the ageing as of a day: ms per page, the rows and the totals."""
    params: dict[str, Any] = {"as_of": str(as_of), "limit": page}
    timings, rows, totals = [], [], []
    while True:
        started = time.perf_counter()
        answer = await client.get("/v1/analytics/ar-ageing", params=params)
        timings.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        body = answer.json()
        rows += body["rows"]
        totals.append(body["totals"])
        if body["next_cursor"] is None:
            return timings, rows, totals
        params["cursor"] = body["next_cursor"]


def check(as_of: date, rows: list[dict], totals: list[dict], expected: list[Any]) -> None:
    """The pages visit every customer once, agree with the exact computation, and every
    page's totals are the sum of all pages' rows."""
    ids = [r["customer_id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{as_of}: a customer came twice"
    got = [(r["customer_id"], *(Decimal(r[b]) for b in BUCKETS)) for r in rows]
    want = [(str(r["customer_id"]), *(r[b] for b in BUCKETS)) for r in expected]
    assert got == want, f"{as_of}: the pages differ from the exact computation"
    summed = {b: str(sum((Decimal(r[b]) for r in rows), Decimal("0.00"))) for b in BUCKETS}
    assert all(t == summed for t in totals), f"{as_of}: totals differ from the pages' sum"


async def main() -> None:
    lines = int(os.environ.get("SALESBOOK_BENCH_LINES", "10000000"))
    page = int(os.environ.get("SALESBOOK_BENCH_PAGE", "1000"))
    with bench_server() as server:
        async with bench_database(server) as (url, empty):
            database = Database(url)
            try:
                await upgrade(database, migration_targets([service_module("analytics")]))
            finally:
                await database.dispose()
            if empty:
                await seed(url, lines)
            await vacuum(url)
            print(
                f"{'as_of':11} {'pages':>6} {'customers':>9} {'p50 ms':>7} {'p95 ms':>7} "
                f"{'exact ms':>9} {'exact/p95':>9}"
            )
            async with analytics_client(url) as client:
                for as_of in AS_OF:
                    await walk(client, as_of, page)  # warm the cache once
                    timings, rows, totals = await walk(client, as_of, page)
                    naive, expected = await exact(url, as_of, repeats=1)
                    check(as_of, rows, totals, expected)
                    p50, p95 = percentiles(timings)
                    print(
                        f"{as_of!s:11} {len(timings):6} {len(rows):9,} {p50:7.1f} "
                        f"{p95:7.1f} {naive:9.0f} {naive / p95:8.0f}x",
                        flush=True,
                    )
