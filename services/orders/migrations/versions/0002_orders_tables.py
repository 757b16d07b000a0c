"""orders: customers, products, orders and their lines, instalments, approvals, status
history, credit notes, payment allocations seen, period locks

Revision ID: 0002_orders_tables
Revises: 0001_orders_common
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_orders_tables"
down_revision: str | None = "0001_orders_common"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("contact", sa.String(length=200), nullable=True),
        sa.Column("region", sa.String(length=100), nullable=True),
        sa.Column("segment", sa.String(length=100), nullable=True),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("credit_limit", sa.Numeric(precision=20, scale=2), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        schema="orders",
    )
    op.create_index(
        op.f("ix_orders_customers_region"), "customers", ["region"], unique=False, schema="orders"
    )
    op.create_index(
        op.f("ix_orders_customers_segment"), "customers", ["segment"], unique=False, schema="orders"
    )
    op.create_table(
        "payment_allocations",
        sa.Column("allocation_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("allocation_id", name=op.f("pk_payment_allocations")),
        schema="orders",
    )
    op.create_index(
        op.f("ix_orders_payment_allocations_order_id"),
        "payment_allocations",
        ["order_id"],
        unique=False,
        schema="orders",
    )
    op.create_table(
        "period_locks",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("locked_by", sa.String(length=200), nullable=True),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_period_locks")),
        schema="orders",
    )
    op.create_table(
        "products",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column("unit_price", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("tax_rate", sa.Numeric(precision=5, scale=4), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_products")),
        schema="orders",
    )
    op.create_index(
        op.f("ix_orders_products_category"), "products", ["category"], unique=False, schema="orders"
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("salesperson", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("business_date", sa.Date(), nullable=True),
        sa.Column("net", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("tax", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("gross", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("paid", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("credited_net", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("credited_tax", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("credited", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.Column("credit_hold", sa.Boolean(), nullable=False),
        sa.Column("invoice_number", sa.String(length=20), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('draft','submitted','confirmed','fulfilled','rejected','cancelled')",
            name=op.f("ck_orders_status"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["orders.customers.id"], name=op.f("fk_orders_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("invoice_number", name=op.f("uq_orders_invoice_number")),
        sa.UniqueConstraint("number", name=op.f("uq_orders_number")),
        schema="orders",
    )
    op.create_index(
        op.f("ix_orders_orders_business_date"),
        "orders",
        ["business_date"],
        unique=False,
        schema="orders",
    )
    op.create_index(
        op.f("ix_orders_orders_customer_id"),
        "orders",
        ["customer_id"],
        unique=False,
        schema="orders",
    )
    op.create_index(
        op.f("ix_orders_orders_salesperson"),
        "orders",
        ["salesperson"],
        unique=False,
        schema="orders",
    )
    op.create_index(
        op.f("ix_orders_orders_status"), "orders", ["status"], unique=False, schema="orders"
    )
    op.create_table(
        "credit_notes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("net", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("tax", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("gross", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.orders.id"], name=op.f("fk_credit_notes_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_notes")),
        sa.UniqueConstraint("number", name=op.f("uq_credit_notes_number")),
        schema="orders",
    )
    op.create_index(
        op.f("ix_orders_credit_notes_order_id"),
        "credit_notes",
        ["order_id"],
        unique=False,
        schema="orders",
    )
    op.create_table(
        "order_approvals",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("approver", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.orders.id"], name=op.f("fk_order_approvals_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("order_id", "approver", name=op.f("pk_order_approvals")),
        schema="orders",
    )
    op.create_table(
        "order_instalments",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.orders.id"], name=op.f("fk_order_instalments_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("order_id", "seq", name=op.f("pk_order_instalments")),
        schema="orders",
    )
    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column("quantity", sa.Numeric(precision=15, scale=3), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("discount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("tax_rate", sa.Numeric(precision=5, scale=4), nullable=False),
        sa.Column("net", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("tax", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("gross", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("returned_quantity", sa.Numeric(precision=15, scale=3), nullable=False),
        sa.Column("returned_net", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("returned_tax", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.orders.id"], name=op.f("fk_order_lines_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("order_id", "line_no", name=op.f("pk_order_lines")),
        schema="orders",
    )
    op.create_table(
        "order_status_history",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("from_status", sa.String(length=20), nullable=True),
        sa.Column("to_status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.orders.id"], name=op.f("fk_order_status_history_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_status_history")),
        schema="orders",
    )
    op.create_index(
        op.f("ix_orders_order_status_history_order_id"),
        "order_status_history",
        ["order_id"],
        unique=False,
        schema="orders",
    )
    op.create_table(
        "credit_note_lines",
        sa.Column("credit_note_id", sa.Uuid(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=15, scale=3), nullable=False),
        sa.Column("net", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("tax", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("gross", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["credit_note_id"],
            ["orders.credit_notes.id"],
            name=op.f("fk_credit_note_lines_credit_note_id_credit_notes"),
        ),
        sa.PrimaryKeyConstraint("credit_note_id", "line_no", name=op.f("pk_credit_note_lines")),
        schema="orders",
    )


def downgrade() -> None:
    op.drop_table("credit_note_lines", schema="orders")
    op.drop_index(
        op.f("ix_orders_order_status_history_order_id"),
        table_name="order_status_history",
        schema="orders",
    )
    op.drop_table("order_status_history", schema="orders")
    op.drop_table("order_lines", schema="orders")
    op.drop_table("order_instalments", schema="orders")
    op.drop_table("order_approvals", schema="orders")
    op.drop_index(
        op.f("ix_orders_credit_notes_order_id"), table_name="credit_notes", schema="orders"
    )
    op.drop_table("credit_notes", schema="orders")
    op.drop_index(op.f("ix_orders_orders_status"), table_name="orders", schema="orders")
    op.drop_index(op.f("ix_orders_orders_salesperson"), table_name="orders", schema="orders")
    op.drop_index(op.f("ix_orders_orders_customer_id"), table_name="orders", schema="orders")
    op.drop_index(op.f("ix_orders_orders_business_date"), table_name="orders", schema="orders")
    op.drop_table("orders", schema="orders")
    op.drop_index(op.f("ix_orders_products_category"), table_name="products", schema="orders")
    op.drop_table("products", schema="orders")
    op.drop_table("period_locks", schema="orders")
    op.drop_index(
        op.f("ix_orders_payment_allocations_order_id"),
        table_name="payment_allocations",
        schema="orders",
    )
    op.drop_table("payment_allocations", schema="orders")
    op.drop_index(op.f("ix_orders_customers_segment"), table_name="customers", schema="orders")
    op.drop_index(op.f("ix_orders_customers_region"), table_name="customers", schema="orders")
    op.drop_table("customers", schema="orders")
