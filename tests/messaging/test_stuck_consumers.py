"""A consumer never spins silently (SPEC §9): an event its handler cannot apply marks the
subscription stuck — readiness, the metric, the admin view and a close waiting for it all say
so — and once the cause is fixed the subscription resumes, by itself or when an admin asks,
with no event skipped. Each test has a database of its own: a stuck event stops everyone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, text

from services.registry import all_modules
from shared.db import Database
from shared.events.envelope import Event
from shared.events.orders import CustomerCreated
from shared.messaging.health import Backoff
from shared.messaging.outbox import write_to_outbox
from shared.tables import common_tables
from tests.conftest import BOTH_TRANSPORTS, AppClient, auth, migrate_all
from tests.support.database import fresh_database
from tests.support.waiting import eventually

SALES, POS, FINANCE, ADMIN = (
    auth("sales", "sam"),
    auth("pos", "till"),
    auth("finance", "fay"),
    auth("admin", "root"),
)
MONTH = "2026-10"


@pytest.fixture
def empty_database(pg_server: str) -> Iterator[str]:
    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture
async def db_url(empty_database: str) -> str:
    return await migrate_all(empty_database)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.dispose()


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text[:600]
    return response.json()


def worker_of(client: httpx.AsyncClient, name: str) -> Any:
    workers = client.app.state.workers  # type: ignore[attr-defined]  # the test client keeps its app
    return next(
        w for w in workers if getattr(w, "subscription", None) and w.subscription.name == name
    )


async def stuck_gauges(client: httpx.AsyncClient) -> dict[str, float]:
    return await gauges_named(client, "salesbook_consumer_stuck")


async def gauges_named(client: httpx.AsyncClient, name: str) -> dict[str, float]:
    """A gauge's value per subscription (summed over its sources)."""
    body = (await client.get("/metrics", headers=ADMIN)).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        if family.name == name:
            for sample in family.samples:
                key = sample.labels["subscription"]
                found[key] = found.get(key, 0.0) + sample.value
    return found


async def attempts_of(worker: Any) -> int:
    return worker.health.attempts


async def subscription(client: httpx.AsyncClient, service: str, name: str) -> dict[str, Any]:
    views = ok(await client.get(f"/v1/{service}/subscriptions", headers=ADMIN))
    return next(v for v in views if v["name"] == name)


def stuck_on(response: httpx.Response, name: str) -> bool:
    return response.status_code == 503 and f"subscription:{name}" in response.json()["checks"]


async def processed(db: Database, schema: str, consumer: str, event_id: uuid.UUID) -> bool:
    inbox = common_tables(schema).processed_events
    async with db.sessions() as session:
        row = await session.execute(
            select(inbox.c.event_id).where(
                inbox.c.consumer == consumer, inbox.c.event_id == event_id
            )
        )
        return row.first() is not None


