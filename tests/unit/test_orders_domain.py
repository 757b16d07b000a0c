"""The rules of orders without a database: statuses, approvals, the credit limit, what a
cancellation reverses."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.orders.domain import (
    TRANSITIONS,
    OrderStatus,
    approvals_on_submit,
    can_be_returned,
    can_move,
    cancellation_reversal,
    credit_hold,
)

S = OrderStatus
D = Decimal


def test_every_status_has_its_moves_and_final_statuses_have_none() -> None:
    assert set(TRANSITIONS) == set(OrderStatus)
    assert {s for s, moves in TRANSITIONS.items() if not moves} == {
        S.FULFILLED,
        S.REJECTED,
        S.CANCELLED,
    }


@pytest.mark.parametrize(
    ("start", "to", "allowed"),
    [
        (S.DRAFT, S.SUBMITTED, True),
        (S.DRAFT, S.CONFIRMED, False),
        (S.SUBMITTED, S.CONFIRMED, True),
        (S.SUBMITTED, S.REJECTED, True),
        (S.CONFIRMED, S.FULFILLED, True),
        (S.CONFIRMED, S.CANCELLED, True),
        (S.CONFIRMED, S.REJECTED, False),
        (S.FULFILLED, S.CANCELLED, False),
        (S.CANCELLED, S.DRAFT, False),
    ],
)
def test_moves(start: OrderStatus, to: OrderStatus, allowed: bool) -> None:
    assert can_move(start.value, to) is allowed


def test_only_invoiced_orders_can_be_returned() -> None:
    assert {s for s in OrderStatus if can_be_returned(s)} == {S.CONFIRMED, S.FULFILLED}


def test_the_credit_limit_may_be_reached_but_not_passed() -> None:
    assert credit_hold(credit_limit=None, open_receivable=D("1e9"), order_gross=D(1)) is None
    assert (
        credit_hold(credit_limit=D("100.00"), open_receivable=D("60.00"), order_gross=D("40.00"))
        is None
    )
    hold = credit_hold(credit_limit=D("100.00"), open_receivable=D("60.00"), order_gross=D("40.01"))
    assert hold is not None
    assert "from 60.00 to 100.01" in hold.explain("SO-2026-000001", "0192")


def test_a_held_order_needs_one_approval_and_is_held_only_if_it_would_have_confirmed() -> None:
    hold = credit_hold(credit_limit=D(0), open_receivable=D(0), order_gross=D(1))
    assert (approvals_on_submit(0, None).required, approvals_on_submit(0, None).held) == (0, False)
    assert (approvals_on_submit(0, hold).required, approvals_on_submit(0, hold).held) == (1, True)
    assert (approvals_on_submit(2, hold).required, approvals_on_submit(2, hold).held) == (2, False)


def test_cancelling_reverses_what_credit_notes_left_of_an_invoice() -> None:
    reversal = cancellation_reversal(
        was_confirmed=True,
        net=D("100.00"),
        tax=D("13.00"),
        credited_net=D("30.00"),
        credited_tax=D("3.90"),
    )
    assert (reversal.net, reversal.tax, reversal.gross) == (D("70.00"), D("9.10"), D("79.10"))
    nothing = cancellation_reversal(
        was_confirmed=False, net=D(100), tax=D(13), credited_net=D(0), credited_tax=D(0)
    )
    assert (nothing.net, nothing.tax, nothing.gross) == (D(0), D(0), D(0))
