"""The payments side of the month-end close: lock periods and report control totals."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from services.payments.models import SCHEMA, Payment, PeriodLock, Refund
from shared.cutoff import apply_cutoff, lift_cutoff
from shared.events.closing import ControlTotal, PeriodCloseRequested
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


async def periods_before(session: AsyncSession, period: str) -> list[str]:
    """The periods before `period` that hold payments or refunds."""
    rows = await session.execute(
        union(
            select(Payment.period).where(Payment.period < period),
            select(Refund.period).where(Refund.period < period),
        )
    )
    return list(rows.scalars())


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
            periods_before=periods_before,
        )
    elif event.type in ("period.reopened", "period.close_aborted"):
        await lift_cutoff(session, locks=locks, period=event.data["period"])
