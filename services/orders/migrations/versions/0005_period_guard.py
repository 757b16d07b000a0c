"""orders: a function that holds the periods a document is dated into open until commit and
refuses a period the month-end close has locked, so order entry can write in one statement
(committing with it) yet never into a period whose cutoff has begun

The shared advisory lock is what a cutoff waits on; the check of period_locks is a statement
of the function's own, so its snapshot is taken after the lock was granted and sees a cutoff
that committed while the caller waited.

Revision ID: 0005_period_guard
Revises: 0004_partial_releases
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_period_guard"
down_revision: str | None = "0004_partial_releases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "orders"
# The SQLSTATE the function raises; services/orders/service.py answers it with 409.
PERIOD_LOCKED = "SB409"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION {SCHEMA}.hold_periods_open(keys text[], checked text)
        RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(hashtext(k)) FROM unnest(keys) AS k;
            IF checked IS NOT NULL AND EXISTS (
                SELECT 1 FROM {SCHEMA}.period_locks AS l WHERE l.period = checked
            ) THEN
                RAISE EXCEPTION 'period % is locked', checked USING ERRCODE = '{PERIOD_LOCKED}';
            END IF;
            RETURN true;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SCHEMA}.hold_periods_open(text[], text)")
