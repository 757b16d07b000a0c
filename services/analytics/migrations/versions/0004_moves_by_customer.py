"""analytics: receivable moves by customer, for a customer's lifetime figures

Revision ID: 0004_moves_by_customer
Revises: 0003_bi_views
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_moves_by_customer"
down_revision: str | None = "0003_bi_views"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_receivable_moves_customer",
        "receivable_moves",
        ["customer_id"],
        unique=False,
        schema="analytics",
    )


def downgrade() -> None:
    op.drop_index("ix_receivable_moves_customer", table_name="receivable_moves", schema="analytics")
