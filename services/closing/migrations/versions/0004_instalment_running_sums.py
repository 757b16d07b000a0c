"""instalments carry their invoice's gross and running sum, so ageing needs no window

Revision ID: 0004_instalment_running_sums
Revises: 0003_instalments
Create Date: 2026-11-22 19:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_instalment_running_sums"
down_revision: str | None = "0003_instalments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=18, scale=2)


def upgrade() -> None:
    op.add_column("invoice_instalments", sa.Column("upto", MONEY, nullable=True), schema="closing")
    op.add_column("invoice_instalments", sa.Column("gross", MONEY, nullable=True), schema="closing")
    op.execute(
        """
        UPDATE closing.invoice_instalments i
           SET upto = r.upto, gross = r.gross
          FROM (SELECT x.order_id, x.seq, v.gross,
                       SUM(x.amount) OVER (PARTITION BY x.order_id ORDER BY x.due_date, x.seq)
                           AS upto
                  FROM closing.invoice_instalments x
                  JOIN closing.invoices v USING (order_id)) r
         WHERE i.order_id = r.order_id AND i.seq = r.seq
        """
    )
    op.alter_column("invoice_instalments", "upto", nullable=False, schema="closing")
    op.alter_column("invoice_instalments", "gross", nullable=False, schema="closing")


def downgrade() -> None:
    op.drop_column("invoice_instalments", "gross", schema="closing")
    op.drop_column("invoice_instalments", "upto", schema="closing")
