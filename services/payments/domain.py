"""The rules of payments as plain Python, free of I/O: allocation statuses and the moves
between them, whether an allocation may be made and whether it applies at once, how a
refund splits between unapplied credit and released allocations, and which allocations a
release takes, newest first.

    pending ──(order confirmed)──► applied
       │                             │
       └──────────► released ◄───────┘   (refund, order cancelled or rejected, credit note)

A payment's amount = allocated + unapplied + refunded, where `allocated` counts applied and
pending allocations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, TypeVar
from uuid import UUID

from shared.errors import Conflict

ZERO = Decimal("0.00")

T = TypeVar("T")


class AllocationStatus(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    RELEASED = "released"


A = AllocationStatus

TRANSITIONS: dict[AllocationStatus, frozenset[AllocationStatus]] = {
    A.PENDING: frozenset({A.APPLIED, A.RELEASED}),
    A.APPLIED: frozenset({A.RELEASED}),
    A.RELEASED: frozenset(),
}

LIVE = (A.PENDING, A.APPLIED)

# How far along an order of the replica is: its events may arrive out of order (an event
# published again after a broker lost it comes after newer ones), and an older one never
# takes the order back. A rejected or cancelled order is over.
ORDER_PROGRESS = {"submitted": 1, "confirmed": 2, "fulfilled": 3, "rejected": 4, "cancelled": 4}


def later_status(current: str, arriving: str) -> str:
    """The replica's status of an order at `current` when an event saying `arriving` comes."""
    return arriving if ORDER_PROGRESS[arriving] > ORDER_PROGRESS[current] else current


"""Statuses of an allocation that still holds part of its payment."""

INVOICED = ("confirmed", "fulfilled")
"""Order statuses in which an allocation applies to the order's invoice."""

ENDED = ("cancelled", "rejected")
"""Order statuses that take no allocation."""


class OverAllocation(Conflict):
    title = "Over-allocation"


class OverRefund(Conflict):
    title = "Over-refund"


class KnownOrderTerms(Protocol):
    """What payments knows of an order to judge an allocation to it."""

    @property
    def customer_id(self) -> UUID: ...

    @property
    def number(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def open_amount(self) -> Decimal: ...


def check_allocation(
    order: KnownOrderTerms,
    customer_id: UUID,
    amount: Decimal,
    at: str,
    *,
    waiting: Decimal = ZERO,
) -> None:
    """The rules an allocation to a known order must pass (409 otherwise); a refusal names
    the allocation's `order_id` or `amount` under `at`, the allocation's place in the body
    ("allocations.0"; "" when the body is the allocation itself).

    An order known but not confirmed yet takes no more than its gross less what pending
    allocations (`waiting`) already ask of it: more could never apply once it is confirmed."""
    order_field, amount_field = (f"{at}.{name}" if at else name for name in ("order_id", "amount"))
    if order.customer_id != customer_id:
        raise Conflict(
            f"{order_field}: order {order.number} belongs to another customer", field=order_field
        )
    if order.status in ENDED:
        raise Conflict(f"{order_field}: order {order.number} is {order.status}", field=order_field)
    if order.status in INVOICED and amount > order.open_amount:
        raise OverAllocation(
            f"{amount_field}: {amount} exceeds the {order.open_amount} still open on order "
            f"{order.number}",
            field=amount_field,
            open_amount=str(order.open_amount),
        )
    if order.status not in INVOICED and amount > order.open_amount - waiting:
        room = max(order.open_amount - waiting, ZERO)
        raise OverAllocation(
            f"{amount_field}: {amount} exceeds the {room} order {order.number} can still take "
            f"(its gross less the allocations already waiting for its confirmation)",
            field=amount_field,
            open_amount=str(room),
        )


def allocation_status(
    order: KnownOrderTerms | None,
    customer_id: UUID,
    amount: Decimal,
    at: str,
    *,
    waiting: Decimal = ZERO,
) -> AllocationStatus:
    """A new allocation applies at once to an invoiced order and waits (pending) for an order
    not yet known or not yet confirmed; one the rules refuse raises (409). `waiting` is what
    pending allocations already ask of a known order that is not confirmed yet."""
    if order is None:
        return A.PENDING
    check_allocation(order, customer_id, amount, at, waiting=waiting)
    return A.APPLIED if order.status in INVOICED else A.PENDING


def check_unapplied_covers(total: Decimal, *, unapplied: Decimal, name: str) -> None:
    """Allocations together may take at most the payment's unapplied credit (409)."""
    if total > unapplied:
        raise OverAllocation(
            f"allocations total {total}; {name} has {unapplied} unapplied",
            unapplied=str(unapplied),
        )


def unapplied(*, amount: Decimal, refunded: Decimal, allocated: Decimal) -> Decimal:
    """What of a payment is neither allocated nor refunded."""
    return amount - refunded - allocated


def allocated(allocations: Iterable[tuple[str, Decimal]]) -> Decimal:
    """The sum of the live allocations among (status, amount) pairs."""
    return sum((amount for status, amount in allocations if status in LIVE), ZERO)


@dataclass(frozen=True)
class RefundSplit:
    """Where a refund's money comes from: unapplied credit first, then released allocations."""

    from_unapplied: Decimal
    to_release: Decimal


def split_refund(
    *,
    amount: Decimal,
    payment_amount: Decimal,
    refunded: Decimal,
    unapplied: Decimal,
    number: str,
) -> RefundSplit:
    """Split a refund of `amount`; more than the payment has left to refund is 409."""
    refundable = payment_amount - refunded
    if amount > refundable:
        raise OverRefund(
            f"refund {amount} exceeds what is refundable on {number}: {refundable}",
            refundable=str(refundable),
        )
    from_unapplied = min(unapplied, amount)
    return RefundSplit(from_unapplied=from_unapplied, to_release=amount - from_unapplied)


def take_newest(
    newest_first: Iterable[T], amount: Decimal, *, amount_of: Callable[[T], Decimal]
) -> list[tuple[T, Decimal]]:
    """The parts of `amount` taken from items in the order given (newest first): each item
    whole until the last, which gives only what is still needed."""
    parts: list[tuple[T, Decimal]] = []
    remaining = amount
    for item in newest_first:
        if remaining <= ZERO:
            break
        part = min(amount_of(item), remaining)
        parts.append((item, part))
        remaining -= part
    return parts
