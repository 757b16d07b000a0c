"""What happens when the database drops connections: LISTEN comes back, a request answers
503 with Retry-After rather than 500, and workers stop promptly when asked."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from services.registry import all_modules
from shared.app import create_app
from shared.config import Settings
from shared.db import Database, plain_url
from shared.messaging.outbox import NOTIFY_CHANNEL
from shared.messaging.postgres import PostgresSubscriber
from tests.conftest import auth
from tests.messaging.conftest import Harness
from tests.support.stall import StallingProxy
from tests.support.tansu import free_port
from tests.support.waiting import eventually

KEYS = ["cust-a", "cust-b"]


async def listening_backends(db: Database) -> list[int]:
    conn = await asyncpg.connect(db.url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE $1",
            f"LISTEN %{NOTIFY_CHANNEL}%",
        )
        return [row["pid"] for row in rows]
    finally:
        await conn.close()


async def test_listen_is_reestablished_after_the_database_drops_it(
    postgres_harness: Harness,
) -> None:
    harness = postgres_harness
    # A poll interval far beyond the test's waits: an event applied in time was notified.
    worker = PostgresSubscriber(harness.db, harness.subscription(), poll_seconds=600.0)
    harness.start(worker)
    await eventually(lambda: _connects(worker), lambda n: n == 1)
    await harness.publish(KEYS, 2)
    await harness.wait_for_effects(4)

    before = set(await listening_backends(harness.db))
    assert before
    conn = await asyncpg.connect(harness.db.url)
    try:
        for pid in before:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    await eventually(lambda: _connects(worker), lambda n: n == 2)
    assert worker.waker is not None and worker.waker.listening

    await harness.publish(KEYS, 2, first_seq=2)
    await harness.wait_for_effects(8, within=30)


async def _connects(worker: PostgresSubscriber) -> int:
    return worker.waker.connects if worker.waker is not None else 0


async def test_workers_stop_between_batches_without_waiting_for_a_timeout(
    postgres_harness: Harness,
) -> None:
    worker = PostgresSubscriber(
        postgres_harness.db, postgres_harness.subscription(), poll_seconds=600.0
    )
    task = asyncio.create_task(worker.run())
    await eventually(lambda: _connects(worker), lambda n: n == 1)
    worker.stop()
    # Returns by itself, long before its 600 s wait would end: never cancelled.
    await asyncio.wait_for(task, 30)
    assert not task.cancelled() and worker.health.state == "stopped"


@pytest.mark.parametrize("transport", ["postgres"])
async def test_a_request_without_a_database_answers_503_with_retry_after(
    settings: Settings, transport: str
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/salesbook"
    app = create_app(all_modules(), settings=settings, database_url=nowhere, run_workers=False)
    async with app.router.lifespan_context(app):
        asgi = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=asgi, base_url="http://test") as client:
            response = await client.get("/v1/customers", headers=auth("sales"))
            ready = await client.get("/readyz")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["status"] == 503
    assert ready.status_code == 503


async def test_a_request_whose_backend_is_terminated_answers_503(
    migrated: str, pg_server: str, settings: Settings
) -> None:
    app = create_app(all_modules(), settings=settings, database_url=migrated, run_workers=False)
    async with app.router.lifespan_context(app):
        asgi = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=asgi, base_url="http://test") as client:
            assert (await client.get("/v1/customers", headers=auth("sales"))).status_code == 200
            db: Database = app.state.db
            # Every pooled connection's backend goes, and the server refuses new ones to
            # this database for the duration of the request.
            name = db.engine.url.database
            conn = await asyncpg.connect(plain_url(pg_server))
            try:
                await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                try:
                    await conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = $1 AND pid <> pg_backend_pid()",
                        name,
                    )
                    response = await client.get("/v1/customers", headers=auth("sales"))
                finally:
                    await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            finally:
                await conn.close()
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"]
            assert (await client.get("/v1/customers", headers=auth("sales"))).status_code == 200


async def test_readiness_says_so_while_the_database_does_not_answer(
    migrated: str, settings: Settings
) -> None:
    """A database that hangs (stopped, or cut off by the network) rather than refusing: the
    readiness probe answers 503 naming the database instead of waiting with it."""
    url = make_url(migrated)
    socket_dir = url.query.get("host")
    target = (
        f"{socket_dir}/.s.PGSQL.{url.port or 5432}"
        if isinstance(socket_dir, str)
        else url.host or "127.0.0.1"
    )
    async with StallingProxy(target, url.port or 5432).running() as proxy:
        through = url.difference_update_query(["host"]).set(host="127.0.0.1", port=proxy.port)
        through_url = through.render_as_string(hide_password=False)
        app = create_app(
            all_modules(), settings=settings, database_url=through_url, run_workers=False
        )
        async with app.router.lifespan_context(app):
            asgi = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=asgi, base_url="http://test") as client:
                first = await client.get("/readyz")
                assert first.status_code == 200, first.text
                proxy.stall()
                try:
                    async with asyncio.timeout(60):  # a guard against hanging, not a measure
                        stalled = await client.get("/readyz")
                finally:
                    proxy.flow()
                assert stalled.status_code == 503, stalled.text
                assert stalled.json()["checks"]["database"].startswith("unavailable")
                await eventually(
                    lambda: client.get("/readyz"), lambda answer: answer.status_code == 200
                )
