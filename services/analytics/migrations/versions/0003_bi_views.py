"""analytics: documented views for BI tools and the read-only role analytics_bi over them

The role is not named salesbook_*: those are the services' own login roles, which the
database bootstrap manages and checks.

BI tools connect with a login role that is a member of analytics_bi and see only these
views, never the read models' tables, so the tables can change without breaking reports.

Revision ID: 0003_bi_views
Revises: 0002_analytics_tables
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_bi_views"
down_revision: str | None = "0002_analytics_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BI_ROLE = "analytics_bi"

VIEWS: dict[str, tuple[str, str]] = {
    "sales_daily": (
        """
        SELECT day, sku, NULLIF(category, '') AS category, customer_id,
               NULLIF(region, '') AS region, NULLIF(segment, '') AS segment, channel,
               NULLIF(salesperson, '') AS salesperson,
               net, tax, gross, units, returns AS returns_gross, returns_net, returned_units,
               cancellations AS cancelled_gross, net - returns_net AS revenue,
               order_count AS orders, orders AS orders_with_sku,
               category_orders AS orders_with_category
        FROM analytics.daily_sales
        """,
        "Sales per business day, product and customer dimensions. Amounts are what invoices "
        "billed less what cancellations reversed (on the cancellation date); returns_* are "
        "credit notes on their date; revenue = net - returns_net. An order spans several "
        "rows: sum `orders` across any rows, `orders_with_sku` only within one sku, "
        "`orders_with_category` only within one category.",
    ),
    "invoice_balances": (
        """
        SELECT i.order_id, i.customer_id, i.business_date, i.due_date, i.gross,
               i.cancelled_on, NULLIF(i.salesperson, '') AS salesperson, i.channel,
               COALESCE(m.open_amount, 0) AS open_amount
        FROM analytics.invoices i
        LEFT JOIN (
            SELECT order_id, SUM(amount) AS open_amount
            FROM analytics.receivable_moves GROUP BY order_id
        ) m USING (order_id)
        """,
        "Every invoice (confirmed order) with what it still owes now.",
    ),
    "receivable_movements": (
        """
        SELECT order_id, customer_id, day, kind, amount FROM analytics.receivable_moves
        """,
        "Dated changes to invoices' open amounts: invoice (+), credit, cancel, allocated (-), "
        "released (+). Sum up to a day for the open amount at the end of that day.",
    ),
    "payments_daily": (
        "SELECT day, received, refunded, payments, refunds FROM analytics.daily_payments",
        "Payments received and refunded per business day.",
    ),
    "order_funnel_daily": (
        "SELECT day, submitted, confirmed FROM analytics.daily_funnel",
        "Orders submitted and confirmed per day (conversion = confirmed / submitted).",
    ),
    "customer_first_orders": (
        "SELECT customer_id, name, first_order_on, last_order_on FROM analytics.customers",
        "Customers with the dates of their first and latest confirmed orders.",
    ),
    "sales_targets": (
        "SELECT salesperson, period, amount FROM analytics.targets",
        "Revenue targets per salesperson and month (YYYY-MM).",
    ),
}


def upgrade() -> None:
    for name, (query, comment) in VIEWS.items():
        op.execute(f"CREATE VIEW analytics.{name} AS {query}")
        op.execute(f"COMMENT ON VIEW analytics.{name} IS '{comment.replace(chr(39), chr(39) * 2)}'")
    # Roles belong to the whole server: another database may have made it already, and a
    # migrating user without CREATEROLE leaves it to the DBA (see the README).
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{BI_ROLE}') THEN
                BEGIN
                    CREATE ROLE {BI_ROLE} NOLOGIN;
                EXCEPTION WHEN duplicate_object OR insufficient_privilege THEN
                    RAISE NOTICE 'role {BI_ROLE} not created here';
                END;
            END IF;
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{BI_ROLE}') THEN
                EXECUTE 'GRANT USAGE ON SCHEMA analytics TO {BI_ROLE}';
                EXECUTE 'GRANT SELECT ON {", ".join(f"analytics.{v}" for v in VIEWS)} TO {BI_ROLE}';
            END IF;
        END
        $$
        """
    )


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS analytics.{name}")
