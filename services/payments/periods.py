"""Period locks as the payments service keeps them (set and cleared by the close protocol)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments.models import SCHEMA, PeriodLock
from shared.periods import ensure_open, period_lock_key


async def ensure_period_open(session: AsyncSession, period: str) -> None:
    """409 when the period is locked; otherwise hold its shared lock until commit."""
    await session.execute(
        select(func.pg_advisory_xact_lock_shared(func.hashtext(period_lock_key(SCHEMA, period))))
    )
    locked = await session.get(PeriodLock, period)
    ensure_open(period, locked is not None)