# On kafka the damaged record stays in the log whatever the outbox holds later: there only a
# fix on the consumer's side (code, its own data) can unstick it, as in the next test.
@pytest.mark.parametrize("transport", ["postgres"], indirect=True)
async def test_a_stuck_ledger_event_is_the_close_problem_until_fixed_and_retried(
    app_client: AppClient, db_url: str, db: Database
) -> None:
    # The month's documents and the close request, with no consumer running yet.
    async with app_client(all_modules(), database_url=db_url, run_workers=False) as client:
        customer = ok(
            await client.post(
                "/v1/customers", json={"name": "Alice Ltd", "payment_terms_days": 30}, headers=SALES
            ),
            201,
        )
        product = {"sku": "P1", "name": "Pump", "category": "pumps"}
        body = {**product, "unit_price": "100.00", "tax_rate": "0.13"}
        ok(await client.post("/v1/products", json=body, headers=SALES), 201)
        order = {
            "customer_id": customer["id"],
            "channel": "pos",
            "lines": [{"sku": "P1", "quantity": "2"}],
            "business_date": f"{MONTH}-15",
            "submit": True,
        }
        ok(await client.post("/v1/orders", json=order, headers=POS), 201)
        ok(await client.post(f"/v1/closing/periods/{MONTH}/close", headers=FINANCE), 202)

    # The invoice's event is damaged in the outbox: no consumer can read its customer.
    async with db.transaction() as session:
        row = (
            await session.execute(
                text(
                    "SELECT id, event_id, payload::text FROM orders.outbox "
                    "WHERE type = 'order.confirmed'"
                )
            )
        ).one()
        await session.execute(
            text(
                "UPDATE orders.outbox SET payload = jsonb_set(payload, "
                "'{data,order,customer_id}', '\"not-a-customer\"') WHERE id = :id"
            ),
            {"id": row.id},
        )
    outbox_id, event_id, original = row.id, row.event_id, row.payload

    async with app_client(all_modules(), database_url=db_url) as client:
        ready = await eventually(
            lambda: client.get("/readyz"), lambda r: stuck_on(r, "closing.ledger"), seconds=30
        )
        problem = ready.json()["checks"]["subscription:closing.ledger"]
        assert str(event_id) in problem and "order.confirmed" in problem

        gauges = await stuck_gauges(client)
        assert gauges["closing.ledger"] == 1
        assert gauges["orders.closing"] == 0

        assert (await client.get("/v1/closing/subscriptions")).status_code == 401
        assert (await client.get("/v1/closing/subscriptions", headers=FINANCE)).status_code == 403
        ledger = await subscription(client, "closing", "closing.ledger")
        assert ledger["state"] == "stuck"
        assert ledger["stuck_on"]["event_id"] == str(event_id)
        assert ledger["stuck_on"]["type"] == "order.confirmed"
        assert ledger["stuck_on"]["position"] == str(outbox_id)
        assert "customer_id" in ledger["last_error"]
        assert ledger["position"]["orders"] == outbox_id - 1  # nothing after it was skipped to
        assert ledger["lag"] >= 1
        assert {
            v["name"] for v in ok(await client.get("/v1/orders/subscriptions", headers=ADMIN))
        } == {
            "orders.payments",
            "orders.closing",
        }

        period = ok(await client.get(f"/v1/closing/periods/{MONTH}", headers=FINANCE))
        assert period["status"] == "closing"
        assert str(event_id) in period["problem"] and "closing.ledger" in period["problem"]

        # From now on only a retry request makes the ledger try again soon: wait until it has
        # entered such a long pause, then fix the event.
        worker = worker_of(client, "closing.ledger")
        worker.backoff = Backoff(first=600, most=600)
        attempts = worker.health.attempts
        await eventually(lambda: attempts_of(worker), lambda n: n > attempts, seconds=60)
        async with db.transaction() as session:
            await session.execute(
                text("UPDATE orders.outbox SET payload = CAST(:p AS jsonb) WHERE id = :id"),
                {"p": original, "id": outbox_id},
            )
        assert (await subscription(client, "closing", "closing.ledger"))["state"] == "stuck"

        retried = await client.post("/v1/closing/subscriptions/closing.ledger/retry", headers=ADMIN)
        assert retried.status_code == 202, retried.text
        assert (
            await client.post("/v1/closing/subscriptions/no.such/retry", headers=ADMIN)
        ).status_code == 404
        assert (
            await client.post("/v1/closing/subscriptions/closing.ledger/retry", headers=FINANCE)
        ).status_code == 403

        closed = await eventually(
            lambda: client.get(f"/v1/closing/periods/{MONTH}", headers=FINANCE),
            lambda r: r.json()["status"] == "closed",
            seconds=30,
        )
        assert closed.json()["problem"] is None
        assert closed.json()["control_totals"]["orders"]["invoice"] == {
            "count": 1,
            "amount": "226.00",
        }
        assert await processed(db, "closing", "closing.ledger", event_id)
        # The other readers of the event resume by themselves, on their own backoff.
        await eventually(lambda: client.get("/readyz"), lambda r: r.status_code == 200, seconds=60)
        assert set((await stuck_gauges(client)).values()) == {0}
        ledger = await subscription(client, "closing", "closing.ledger")
        assert ledger["state"] == "running" and ledger["stuck_on"] is None


