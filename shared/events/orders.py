"""Events published by the orders service on `salesbook.orders`, keyed by customer_id."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared.events.envelope import EventPayload, payload_type
from shared.money import EventMoney, EventQuantity, EventRate

SOURCE = "orders"


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


@payload_type("customer.created")
class CustomerCreated(EventPayload):
    customer_id: UUID
    name: str
    contact: str | None
    region: str | None
    segment: str | None
    payment_terms_days: int
    credit_limit: EventMoney | None
    created_at: datetime


@payload_type("customer.updated")
class CustomerUpdated(EventPayload):
    customer_id: UUID
    name: str
    contact: str | None
    region: str | None
    segment: str | None
    payment_terms_days: int
    credit_limit: EventMoney | None
    changed: list[str]


@payload_type("product.created")
class ProductCreated(EventPayload):
    sku: str
    name: str
    category: str | None
    unit_price: EventMoney
    tax_rate: EventRate
    active: bool


@payload_type("product.updated")
class ProductUpdated(EventPayload):
    sku: str
    name: str
    category: str | None
    unit_price: EventMoney
    tax_rate: EventRate
    active: bool
    changed: list[str]


class OrderLine(_Part):
    line_no: int
    sku: str
    name: str
    category: str | None
    quantity: EventQuantity
    unit_price: EventMoney
    discount: EventMoney
    tax_rate: EventRate
    net: EventMoney
    tax: EventMoney
    gross: EventMoney


class Instalment(_Part):
    due_date: date
    amount: EventMoney


class OrderFacts(_Part):
    """What an order is, as every consumer needs it: amounts and the dimensions of analysis."""

    order_id: UUID
    number: str
    customer_id: UUID
    customer_name: str
    region: str | None
    segment: str | None
    channel: str
    salesperson: str | None
    created_by: str
    lines: list[OrderLine]
    net: EventMoney
    tax: EventMoney
    gross: EventMoney


@payload_type("order.submitted")
class OrderSubmitted(EventPayload):
    order: OrderFacts
    submitted_at: datetime
    approvals_required: int
    # The day the order counts on, as its confirmation will: its backdated business date, or
    # the submission's date in the business time zone. None in events written before it.
    business_date: date | None = None


class SubmissionDay(EventPayload):
    """The part of `order.submitted` that counts it in the sales funnel, read without the
    order's lines: validating those costs more than the rest of counting it."""

    submitted_at: datetime
    business_date: date | None = None


@payload_type("order.approved")
class OrderApproved(EventPayload):
    order_id: UUID
    customer_id: UUID
    approver: str
    approvals: int
    approvals_required: int


@payload_type("order.rejected")
class OrderRejected(EventPayload):
    order_id: UUID
    customer_id: UUID
    by: str
    reason: str | None


@payload_type("order.confirmed")
class OrderConfirmed(EventPayload):
    """The invoice: receivable recognised on business_date (the envelope's period)."""

    order: OrderFacts
    invoice_number: str
    business_date: date
    due_date: date
    instalments: list[Instalment]
    confirmed_at: datetime


@payload_type("order.fulfilled")
class OrderFulfilled(EventPayload):
    order_id: UUID
    customer_id: UUID
    fulfilled_at: datetime


@payload_type("order.cancelled")
class OrderCancelled(EventPayload):
    """A cancellation; when the order was confirmed it reverses what is left of its invoice
    (gross less what credit notes already took back), dated on the cancellation date."""

    order_id: UUID
    number: str
    customer_id: UUID
    was_confirmed: bool
    invoice_number: str | None
    business_date: date
    reversed_net: EventMoney
    reversed_tax: EventMoney
    reversed_gross: EventMoney
    reason: str | None


class ReturnedLine(_Part):
    line_no: int
    sku: str
    category: str | None
    quantity: EventQuantity
    net: EventMoney
    tax: EventMoney
    gross: EventMoney


@payload_type("order.returned")
class OrderReturned(EventPayload):
    """A credit note against a confirmed or fulfilled order."""

    credit_note_id: UUID
    credit_note_number: str
    order_id: UUID
    customer_id: UUID
    business_date: date
    lines: list[ReturnedLine]
    net: EventMoney
    tax: EventMoney
    gross: EventMoney
    reason: str | None


__all__ = [
    "CustomerCreated",
    "CustomerUpdated",
    "Instalment",
    "OrderApproved",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderFacts",
    "OrderFulfilled",
    "OrderLine",
    "OrderRejected",
    "OrderReturned",
    "OrderSubmitted",
    "ProductCreated",
    "ProductUpdated",
    "ReturnedLine",
]
