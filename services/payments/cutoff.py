"""The payments side of the month-end close: lock periods and report control totals."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments.models import SCHEMA, Payment, PeriodLock, Refund
from shared.cutoff import apply_cutoff, lift_cutoff
from shared.events.closing import ControlTotal, PeriodCloseRequested, PeriodReopened
from shared.events.envelope import Event


async def control_totals(session: AsyncSession, period: str) -> dict[str, ControlTotal]:
    """Count and sum of payments and refunds dated into the period."""
    totals = {}
    for kind, table in (("payment", Payment), ("refund", Refund)):
        count, amount = (
            await session.execute(
                select(func.count(), func.coalesce(func.sum(table.amount), 0)).where(
                    table.period == period
                )
            )
        ).one()
        totals[kind] = ControlTotal(count=count, amount=Decimal(amount))
    return totals


async def on_closing_event(session: AsyncSession, event: Event) -> None:
    locks = PeriodLock.__table__  # type: ignore[attr-defined]
    if event.type == "period.close_requested":
        request = PeriodCloseRequested.model_validate(event.data)
        await apply_cutoff(
            session,
            schema=SCHEMA,
            locks=locks,
            period=request.period,
            close_id=request.close_id,
            totals_of=control_totals,
        )
    elif event.type == "period.reopened":
        reopened = PeriodReopened.model_validate(event.data)
        await lift_cutoff(session, locks=locks, period=reopened.period)
