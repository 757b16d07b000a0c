"""The payments side of the month-end close: lock periods and report control totals."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select, union
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.payments import replica
from services.payments.models import SCHEMA, Payment, PeriodLock, Refund, ReopenedPeriod
from shared.cutoff import PeriodGuard, cutoff_subscription
from shared.db import raw_connection
from shared.events.closing import ControlTotal
from shared.messaging.postgres import TRANSPORT, wait_for_head
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

REPLICA_WAIT_SECONDS = 2.0


async def replica_caught_up(session: AsyncSession) -> None:
    """Before the period is cut off here: the order events committed so far are applied to
    the replica, so the releases a cancellation or a credit note of a paid order made a
    moment before the close causes are written (dated into the period) before the cutoff,
    not after it into the next one. Bounded; on the postgres transport, which reads the
    orders outbox (on Kafka the replica is taken as it is)."""
    if session.info.get(TRANSPORT) != "postgres":
        return
    await wait_for_head(
        await raw_connection(session),
        schema=SCHEMA,
        consumer=replica.SUBSCRIPTION,
        source=replica.SOURCE,
        seconds=REPLICA_WAIT_SECONDS,
        why="the payments cutoff",
    )


subscription = cutoff_subscription(
    GUARD,
    totals_of=control_totals,
    periods_before=periods_before,
    before_cutoff=replica_caught_up,
)
