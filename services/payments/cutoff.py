"""The payments side of the month-end close: lock periods and report control totals."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select, union
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.payments.models import SCHEMA, Payment, PeriodLock, Refund, ReopenedPeriod
from shared.cutoff import PeriodGuard, cutoff_subscription
from shared.events.closing import ControlTotal
from shared.tables import table_of


async def control_totals(session: AsyncSession, period: str) -> dict[str, ControlTotal]:
    """Count and sum of payments and refunds dated into the period."""
    totals = {}
    for kind, table in (("payment", Payment), ("refund", Refund)):
        count, amount = (
            await session.execute(
                select(func.count(), func.coalesce(func.sum(col(table.amount)), 0)).where(
                    col(table.period) == period
                )
            )
        ).one()
        totals[kind] = ControlTotal(count=count, amount=Decimal(amount))
    return totals


async def periods_before(session: AsyncSession, period: str) -> list[str]:
    """The periods before `period` that hold payments or refunds."""
    rows = await session.execute(
        union(
            select(col(Payment.period)).where(col(Payment.period) < period),
            select(col(Refund.period)).where(col(Refund.period) < period),
        )
    )
    return list(rows.scalars())


GUARD = PeriodGuard(schema=SCHEMA, locks=table_of(PeriodLock), reopened=table_of(ReopenedPeriod))
"""This service's locks on periods: documents are dated only into a period they leave open."""

subscription = cutoff_subscription(
    GUARD,
    totals_of=control_totals,
    periods_before=periods_before,
)
