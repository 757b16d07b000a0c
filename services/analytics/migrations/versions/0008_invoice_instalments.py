"""analytics: invoice instalments, so AR ageing ages each instalment by its own due date

Invoices already held are filled as one instalment of their whole gross on their due date:
analytics never kept the instalment plans of orders confirmed before this revision, so an
invoice that had a plan ages whole from its due date until the read model is rebuilt from
the orders outbox; every invoice confirmed from now on ages by its plan.

Revision ID: 0008_invoice_instalments
Revises: 0007_customer_rollups
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_invoice_instalments"
down_revision: str | None = "0007_customer_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "analytics"
MONEY = sa.Numeric(18, 2)


def upgrade() -> None:
    op.create_table(
        "invoice_instalments",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("upto", MONEY, nullable=False),
        sa.Column("gross", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("order_id", "seq", name="pk_invoice_instalments"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_invoice_instalments_customer",
        "invoice_instalments",
        ["customer_id"],
        schema=SCHEMA,
    )
    op.execute(
        """
        INSERT INTO analytics.invoice_instalments
               (order_id, seq, customer_id, due_date, amount, upto, gross)
        SELECT order_id, 0, customer_id, due_date, gross, gross, gross FROM analytics.invoices
        """
    )


def downgrade() -> None:
    op.drop_index("ix_invoice_instalments_customer", "invoice_instalments", schema=SCHEMA)
    op.drop_table("invoice_instalments", schema=SCHEMA)
