"""analytics: customers' kept orders per month, filled from customer_days, so the customers
active in a month are counted from a row per customer

Revision ID: 0006_customer_months
Revises: 0005_sales_rollups
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_customer_months"
down_revision: str | None = "0005_sales_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_months",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kept_orders", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "day", name=op.f("pk_customer_months")),
        schema="analytics",
    )
    op.execute(
        "INSERT INTO analytics.customer_months (customer_id, day, kept_orders) "
        "SELECT customer_id, CAST(date_trunc('month', day) AS date), sum(kept_orders) "
        "FROM analytics.customer_days GROUP BY 1, 2"
    )
    op.create_index(
        "ix_customer_months_active",
        "customer_months",
        ["day", "customer_id"],
        unique=False,
        schema="analytics",
        postgresql_where=sa.text("kept_orders > 0"),
    )


def downgrade() -> None:
    op.drop_table("customer_months", schema="analytics")
