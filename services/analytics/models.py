"""Tables of the analytics schema: read models built only from other services' events.

Dimension columns that may be absent in an event (region, segment, salesperson, category)
hold '' instead of NULL so they can be part of a primary key and of ON CONFLICT targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from shared.tables import common_tables

SCHEMA = "analytics"
common = common_tables(SCHEMA)

MONEY = Numeric(18, 2)
UNITS = Numeric(18, 3)
ZERO = Decimal("0.00")


def _money() -> Any:
    return Field(default=ZERO, sa_type=MONEY)


def _dim(primary: bool = True) -> Any:
    return Field(default="", sa_type=String(100), primary_key=primary)


class DailySales(SQLModel, table=True):
    """The sales rollup, one row per day and combination of dimensions.

    Three order counts, because an order spans several rows: `orders` counts an order once
    on every sku row it touches (exact when one sku is chosen), `category_orders` once per
    category it touches, `order_count` once per order. A query sums the one its grouping
    and filters make exact.
    """

    __tablename__ = "daily_sales"
    __table_args__ = (
        Index("ix_daily_sales_customer_day", "customer_id", "day"),
        {"schema": SCHEMA},
    )

    day: date = Field(primary_key=True)
    sku: str = _dim()
    category: str = _dim()
    customer_id: UUID = Field(primary_key=True)
    region: str = _dim()
    segment: str = _dim()
    channel: str = _dim()
    salesperson: str = _dim()
    net: Decimal = _money()
    tax: Decimal = _money()
    gross: Decimal = _money()
    orders: int = Field(default=0, sa_type=Integer)
    category_orders: int = Field(default=0, sa_type=Integer)
    order_count: int = Field(default=0, sa_type=Integer)
    units: Decimal = Field(default=ZERO, sa_type=UNITS)
    returns: Decimal = _money()  # credit-note gross
    returns_net: Decimal = _money()
    returned_units: Decimal = Field(default=ZERO, sa_type=UNITS)
    cancellations: Decimal = _money()  # gross reversed by cancellations


class Invoice(SQLModel, table=True):
    """A confirmed order as analytics needs it later: dimensions for its credit notes and
    cancellation, lines with what returns already took back, due date for ageing."""

    __tablename__ = "invoices"
    __table_args__ = (Index("ix_invoices_customer", "customer_id"), {"schema": SCHEMA})

    order_id: UUID = Field(primary_key=True)
    customer_id: UUID
    region: str = Field(default="", sa_type=String(100))
    segment: str = Field(default="", sa_type=String(100))
    channel: str = Field(default="", sa_type=String(100))
    salesperson: str = Field(default="", sa_type=String(100))
    business_date: date
    due_date: date
    gross: Decimal = _money()
    cancelled_on: date | None = None
    lines: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSONB))


class InvoiceInstalment(SQLModel, table=True):
    """One instalment of an invoice (its whole gross on its due date when it has no plan),
    with `upto`, the invoice's instalments summed up to and including this one in due order:
    ageing places payments on the oldest and credits on the newest by arithmetic alone."""

    __tablename__ = "invoice_instalments"
    __table_args__ = (Index("ix_invoice_instalments_customer", "customer_id"), {"schema": SCHEMA})

    order_id: UUID = Field(primary_key=True)
    seq: int = Field(primary_key=True, sa_type=Integer)
    customer_id: UUID
    due_date: date
    amount: Decimal = _money()
    upto: Decimal = _money()
    gross: Decimal = _money()


class WaitingDocument(SQLModel, table=True):
    """A credit note or cancellation that came before its invoice (an order event published
    again after a broker lost it comes after newer ones): applied when the invoice comes."""

    __tablename__ = "waiting_documents"
    __table_args__ = (Index("ix_waiting_documents_order", "order_id"), {"schema": SCHEMA})

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    order_id: UUID
    event: dict[str, Any] = Field(sa_type=JSONB)


class ReceivableMove(SQLModel, table=True):
    """A dated change to an invoice's open amount: + invoice, − credit note, cancellation and
    allocation, + released allocation. Summing up to a date gives the open amount then."""

    __tablename__ = "receivable_moves"
    __table_args__ = (
        Index("ix_receivable_moves_order_day", "order_id", "day"),
        Index("ix_receivable_moves_day", "day"),
        Index("ix_receivable_moves_customer", "customer_id"),
        {"schema": SCHEMA},
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    order_id: UUID
    customer_id: UUID
    day: date
    kind: str = Field(sa_type=String(20))  # invoice | credit | cancel | allocated | released
    amount: Decimal = Field(sa_type=MONEY)


class OpenChange(SQLModel, table=True):
    """How much an instalment's open amount changed on a day, as the ageing rule places an
    invoice's dated moves on its instalments. Summing the changes up to a day gives what was
    open of each instalment then, so ageing as of any day sums a customer's few rows."""

    __tablename__ = "open_changes"
    __table_args__ = (
        Index(
            "ix_open_changes_customer",
            "customer_id",
            "day",
            postgresql_include=["due_date", "amount"],
        ),
        {"schema": SCHEMA},
    )

    order_id: UUID = Field(primary_key=True)
    seq: int = Field(primary_key=True, sa_type=Integer)
    day: date = Field(primary_key=True)
    customer_id: UUID
    due_date: date
    amount: Decimal = Field(sa_type=MONEY)