@pytest.mark.parametrize("transport", ["postgres"], indirect=True)
async def test_the_replica_names_the_amount_it_cannot_read(
    app_client: AppClient, db_url: str, db: Database
) -> None:
    async with app_client(all_modules(), database_url=db_url, run_workers=False) as client:
        customer = ok(await client.post("/v1/customers", json={"name": "Bo"}, headers=SALES), 201)
        body = {"sku": "P1", "name": "Pump", "unit_price": "100.00", "tax_rate": "0.13"}
        ok(await client.post("/v1/products", json=body, headers=SALES), 201)
        order = {
            "customer_id": customer["id"],
            "channel": "pos",
            "lines": [{"sku": "P1", "quantity": "1"}],
        }
        ok(await client.post("/v1/orders", json=order | {"submit": True}, headers=POS), 201)
    async with db.transaction() as session:
        await session.execute(
            text(
                "UPDATE orders.outbox SET payload = jsonb_set(payload, '{data,order,gross}', "
                "'\"1,13\"') WHERE type = 'order.submitted'"
            )
        )
    async with app_client(all_modules(), database_url=db_url) as client:
        await eventually(
            lambda: client.get("/readyz"), lambda r: stuck_on(r, "payments.orders"), seconds=30
        )
        replica = await subscription(client, "payments", "payments.orders")
        assert replica["stuck_on"]["type"] == "order.submitted"
        assert "order.gross is not an amount: '1,13'" in replica["last_error"]


@BOTH_TRANSPORTS
async def test_a_value_the_replica_cannot_hold_sticks_until_the_column_is_widened(
    app_client: AppClient, db_url: str, db: Database, transport: str
) -> None:
    too_long = CustomerCreated(
        customer_id=uuid.uuid4(),
        name="名" * 300,  # the payments replica holds 200 characters
        contact=None,
        region=None,
        segment=None,
        payment_terms_days=30,
        credit_limit=None,
        created_at=datetime.now(UTC),
    )
    after = too_long.model_copy(update={"customer_id": uuid.uuid4(), "name": "Bob Co"})
    events = [
        Event.of(payload, source="orders", key=str(payload.customer_id))
        for payload in (too_long, after)
    ]
    async with app_client(all_modules(), database_url=db_url) as client:
        async with db.transaction() as session:
            await write_to_outbox(session, events)

        ready = await eventually(
            lambda: client.get("/readyz"), lambda r: stuck_on(r, "payments.orders"), seconds=30
        )
        assert str(events[0].event_id) in ready.json()["checks"]["subscription:payments.orders"]
        assert (await stuck_gauges(client))["payments.orders"] == 1
        replica = await subscription(client, "payments", "payments.orders")
        assert replica["transport"] == transport
        assert replica["stuck_on"]["event_id"] == str(events[0].event_id)
        assert replica["stuck_on"]["type"] == "customer.created"
        assert replica["last_error"]
        # Still saying how far behind it is: on Kafka a failed batch rewinds to the committed
        # offsets, which stay the position shown.
        assert replica["lag"] >= 1 and replica["position"], replica
        lags = await gauges_named(client, "salesbook_consumer_lag_events")
        assert lags["payments.orders"] >= 1, lags

        # The fix is a wider column; no request needed, the subscription retries by itself.
        async with db.transaction() as session:
            await session.execute(
                text("ALTER TABLE payments.known_customers ALTER COLUMN name TYPE varchar(400)")
            )
        await eventually(
            lambda: subscription(client, "payments", "payments.orders"),
            lambda v: v["state"] == "running",
            seconds=60,
        )
        for event in events:
            assert await eventually(
                partial(processed, db, "payments", "payments.orders", event.event_id),
                bool,
                seconds=30,
            )
        async with db.sessions() as session:
            names = (
                await session.execute(
                    text("SELECT name FROM payments.known_customers WHERE customer_id IN (:a, :b)"),
                    {"a": too_long.customer_id, "b": after.customer_id},
                )
            ).scalars()
            assert sorted(names) == sorted([too_long.name, after.name])
        assert (await stuck_gauges(client))["payments.orders"] == 0
