"""Async engine, sessions, and the rule that the caller's session owns the transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.messaging.outbox import flush_outbox

Row = TypeVar("Row")


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


class Database:
    """An engine and a session factory for one PostgreSQL database."""

    def __init__(
        self, url: str, *, pool_size: int = 10, max_overflow: int = 20, echo: bool = False
    ) -> None:
        self.url = plain_url(url)
        # At most pool_size + max_overflow connections: the budget the README's deployment
        # arithmetic (and the compose file's max_connections) counts on.
        self.engine: AsyncEngine = create_async_engine(
            async_url(url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            echo=echo,
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits the change and the events it raised together, or neither."""
        async with self.sessions() as session:
            try:
                yield session
                await flush_outbox(session)
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()


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
