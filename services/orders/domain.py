"""The arithmetic of orders and credit notes, free of I/O so it can be tested exhaustively.

Every amount is rounded half-up per line (SPEC §2) and totals are sums of rounded lines.
Returns use cumulative rounding: after a return the line has given back
round(line amount × returned quantity ÷ quantity), so the return that empties a line takes
exactly what is left of it and credit notes can never exceed the invoice by a rounding cent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from services.orders.models import OrderStatus
from shared.money import ZERO, line_amounts, round_money

S = OrderStatus

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.DRAFT: frozenset({S.SUBMITTED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.CONFIRMED, S.REJECTED, S.CANCELLED}),
    S.CONFIRMED: frozenset({S.FULFILLED, S.CANCELLED}),
    S.FULFILLED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}
"""The statuses an order may move to from each status (see service.py for the diagram)."""


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

    def explain(self, number: str) -> str:
        return (
            f"order {number} ({self.order_gross}) would take the customer's open "
            f"receivable from {self.open_receivable} to {self.open_receivable + self.order_gross},"
            f" over the credit limit of {self.credit_limit}; it is held in submitted until an "
            "approver approves it"
        )
