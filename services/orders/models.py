"""Tables of the orders schema: customers, products, orders with their lines, instalments,
approvals and status history, credit notes, payment allocations seen, and period locks."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Text,
    text,
)
from sqlmodel import Field, SQLModel

from shared.ids import new_id
from shared.tables import common_tables

SCHEMA = "orders"
common = common_tables(SCHEMA)

# Sized so that the largest order the API accepts (see schemas.py) cannot overflow them.
AMOUNT = Numeric(20, 2)
QUANTITY = Numeric(15, 3)
RATE = Numeric(5, 4)
ZERO = Decimal("0.00")
_ZERO_DEFAULT = {"server_default": text("0")}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(nullable: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable)


class Customer(SQLModel, table=True):
    __tablename__ = "customers"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(sa_type=String(200))
    contact: str | None = Field(default=None, sa_type=String(200))
    region: str | None = Field(default=None, sa_type=String(100), index=True)
    segment: str | None = Field(default=None, sa_type=String(100), index=True)
    payment_terms_days: int = 0
    credit_limit: Decimal | None = Field(default=None, sa_type=AMOUNT)
    created_by: str = Field(sa_type=String(200))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class Product(SQLModel, table=True):
    __tablename__ = "products"
    __table_args__ = {"schema": SCHEMA}

    sku: str = Field(primary_key=True, sa_type=String(64))
    name: str = Field(sa_type=String(200))
    category: str | None = Field(default=None, sa_type=String(100), index=True)
    unit_price: Decimal = Field(sa_type=AMOUNT)
    tax_rate: Decimal = Field(sa_type=RATE)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class Order(SQLModel, table=True):
    """A sales order; once confirmed it is also the invoice (invoice_number, due_date)."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(
            "status IN ('draft','submitted','confirmed','fulfilled','rejected','cancelled')",
            name="status",
        ),
        ForeignKeyConstraint(["customer_id"], [f"{SCHEMA}.customers.id"]),
        {"schema": SCHEMA},
    )

    id: UUID = Field(default_factory=new_id, primary_key=True)
    number: str = Field(sa_type=String(20), unique=True)
    customer_id: UUID = Field(index=True)
    status: str = Field(sa_type=String(20), index=True)
    channel: str = Field(sa_type=String(20))
    salesperson: str | None = Field(default=None, sa_type=String(200), index=True)
    note: str | None = Field(default=None, sa_type=Text)
    # The requested date until confirmation, then the invoice's business date.
    business_date: date | None = Field(default=None, sa_type=Date, index=True)
    net: Decimal = Field(sa_type=AMOUNT)
    tax: Decimal = Field(sa_type=AMOUNT)
    gross: Decimal = Field(sa_type=AMOUNT)
    paid: Decimal = Field(default=ZERO, sa_type=AMOUNT)
    credited_net: Decimal = Field(default=ZERO, sa_type=AMOUNT)
    credited_tax: Decimal = Field(default=ZERO, sa_type=AMOUNT)
    credited: Decimal = Field(default=ZERO, sa_type=AMOUNT)
    approvals_required: int = 0
    # Held for approval because auto-confirming it would exceed the customer's credit limit.
    credit_hold: bool = False
    invoice_number: str | None = Field(default=None, sa_type=String(20), unique=True)
    due_date: date | None = Field(default=None, sa_type=Date)
    created_by: str = Field(sa_type=String(200))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    confirmed_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    # The cancellation's business date, and what it took back of a confirmed order's invoice
    # (what credit notes had left): the close counts reversals by this date.
    cancelled_on: date | None = Field(default=None, sa_type=Date, index=True)
    reversed_net: Decimal = Field(default=ZERO, sa_type=AMOUNT, sa_column_kwargs=_ZERO_DEFAULT)
    reversed_tax: Decimal = Field(default=ZERO, sa_type=AMOUNT, sa_column_kwargs=_ZERO_DEFAULT)
    reversed_gross: Decimal = Field(default=ZERO, sa_type=AMOUNT, sa_column_kwargs=_ZERO_DEFAULT)


class OrderLine(SQLModel, table=True):
    """One priced line, with what credit notes have taken back from it so far."""

    __tablename__ = "order_lines"
    __table_args__ = (
        PrimaryKeyConstraint("order_id", "line_no"),
        ForeignKeyConstraint(["order_id"], [f"{SCHEMA}.orders.id"]),
        {"schema": SCHEMA},
    )

    order_id: UUID
    line_no: int
    sku: str = Field(sa_type=String(64))
    name: str = Field(sa_type=String(200))
    category: str | None = Field(default=None, sa_type=String(100))
    quantity: Decimal = Field(sa_type=QUANTITY)
    unit_price: Decimal = Field(sa_type=AMOUNT)
    discount: Decimal = Field(sa_type=AMOUNT)
    tax_rate: Decimal = Field(sa_type=RATE)
    net: Decimal = Field(sa_type=AMOUNT)
    tax: Decimal = Field(sa_type=AMOUNT)
    gross: Decimal = Field(sa_type=AMOUNT)
    returned_quantity: Decimal = Field(default=Decimal("0"), sa_type=QUANTITY)
    returned_net: Decimal = Field(default=ZERO, sa_type=AMOUNT)
    returned_tax: Decimal = Field(default=ZERO, sa_type=AMOUNT)


