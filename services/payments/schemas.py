"""Request and response models of the payments API."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.limits import BusinessDate, Currency, Moment, PositiveAmount, text
from shared.money import Money


class Method(StrEnum):
    CASH = "cash"
    CARD = "card"
    ALIPAY = "alipay"
    WECHAT = "wechat"
    BANK_TRANSFER = "bank_transfer"
    OTHER = "other"


Reference = Annotated[str, *text(max_length=200)]
RefundReason = Annotated[str, *text(max_length=500)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AllocationRequest(_Input):
    order_id: UUID
    amount: PositiveAmount


class PaymentCreate(_Input):
    customer_id: UUID
    amount: PositiveAmount
    method: Method
    currency: Currency | None = Field(default=None, description="Must be the deployment currency")
    received_at: Moment | None = Field(
        default=None,
        description="When the money came in, with its offset (a time without one is UTC); "
        "an earlier time only into an open period",
    )
    reference: Reference | None = None
    allocations: list[AllocationRequest] = Field(default_factory=list, max_length=500)


def _one_shape_schema(schema: dict[str, Any]) -> None:
    """The document says what _one_shape checks: allocations[] (not empty), or order_id with
    amount, never both (a null order_id or amount is as if absent)."""
    schema["oneOf"] = [
        {
            "required": ["allocations"],
            "properties": {
                "allocations": {"minItems": 1},
                "order_id": {"type": "null"},
                "amount": {"type": "null"},
            },
        },
        {
            "required": ["order_id", "amount"],
            "properties": {
                "order_id": {"type": "string"},
                "amount": {"type": "string"},
                "allocations": {"maxItems": 0},
            },
        },
    ]


class AllocationsCreate(_Input):
    """Apply unapplied credit: either `allocations[]`, or one `order_id` with `amount`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_shape_schema)

    allocations: list[AllocationRequest] = Field(default_factory=list, max_length=500)
    order_id: UUID | None = None
    amount: PositiveAmount | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> AllocationsCreate:
        single = self.order_id is not None or self.amount is not None
        if single and self.allocations:
            raise ValueError("give either allocations[] or order_id with amount, not both")
        if single and (self.order_id is None or self.amount is None):
            raise ValueError("order_id and amount go together")
        if not single and not self.allocations:
            raise ValueError("allocations must not be empty")
        return self

    def requests(self) -> list[AllocationRequest]:
        if self.allocations:
            return self.allocations
        assert self.order_id is not None and self.amount is not None
        return [AllocationRequest(order_id=self.order_id, amount=self.amount)]


class RefundCreate(_Input):
    amount: PositiveAmount
    reason: RefundReason | None = None
    business_date: BusinessDate | None = Field(
        default=None, description="Refund date; an earlier date only into an open period"
    )


class AllocationPublic(BaseModel):
    id: UUID
    order_id: UUID
    amount: Money
    status: str
    reason: str | None
    created_at: datetime


class RefundPublic(BaseModel):
    id: UUID
    amount: Money
    business_date: date
    period: str
    reason: str | None
    created_by: str
    created_at: datetime


class PaymentPublic(BaseModel):
    id: UUID
    number: str
    customer_id: UUID
    amount: Money
    currency: str
    method: str
    received_at: datetime
    business_date: date
    period: str
    reference: str | None
    allocated: Money
    unapplied: Money
    refunded: Money
    allocations: list[AllocationPublic]
    refunds: list[RefundPublic]
    created_by: str
    created_at: datetime
