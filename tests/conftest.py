"""Session-wide real servers: one PostgreSQL database, migrated once for every service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.registry import all_modules, migration_targets
from shared.app import ServiceModule, create_app
from shared.auth import Role, issue_token
from shared.config import Settings
from shared.db import Database
from shared.migrations import upgrade
from tests.support.database import fresh_database, postgres_server
from tests.support.tansu import tansu_broker

TEST_SECRET = "test-secret-key-for-salesbook-tests"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def database_url(pg_server: str) -> Iterator[str]:
    with fresh_database(pg_server) as url:
        yield url


async def migrate_all(database_url: str) -> str:
    db = Database(database_url)
    try:
        await upgrade(db, migration_targets(all_modules()))
    finally:
        await db.dispose()
    return database_url


@pytest.fixture(scope="session")
async def migrated(database_url: str) -> str:
    return await migrate_all(database_url)


@pytest.fixture(scope="module")
def own_database(pg_server: str) -> Iterator[str]:
    """A database of the module's own, for tests that change global state such as closing
    periods; migrate it with `migrate_all`."""
    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture
def scratch_database(pg_server: str) -> Iterator[str]:
    """A database of the test's own, not migrated: for tests that move migrations."""
    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture(scope="module")
def kafka_bootstrap() -> Iterator[str]:
    """A Kafka-protocol broker (Tansu, in memory) of the test module's own, started on first
    use: a broker shared across modules has delivered one module's records to another's
    topics (docs/tansu.md), and a module's closed periods must not reach the next one."""
    with tansu_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        secret_key=TEST_SECRET,
        data_dir=tmp_path,
        consumer_poll_seconds=0.2,
        _env_file=None,
    )


def kafka_settings(base: Settings, bootstrap: str, database_url: str) -> Settings:
    """The same settings on the kafka transport, with topics of this database's own: several
    test databases share one broker, and each relays its own outboxes."""
    name = database_url.rsplit("/", 1)[-1].split("?")[0]
    return base.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "transport": "kafka",
            "kafka_topic_prefix": f"salesbook.{name}.",
            "kafka_session_timeout_ms": 2000,
            "kafka_heartbeat_interval_ms": 500,
        }
    )


@pytest.fixture(params=["postgres"])
def transport(request: pytest.FixtureRequest) -> str:
    """The event transport of a test's app; parametrize indirectly to run on kafka too."""
    return request.param


async def _kafka_workers_ready(app: FastAPI, seconds: float = 30.0) -> None:
    """Wait until every relay and subscriber has reached the broker (consumer groups take a
    moment to join), so a test's first event is not measured against that start-up."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + seconds
    while not all(w.ready() for w in app.state.workers if hasattr(w, "ready")):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("kafka workers did not become ready")
        await asyncio.sleep(0.05)


BOTH_TRANSPORTS = pytest.mark.parametrize("transport", ["postgres", "kafka"], indirect=True)
"""Runs a test once on each event transport."""


def token(role: Role | str, subject: str = "tester") -> str:
    from datetime import timedelta

    return issue_token(secret=TEST_SECRET, subject=subject, role=Role(role), ttl=timedelta(hours=1))


def auth(role: Role | str, subject: str = "tester") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, subject)}"}


class AppHttpClient(httpx.AsyncClient):
    """A client of one app, which it keeps at hand (tests override its dependencies)."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(transport=httpx.ASGITransport(app=app), base_url="http://test")
        self.app = app


AppClient = Callable[..., AbstractAsyncContextManager[AppHttpClient]]


@asynccontextmanager
async def serving(
    modules: list[ServiceModule], *, database_url: str, data_dir: Path
) -> AsyncIterator[AppHttpClient]:
    """An app of `modules` with its consumers running, for a module or session of tests that
    share it (each works on customers and documents of its own)."""
    settings = Settings(
        secret_key=TEST_SECRET,
        data_dir=data_dir,
        consumer_poll_seconds=0.2,
        _env_file=None,
    )
    app = create_app(modules, settings=settings, database_url=database_url)
    async with app.router.lifespan_context(app):
        async with AppHttpClient(app) as client:
            yield client


@pytest.fixture
def app_client(
    migrated: str, settings: Settings, transport: str, request: pytest.FixtureRequest
) -> AppClient:
    """Start an app (lifespan and workers included) and talk to it over ASGI."""

    @asynccontextmanager
    async def start(
        modules: list[ServiceModule] | None = None,
        *,
        run_workers: bool = True,
        settings_override: Settings | None = None,
        database_url: str | None = None,
    ) -> AsyncIterator[AppHttpClient]:
        url = database_url or migrated
        chosen = settings_override or settings
        if transport == "kafka":
            chosen = kafka_settings(chosen, request.getfixturevalue("kafka_bootstrap"), url)
        app: FastAPI = create_app(
            modules or all_modules(),
            settings=chosen,
            database_url=url,
            run_workers=run_workers,
        )
        async with app.router.lifespan_context(app):
            if transport == "kafka":
                await _kafka_workers_ready(app)
            async with AppHttpClient(app) as client:
                yield client

    return start
