"""A closed version's balances, written in one statement: per customer, the previous close's
closing balance as opening plus the period's running activity (no document is read again),
aged at period end.

Ageing: per invoice, allocated payments pay its instalments oldest first and credit notes or
cancellations take back its newest; whatever credit a customer has beyond that (unallocated
payments) pays the remaining instalments oldest first. The buckets of a customer always add
up to the closing balance; a customer in credit has no ageing.

The ageing is one pass over the debtors' instalments and one hash aggregate, with no sort:
each instalment row carries `upto` (its invoice's instalments summed up to and including it,
written when the invoice is posted), which places allocations and credits on it by
arithmetic alone; and since buckets follow due dates, paying the oldest instalments first
with a customer's spare credit is the same as paying the oldest buckets first. Each row is
written once, aged: updating a hundred thousand fresh rows afterwards costs more than
computing them.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_WRITE = text(
    """
    WITH balances AS (
        SELECT COALESCE(a.customer_id, b.customer_id) AS customer_id,
               COALESCE(b.closing, 0) AS opening,
               COALESCE(a.invoiced, 0) AS invoiced, COALESCE(a.returned, 0) AS returned,
               COALESCE(a.received, 0) AS received, COALESCE(a.refunded, 0) AS refunded,
               COALESCE(b.closing, 0) + COALESCE(a.invoiced, 0) - COALESCE(a.returned, 0)
                   - COALESCE(a.received, 0) + COALESCE(a.refunded, 0) AS closing
          FROM (SELECT * FROM closing.customer_activity WHERE period = :period) a
          FULL JOIN (SELECT customer_id, closing FROM closing.closed_balances
                      WHERE period = :prev AND version = :prev_version) b
            ON a.customer_id = b.customer_id
    ), debtors AS (
        SELECT customer_id, closing FROM balances WHERE closing > 0
    ), moved AS (
        SELECT m.order_id,
               COALESCE(SUM(m.amount) FILTER (WHERE m.kind = 'credit'), 0) AS credited,
               COALESCE(SUM(m.amount) FILTER (WHERE m.kind = 'allocation'), 0) AS allocated
          FROM closing.invoice_movements m JOIN debtors d USING (customer_id)
         WHERE m.business_date <= CAST(:end AS date)
         GROUP BY m.order_id
    ), remaining AS (
        -- most instalments have no movement at all: open is the amount, no arithmetic
        SELECT i.customer_id, CAST(:end AS date) - i.due_date AS days_late,
               CASE WHEN m.order_id IS NULL THEN i.amount
                    ELSE GREATEST(0, i.amount
                        - LEAST(i.amount, GREATEST(0,
                              GREATEST(LEAST(m.allocated, i.gross), 0) - (i.upto - i.amount)))
                        - LEAST(i.amount, GREATEST(0, m.credited - (i.gross - i.upto))))
               END AS open
          FROM closing.invoice_instalments i
          JOIN debtors d USING (customer_id)
          LEFT JOIN moved m USING (order_id)
         WHERE i.business_date <= CAST(:end AS date)
    ), buckets AS (
        SELECT customer_id,
               SUM(open) AS total,
               COALESCE(SUM(open) FILTER (WHERE days_late BETWEEN 1 AND 30), 0) AS d1_30,
               COALESCE(SUM(open) FILTER (WHERE days_late BETWEEN 31 AND 60), 0) AS d31_60,
               COALESCE(SUM(open) FILTER (WHERE days_late BETWEEN 61 AND 90), 0) AS d61_90,
               COALESCE(SUM(open) FILTER (WHERE days_late > 90), 0) AS over_90
          FROM remaining GROUP BY customer_id
    ), spare AS (
        SELECT b.*, b.total - b.d1_30 - b.d31_60 - b.d61_90 - b.over_90 AS current,
               GREATEST(0, b.total - d.closing) AS credit
          FROM buckets b JOIN debtors d USING (customer_id)
    ), aged AS (
        SELECT customer_id, total - LEAST(total, credit) AS total,
               over_90 - LEAST(over_90, credit) AS over_90,
               d61_90 - LEAST(d61_90, GREATEST(0, credit - over_90)) AS d61_90,
               d31_60 - LEAST(d31_60, GREATEST(0, credit - over_90 - d61_90)) AS d31_60,
               d1_30 - LEAST(d1_30, GREATEST(0, credit - over_90 - d61_90 - d31_60)) AS d1_30,
               current - LEAST(current,
                               GREATEST(0, credit - over_90 - d61_90 - d31_60 - d1_30))
                   AS current
          FROM spare
    )
    INSERT INTO closing.closed_balances
        (period, version, customer_id, opening, invoiced, returned, received, refunded,
         closing, current, d1_30, d31_60, d61_90, over_90)
    SELECT :period, :version, b.customer_id, b.opening, b.invoiced, b.returned, b.received,
           b.refunded, b.closing,
           -- what no open instalment explains (a debtor without any) counts as current
           GREATEST(b.closing, 0) - COALESCE(a.total, 0) + COALESCE(a.current, 0),
           COALESCE(a.d1_30, 0), COALESCE(a.d31_60, 0), COALESCE(a.d61_90, 0),
           COALESCE(a.over_90, 0)
      FROM balances b LEFT JOIN aged a USING (customer_id)
    """
)


async def write_closed_balances(
    session: AsyncSession,
    *,
    period: str,
    version: int,
    end: date,
    previous: tuple[str, int] | None,
) -> None:
    """Write every customer's balances and ageing for one version of a period ending `end`;
    `previous` is the (period, version) whose closing balances open this one."""
    prev_period, prev_version = previous or ("", 0)
    # A statement over every customer and every open instalment: nested loops are never
    # right for it, and one stale estimate (a default 200 groups for a freshly loaded
    # table, say) would have the planner pair 100,000 debtors with 100,000 groups. Compiling
    # it to machine code costs more than it saves.
    await session.execute(text("SET LOCAL enable_nestloop = off"))
    await session.execute(text("SET LOCAL jit = off"))
    await session.execute(text("SET LOCAL work_mem = '256MB'"))
    await session.execute(
        _WRITE,
        {
            "period": period,
            "version": version,
            "end": end,
            "prev": prev_period,
            "prev_version": prev_version,
        },
    )
    for setting in ("enable_nestloop", "jit", "work_mem"):
        await session.execute(text(f"RESET {setting}"))
