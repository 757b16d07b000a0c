"""analytics: credit notes and cancellations that came before their invoice wait for it

An order event published again after a broker lost it comes after newer ones; a credit note
or cancellation of an invoice analytics does not hold yet waits here until the invoice comes,
instead of being dropped.

Revision ID: 0010_waiting_documents
Revises: 0009_open_changes
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_waiting_documents"
down_revision: str | None = "0009_open_changes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "analytics"


def upgrade() -> None:
    op.create_table(
        "waiting_documents",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("event", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waiting_documents")),
        schema=SCHEMA,
    )
    op.create_index("ix_waiting_documents_order", "waiting_documents", ["order_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("ix_waiting_documents_order", table_name="waiting_documents", schema=SCHEMA)
    op.drop_table("waiting_documents", schema=SCHEMA)
