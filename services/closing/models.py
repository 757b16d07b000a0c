"""Tables of the closing schema: the subledger, its running aggregates, and closed periods."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Column, DateTime, Index, Numeric, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from shared.tables import common_tables

SCHEMA = "closing"
common = common_tables(SCHEMA)

MONEY = Numeric(18, 2)
ZERO = Decimal("0.00")


def _money() -> Any:
    return Field(default=ZERO, sa_type=MONEY)


def _json(default: Any = None) -> Any:
    return Field(default=default, sa_column=Column(JSONB, nullable=True))


def _stamp() -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class Customer(SQLModel, table=True):
    """A customer the orders service announced, with the name it last gave: a customer with no
    document yet still has a statement (empty, at zero)."""

    __tablename__ = "customers"
    __table_args__ = {"schema": SCHEMA}

    customer_id: UUID = Field(primary_key=True)
    name: str = Field(sa_type=String(200))


class LedgerEntry(SQLModel, table=True):
    """One posted document: its journal lines (debits = credits) and where it was posted."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_customer_posting", "customer_id", "posting_date", "id"),
        Index("ix_ledger_entries_period", "period"),
        {"schema": SCHEMA},
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    event_id: UUID = Field(unique=True)
    kind: str = Field(sa_type=String(20))  # invoice | credit_note | cancellation | payment | refund
    document_id: UUID
    document_number: str | None = Field(default=None, sa_type=String(30))
    order_id: UUID | None = None
    customer_id: UUID
    business_date: date
    dated_period: str = Field(sa_type=String(7))
    period: str = Field(sa_type=String(7))  # where it was posted: dated_period unless late
    posting_date: date
    late: bool = False
    amount: Decimal = Field(sa_type=MONEY)  # effect on the customer's receivable, signed
    lines: list[dict[str, str]] = Field(sa_column=Column(JSONB, nullable=False))


class AccountTotal(SQLModel, table=True):
    """Running debit and credit totals per account and posting period (the trial balance)."""

    __tablename__ = "account_totals"
    __table_args__ = {"schema": SCHEMA}

    period: str = Field(sa_type=String(7), primary_key=True)
    account: str = Field(sa_type=String(80), primary_key=True)
    debit: Decimal = _money()
    credit: Decimal = _money()


class CustomerActivity(SQLModel, table=True):
    """Running per-customer movements of a posting period, maintained event by event."""

    __tablename__ = "customer_activity"
    __table_args__ = {"schema": SCHEMA}

    period: str = Field(sa_type=String(7), primary_key=True)
    customer_id: UUID = Field(primary_key=True)
    invoiced: Decimal = _money()
    returned: Decimal = _money()
    received: Decimal = _money()
    refunded: Decimal = _money()


class DocumentTotal(SQLModel, table=True):
    """Count and sum of documents per dated period and kind: what control totals must match."""

    __tablename__ = "document_totals"
    __table_args__ = {"schema": SCHEMA}

    period: str = Field(sa_type=String(7), primary_key=True)
    kind: str = Field(sa_type=String(20), primary_key=True)
    count: int = Field(default=0, sa_type=BigInteger)
    amount: Decimal = _money()


class Invoice(SQLModel, table=True):
    """An invoice with its instalments, for ageing."""

    __tablename__ = "invoices"
    __table_args__ = (Index("ix_invoices_customer", "customer_id"), {"schema": SCHEMA})

    order_id: UUID = Field(primary_key=True)
    customer_id: UUID
    invoice_number: str = Field(sa_type=String(30))
    business_date: date
    due_date: date
    gross: Decimal = Field(sa_type=MONEY)


class InvoiceInstalment(SQLModel, table=True):
    """One instalment of an invoice (the whole gross on its due date when it has none), with
    its invoice's gross and `upto`: the invoice's instalments summed in payment order (due
    date, then seq) up to and including this one."""

    __tablename__ = "invoice_instalments"
    __table_args__ = (
        Index("ix_invoice_instalments_customer", "customer_id", "business_date"),
        {"schema": SCHEMA},
    )

    order_id: UUID = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    customer_id: UUID
    business_date: date
    due_date: date
    amount: Decimal = Field(sa_type=MONEY)
    upto: Decimal = Field(sa_type=MONEY)
    gross: Decimal = Field(sa_type=MONEY)


