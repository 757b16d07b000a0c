"""analytics: common tables (outbox, inbox, offsets, idempotency, audit, numbers)

Revision ID: 0001_analytics_common
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

from shared.migrations import create_common_tables_v1

revision: str = "0001_analytics_common"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_common_tables_v1("analytics")


def downgrade() -> None:
    op.execute("DROP SCHEMA analytics CASCADE")
