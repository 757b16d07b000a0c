"""Ageing of open invoices at period end, in one SQL statement over the period's debtors.

Per invoice, allocated payments pay its instalments oldest first and credit notes or
cancellations take back its newest; whatever credit a customer has beyond that (unallocated
payments) pays the remaining instalments oldest first. The buckets of a customer always add
up to the closing balance; a customer in credit has no ageing.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_RESET = text(
    """
    UPDATE closing.closed_balances
       SET current = GREATEST(closing, 0), d1_30 = 0, d31_60 = 0, d61_90 = 0, over_90 = 0
     WHERE period = :period AND version = :version
    """
)

_AGE = text(
    """
    WITH debtors AS (
        SELECT customer_id, closing FROM closing.closed_balances
         WHERE period = :period AND version = :version AND closing > 0
    ), moved AS (
        SELECT m.order_id,
               SUM(m.amount) FILTER (WHERE m.kind = 'credit') AS credited,
               SUM(m.amount) FILTER (WHERE m.kind = 'allocation') AS allocated
          FROM closing.invoice_movements m JOIN debtors d USING (customer_id)
         WHERE m.business_date <= CAST(:end AS date)
         GROUP BY m.order_id
    ), instalment AS (
        SELECT i.order_id, i.customer_id, i.due_date, i.amount, i.seq,
               v.gross,
               COALESCE(moved.credited, 0) AS credited,
               GREATEST(LEAST(COALESCE(moved.allocated, 0), v.gross), 0) AS allocated
          FROM closing.invoice_instalments i
          JOIN debtors d USING (customer_id)
          JOIN closing.invoices v USING (order_id)
          LEFT JOIN moved USING (order_id)
         WHERE i.business_date <= CAST(:end AS date)
    ), running AS (
        SELECT *, SUM(amount) OVER (PARTITION BY order_id ORDER BY due_date, seq) AS upto
          FROM instalment
    ), remaining AS (
        SELECT customer_id, order_id, due_date, seq,
               GREATEST(0, amount
                   - LEAST(amount, GREATEST(0, allocated - (upto - amount)))
                   - LEAST(amount, GREATEST(0, credited - (gross - upto)))) AS open
          FROM running
    ), ordered AS (
        SELECT r.*,
               SUM(open) OVER (PARTITION BY customer_id ORDER BY due_date, order_id, seq
                               ROWS UNBOUNDED PRECEDING) - open AS before,
               SUM(open) OVER (PARTITION BY customer_id) AS total_open
          FROM remaining r
    ), aged AS (
        SELECT o.customer_id, CAST(:end AS date) - o.due_date AS days_late,
               o.open - LEAST(o.open, GREATEST(0, (o.total_open - d.closing) - o.before)) AS open
          FROM ordered o JOIN debtors d USING (customer_id)
    ), buckets AS (
        SELECT customer_id,
               SUM(open) AS total,
               SUM(open) FILTER (WHERE days_late <= 0) AS current,
               SUM(open) FILTER (WHERE days_late BETWEEN 1 AND 30) AS d1_30,
               SUM(open) FILTER (WHERE days_late BETWEEN 31 AND 60) AS d31_60,
               SUM(open) FILTER (WHERE days_late BETWEEN 61 AND 90) AS d61_90,
               SUM(open) FILTER (WHERE days_late > 90) AS over_90
          FROM aged GROUP BY customer_id
    )
    UPDATE closing.closed_balances b
       SET current = COALESCE(a.current, 0) + (b.closing - COALESCE(a.total, 0)),
           d1_30 = COALESCE(a.d1_30, 0),
           d31_60 = COALESCE(a.d31_60, 0),
           d61_90 = COALESCE(a.d61_90, 0),
           over_90 = COALESCE(a.over_90, 0)
      FROM buckets a
     WHERE b.period = :period AND b.version = :version AND b.customer_id = a.customer_id
    """
)


async def age_balances(session: AsyncSession, *, period: str, version: int, end: date) -> None:
    """Fill the ageing buckets of one closed period version as of its last day."""
    params = {"period": period, "version": version, "end": end}
    # The balances were written a moment ago in this transaction and the instalments may have
    # just been bulk-loaded: without fresh statistics the planner picks nested loops here.
    await session.execute(text("ANALYZE closing.closed_balances"))
    await session.execute(text("ANALYZE closing.invoice_instalments"))
    # The window sums sort every open instalment of every debtor: keep that sort in memory.
    await session.execute(text("SET LOCAL work_mem = '256MB'"))
    await session.execute(_RESET, params)
    await session.execute(_AGE, params)