class InvoiceMovement(SQLModel, table=True):
    """What reduced an invoice, dated: credit notes and cancellations (`credit`) and
    allocations of payments (`allocation`, negative when released)."""

    __tablename__ = "invoice_movements"
    __table_args__ = (
        Index("ix_invoice_movements_order", "order_id"),
        Index("ix_invoice_movements_customer", "customer_id"),
        {"schema": SCHEMA},
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    order_id: UUID
    customer_id: UUID
    kind: str = Field(sa_type=String(12))
    business_date: date
    amount: Decimal = Field(sa_type=MONEY)


class Period(SQLModel, table=True):
    __tablename__ = "periods"
    __table_args__ = {"schema": SCHEMA}

    period: str = Field(sa_type=String(7), primary_key=True)
    status: str = Field(default="open", sa_type=String(10))  # open | closing | closed | stale
    version: int = 0
    close_id: UUID | None = None
    requested_by: str | None = Field(default=None, sa_type=String(200))
    requested_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    control_totals: dict[str, Any] = _json({})
    hash: str | None = Field(default=None, sa_type=String(64))
    closed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    totals: dict[str, Any] | None = _json()
    trial_balance: list[dict[str, str]] | None = _json()
    problem: str | None = Field(default=None, sa_type=String(1000))


class PeriodVersion(SQLModel, table=True):
    """Every close of a period, kept when the period is reopened."""

    __tablename__ = "period_versions"
    __table_args__ = {"schema": SCHEMA}

    period: str = Field(sa_type=String(7), primary_key=True)
    version: int = Field(primary_key=True)
    hash: str = Field(sa_type=String(64))
    previous_hash: str | None = Field(default=None, sa_type=String(64))
    closed_at: datetime = Field(sa_type=DateTime(timezone=True))
    closed_by: str | None = Field(default=None, sa_type=String(200))
    totals: dict[str, Any] = _json({})
    trial_balance: list[dict[str, str]] = _json([])
    control_totals: dict[str, Any] = _json({})
    reopened_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    reopened_by: str | None = Field(default=None, sa_type=String(200))
    reopen_reason: str | None = Field(default=None, sa_type=String(1000))


class ClosedBalance(SQLModel, table=True):
    """A customer's balance in one version of a closed period."""

    __tablename__ = "closed_balances"
    __table_args__ = {"schema": SCHEMA}

    period: str = Field(sa_type=String(7), primary_key=True)
    version: int = Field(primary_key=True)
    customer_id: UUID = Field(primary_key=True)
    opening: Decimal = _money()
    invoiced: Decimal = _money()
    returned: Decimal = _money()
    received: Decimal = _money()
    refunded: Decimal = _money()
    closing: Decimal = _money()
    current: Decimal = _money()
    d1_30: Decimal = _money()
    d31_60: Decimal = _money()
    d61_90: Decimal = _money()
    over_90: Decimal = _money()


class ReconciliationException(SQLModel, table=True):
    """Something finance must look at: late events, failed allocations, and the like."""

    __tablename__ = "reconciliation_exceptions"
    __table_args__ = (Index("ix_reconciliation_exceptions_period", "period"), {"schema": SCHEMA})

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    period: str = Field(sa_type=String(7))
    kind: str = Field(sa_type=String(30))
    customer_id: UUID | None = None
    document: str | None = Field(default=None, sa_type=String(80))
    amount: Decimal | None = Field(default=None, sa_type=MONEY)
    detail: str = Field(sa_type=String(1000))
    event_id: UUID | None = None
    created_at: datetime | None = _stamp()


class Statement(SQLModel, table=True):
    """A closed period's statement sent to a customer for confirmation (客户对账)."""

    __tablename__ = "statements"
    __table_args__ = {"schema": SCHEMA}

    id: UUID = Field(primary_key=True)
    customer_id: UUID = Field(index=True)
    period: str = Field(sa_type=String(7))
    version: int
    closing: Decimal = Field(sa_type=MONEY)
    status: str = Field(default="sent", sa_type=String(10))  # sent | confirmed | disputed
    sent_by: str = Field(sa_type=String(200))
    sent_at: datetime | None = _stamp()
    responded_by: str | None = Field(default=None, sa_type=String(200))
    responded_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    reason: str | None = Field(default=None, sa_type=String(1000))
    disputed_documents: list[str] | None = _json()


class PendingAllocation(SQLModel, table=True):
    """An allocation a payment made to an order the payments service had not seen yet, until
    it is applied or released (`resolved_at`); kept afterwards so a replay cannot revive it."""

    __tablename__ = "pending_allocations"
    __table_args__ = (
        Index(
            "ix_pending_allocations_unresolved",
            "business_date",
            postgresql_where=text("resolved_at IS NULL"),
        ),
        {"schema": SCHEMA},
    )

    allocation_id: UUID = Field(primary_key=True)
    payment_id: UUID
    payment_number: str = Field(sa_type=String(30))
    customer_id: UUID
    order_id: UUID
    amount: Decimal = Field(sa_type=MONEY)
    business_date: date
    pending_since: datetime = Field(sa_type=DateTime(timezone=True))
    resolved_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    resolution: str | None = Field(default=None, sa_type=String(200))
