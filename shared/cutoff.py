"""A source's half of the close protocol: lock the period and report its control totals.

Orders and payments both answer `period.close_requested` with `apply_cutoff` and
`period.reopened` with `lift_cutoff`; each passes its own lock table and totals query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.closing import CONTROL_KEY, ControlTotal, PeriodCutoff
from shared.messaging.outbox import emit
from shared.periods import period_lock_key

ControlTotals = Callable[[AsyncSession, str], Awaitable[dict[str, ControlTotal]]]


async def apply_cutoff(
    session: AsyncSession,
    *,
    schema: str,
    locks: Table,
    period: str,
    close_id: UUID,
    totals_of: ControlTotals,
) -> None:
    """Lock `period` at this source and emit `period.cutoff`, in the caller's transaction.

    The exclusive advisory lock waits for every in-flight document of the period (writers
    hold it shared), so the totals counted here are final: later writers see the lock row.
    """
    await session.execute(
        select(func.pg_advisory_xact_lock(func.hashtext(period_lock_key(schema, period))))
    )
    now = datetime.now(UTC)
    await session.execute(
        insert(locks).values(period=period, locked_at=now).on_conflict_do_nothing()
    )
    emit(
        session,
        PeriodCutoff(
            period=period,
            close_id=close_id,
            source=schema,
            control_totals=await totals_of(session, period),
            locked_at=now,
        ),
        source=schema,
        key=CONTROL_KEY,
    )


async def lift_cutoff(session: AsyncSession, *, locks: Table, period: str) -> None:
    """Unlock a reopened period: documents may be dated into it again."""
    await session.execute(locks.delete().where(locks.c.period == period))
