"""The orders side of the month-end close: lock a period and report its control totals.

Control totals count what the closing ledger counts from our events, by business date:
`invoice` (confirmed orders' gross), `credit_note` (credit notes' gross) and `cancellation`
(the gross a cancelled confirmed order reversed, dated on the cancellation).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.orders.models import SCHEMA, CreditNote, Order, PeriodLock, ReopenedPeriod
from shared.cutoff import PeriodGuard, cutoff_subscription
from shared.events.closing import ControlTotal
from shared.periods import Period
from shared.tables import table_of


def _documents() -> list[tuple[str, Any, Any, ColumnElement[bool]]]:
    """Each kind: (name, its date column, its amount column, which rows are such documents)."""
    return [
        (
            "invoice",
            col(Order.business_date),
            col(Order.gross),
            col(Order.invoice_number).is_not(None),
        ),
        (
            "credit_note",
            col(CreditNote.business_date),
            col(CreditNote.gross),
            col(CreditNote.id).is_not(None),
        ),
        (
            "cancellation",
            col(Order.cancelled_on),
            col(Order.reversed_gross),
            col(Order.invoice_number).is_not(None) & col(Order.cancelled_on).is_not(None),
        ),
    ]


async def control_totals(session: AsyncSession, period: str) -> dict[str, ControlTotal]:
    """Count and sum of each kind of document dated into the period."""
    first, after = Period.parse(period).bounds()
    totals = {}
    for kind, day, amount, which in _documents():
        count, total = (
            await session.execute(
                select(func.count(), func.coalesce(func.sum(amount), 0)).where(
                    which, day >= first, day < after
                )
            )
        ).one()
        totals[kind] = ControlTotal(count=count, amount=Decimal(total))
    return totals


async def periods_before(session: AsyncSession, period: str) -> list[str]:
    """The periods before `period` in which this service holds documents."""
    first = Period.parse(period).first_day
    rows = await session.execute(
        union(
            *(
                select(func.to_char(day, "YYYY-MM")).where(which, day < first)
                for _, day, _, which in _documents()
            )
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
