"""Request and response models of the payments API."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.money import Money


class Method(StrEnum):
    CASH = "cash"
    CARD = "card"
    ALIPAY = "alipay"
    WECHAT = "wechat"
    BANK_TRANSFER = "bank_transfer"
    OTHER = "other"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AllocationRequest(_Input):
    order_id: UUID
    amount: Money = Field(gt=0)


class PaymentCreate(_Input):
    customer_id: UUID
    amount: Money = Field(gt=0)
    method: Method
    currency: str | None = Field(default=None, description="Must be the deployment currency")
    received_at: datetime | None = Field(
        default=None, description="When the money came in; an earlier time only into an open period"
    )
    reference: str | None = Field(default=None, max_length=200)
    allocations: list[AllocationRequest] = Field(default_factory=list, max_length=500)


class AllocationsCreate(_Input):
    """Apply unapplied credit: either `allocations[]`, or one `order_id` with `amount`."""

    allocations: list[AllocationRequest] = Field(default_factory=list, max_length=500)
    order_id: UUID | None = None
    amount: Money | None = Field(default=None, gt=0)

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
    amount: Money = Field(gt=0)
    reason: str | None = Field(default=None, max_length=500)
    business_date: date | None = Field(
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
