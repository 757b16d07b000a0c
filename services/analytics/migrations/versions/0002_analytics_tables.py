"""analytics: read models (sales rollup, invoices and receivable moves, customers, payments,
funnel, targets, freshness)

Revision ID: 0002_analytics_tables
Revises: 0001_analytics_common
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_analytics_tables"
down_revision: str | None = "0001_analytics_common"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("first_order_on", sa.Date(), nullable=True),
        sa.Column("last_order_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customers")),
        schema="analytics",
    )
    op.create_table(
        "daily_funnel",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("submitted", sa.Integer(), nullable=False),
        sa.Column("confirmed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_daily_funnel")),
        schema="analytics",
    )
    op.create_table(
        "daily_payments",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("received", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("refunded", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("payments", sa.Integer(), nullable=False),
        sa.Column("refunds", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_daily_payments")),
        schema="analytics",
    )
    op.create_table(
        "daily_sales",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sku", sa.String(length=100), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("segment", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("salesperson", sa.String(length=100), nullable=False),
        sa.Column("net", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("tax", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("gross", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("category_orders", sa.Integer(), nullable=False),
        sa.Column("order_count", sa.Integer(), nullable=False),
        sa.Column("units", sa.Numeric(precision=18, scale=3), nullable=False),
        sa.Column("returns", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("returns_net", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("returned_units", sa.Numeric(precision=18, scale=3), nullable=False),
        sa.Column("cancellations", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "sku",
            "category",
            "customer_id",
            "region",
            "segment",
            "channel",
            "salesperson",
            name=op.f("pk_daily_sales"),
        ),
        schema="analytics",
    )
    op.create_index(
        "ix_daily_sales_customer_day",
        "daily_sales",
        ["customer_id", "day"],
        unique=False,
        schema="analytics",
    )
    op.create_table(
        "freshness",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_freshness")),
        schema="analytics",
    )
    op.create_table(
        "invoices",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("segment", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("salesperson", sa.String(length=100), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("gross", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("cancelled_on", sa.Date(), nullable=True),
        sa.Column("lines", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_invoices")),
        schema="analytics",
    )
    op.create_index(
        "ix_invoices_customer", "invoices", ["customer_id"], unique=False, schema="analytics"
    )
    op.create_table(
        "receivable_moves",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receivable_moves")),
        schema="analytics",
    )
    op.create_index(
        "ix_receivable_moves_day", "receivable_moves", ["day"], unique=False, schema="analytics"
    )
    op.create_index(
        "ix_receivable_moves_order_day",
        "receivable_moves",
        ["order_id", "day"],
        unique=False,
        schema="analytics",
    )
    op.create_table(
        "targets",
        sa.Column("salesperson", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("salesperson", "period", name=op.f("pk_targets")),
        schema="analytics",
    )


def downgrade() -> None:
    op.drop_table("targets", schema="analytics")
    op.drop_index(
        "ix_receivable_moves_order_day", table_name="receivable_moves", schema="analytics"
    )
    op.drop_index("ix_receivable_moves_day", table_name="receivable_moves", schema="analytics")
    op.drop_table("receivable_moves", schema="analytics")
    op.drop_index("ix_invoices_customer", table_name="invoices", schema="analytics")
    op.drop_table("invoices", schema="analytics")
    op.drop_table("freshness", schema="analytics")
    op.drop_index("ix_daily_sales_customer_day", table_name="daily_sales", schema="analytics")
    op.drop_table("daily_sales", schema="analytics")
    op.drop_table("daily_payments", schema="analytics")
    op.drop_table("daily_funnel", schema="analytics")
    op.drop_table("customers", schema="analytics")
