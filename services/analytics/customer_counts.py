"""Counts of customers kept up to date as events arrive, so that KPIs read them instead of
counting customers within a request: first orders per day (customers ever, up to a day) and
new customers per month. (Active customers per month move with the customer-month rows:
see `_flush_customer_activity` in handlers.)

A customer is new in the month of their first order if they have a kept order (one no
cancellation took back on its day) in that month. Both counts are taken for the customers
a batch touches before and after it is applied; the difference moves the counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.analytics.models import FIRST_ORDERS_BY_DAY, NEW_CUSTOMERS_BY_MONTH, SCHEMA
from shared.bulk import insert_rows


@dataclass(frozen=True)
class Firsts:
    """Of some customers: the day of each one's first order, and the month (its first day)
    in which each counts as new, for those who count as new at all."""

    first_order_on: dict[UUID, date]
    new_in: dict[UUID, date]


_FIRSTS = text(
    f"""
    SELECT c.customer_id, c.first_order_on, m.day AS new_in
    FROM {SCHEMA}.customers c
    LEFT JOIN {SCHEMA}.customer_months m
      ON m.customer_id = c.customer_id
     AND m.day = CAST(date_trunc('month', c.first_order_on) AS date)
     AND m.kept_orders > 0
    WHERE c.customer_id = ANY(CAST(:ids AS uuid[])) AND c.first_order_on IS NOT NULL
    """
)


async def firsts(session: AsyncSession, customer_ids: Iterable[UUID]) -> Firsts:
    ids = sorted(set(customer_ids))
    if not ids:
        return Firsts({}, {})
    rows = (await session.execute(_FIRSTS, {"ids": ids})).all()
    return Firsts(
        first_order_on={cid: first for cid, first, _ in rows},
        new_in={cid: month for cid, _, month in rows if month is not None},
    )


async def move_counters(session: AsyncSession, before: Firsts, after: Firsts) -> None:
    """Add to the counters what changed between two readings of the same customers."""
    for table, now, then in (
        (FIRST_ORDERS_BY_DAY, after.first_order_on, before.first_order_on),
        (NEW_CUSTOMERS_BY_MONTH, after.new_in, before.new_in),
    ):
        change = Counter(now.values())
        change.subtract(then.values())
        await insert_rows(
            session,
            table,
            [{"day": day, "customers": n} for day, n in sorted(change.items()) if n],
            suffix="ON CONFLICT (day) DO UPDATE SET customers = cur.customers + EXCLUDED.customers",
        )
