"""customers, from the orders service's customer events, so that a customer with no document
yet has a statement

Revision ID: 0006_customers
Revises: 0005_pending_allocations
Create Date: 2026-12-07 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_customers"
down_revision: str | None = "0005_pending_allocations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customers")),
        schema="closing",
    )


def downgrade() -> None:
    op.drop_table("customers", schema="closing")