class Instalment(SQLModel, table=True):
    __tablename__ = "order_instalments"
    __table_args__ = (
        PrimaryKeyConstraint("order_id", "seq"),
        ForeignKeyConstraint(["order_id"], [f"{SCHEMA}.orders.id"]),
        {"schema": SCHEMA},
    )

    order_id: UUID
    seq: int
    due_date: date = Field(sa_type=Date)
    amount: Decimal = Field(sa_type=AMOUNT)


class Approval(SQLModel, table=True):
    """One approver's approval; the key makes a second approval by the same person impossible."""

    __tablename__ = "order_approvals"
    __table_args__ = (
        PrimaryKeyConstraint("order_id", "approver"),
        ForeignKeyConstraint(["order_id"], [f"{SCHEMA}.orders.id"]),
        {"schema": SCHEMA},
    )

    order_id: UUID
    approver: str = Field(sa_type=String(200))
    role: str = Field(sa_type=String(40))
    note: str | None = Field(default=None, sa_type=Text)
    at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class StatusChange(SQLModel, table=True):
    """One step of an order's status history: who moved it from what to what, when and why."""

    __tablename__ = "order_status_history"
    __table_args__ = (
        ForeignKeyConstraint(["order_id"], [f"{SCHEMA}.orders.id"]),
        {"schema": SCHEMA},
    )

    id: UUID = Field(default_factory=new_id, primary_key=True)
    order_id: UUID = Field(index=True)
    at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
    actor: str = Field(sa_type=String(200))
    role: str = Field(sa_type=String(40))
    from_status: str | None = Field(default=None, sa_type=String(20))
    to_status: str = Field(sa_type=String(20))
    reason: str | None = Field(default=None, sa_type=Text)


class CreditNote(SQLModel, table=True):
    __tablename__ = "credit_notes"
    __table_args__ = (
        ForeignKeyConstraint(["order_id"], [f"{SCHEMA}.orders.id"]),
        {"schema": SCHEMA},
    )

    id: UUID = Field(default_factory=new_id, primary_key=True)
    number: str = Field(sa_type=String(20), unique=True)
    order_id: UUID = Field(index=True)
    customer_id: UUID
    business_date: date = Field(sa_type=Date, index=True)
    net: Decimal = Field(sa_type=AMOUNT)
    tax: Decimal = Field(sa_type=AMOUNT)
    gross: Decimal = Field(sa_type=AMOUNT)
    reason: str | None = Field(default=None, sa_type=Text)
    created_by: str = Field(sa_type=String(200))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class CreditNoteLine(SQLModel, table=True):
    __tablename__ = "credit_note_lines"
    __table_args__ = (
        PrimaryKeyConstraint("credit_note_id", "line_no"),
        ForeignKeyConstraint(["credit_note_id"], [f"{SCHEMA}.credit_notes.id"]),
        {"schema": SCHEMA},
    )

    credit_note_id: UUID
    line_no: int
    sku: str = Field(sa_type=String(64))
    quantity: Decimal = Field(sa_type=QUANTITY)
    net: Decimal = Field(sa_type=AMOUNT)
    tax: Decimal = Field(sa_type=AMOUNT)
    gross: Decimal = Field(sa_type=AMOUNT)


class PaymentAllocation(SQLModel, table=True):
    """An allocation the payments service reported against one of our orders; `applied` says
    whether it currently counts in the order's `paid`, `amount` how much (lowered by each
    partial release; what it last held once released in full)."""

    __tablename__ = "payment_allocations"
    __table_args__ = {"schema": SCHEMA}

    allocation_id: UUID = Field(primary_key=True)
    payment_id: UUID
    order_id: UUID = Field(index=True)
    amount: Decimal = Field(sa_type=AMOUNT)
    applied: bool
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class PaymentRelease(SQLModel, table=True):
    """A release (all or part of an allocation) the payments service reported, by its own id:
    what was taken out of `paid` for it, so no release is ever taken out twice."""

    __tablename__ = "payment_releases"
    __table_args__ = {"schema": SCHEMA}

    release_id: UUID = Field(primary_key=True)
    allocation_id: UUID = Field(index=True)
    order_id: UUID
    amount: Decimal = Field(sa_type=AMOUNT)
    taken: Decimal = Field(sa_type=AMOUNT)  # what it moved `paid` by (0 if nothing counted)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class PeriodLock(SQLModel, table=True):
    """An accounting period closed to new documents of this service (set by the close)."""

    __tablename__ = "period_locks"
    __table_args__ = {"schema": SCHEMA}

    period: str = Field(primary_key=True, sa_type=String(7))
    locked_by: str | None = Field(default=None, sa_type=String(200))
    locked_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())


class ReopenedPeriod(SQLModel, table=True):
    """A period the close reopened: documents may be dated into it though a later period is
    locked (that later period is stale and will be closed again); see shared/cutoff.py."""

    __tablename__ = "reopened_periods"
    __table_args__ = {"schema": SCHEMA}

    period: str = Field(primary_key=True, sa_type=String(7))
    reopened_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp())
