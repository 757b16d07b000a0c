"""The rules of payments without a database: allocation statuses, what may be allocated,
how a refund splits, which allocations a release takes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.payments.domain import (
    TRANSITIONS,
    AllocationStatus,
    OverAllocation,
    OverRefund,
    allocated,
    allocation_status,
    check_unapplied_covers,
    split_refund,
    take_newest,
    unapplied,
)
from shared.errors import Conflict

A = AllocationStatus
D = Decimal
CUSTOMER = uuid4()


@dataclass
class Order:
    customer_id: UUID
    number: str
    status: str
    open_amount: Decimal


def order(status: str = "confirmed", open_amount: str = "100.00") -> Order:
    return Order(CUSTOMER, "SO-2026-000001", status, D(open_amount))


def test_a_released_allocation_is_final() -> None:
    assert TRANSITIONS[A.RELEASED] == frozenset()
    assert A.APPLIED in TRANSITIONS[A.PENDING] and A.PENDING not in TRANSITIONS[A.APPLIED]


def test_an_allocation_applies_to_an_invoice_and_waits_for_an_order_not_yet_invoiced() -> None:
    assert allocation_status(None, CUSTOMER, D(1), "f") == A.PENDING
    assert allocation_status(order("submitted"), CUSTOMER, D(100), "f") == A.PENDING
    waiting = D("60.00")  # what pending allocations already ask of the order
    assert allocation_status(order("submitted"), CUSTOMER, D(40), "f", waiting=waiting) == A.PENDING
    assert allocation_status(order("confirmed"), CUSTOMER, D("100.00"), "f") == A.APPLIED
    assert allocation_status(order("fulfilled"), CUSTOMER, D("0.01"), "f") == A.APPLIED


@pytest.mark.parametrize(
    ("known", "customer", "amount", "refusal", "named"),
    [
        (order("confirmed"), uuid4(), D(1), Conflict, "order_id"),
        (order("cancelled"), CUSTOMER, D(1), Conflict, "order_id"),
        (order("rejected"), CUSTOMER, D(1), Conflict, "order_id"),
        (order("confirmed", "99.99"), CUSTOMER, D("100.00"), OverAllocation, "amount"),
        (order("submitted", "99.99"), CUSTOMER, D("100.00"), OverAllocation, "amount"),
    ],
)
def test_refused_allocations_name_their_field(
    known: Order, customer: UUID, amount: Decimal, refusal: type[Conflict], named: str
) -> None:
    with pytest.raises(refusal) as refused:
        allocation_status(known, customer, amount, "allocations.2")
    assert refused.value.extra["field"] == f"allocations.2.{named}"
    # A body that is the allocation itself ({"order_id": ..., "amount": ...}) names its field.
    with pytest.raises(refusal) as refused:
        allocation_status(known, customer, amount, "")
    assert refused.value.extra["field"] == named
    assert refused.value.detail.startswith(f"{named}: ")


def test_an_order_awaiting_approval_takes_what_pending_allocations_leave_of_it() -> None:
    with pytest.raises(OverAllocation) as refused:
        allocation_status(order("submitted"), CUSTOMER, D("40.01"), "f", waiting=D("60.00"))
    assert refused.value.extra["open_amount"] == "40.00"
    with pytest.raises(OverAllocation) as refused:  # more waits than it can take already
        allocation_status(order("submitted"), CUSTOMER, D("0.01"), "f", waiting=D("120.00"))
    assert refused.value.extra["open_amount"] == "0.00"


def test_allocations_take_at_most_the_unapplied_credit() -> None:
    check_unapplied_covers(D("10.00"), unapplied=D("10.00"), name="PAY-1")
    with pytest.raises(OverAllocation, match=r"PAY-1 has 9\.99 unapplied"):
        check_unapplied_covers(D("10.00"), unapplied=D("9.99"), name="PAY-1")


def test_the_payment_identity() -> None:
    rows = [("applied", D("30.00")), ("pending", D("20.00")), ("released", D("50.00"))]
    assert allocated(rows) == D("50.00")
    assert unapplied(amount=D("100.00"), refunded=D("10.00"), allocated=D("50.00")) == D("40.00")


def test_a_refund_takes_unapplied_credit_first() -> None:
    split = split_refund(
        amount=D("70.00"),
        payment_amount=D("100.00"),
        refunded=D("0"),
        unapplied=D("50.00"),
        number="PAY-1",
    )
    assert (split.from_unapplied, split.to_release) == (D("50.00"), D("20.00"))
    with pytest.raises(OverRefund):
        split_refund(
            amount=D("60.01"),
            payment_amount=D("100.00"),
            refunded=D("40.00"),
            unapplied=D("60.00"),
            number="PAY-1",
        )


@given(
    st.lists(st.decimals(min_value=D("0.01"), max_value=D("1000"), places=2), max_size=6),
    st.decimals(min_value=D("-5"), max_value=D("7000"), places=2),
)
def test_a_release_takes_whole_allocations_newest_first_and_splits_only_the_last(
    amounts: list[Decimal], wanted: Decimal
) -> None:
    parts = take_newest(amounts, wanted, amount_of=lambda a: a)
    taken = [part for _, part in parts]
    assert sum(taken, D(0)) == max(D(0), min(wanted, sum(amounts, D(0))))
    assert [item for item, _ in parts] == amounts[: len(parts)]
    assert all(part == item for item, part in parts[:-1])
    assert all(D(0) < part <= item for item, part in parts)
