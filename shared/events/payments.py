"""Events published by the payments service on `salesbook.payments`, keyed by customer_id.

An order's `paid` is the sum of its `payment.allocated` amounts less the
`payment.allocation_released` amounts whose `was_applied` is true. A pending allocation
(to an order the payments service has not seen yet) is not paid until it is allocated.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared.events.envelope import EventPayload, payload_type
from shared.money import Money

SOURCE = "payments"

AllocationStatus = Literal["applied", "pending", "released"]


class AllocationState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    allocation_id: UUID
    order_id: UUID
    amount: Money
    status: AllocationStatus


@payload_type("payment.received")
class PaymentReceived(EventPayload):
    """Money in: Dr cash:{method} / Cr ar:{customer}, dated received_at (the envelope's period)."""

    payment_id: UUID
    number: str
    customer_id: UUID
    amount: Money
    method: str
    received_at: datetime
    business_date: date
    reference: str | None
    allocations: list[AllocationState]


@payload_type("payment.allocated")
class PaymentAllocated(EventPayload):
    """An allocation now counts against the order's outstanding amount."""

    allocation_id: UUID
    payment_id: UUID
    payment_number: str
    customer_id: UUID
    order_id: UUID
    amount: Money
    business_date: date


@payload_type("payment.allocation_released")
class AllocationReleased(EventPayload):
    """An allocation went back to the payment's unapplied credit (cancelled order, credit note,
    refund, or a pending allocation that failed its check)."""

    allocation_id: UUID
    payment_id: UUID
    customer_id: UUID
    order_id: UUID
    amount: Money
    was_applied: bool
    reason: str
    business_date: date | None = None  # the date of what caused it (refund, credit note, …)


@payload_type("payment.refunded")
class PaymentRefunded(EventPayload):
    """Money out: Dr ar:{customer} / Cr cash:{method}, dated on the refund date."""

    refund_id: UUID
    payment_id: UUID
    payment_number: str
    customer_id: UUID
    amount: Money
    method: str
    business_date: date
    reason: str | None
    released_allocations: list[UUID]
