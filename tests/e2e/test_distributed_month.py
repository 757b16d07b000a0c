"""The four services as four `salesbook serve` processes, each as its own database role,
over a real PostgreSQL and, on kafka, a real broker: a month of business through the HTTP
API behind nginx with deploy/nginx.conf, two consumers killed with SIGKILL in the middle of
a rush of sales and started again on new addresses, then the month-end close. The closed
balances and the analytics figures must equal, to the cent, what the test works out from
what it sent itself: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import json
import uuid
import warnings
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.registry import all_modules
from tests.cli.sql import query
from tests.conftest import auth
from tests.e2e.book import BALANCE, KPIS, LIFETIME, SALES, Book
from tests.e2e.cluster import (
    Api,
    Cluster,
    backlog,
    running_cluster,
    strays,
    transport_settings,
)
from tests.e2e.traffic import FINANCE, Desk, business_day, till_rush
from tests.support.database import fresh_database
from tests.support.waiting import eventually

ANALYST = auth("analyst", "ana")
RUSH = 50  # sales, each an order and its payment: about 200 events
CONSUMERS = ("closing", "analytics")


@pytest.fixture(params=["postgres", "kafka"])
def cluster(request: pytest.FixtureRequest, pg_server: str, tmp_path: Path) -> Iterator[Cluster]:
    transport = request.param
    bootstrap = request.getfixturevalue("kafka_bootstrap") if transport == "kafka" else None
    with fresh_database(pg_server, prefix="salesbook_e2e") as url:
        settings = transport_settings(transport, url, bootstrap)
        with running_cluster(url, settings, tmp_path) as running:
            yield running


def last_month() -> date:
    """The first day of the month before this one, in the business time zone: a month that
    takes backdated documents and can be closed."""
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    return (today.replace(day=1) - timedelta(days=1)).replace(day=1)


async def test_a_distributed_month_survives_killed_consumers(cluster: Cluster) -> None:
    month = last_month()
    period = month.strftime("%Y-%m")
    request_id = f"e2e-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(timeout=30) as client:
        api = Api(cluster, client)
        desk = Desk(api, Book(), month)
        customers = await business_day(desk, request_id)
        await rush_with_consumers_killed(desk, customers)
        await close(api, period)
        await settled(cluster)
        await check_balances(api, period, desk.book)
        await check_analytics(api, month, desk.book, customers)
    await asyncio.to_thread(check_request_followed, cluster, request_id)


async def rush_with_consumers_killed(desk: Desk, customers: list[str]) -> None:
    """SIGKILL closing and analytics a third of the way into the rush; start them again
    while the tills keep selling."""
    third = asyncio.Event()

    def sold(count: int) -> None:
        if count >= RUSH // 3:
            third.set()

    rush = asyncio.create_task(till_rush(desk, customers, RUSH, lanes=4, sold=sold))
    halfway = asyncio.create_task(third.wait())
    await asyncio.wait({rush, halfway}, return_when=asyncio.FIRST_COMPLETED)
    if rush.done():  # a sale failed before a third of them were made
        halfway.cancel()
        rush.result()
    cluster = desk.api.cluster
    await asyncio.to_thread(cluster.kill, *CONSUMERS)
    await asyncio.to_thread(cluster.start, *CONSUMERS)
    # They came back on new addresses: the close and the analytics checks below reach them
    # only because nginx looks their names up again.
    await cluster.routed(*CONSUMERS)
    await rush


async def close(api: Api, period: str) -> None:
    """Close the month; it closes only once the ledger matches both sources' control totals."""
    path = f"/v1/closing/periods/{period}"
    await api.post(f"{path}/close", headers=FINANCE, status=202)
    await eventually(
        lambda: api.get(path, headers=FINANCE),
        lambda answer: answer["status"] == "closed",
        seconds=90,
        interval=0.2,
    )


async def settled(cluster: Cluster) -> None:
    """Every event raised so far applied by every subscription."""
    await eventually(
        lambda: asyncio.to_thread(backlog, cluster.database_url),
        lambda behind: not any(behind.values()),
        seconds=90,
        interval=0.2,
    )
    if found := await asyncio.to_thread(explain_strays, cluster):
        # Seen on the test broker only (docs/tansu.md): reported, and the figures checked
        # next show whether anything it delivered took effect.
        warnings.warn(f"the broker delivered events no outbox here holds:\n{found}", stacklevel=1)


def explain_strays(cluster: Cluster) -> str:
    """For each subscription: the events it applied that none of its sources raised, and
    every log line naming them."""
    lines = []
    for subscription in (s for m in all_modules() for s in m.subscriptions):
        for event_id, schema, kind, applied_at in strays(cluster.database_url, subscription.name):
            lines.append(
                f"{subscription.name} applied {event_id} ({kind} of {schema}) at {applied_at}"
            )
            for service in cluster.logs:
                lines += [
                    f"  {service}: {line}"
                    for line in cluster.output(service).splitlines()
                    if str(event_id) in line
                ]
    return "\n".join(lines)


async def check_balances(api: Api, period: str, book: Book) -> None:
    path = f"/v1/closing/periods/{period}"
    rows = (await api.get(f"{path}/balances", headers=FINANCE, limit="100"))["items"]
    assert {row["customer_id"]: figures(row, BALANCE) for row in rows} == book.balances()
    # Nothing for finance to chase but the customers left in credit: every allocation made
    # before its order was known found its order, none arrived late, none overpaid.
    report = await api.get(f"{path}/reconciliation", headers=FINANCE)
    in_credit = {c: str(b["closing"]) for c, b in book.balances().items() if b["closing"] < 0}
    assert in_credit, "the month leaves a customer in credit"
    assert {r["customer_id"]: r["closing"] for r in report["credit_balances"]} == in_credit
    assert report["count"] == len(in_credit), report
    assert (await api.get(f"{path}/trial-balance", headers=FINANCE))["balanced"]
    assert (await api.get(f"{path}/verify", headers=FINANCE))["ok"]


async def check_analytics(api: Api, month: date, book: Book, customers: list[str]) -> None:
    # Up to the cancellation, dated the day it was made (today in the business time zone,
    # at most a day ahead of the date here).
    span = {"from": str(month), "to": str(date.today() + timedelta(days=2))}
    sales = await api.get("/v1/analytics/sales", headers=ANALYST, group_by="customer", **span)
    assert {row["key"]: figures(row, SALES) for row in sales["rows"]} == book.sales()
    kpis = await api.get("/v1/analytics/kpis", headers=ANALYST, **span)
    assert figures(kpis, KPIS) == book.kpis()
    for customer_id in customers:
        lifetime = await api.get(f"/v1/analytics/customers/{customer_id}/lifetime", headers=ANALYST)
        assert figures(lifetime, LIFETIME) == book.lifetime(customer_id)


def figures(answer: dict[str, Any], names: tuple[str, ...]) -> dict[str, Decimal]:
    return {name: Decimal(str(answer[name])) for name in names}


def check_request_followed(cluster: Cluster, request_id: str) -> None:
    """The request's id is on the events it caused and on the lines of every service that
    applied them."""
    caused = query(
        cluster.database_url,
        "SELECT type FROM orders.outbox WHERE payload->>'request_id' = $1",
        request_id,
    )
    assert {row[0] for row in caused} >= {"order.submitted", "order.confirmed"}, caused
    for service in ("payments", *CONSUMERS):
        applied = [
            line
            for line in cluster.output(service).splitlines()
            if line.startswith("{") and json.loads(line).get("request_id") == request_id
        ]
        assert any("order.confirmed" in line for line in applied), service
