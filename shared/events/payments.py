"""Events published by the payments service on `salesbook.payments`, keyed by customer_id.

An order's `paid` is the sum of its `payment.allocated` amounts less the
`payment.allocation_released` amounts whose `was_applied` is true. A pending allocation
(to an order the payments service has not seen yet) is not paid until it is allocated.
An allocation may be released in several parts (a refund or a credit note that takes only
some of it): each part is one `payment.allocation_released` naming the allocation it
reduces, so a consumer that keeps allocations by id can apply every part exactly.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared.events.envelope import EventPayload, payload_type
from shared.money import EventMoney

SOURCE = "payments"

AllocationStatus = Literal["applied", "pending", "released"]


class AllocationState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    allocation_id: UUID
    order_id: UUID
    amount: EventMoney
    status: AllocationStatus


@payload_type("payment.received")
class PaymentReceived(EventPayload):
    """Money in: Dr cash:{method} / Cr ar:{customer}, dated received_at (the envelope's period)."""

    payment_id: UUID
    number: str
    customer_id: UUID
    amount: EventMoney
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
    amount: EventMoney
    business_date: date


@payload_type("payment.allocation_pending")
class AllocationPending(EventPayload):
    """An allocation to an order this service does not know yet: it is checked, and then
    allocated or released, when the order's event arrives. Raised wherever one is made (a
    new payment's allocations[] also lists it, as pending)."""

    allocation_id: UUID
    payment_id: UUID
    payment_number: str
    customer_id: UUID
    order_id: UUID
    amount: EventMoney
    business_date: date
    created_at: datetime


@payload_type("payment.allocation_released", version=2)
class AllocationReleased(EventPayload):
    """All or part of an allocation went back to the payment's unapplied credit (cancelled
    order, credit note, refund, or a pending allocation that failed its check).

    Version 2: `allocation_id` is the allocation being reduced (the id its
    `payment.allocated` carried), `amount` what this release takes from it, `remaining` what
    is left of it afterwards (0.00 when released in full) and `release_id` names this release
    alone, so a consumer can tell two releases of one allocation apart and never count one
    twice. Version 1 events (still in outboxes, without `release_id`) named, for a partial
    release, a new id of the released part that no `payment.allocated` ever carried; for a
    full release, the allocation itself.
    """

    allocation_id: UUID
    payment_id: UUID
    customer_id: UUID
    order_id: UUID
    amount: EventMoney
    was_applied: bool
    reason: str
    business_date: date | None = None  # the date of what caused it (refund, credit note, …)
    release_id: UUID | None = None  # None only in version 1 events
    remaining: EventMoney | None = None  # None only in version 1 events


@payload_type("payment.refunded")
class PaymentRefunded(EventPayload):
    """Money out: Dr ar:{customer} / Cr cash:{method}, dated on the refund date."""

    refund_id: UUID
    payment_id: UUID
    payment_number: str
    customer_id: UUID
    amount: EventMoney
    method: str
    business_date: date
    reason: str | None
    released_allocations: list[UUID]
