"""orders: periods close in order, so a lock closes the months before it too

- reopened_periods: the periods the close reopened, which take documents though a later
  period is locked (that later period is stale until it is closed again). Filled here with
  every unlocked month before a locked one that holds documents: a month reopened before
  this revision (or one that took documents while nothing refused them) keeps taking
  them; an empty one is closed with the months after it.
- hold_periods_open refuses a period earlier than a locked one unless it was reopened, and
  names in its DETAIL the locked period that refuses it. The advisory lock names it is
  given now begin with the source's own, which a cutoff holds exclusively (shared/cutoff.py).

Revision ID: 0006_reopened_periods
Revises: 0005_entry_guards
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_reopened_periods"
down_revision: str | None = "0005_entry_guards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "orders"
PERIOD_LOCKED = "SB409"


def upgrade() -> None:
    op.create_table(
        "reopened_periods",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("reopened_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_reopened_periods")),
        schema=SCHEMA,
    )
    op.execute(
        f"""
        INSERT INTO {SCHEMA}.reopened_periods (period, reopened_at)
        SELECT DISTINCT d.period, now() FROM (
            SELECT to_char(business_date, 'YYYY-MM') AS period FROM {SCHEMA}.orders
                WHERE invoice_number IS NOT NULL
            UNION SELECT to_char(cancelled_on, 'YYYY-MM') FROM {SCHEMA}.orders
                WHERE invoice_number IS NOT NULL AND cancelled_on IS NOT NULL
            UNION SELECT to_char(business_date, 'YYYY-MM') FROM {SCHEMA}.credit_notes
        ) AS d
        WHERE d.period < (SELECT max(l.period) FROM {SCHEMA}.period_locks AS l)
          AND d.period NOT IN (SELECT l.period FROM {SCHEMA}.period_locks AS l)
        """
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {SCHEMA}.hold_periods_open(keys text[], checked text)
        RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            closed_by text;
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(hashtext(k)) FROM unnest(keys) AS k;
            IF checked IS NULL THEN
                RETURN true;
            END IF;
            IF EXISTS (SELECT 1 FROM {SCHEMA}.period_locks AS l WHERE l.period = checked) THEN
                closed_by := checked;
            ELSIF NOT EXISTS (
                SELECT 1 FROM {SCHEMA}.reopened_periods AS r WHERE r.period = checked
            ) THEN
                SELECT max(l.period) INTO closed_by
                FROM {SCHEMA}.period_locks AS l WHERE l.period > checked;
            END IF;
            IF closed_by IS NOT NULL THEN
                RAISE EXCEPTION 'period % is closed by the lock of %', checked, closed_by
                    USING ERRCODE = '{PERIOD_LOCKED}', DETAIL = closed_by;
            END IF;
            RETURN true;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION {SCHEMA}.hold_periods_open(keys text[], checked text)
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
    op.drop_table("reopened_periods", schema=SCHEMA)
