"""The rules of orders as plain Python, free of I/O so they can be tested exhaustively:
statuses and the moves between them, pricing, approvals, the credit limit, what a
cancellation reverses and what a return gives back.

    draft ──submit──► submitted ──(enough approvals)──► confirmed ──fulfil──► fulfilled
      │                  │  └──reject──► rejected            │
      └──cancel──────────┴──cancel──► cancelled ◄──cancel────┘

Every amount is rounded half-up per line (SPEC §2) and totals are sums of rounded lines.
Returns use cumulative rounding: after a return the line has given back
round(line amount × returned quantity ÷ quantity), so the return that empties a line takes
exactly what is left of it and credit notes can never exceed the invoice by a rounding cent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from shared.money import ZERO, line_amounts, money_str, round_money


class OrderStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FULFILLED = "fulfilled"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class Channel(StrEnum):
    POS = "pos"
    ONLINE = "online"
    PHONE = "phone"
    FIELD = "field"
    OTHER = "other"


S = OrderStatus

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.DRAFT: frozenset({S.SUBMITTED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.CONFIRMED, S.REJECTED, S.CANCELLED}),
    S.CONFIRMED: frozenset({S.FULFILLED, S.CANCELLED}),
    S.FULFILLED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}

RECEIVABLE_STATUSES = (OrderStatus.CONFIRMED, OrderStatus.FULFILLED)
"""Statuses in which an order's invoice stands and its outstanding amount is owed."""


def can_move(status: str, to: OrderStatus) -> bool:
    """Whether an order in `status` may move to `to`."""
    return to in TRANSITIONS[OrderStatus(status)]


def can_be_returned(status: str) -> bool:
    """Only an invoiced order (confirmed or fulfilled) can have lines returned."""
    return status in RECEIVABLE_STATUSES


@dataclass(frozen=True)
class PricedLine:
    quantity: Decimal
    unit_price: Decimal
    discount: Decimal
    tax_rate: Decimal
    net: Decimal
    tax: Decimal
    gross: Decimal


def price_line(
    *, quantity: Decimal, unit_price: Decimal, discount: Decimal, tax_rate: Decimal
) -> PricedLine:
    """Net, tax and gross of one line."""
    net, tax, gross = line_amounts(
        quantity=quantity, unit_price=unit_price, discount=discount, tax_rate=tax_rate
    )
    return PricedLine(quantity, unit_price, discount, tax_rate, net, tax, gross)


@dataclass(frozen=True)
class Totals:
    net: Decimal
    tax: Decimal
    gross: Decimal


class Amounts(Protocol):
    """Anything with a rounded net and tax: a priced line, an order line, a credit note line."""

    @property
    def net(self) -> Decimal: ...

    @property
    def tax(self) -> Decimal: ...


def totals(lines: Iterable[Amounts]) -> Totals:
    """Sums of the already rounded lines."""
    net = tax = ZERO
    for line in lines:
        net += line.net
        tax += line.tax
    return Totals(net=net, tax=tax, gross=net + tax)


@dataclass(frozen=True)
class ReturnAmounts:
    net: Decimal
    tax: Decimal

    @property
    def gross(self) -> Decimal:
        return self.net + self.tax


def return_amounts(
    *,
    quantity: Decimal,
    net: Decimal,
    tax: Decimal,
    returned_quantity: Decimal,
    returned_net: Decimal,
    returned_tax: Decimal,
    returning: Decimal,
) -> ReturnAmounts:
    """What returning `returning` more units of a line gives back, given what earlier
    returns took. The caller has checked returned_quantity + returning <= quantity."""
    after = returned_quantity + returning
    if after == quantity:
        return ReturnAmounts(net=net - returned_net, tax=tax - returned_tax)
    share = after / quantity
    return ReturnAmounts(
        net=round_money(net * share) - returned_net,
        tax=round_money(tax * share) - returned_tax,
    )


def approvals_needed(gross: Decimal, thresholds: Iterable[Decimal]) -> int:
    """How many distinct approvers an order of this gross needs (one per threshold exceeded)."""
    return sum(1 for threshold in thresholds if gross > threshold)


@dataclass(frozen=True)
class CreditHold:
    """Why an order was held instead of confirmed."""

    credit_limit: Decimal
    open_receivable: Decimal
    order_gross: Decimal

    def explain(self, number: str, order_id: object) -> str:
        after = self.open_receivable + self.order_gross
        return (
            f"order {number} was saved but not confirmed: its gross of "
            f"{money_str(self.order_gross)} would take what the customer owes from "
            f"{money_str(self.open_receivable)} to {money_str(after)}, over the credit limit of "
            f"{money_str(self.credit_limit)}. It waits in status submitted until an approver "
            f"approves it (POST /v1/orders/{order_id}/approve) or rejects it"
        )


def credit_hold(
    *, credit_limit: Decimal | None, open_receivable: Decimal, order_gross: Decimal
) -> CreditHold | None:
    """A hold when confirming an order of `order_gross` would push the customer's open
    receivable over its credit limit (none without a limit; reaching it exactly is allowed)."""
    if credit_limit is None or open_receivable + order_gross <= credit_limit:
        return None
    return CreditHold(
        credit_limit=credit_limit, open_receivable=open_receivable, order_gross=order_gross
    )


@dataclass(frozen=True)
class Approvals:
    """How a submission stands: the approvals it needs, and whether the credit limit held back
    a confirmation that would otherwise have happened at once."""

    required: int
    held: bool


def approvals_on_submit(required: int, hold: CreditHold | None) -> Approvals:
    """An order held by the credit limit needs at least one approval (the override)."""
    if hold is None:
        return Approvals(required=required, held=False)
    return Approvals(required=max(required, 1), held=required == 0)


def cancellation_reversal(
    *,
    was_confirmed: bool,
    net: Decimal,
    tax: Decimal,
    credited_net: Decimal,
    credited_tax: Decimal,
) -> Totals:
    """What cancelling an order reverses: of a confirmed one, what its credit notes left of
    the invoice; of one never invoiced, nothing."""
    if not was_confirmed:
        return Totals(net=ZERO, tax=ZERO, gross=ZERO)
    reversed_net, reversed_tax = net - credited_net, tax - credited_tax
    return Totals(net=reversed_net, tax=reversed_tax, gross=reversed_net + reversed_tax)
