"""orders: the checks order entry's single statement makes before it writes (it commits as it
ends, so it cannot look at the answers and roll back)

- hold_periods_open holds the periods a document is dated into open until commit and refuses
  a period the month-end close has locked. The shared advisory lock is what a cutoff waits
  on; the check of period_locks is a statement of the function's own, so its snapshot is
  taken after the lock was granted and sees a cutoff that committed while the caller waited.
- read_still_current holds the customer's row (KEY SHARE) before any number is taken, and
  refuses a customer or product whose row changed (its xmin) since order entry read it, so
  an order priced from a remembered read is never written stale, and a credit check or a
  change of the customer never interleaves with an order being written for it.

Revision ID: 0005_entry_guards
Revises: 0004_partial_releases
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_entry_guards"
down_revision: str | None = "0004_partial_releases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "orders"
# The SQLSTATEs they raise, which services/orders/service.py tells apart.
PERIOD_LOCKED = "SB409"
READ_CHANGED = "SB412"


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
    op.execute(
        f"""
        CREATE FUNCTION {SCHEMA}.read_still_current(
            customer uuid, customer_version text, skus text[], product_versions text[])
        RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            -- First, before any number is taken: the customer's row held as the order's
            -- foreign key will hold it, so a change to the customer or a credit check
            -- holding it FOR UPDATE finishes before this order goes on (and is seen by the
            -- check below), or waits for this order to commit.
            PERFORM 1 FROM {SCHEMA}.customers AS c WHERE c.id = customer FOR KEY SHARE;
            IF customer_version IS NULL THEN
                RETURN true;  -- read under the caller's own lock on the customer
            END IF;
            IF NOT EXISTS (
                SELECT 1 FROM {SCHEMA}.customers AS c
                WHERE c.id = customer AND c.xmin::text = customer_version
            ) OR (
                SELECT count(*) FROM {SCHEMA}.products AS p
                JOIN unnest(skus, product_versions) AS r(sku, version)
                    ON p.sku = r.sku AND p.xmin::text = r.version
            ) <> cardinality(skus) THEN
                RAISE EXCEPTION 'the customer or a product changed since it was read'
                    USING ERRCODE = '{READ_CHANGED}';
            END IF;
            RETURN true;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SCHEMA}.read_still_current(uuid, text, text[], text[])")
    op.execute(f"DROP FUNCTION {SCHEMA}.hold_periods_open(text[], text)")
