"""pending allocations, so reconciliation can report the ones that never resolve

Revision ID: 0005_pending_allocations
Revises: 0004_instalment_running_sums
Create Date: 2026-11-28 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_pending_allocations"
down_revision: str | None = "0004_instalment_running_sums"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_allocations",
        sa.Column("allocation_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("payment_number", sa.String(length=30), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("pending_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("allocation_id", name=op.f("pk_pending_allocations")),
        schema="closing",
    )
    op.create_index(
        "ix_pending_allocations_unresolved",
        "pending_allocations",
        ["business_date"],
        unique=False,
        schema="closing",
        postgresql_where=sa.text("resolved_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_pending_allocations_unresolved", table_name="pending_allocations", schema="closing"
    )
    op.drop_table("pending_allocations", schema="closing")
