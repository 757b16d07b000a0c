"""analytics: sales per customer and month and per customer ever, and counts of active and
new customers per month and of first orders per day, filled from the existing read models

Top customers over whole months read a row per customer and month instead of a row per
order line, the top customers ever a few rows down an index; the active customers of a
month, its new customers and the customers up to a day are a few rows instead of a count
over them.

Revision ID: 0007_customer_rollups
Revises: 0006_customer_months
Create Date: 2026-11-22
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007_customer_rollups"
down_revision: str | None = "0006_customer_months"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "analytics"
MONEY = sa.Numeric(18, 2)
UNITS = sa.Numeric(18, 3)
MEASURES: dict[str, sa.types.TypeEngine[Any]] = {
    "net": MONEY,
    "tax": MONEY,
    "gross": MONEY,
    "orders": sa.Integer(),
    "category_orders": sa.Integer(),
    "order_count": sa.Integer(),
    "units": UNITS,
    "returns": MONEY,
    "returns_net": MONEY,
    "returned_units": UNITS,
    "cancellations": MONEY,
}


def upgrade() -> None:
    op.create_table(
        "sales_by_month_customer",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        *(sa.Column(m, kind, server_default="0", nullable=False) for m, kind in MEASURES.items()),
        sa.PrimaryKeyConstraint("day", "customer_id", name=op.f("pk_sales_by_month_customer")),
        schema=SCHEMA,
    )
    sums = ", ".join(f"sum({m})" for m in MEASURES)
    op.execute(
        f"INSERT INTO {SCHEMA}.sales_by_month_customer (day, customer_id, {', '.join(MEASURES)}) "
        f"SELECT CAST(date_trunc('month', day) AS date), customer_id, {sums} "
        f"FROM {SCHEMA}.daily_sales GROUP BY 1, 2"
    )
    op.create_table(
        "sales_by_customer",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        *(sa.Column(m, kind, server_default="0", nullable=False) for m, kind in MEASURES.items()),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_sales_by_customer")),
        schema=SCHEMA,
    )
    op.execute(
        f"INSERT INTO {SCHEMA}.sales_by_customer (customer_id, {', '.join(MEASURES)}) "
        f"SELECT customer_id, {sums} FROM {SCHEMA}.sales_by_month_customer GROUP BY 1"
    )
    op.execute(
        f"CREATE INDEX ix_sales_by_customer_revenue ON {SCHEMA}.sales_by_customer "
        "((net - returns_net) DESC, customer_id)"
    )
    _create_count(
        "active_customers_by_month",
        f"SELECT day, count(*) FROM {SCHEMA}.customer_months WHERE kept_orders > 0 GROUP BY day",
    )
    _create_count(
        "new_customers_by_month",
        f"SELECT m.day, count(*) FROM {SCHEMA}.customers c JOIN {SCHEMA}.customer_months m "
        "ON m.customer_id = c.customer_id "
        "AND m.day = CAST(date_trunc('month', c.first_order_on) AS date) "
        "WHERE m.kept_orders > 0 GROUP BY m.day",
    )
    _create_count(
        "first_orders_by_day",
        f"SELECT first_order_on, count(*) FROM {SCHEMA}.customers "
        "WHERE first_order_on IS NOT NULL GROUP BY first_order_on",
    )


def _create_count(name: str, fill: str) -> None:
    op.create_table(
        name,
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f(f"pk_{name}")),
        schema=SCHEMA,
    )
    op.execute(f"INSERT INTO {SCHEMA}.{name} (day, customers) {fill}")


def downgrade() -> None:
    op.drop_table("first_orders_by_day", schema=SCHEMA)
    op.drop_table("new_customers_by_month", schema=SCHEMA)
    op.drop_table("active_customers_by_month", schema=SCHEMA)
    op.drop_table("sales_by_customer", schema=SCHEMA)
    op.drop_table("sales_by_month_customer", schema=SCHEMA)
