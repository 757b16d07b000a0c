"""analytics: sales rollups per day and month over fewer dimensions, customer days and
receivables per day, filled from the existing read models

At tens of millions of lines `daily_sales` has about a row per line, too many to sum within
a request; these tables hold the same sums at coarser grains.

Revision ID: 0005_sales_rollups
Revises: 0004_moves_by_customer
Create Date: 2026-11-22
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005_sales_rollups"
down_revision: str | None = "0004_moves_by_customer"
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
PRODUCT = ("sku", "category")
DIMENSIONS = ("category", "region", "segment", "channel", "salesperson")
ROLLUPS = {
    "sales_by_day": ((), False),
    "sales_by_month_dimensions": (DIMENSIONS, True),
    "sales_by_day_dimensions": (DIMENSIONS, False),
    "sales_by_month_product": (PRODUCT, True),
    "sales_by_day_product": (PRODUCT, False),
}


def _create_rollup(name: str, dimensions: tuple[str, ...], monthly: bool) -> None:
    op.create_table(
        name,
        sa.Column("day", sa.Date(), nullable=False),
        *(sa.Column(d, sa.String(length=100), nullable=False) for d in dimensions),
        *(sa.Column(m, kind, server_default="0", nullable=False) for m, kind in MEASURES.items()),
        sa.PrimaryKeyConstraint("day", *dimensions, name=op.f(f"pk_{name}")),
        schema=SCHEMA,
    )
    day = "CAST(date_trunc('month', day) AS date)" if monthly else "day"
    keys = ", ".join(("day", *dimensions))
    sums = ", ".join(f"sum({m})" for m in MEASURES)
    positions = ", ".join(str(i) for i in range(1, len(dimensions) + 2))
    op.execute(
        f"INSERT INTO {SCHEMA}.{name} ({keys}, {', '.join(MEASURES)}) "
        f"SELECT {', '.join((day, *dimensions))}, {sums} FROM {SCHEMA}.daily_sales "
        f"GROUP BY {positions}"
    )


def upgrade() -> None:
    for name, (dimensions, monthly) in ROLLUPS.items():
        _create_rollup(name, dimensions, monthly)
    op.create_table(
        "customer_days",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kept_orders", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "day", name=op.f("pk_customer_days")),
        schema=SCHEMA,
    )
    op.execute(
        f"INSERT INTO {SCHEMA}.customer_days (customer_id, day, kept_orders) "
        "SELECT customer_id, business_date, "
        "count(*) FILTER (WHERE cancelled_on IS DISTINCT FROM business_date) "
        f"FROM {SCHEMA}.invoices GROUP BY customer_id, business_date"
    )
    op.create_index(
        "ix_customer_days_active",
        "customer_days",
        ["day", "customer_id"],
        unique=False,
        schema=SCHEMA,
        postgresql_where=sa.text("kept_orders > 0"),
    )
    op.create_table(
        "receivables_by_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("day", "kind", name=op.f("pk_receivables_by_day")),
        schema=SCHEMA,
    )
    op.execute(
        f"INSERT INTO {SCHEMA}.receivables_by_day (day, kind, amount) "
        f"SELECT day, kind, sum(amount) FROM {SCHEMA}.receivable_moves GROUP BY day, kind"
    )
    op.create_index(
        "ix_customers_first_order_on", "customers", ["first_order_on"], unique=False, schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_index("ix_customers_first_order_on", table_name="customers", schema=SCHEMA)
    op.drop_table("receivables_by_day", schema=SCHEMA)
    op.drop_table("customer_days", schema=SCHEMA)
    for name in reversed(ROLLUPS):
        op.drop_table(name, schema=SCHEMA)
