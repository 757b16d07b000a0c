"""Reading a database the way the tests compare them: every row of every service table."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from services.registry import SERVICES
from shared.db import plain_url


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(plain_url(url))
        try:
            if args or sql.lstrip().upper().startswith("SELECT"):
                return [tuple(row) for row in await conn.fetch(sql, *args)]
            await conn.execute(sql)  # several statements are allowed here
            return []
        finally:
            await conn.close()

    return asyncio.run(run())


def snapshot(url: str) -> dict[str, Any]:
    """Every row of every table in the service schemas, and where each sequence stands."""
    tables = query(
        url,
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema = ANY($1::text[]) AND table_type = 'BASE TABLE' ORDER BY 1, 2",
        list(SERVICES),
    )
    contents: dict[str, Any] = {}
    for schema, table in tables:
        rows = query(url, f'SELECT to_jsonb(t)::text FROM "{schema}"."{table}" t ORDER BY 1')
        contents[f"{schema}.{table}"] = [row[0] for row in rows]
    contents["sequences"] = query(
        url,
        "SELECT schemaname, sequencename, last_value FROM pg_sequences "
        "WHERE schemaname = ANY($1::text[]) ORDER BY 1, 2",
        list(SERVICES),
    )
    return contents
