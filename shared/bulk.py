"""Bulk inserts for the hot paths: one `INSERT ... SELECT FROM unnest(...)` statement with
one array parameter per column, whatever the number of rows. Compiling a multi-row VALUES
statement costs far more than running it; this statement text is the same for every batch,
so the driver prepares it once."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Enum, Float, Numeric, Result, String, Table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

_DIALECT = postgresql.dialect()


@cache
def _statement(table: Table, columns: tuple[str, ...], suffix: str) -> Any:
    names = ", ".join(columns)
    casts, picks = [], []
    for i, name in enumerate(columns):
        column_type = table.c[name].type
        if isinstance(column_type, JSONB):
            casts.append(f"CAST(:p{i} AS text[])")
            picks.append(f"CAST({name} AS jsonb)")
        elif _as_text(column_type):
            # Decimals travel as text: asyncpg takes four times as long to encode one in
            # binary as str() takes, and the server reads the text as exactly.
            casts.append(f"CAST(:p{i} AS text[])")
            picks.append(f"CAST({name} AS {column_type.compile(dialect=_DIALECT)})")
        elif isinstance(column_type, String) and not isinstance(column_type, Enum):
            # As text: a cast to VARCHAR(n) would cut a longer value short, where assigning
            # text to the column refuses it.
            casts.append(f"CAST(:p{i} AS text[])")
            picks.append(name)
        else:
            casts.append(f"CAST(:p{i} AS {column_type.compile(dialect=_DIALECT)}[])")
            picks.append(name)
    target = f"{table.schema}.{table.name}" if table.schema else table.name
    return text(
        f"INSERT INTO {target} AS cur ({names}) SELECT {', '.join(picks)} "
        f"FROM unnest({', '.join(casts)}) AS t({names}) {suffix}"
    )


def _as_text(column_type: Any) -> bool:
    return isinstance(column_type, Numeric) and not isinstance(column_type, Float)


async def insert_rows(
    session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], *, suffix: str = ""
) -> Result[Any] | None:
    """Insert rows (all with the same keys); `suffix` may add ON CONFLICT and RETURNING.

    In an ON CONFLICT ... DO UPDATE suffix, `cur` names the existing row.
    """
    if not rows:
        return None
    columns = tuple(rows[0])
    params = {}
    for i, name in enumerate(columns):
        values = [row[name] for row in rows]
        column_type = table.c[name].type
        if isinstance(column_type, JSONB):
            values = [None if v is None else json.dumps(v) for v in values]
        elif _as_text(column_type):
            values = [None if v is None else str(v) for v in values]
        params[f"p{i}"] = values
    return await session.execute(_statement(table, columns, suffix), params)


def add_to(columns: Sequence[str]) -> str:
    """`SET c = cur.c + EXCLUDED.c` for running totals."""
    return ", ".join(f"{c} = cur.{c} + EXCLUDED.{c}" for c in columns)
