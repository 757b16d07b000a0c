"""Request and response models of the orders API (Create / Update / Public)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StringConstraints,
)

from services.orders.domain import Channel, OrderStatus
from shared.limits import (
    NOT_CLEARABLE,
    UNSIGNED,
    Amount,
    BusinessDate,
    Currency,
    PositiveAmount,
    PositiveQuantity,
    StrictMoney,
    TaxRate,
    WholeNumber,
    decimal_schema,
    text,
)
from shared.money import Money, Quantity, Rate

MAX_LINES = 200
MAX_INSTALMENTS = 120
MAX_LIMIT = Decimal("1000000000000000")

Name = Annotated[str, *text(strip=True, min_length=1, max_length=200)]
Label = Annotated[str, *text(strip=True, max_length=100)]
Contact = Annotated[str, *text(strip=True, max_length=200)]
Note = Annotated[str, *text(max_length=2000)]
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Sku = Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
Filter = Annotated[str, *text(max_length=200)]
"""A text filter of a list query."""
Person = Annotated[str, *text(strip=True, min_length=1, max_length=100)]
"""A salesperson: as long as analytics keeps one (its dimension columns hold 100)."""

Price = Amount
CreditLimit = Annotated[
    StrictMoney, UNSIGNED, Field(ge=0, le=MAX_LIMIT), decimal_schema(places=2, top=MAX_LIMIT)
]
# Integers and booleans as JSON writes them: "7", 7.0, true for 1 or 0 for false are 422.
Terms = Annotated[int, Field(ge=0, le=3650), WholeNumber, Strict()]


def tidy(value: Decimal) -> Decimal:
    """Drop the trailing zeros a NUMERIC column adds (1.500 → 1.5, 0.1300 → 0.13)."""
    return value.normalize()


# Output types: quantities and rates as the client would write them.
QuantityOut = Annotated[Quantity, AfterValidator(tidy)]
RateOut = Annotated[Rate, AfterValidator(tidy)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Customers ---------------------------------------------------------------------------------


class CustomerCreate(_Input):
    name: Name
    contact: Contact | None = None
    region: Label | None = None
    segment: Label | None = None
    payment_terms_days: Terms = 0
    credit_limit: CreditLimit | None = None


class CustomerUpdate(_Input):
    """Only the fields sent are changed; send null to clear an optional one (name and
    payment_terms_days cannot be cleared: the document says they take no null)."""

    name: Annotated[Name | None, NOT_CLEARABLE] = None
    contact: Contact | None = None
    region: Label | None = None
    segment: Label | None = None
    payment_terms_days: Annotated[Terms | None, NOT_CLEARABLE] = None
    credit_limit: CreditLimit | None = None


class CustomerPublic(BaseModel):
    id: UUID
    name: str
    contact: str | None
    region: str | None
    segment: str | None
    payment_terms_days: int
    credit_limit: Money | None
    created_by: str
    created_at: datetime
    updated_at: datetime


# Products ----------------------------------------------------------------------------------


class ProductCreate(_Input):
    sku: Sku
    name: Name
    category: Label | None = None
    unit_price: Price
    tax_rate: TaxRate
    active: StrictBool = True


class ProductUpdate(_Input):
    """Only the fields sent are changed; only category can be cleared (with null)."""

    name: Annotated[Name | None, NOT_CLEARABLE] = None
    category: Label | None = None
    unit_price: Annotated[Price | None, NOT_CLEARABLE] = None
    tax_rate: Annotated[TaxRate | None, NOT_CLEARABLE] = None
    active: Annotated[StrictBool | None, NOT_CLEARABLE] = None


class ProductPublic(BaseModel):
    sku: str
    name: str
    category: str | None
    unit_price: Money
    tax_rate: RateOut
    active: bool
    created_at: datetime
    updated_at: datetime


# Orders ------------------------------------------------------------------------------------


class LineCreate(_Input):
    sku: Sku
    quantity: PositiveQuantity
    unit_price: Price | None = Field(None, description="Overrides the product's price")
    discount: Amount = Decimal("0.00")


class InstalmentIn(_Input):
    due_date: BusinessDate
    amount: PositiveAmount


class OrderCreate(_Input):
    customer_id: UUID
    channel: Channel
    salesperson: Person | None = None
    lines: Annotated[list[LineCreate], Field(min_length=1, max_length=MAX_LINES)]
    currency: Currency | None = Field(None, description="Must be the deployment's currency if sent")
    business_date: BusinessDate | None = Field(
        None, description="An earlier date for the invoice, in an open period; never future"
    )
    note: Note | None = None
    instalments: Annotated[list[InstalmentIn], Field(max_length=MAX_INSTALMENTS)] = []
    submit: StrictBool = Field(False, description="Submit at once (the POS path)")


class Reason(_Input):
    reason: Note | None = None


REDATED = (
    "Date the order anew, as its invoice will be dated: for an order dated into a period "
    "closed since. A date in an open period, never in the future, nor after an instalment "
    "falls due"
)


class SubmitIn(Reason):
    business_date: BusinessDate | None = Field(None, description=REDATED)


class ApprovalIn(Reason):
    business_date: BusinessDate | None = Field(None, description=REDATED)


class ReturnLineIn(_Input):
    sku: Sku
    quantity: PositiveQuantity
    line_no: Annotated[int, Field(ge=1, le=MAX_LINES), WholeNumber, Strict()] | None = Field(
        None, description="Which line of the sku; by default its lines in order"
    )


class ReturnCreate(_Input):
    lines: Annotated[list[ReturnLineIn], Field(min_length=1, max_length=MAX_LINES)]
    business_date: BusinessDate | None = None
    reason: Note | None = None


class LinePublic(BaseModel):
    line_no: int
    sku: str
    name: str
    category: str | None
    quantity: QuantityOut
    unit_price: Money
    discount: Money
    tax_rate: RateOut
    net: Money
    tax: Money
    gross: Money
    returned_quantity: QuantityOut


class InstalmentPublic(BaseModel):
    due_date: date
    amount: Money


class ApprovalPublic(BaseModel):
    approver: str
    role: str
    at: datetime
    note: str | None


class HistoryEntry(BaseModel):
    at: datetime
    actor: str
    role: str
    from_status: OrderStatus | None
    to_status: OrderStatus
    reason: str | None


class CreditNoteLinePublic(BaseModel):
    line_no: int
    sku: str
    quantity: QuantityOut
    net: Money
    tax: Money
    gross: Money


class CreditNotePublic(BaseModel):
    id: UUID
    number: str
    order_id: UUID
    business_date: date
    period: str
    net: Money
    tax: Money
    gross: Money
    reason: str | None
    lines: list[CreditNoteLinePublic]
    created_by: str
    created_at: datetime


class OrderPublic(BaseModel):
    id: UUID
    number: str
    customer_id: UUID
    status: OrderStatus
    channel: Channel
    salesperson: str | None
    note: str | None
    currency: str
    lines: list[LinePublic]
    net: Money
    tax: Money
    gross: Money
    paid: Money
    credited: Money
    outstanding: Money
    business_date: date | None
    period: str | None
    invoice_number: str | None
    due_date: date | None
    instalments: list[InstalmentPublic]
    approvals_required: int
    approvals: list[ApprovalPublic]
    credit_hold: bool
    credit_notes: list[CreditNotePublic]
    history: list[HistoryEntry]
    created_by: str
    created_at: datetime
    updated_at: datetime
