"""Tables of the payments schema."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Column, DateTime, Numeric, String, func
from sqlmodel import Field, SQLModel

from shared.ids import new_id
from shared.tables import common_tables

SCHEMA = "payments"
common = common_tables(SCHEMA)

MONEY = Numeric(18, 2)


def _money(**kw: Any) -> Any:
    return Field(default=Decimal("0.00"), sa_type=MONEY, **kw)


def _created_at() -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Payment(SQLModel, table=True):
    """Money received from a customer; `amount = allocated + unapplied + refunded` always."""

    __tablename__ = "payments"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=new_id, primary_key=True)
    number: str = Field(sa_type=String(20), unique=True)
    customer_id: UUID = Field(index=True)
    amount: Decimal = Field(sa_type=MONEY)
    method: str = Field(sa_type=String(20))
    received_at: datetime = Field(sa_type=DateTime(timezone=True))
    business_date: date
    period: str = Field(sa_type=String(7), index=True)
    reference: str | None = Field(default=None, sa_type=String(200))
    allocated: Decimal = _money()  # applied + pending allocations
    unapplied: Decimal = _money()
    refunded: Decimal = _money()
    created_by: str = Field(sa_type=String(200))
    created_at: datetime | None = _created_at()


class Allocation(SQLModel, table=True):
    """Part of a payment applied to an order; pending while the order is not known yet."""

    __tablename__ = "allocations"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=new_id, primary_key=True)
    payment_id: UUID = Field(foreign_key=f"{SCHEMA}.payments.id", index=True)
    order_id: UUID = Field(index=True)
    customer_id: UUID
    amount: Decimal = Field(sa_type=MONEY)
    status: str = Field(sa_type=String(10))  # applied | pending | released
    was_applied: bool = False
    reason: str | None = Field(default=None, sa_type=String(200))
    created_at: datetime | None = _created_at()
    released_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Refund(SQLModel, table=True):
    __tablename__ = "refunds"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(default_factory=new_id, primary_key=True)
    payment_id: UUID = Field(foreign_key=f"{SCHEMA}.payments.id", index=True)
    amount: Decimal = Field(sa_type=MONEY)
    business_date: date
    period: str = Field(sa_type=String(7))
    reason: str | None = Field(default=None, sa_type=String(500))
    created_by: str = Field(sa_type=String(200))
    created_at: datetime | None = _created_at()


class KnownCustomer(SQLModel, table=True):
    """Replica of the orders service's customers, from customer events."""

    __tablename__ = "known_customers"
    __table_args__ = {"schema": SCHEMA}

    customer_id: UUID = Field(primary_key=True)
    name: str = Field(sa_type=String(200))


class KnownOrder(SQLModel, table=True):
    """Replica of an order, from order events: enough to check allocations against it."""

    __tablename__ = "known_orders"
    __table_args__ = {"schema": SCHEMA}

    order_id: UUID = Field(primary_key=True)
    customer_id: UUID
    number: str = Field(sa_type=String(20))
    status: str = Field(
        sa_type=String(12)
    )  # submitted | confirmed | fulfilled | cancelled | rejected
    gross: Decimal = _money()
    credited: Decimal = _money()
    applied: Decimal = _money()  # allocations applied to it, net of releases

    @property
    def open_amount(self) -> Decimal:
        return self.gross - self.credited - self.applied


class PeriodLock(SQLModel, table=True):
    """A period locked by the month-end close: nothing may be dated into it."""

    __tablename__ = "period_locks"
    __table_args__ = {"schema": SCHEMA}

    period: str = Field(sa_type=String(7), primary_key=True)
    locked_at: datetime | None = _created_at()


class ReopenedPeriod(SQLModel, table=True):
    """A period the close reopened: payments may be dated into it though a later period is
    locked (that later period is stale and will be closed again); see shared/cutoff.py."""

    __tablename__ = "reopened_periods"
    __table_args__ = {"schema": SCHEMA}

    period: str = Field(sa_type=String(7), primary_key=True)
    reopened_at: datetime | None = _created_at()
