"""Gapless document numbers per prefix and year (SO-2026-000001, INV-2026-000001, ...)."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.tables import common_tables


async def next_number(session: AsyncSession, *, schema: str, prefix: str, year: int) -> str:
    """Take the next number in the caller's transaction.

    The counter row stays locked until that transaction ends, so concurrent callers queue
    behind it and a rollback gives the number back: numbers are gapless.
    """
    table = common_tables(schema).document_numbers
    stmt = (
        insert(table)
        .values(prefix=prefix, year=year, last=1)
        .on_conflict_do_update(
            index_elements=[table.c.prefix, table.c.year], set_={"last": table.c.last + 1}
        )
        .returning(table.c.last)
    )
    last = (await session.execute(stmt)).scalar_one()
    return f"{prefix}-{year}-{last:06d}"
