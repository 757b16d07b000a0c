"""orders: the business date and reversed amounts of a cancellation, for the close's control
totals; credit notes indexed by business date

Revision ID: 0003_cancellation_dates
Revises: 0002_orders_tables
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_cancellation_dates"
down_revision: str | None = "0002_orders_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT = sa.Numeric(precision=20, scale=2)


def upgrade() -> None:
    from shared.config import get_settings

    op.create_index(
        op.f("ix_orders_credit_notes_business_date"),
        "credit_notes",
        ["business_date"],
        unique=False,
        schema="orders",
    )
    op.add_column("orders", sa.Column("cancelled_on", sa.Date(), nullable=True), schema="orders")
    for column in ("reversed_net", "reversed_tax", "reversed_gross"):
        op.add_column(
            "orders",
            sa.Column(column, AMOUNT, nullable=False, server_default=sa.text("0")),
            schema="orders",
        )
    op.create_index(
        op.f("ix_orders_orders_cancelled_on"), "orders", ["cancelled_on"], schema="orders"
    )
    # Orders cancelled before this revision: dated by their history, reversing what was left.
    op.execute(
        sa.text(
            """
            UPDATE orders.orders o SET
                cancelled_on = (h.at AT TIME ZONE :zone)::date,
                reversed_net = CASE WHEN o.invoice_number IS NULL THEN 0
                                    ELSE o.net - o.credited_net END,
                reversed_tax = CASE WHEN o.invoice_number IS NULL THEN 0
                                    ELSE o.tax - o.credited_tax END,
                reversed_gross = CASE WHEN o.invoice_number IS NULL THEN 0
                                      ELSE o.gross - o.credited END
            FROM orders.order_status_history h
            WHERE h.order_id = o.id AND h.to_status = 'cancelled' AND o.status = 'cancelled'
            """
        ).bindparams(zone=get_settings().timezone)
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_orders_orders_cancelled_on"), table_name="orders", schema="orders")
    for column in ("reversed_gross", "reversed_tax", "reversed_net", "cancelled_on"):
        op.drop_column("orders", column, schema="orders")
    op.drop_index(
        op.f("ix_orders_credit_notes_business_date"), table_name="credit_notes", schema="orders"
    )
