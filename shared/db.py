"""Async engine, sessions, and the rule that the caller's session owns the transaction."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from fastapi import Request
from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.messaging.outbox import flush_outbox

Row = TypeVar("Row")
AfterCommit = Callable[["Database"], Awaitable[None]]

log = logging.getLogger("salesbook.db")

_AFTER_COMMIT = "after_commit"


def async_url(url: str) -> str:
    """The SQLAlchemy asyncpg form of a plain postgresql:// URL."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


def plain_url(url: str) -> str:
    """The libpq form (postgresql://) of a URL, for asyncpg.connect and pg_dump."""
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def _replace_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pool checkout: a connection asyncpg already knows is closed (the server ended it
    while it sat in the pool) is discarded and another one taken, without a round trip."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


class Database:
    """An engine and a session factory for one PostgreSQL database."""

    def __init__(
        self, url: str, *, pool_size: int = 10, max_overflow: int = 20, echo: bool = False
    ) -> None:
        self.url = plain_url(url)
        # At most pool_size + max_overflow connections: the budget the README's deployment
        # arithmetic (and the compose file's max_connections) counts on. No pre-ping: it costs
        # three round trips (BEGIN, a ping, ROLLBACK) on every checkout. A connection the
        # driver saw close while pooled is replaced at checkout (see _replace_closed); one the
        # server dropped unnoticed fails its first statement instead, that request answers
        # 503 (shared/errors.py) and SQLAlchemy discards every connection pooled before it.
        self.engine: AsyncEngine = create_async_engine(
            async_url(url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=False,
            echo=echo,
        )
        event.listen(self.engine.sync_engine, "checkout", _replace_closed)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits the change and the events it raised together, or neither.
        Then, with the session closed (its connection back in the pool), what `after_commit`
        asked to run."""
        async with self.sessions() as session:
            try:
                yield session
                await flush_outbox(session)
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            waits = session.info.pop(_AFTER_COMMIT, [])
        for then in waits:
            try:
                await then(self)
            except Exception:  # the change has committed: the caller must learn that
                log.exception("a wait after a commit failed; answering without it")

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        """A pooled connection, outside any transaction (each statement commits as it ends),
        given back when the block ends."""
        async with self.engine.connect() as connection:
            adapted = (await connection.get_raw_connection()).dbapi_connection
            driver: asyncpg.Connection[Any] = adapted.driver_connection  # type: ignore[union-attr]  # asyncpg adapter
            yield driver

    async def fetchval(self, query: str, *args: Any) -> Any:
        """One statement outside any transaction, on a pooled connection taken for it alone."""
        async with self.connection() as driver:
            return await driver.fetchval(query, *args)

    async def dispose(self) -> None:
        await self.engine.dispose()


def after_commit(session: AsyncSession, then: AfterCommit) -> None:
    """Run `then(database)` once the session's transaction has committed (not if it rolls
    back), and before the request that began it answers: to wait (a bounded time) for what
    another service does with the change, so the client's next read finds it done. `then`
    holds no connection of the request's; what it raises is logged, not answered, since the
    change has committed."""
    session.info.setdefault(_AFTER_COMMIT, []).append(then)


async def raw_connection(session: AsyncSession) -> asyncpg.Connection[Any]:
    """The asyncpg connection under the session, as it is: inside the session's transaction
    if one has begun, else in autocommit, where each statement commits as it ends.

    For a hot path whose change is one statement: committing with the statement, it holds
    its locks for no longer than the statement runs. `driver_connection` begins the
    session's transaction on it later, if the path turns out to need one.
    """
    connection = await session.connection()
    adapted = (await connection.get_raw_connection()).dbapi_connection
    driver: asyncpg.Connection[Any] = adapted.driver_connection  # type: ignore[union-attr]  # asyncpg adapter
    return driver


async def driver_connection(session: AsyncSession) -> asyncpg.Connection[Any]:
    """The asyncpg connection under the session, inside the session's transaction.

    For a hot path that writes in a few hand-written statements: what it executes here
    commits or rolls back with everything else the session does, but skips SQLAlchemy's
    compilation and result processing (about half a millisecond of CPU a statement).
    """
    connection = await session.connection()
    adapted = (await connection.get_raw_connection()).dbapi_connection
    if getattr(adapted, "_transaction", True) is None:
        # SQLAlchemy begins the transaction lazily, with its first statement: begin it as
        # that statement would, so COMMIT and ROLLBACK of the session apply to ours.
        await adapted._start_transaction()  # type: ignore[union-attr]  # asyncpg adapter
    driver: asyncpg.Connection[Any] = adapted.driver_connection  # type: ignore[union-attr]  # asyncpg adapter
    if not driver.is_in_transaction():
        # A SQLAlchemy without that hook: one statement of its own begins it.
        await session.execute(text("SELECT 1"))
    return driver


async def lock_or_404(
    session: AsyncSession, model: type[Row], key: Any, *, missing: Exception
) -> Row:
    """The row of `model` with primary key `key`, read afresh and locked (SELECT … FOR
    UPDATE) until the transaction ends, so concurrent changes to it queue; `missing` (a
    NotFound) when there is none."""
    row = await session.get(model, key, with_for_update=True, populate_existing=True)
    if row is None:
        raise missing
    return row


def database_of(request: Request) -> Database:
    return request.app.state.db


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: the request's session, committed when the route returns normally.

    Use it with `Depends(request_session, scope="function")` so the commit happens before the
    response is sent: a client never sees success for a change that did not commit.
    """
    async with database_of(request).transaction() as session:
        session.info["request_id"] = getattr(request.state, "request_id", None)
        yield session
