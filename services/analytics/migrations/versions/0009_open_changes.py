"""analytics: what each day changed of each instalment's open amount and what is open of it
now, so AR ageing sums a few rows per customer instead of every receivable move of every
invoice

Filled from the receivable moves and instalments already held, by the rule of
shared/ageing.py the consumer keeps them by from now on.

Revision ID: 0009_open_changes
Revises: 0008_invoice_instalments
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_open_changes"
down_revision: str | None = "0008_invoice_instalments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "analytics"
MONEY = sa.Numeric(18, 2)


def upgrade() -> None:
    op.create_table(
        "open_changes",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("order_id", "seq", "day", name="pk_open_changes"),
        schema=SCHEMA,
    )
    op.create_table(
        "open_now",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("order_id", "seq", name="pk_open_now"),
        schema=SCHEMA,
    )
    op.create_table(
        "open_by_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("day", "due_date", name="pk_open_by_day"),
        schema=SCHEMA,
    )
    # Each instalment's open amount at the end of each day its invoice moved, then what
    # each of those days changed of it.
    op.execute(
        f"""
        WITH daily AS (
            SELECT order_id, day,
                   sum(-amount) FILTER (WHERE kind IN ('allocated', 'released')) AS allocated,
                   sum(-amount) FILTER (WHERE kind IN ('credit', 'cancel')) AS credited,
                   bool_or(kind = 'invoice') AS invoiced
            FROM {SCHEMA}.receivable_moves GROUP BY order_id, day
        ), running AS (
            SELECT order_id, day,
                   coalesce(sum(allocated) OVER w, 0) AS allocated,
                   coalesce(sum(credited) OVER w, 0) AS credited,
                   bool_or(invoiced) OVER w AS invoiced
            FROM daily
            WINDOW w AS (PARTITION BY order_id ORDER BY day)
        ), opens AS (
            SELECT i.order_id, i.seq, i.customer_id, i.due_date, r.day,
                   CASE WHEN r.invoiced THEN greatest(0, i.amount
                       - least(i.amount, greatest(0, greatest(least(r.allocated, i.gross), 0)
                                                     - (i.upto - i.amount)))
                       - least(i.amount, greatest(0, r.credited - (i.gross - i.upto))))
                   ELSE 0 END AS open
            FROM running r JOIN {SCHEMA}.invoice_instalments i ON i.order_id = r.order_id
        ), placed AS (
            SELECT order_id, seq, day, customer_id, due_date,
                   open - coalesce(lag(open) OVER (PARTITION BY order_id, seq ORDER BY day), 0)
                       AS amount
            FROM opens
        )
        INSERT INTO {SCHEMA}.open_changes (order_id, seq, day, customer_id, due_date, amount)
        SELECT order_id, seq, day, customer_id, due_date, amount FROM placed WHERE amount <> 0
        """
    )
    op.execute(
        f"CREATE INDEX ix_open_changes_customer ON {SCHEMA}.open_changes "
        "(customer_id, day) INCLUDE (due_date, amount)"
    )
    op.execute(
        f"INSERT INTO {SCHEMA}.open_now (order_id, seq, customer_id, due_date, amount) "
        f"SELECT order_id, seq, min(customer_id::text)::uuid, min(due_date), sum(amount) "
        f"FROM {SCHEMA}.open_changes GROUP BY order_id, seq HAVING sum(amount) <> 0"
    )
    op.execute(
        f"CREATE INDEX ix_open_now_customer ON {SCHEMA}.open_now "
        "(customer_id) INCLUDE (due_date, amount)"
    )
    op.execute(
        f"INSERT INTO {SCHEMA}.open_by_day (day, due_date, amount) "
        f"SELECT day, due_date, sum(amount) FROM {SCHEMA}.open_changes GROUP BY day, due_date "
        "HAVING sum(amount) <> 0"
    )


def downgrade() -> None:
    op.drop_table("open_by_day", schema=SCHEMA)
    op.drop_index("ix_open_now_customer", "open_now", schema=SCHEMA)
    op.drop_table("open_now", schema=SCHEMA)
    op.drop_index("ix_open_changes_customer", "open_changes", schema=SCHEMA)
    op.drop_table("open_changes", schema=SCHEMA)
