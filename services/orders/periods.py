"""Business dates and accounting periods: which dates an orders document may carry.

A document is dated today (in the business time zone) unless the caller passes an earlier
date; never a future one, and never one in a period locked by the month-end close.

Race with the close: every document takes the period's advisory lock shared before checking
`period_locks` and holds it until commit; the close's cutoff (shared/cutoff.py) takes it
exclusively, so it waits for documents already being written into the period, and every
later document sees the lock row. No document slips in after the cutoff.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.models import SCHEMA, PeriodLock, utcnow
from shared import periods
from shared.config import Settings
from shared.errors import InvalidInput, PeriodLocked
from shared.events.envelope import period_of


def period_bounds(period: str) -> tuple[date, date]:
    """The first day of a YYYY-MM period and the first day after it."""
    first = date(int(period[:4]), int(period[5:7]), 1)
    return first, date(first.year + first.month // 12, first.month % 12 + 1, 1)


def today(settings: Settings) -> date:
    """The current date in the business time zone."""
    return periods.today(settings.zone)


async def document_date(
    session: AsyncSession, requested: date | None, *, settings: Settings, field: str
) -> date:
    """The business date of a document being written now: `requested` or today, checked to
    be neither future (422) nor in a locked period (409)."""
    if requested is not None and requested > today(settings):
        raise InvalidInput(field, f"{requested.isoformat()} is in the future; only earlier dates")
    day = requested or today(settings)
    await ensure_open(session, day, field=field)
    return day


async def ensure_open(session: AsyncSession, day: date, *, field: str) -> None:
    """Refuse (409) a document dated into a locked period; hold the period open until commit."""
    period = period_of(day)
    await session.execute(
        select(
            func.pg_advisory_xact_lock_shared(
                func.hashtext(periods.period_lock_key(SCHEMA, period))
            )
        )
    )
    if await session.get(PeriodLock, period, populate_existing=True) is not None:
        raise PeriodLocked(
            f"period {period} is closed to new documents (its month-end close has begun); "
            f"{field} {day.isoformat()} cannot be used, date the document into a later period",
            field=field,
            period=period,
        )


async def lock_period(session: AsyncSession, *, period: str, by: str | None = None) -> None:
    """Close `period` to new documents, after every document already being written into it."""
    await session.execute(
        select(func.pg_advisory_xact_lock(func.hashtext(periods.period_lock_key(SCHEMA, period))))
    )
    await session.execute(
        insert(PeriodLock)
        .values(period=period, locked_by=by, locked_at=utcnow())
        .on_conflict_do_nothing()
    )


async def unlock_period(session: AsyncSession, *, period: str) -> None:
    """Open `period` to documents again (a reopen)."""
    await session.execute(PeriodLock.__table__.delete().where(PeriodLock.period == period))  # type: ignore[attr-defined]
