"""payments: the periods the close reopened

Periods close in order, so a lock closes the months before it too; a reopened period is the
exception, and takes payments and refunds though a later period is locked (that later
period is stale until it is closed again). See shared/cutoff.py. Filled here with every
unlocked month before a locked one that holds payments or refunds: a month reopened before
this revision (or one that took them while nothing refused them) keeps taking them; an
empty one is closed with the months after it.

Revision ID: 0003_reopened_periods
Revises: 0002_payments_tables
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_reopened_periods"
down_revision: str | None = "0002_payments_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reopened_periods",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column(
            "reopened_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_reopened_periods")),
        schema="payments",
    )
    op.execute(
        """
        INSERT INTO payments.reopened_periods (period)
        SELECT DISTINCT d.period FROM (
            SELECT period FROM payments.payments UNION SELECT period FROM payments.refunds
        ) AS d
        WHERE d.period < (SELECT max(l.period) FROM payments.period_locks AS l)
          AND d.period NOT IN (SELECT l.period FROM payments.period_locks AS l)
        """
    )


def downgrade() -> None:
    op.drop_table("reopened_periods", schema="payments")