class OpenNow(SQLModel, table=True):
    """What is open of each instalment after every move so far (`open_changes` summed over all
    days), only those with something open: ageing as of a day on or after the newest move
    reads a row per open instalment, however long the ledger's history."""

    __tablename__ = "open_now"
    __table_args__ = (
        Index("ix_open_now_customer", "customer_id", postgresql_include=["due_date", "amount"]),
        {"schema": SCHEMA},
    )

    order_id: UUID = Field(primary_key=True)
    seq: int = Field(primary_key=True, sa_type=Integer)
    customer_id: UUID
    due_date: date
    amount: Decimal = Field(sa_type=MONEY)


class OpenByDay(SQLModel, table=True):
    """`open_changes` summed over every customer per due date and day: the ageing totals as of
    any day without reading a row per customer; none is zero."""

    __tablename__ = "open_by_day"
    __table_args__ = {"schema": SCHEMA}

    day: date = Field(primary_key=True)
    due_date: date = Field(primary_key=True)
    amount: Decimal = _money()


class CustomerFacts(SQLModel, table=True):
    __tablename__ = "customers"
    __table_args__ = (
        Index("ix_customers_first_order_on", "first_order_on"),
        {"schema": SCHEMA},
    )

    customer_id: UUID = Field(primary_key=True)
    name: str = Field(default="", sa_type=String(200))
    first_order_on: date | None = None
    last_order_on: date | None = None


class DailyPayments(SQLModel, table=True):
    __tablename__ = "daily_payments"
    __table_args__ = {"schema": SCHEMA}

    day: date = Field(primary_key=True)
    received: Decimal = _money()
    refunded: Decimal = _money()
    payments: int = Field(default=0, sa_type=Integer)
    refunds: int = Field(default=0, sa_type=Integer)


class DailyFunnel(SQLModel, table=True):
    """Orders submitted and confirmed per day, for the conversion rate."""

    __tablename__ = "daily_funnel"
    __table_args__ = {"schema": SCHEMA}

    day: date = Field(primary_key=True)
    submitted: int = Field(default=0, sa_type=Integer)
    confirmed: int = Field(default=0, sa_type=Integer)


class Target(SQLModel, table=True):
    __tablename__ = "targets"
    __table_args__ = {"schema": SCHEMA}

    salesperson: str = Field(primary_key=True, sa_type=String(100))
    period: str = Field(primary_key=True, sa_type=String(7))
    amount: Decimal = Field(sa_type=MONEY)
    updated_by: str = Field(default="", sa_type=String(100))
    updated_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class Freshness(SQLModel, table=True):
    """When the newest applied event happened: the `as_of` of every answer."""

    __tablename__ = "freshness"
    __table_args__ = {"schema": SCHEMA}

    id: int = Field(default=1, primary_key=True)
    as_of: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


SALES_MEASURES: dict[str, Any] = {
    "net": MONEY,
    "tax": MONEY,
    "gross": MONEY,
    "orders": Integer,
    "category_orders": Integer,
    "order_count": Integer,
    "units": UNITS,
    "returns": MONEY,
    "returns_net": MONEY,
    "returned_units": UNITS,
    "cancellations": MONEY,
}
"""Every additive column of `daily_sales`, which each coarser rollup below also carries."""

PRODUCT = ("sku", "category")
DIMENSIONS = ("category", "region", "segment", "channel", "salesperson")


@dataclass(frozen=True)
class Rollup:
    """`daily_sales` summed over the dimensions it leaves out, per day or (`monthly`) per
    month, dated on the month's first day. A query reads the smallest one that has what it
    groups and filters by."""

    table: Table
    dimensions: tuple[str, ...]
    monthly: bool


def _dimension_type(name: str) -> Any:
    return Uuid if name == "customer_id" else String(100)


def _rollup(name: str, dimensions: tuple[str, ...], *, monthly: bool) -> Rollup:
    table = Table(
        name,
        SQLModel.metadata,
        Column("day", Date, primary_key=True),
        *(Column(d, _dimension_type(d), primary_key=True) for d in dimensions),
        *(
            Column(n, kind, nullable=False, server_default="0")
            for n, kind in SALES_MEASURES.items()
        ),
        schema=SCHEMA,
    )
    return Rollup(table, dimensions, monthly)


ROLLUPS = (
    _rollup("sales_by_day", (), monthly=False),
    _rollup("sales_by_month_dimensions", DIMENSIONS, monthly=True),
    _rollup("sales_by_day_dimensions", DIMENSIONS, monthly=False),
    _rollup("sales_by_month_product", PRODUCT, monthly=True),
    _rollup("sales_by_day_product", PRODUCT, monthly=False),
    # Customers' sales per month: the top customers of whole months without summing a row
    # per order line.
    _rollup("sales_by_month_customer", ("customer_id",), monthly=True),
)
"""Smallest first."""


def _customer_activity(name: str) -> Table:
    """Orders each customer placed per day or month that no cancellation took back on the
    day it was placed: a customer with one counts as active then."""
    table = Table(
        name,
        SQLModel.metadata,
        Column("customer_id", Uuid, primary_key=True),
        Column("day", Date, primary_key=True),
        Column("kept_orders", Integer, nullable=False),
        schema=SCHEMA,
    )
    Index(
        f"ix_{name}_active",
        table.c.day,
        table.c.customer_id,
        postgresql_where=table.c.kept_orders > 0,
    )
    return table


CUSTOMER_DAYS = _customer_activity("customer_days")
CUSTOMER_MONTHS = _customer_activity("customer_months")
"""Dated on the month's first day."""

SALES_BY_CUSTOMER = Table(
    "sales_by_customer",
    SQLModel.metadata,
    Column("customer_id", Uuid, primary_key=True),
    *(Column(n, kind, nullable=False, server_default="0") for n, kind in SALES_MEASURES.items()),
    schema=SCHEMA,
)
"""Each customer's sales over all time: the top customers ever, read down an index."""
Index(
    "ix_sales_by_customer_revenue",
    (SALES_BY_CUSTOMER.c.net - SALES_BY_CUSTOMER.c.returns_net).desc(),
    SALES_BY_CUSTOMER.c.customer_id,
)


def _customer_count(name: str) -> Table:
    return Table(
        name,
        SQLModel.metadata,
        Column("day", Date, primary_key=True),
        Column("customers", Integer, nullable=False),
        schema=SCHEMA,
    )


ACTIVE_CUSTOMERS_BY_MONTH = _customer_count("active_customers_by_month")
"""How many `customer_months` rows of each month have kept orders: the active customers of
a whole month without counting them, kept up to date as rows cross zero."""
NEW_CUSTOMERS_BY_MONTH = _customer_count("new_customers_by_month")
"""Customers whose first order is in the month and who have a kept order in it."""
FIRST_ORDERS_BY_DAY = _customer_count("first_orders_by_day")
"""Customers by the day of their first order."""


class ReceivablesByDay(SQLModel, table=True):
    """`receivable_moves` summed per day and kind."""

    __tablename__ = "receivables_by_day"
    __table_args__ = {"schema": SCHEMA}

    day: date = Field(primary_key=True)
    kind: str = Field(primary_key=True, sa_type=String(20))
    amount: Decimal = _money()
