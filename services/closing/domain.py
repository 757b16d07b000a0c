"""The rules of the month-end close and of the ledger as plain Python, free of I/O: period
statuses and the moves between them, when a period may be closed, how control totals are
matched, the posting each event calls for, and which period a late document is posted to.
The ageing of open invoices is shared/ageing.py (the reference closing's SQL is held equal
to).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

from shared.errors import Conflict, InvalidInput
from shared.events.closing import ORDERS_KINDS, PAYMENTS_KINDS
from shared.events.envelope import Event, EventPayload
from shared.events.orders import OrderCancelled, OrderConfirmed, OrderReturned
from shared.events.payments import PaymentReceived, PaymentRefunded
from shared.periods import Period

ZERO = Decimal("0.00")
SOURCES_KINDS = {"orders": ORDERS_KINDS, "payments": PAYMENTS_KINDS}
ACTIVITY_COLUMNS = ("invoiced", "returned", "received", "refunded")
# Releases of a pending allocation that are ordinary business, not a failed check of it: a
# refund took it back. One whose order was cancelled or rejected failed its check (SPEC §4).
ORDINARY_RELEASES = ("refund", "credit note left the order overpaid")


class PeriodStatus(StrEnum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    STALE = "stale"  # closed, but an earlier period was reopened since


P = PeriodStatus

MOVES: dict[str, tuple[frozenset[PeriodStatus], PeriodStatus]] = {
    "close": (frozenset({P.OPEN, P.STALE}), P.CLOSING),
    "complete": (frozenset({P.CLOSING}), P.CLOSED),
    "abort": (frozenset({P.CLOSING}), P.OPEN),
    "reopen": (frozenset({P.CLOSED, P.STALE}), P.OPEN),
    "stale": (frozenset({P.CLOSED}), P.STALE),  # an earlier period was reopened
}
"""Each move of a period: the statuses it may start from and the status it leads to."""

TRANSITIONS: dict[PeriodStatus, frozenset[PeriodStatus]] = {
    status: frozenset(to for starts, to in MOVES.values() if status in starts) for status in P
}


def may(move: str, status: str) -> bool:
    """Whether a period in `status` may make `move`."""
    return PeriodStatus(status) in MOVES[move][0]


class PeriodOutOfOrder(Conflict):
    title = "Earlier period not closed"


def check_begun(period: str, today: date) -> None:
    """A period can be closed from its first day on, `today` being the business date (the
    calendar date in the business time zone, not in UTC)."""
    if Period.parse(period) > Period.of(today):
        raise InvalidInput("period", f"{period} has not begun yet (today is {today.isoformat()})")


def compare(control: dict[str, Any], arrived: dict[str, Any]) -> dict[str, Any]:
    """Expected vs arrived per source and kind, and whether the close can complete."""
    waiting = [s for s in SOURCES_KINDS if s not in control]
    mismatches = []
    impossible = []
    for source, kinds in SOURCES_KINDS.items():
        for kind in kinds:
            expected = (control.get(source) or {}).get(kind)
            got = arrived.get(kind, {"count": 0, "amount": "0.00"})
            if expected is None:
                continue
            if expected["count"] != got["count"] or Decimal(expected["amount"]) != Decimal(
                got["amount"]
            ):
                mismatches.append(
                    {"source": source, "kind": kind, "expected": expected, "arrived": got}
                )
                if got["count"] > expected["count"]:
                    impossible.append(
                        f"the ledger holds more {kind} documents than {source} reported"
                    )
    return {
        "waiting_for_cutoff": waiting,
        "mismatches": mismatches,
        "complete": not waiting and not mismatches,
        "impossible": impossible,
    }


@dataclass
class Posting:
    """A document as the ledger sees it."""

    event: Event
    kind: str
    document_id: UUID
    document_number: str | None
    order_id: UUID | None
    customer_id: UUID
    business_date: date
    amount: Decimal  # signed effect on the customer's receivable
    control_amount: Decimal  # what the source's control total sums for this kind
    activity: dict[str, Decimal]
    lines: list[tuple[str, Decimal, Decimal]]  # account, debit, credit

    def balanced(self) -> bool:
        return sum(d for _, d, _ in self.lines) == sum(c for _, _, c in self.lines)


def posting_of(event: Event, payload: EventPayload) -> Posting | None:
    """The ledger posting an event calls for, if any."""
    match payload:
        case OrderConfirmed() as inv:
            c = inv.order.customer_id
            return Posting(
                event,
                "invoice",
                inv.order.order_id,
                inv.invoice_number,
                inv.order.order_id,
                c,
                inv.business_date,
                inv.order.gross,
                inv.order.gross,
                {"invoiced": inv.order.gross},
                [
                    (f"ar:{c}", inv.order.gross, ZERO),
                    ("revenue", ZERO, inv.order.net),
                    ("tax_payable", ZERO, inv.order.tax),
                ],
            )
        case OrderReturned() as crn:
            c = crn.customer_id
            return Posting(
                event,
                "credit_note",
                crn.credit_note_id,
                crn.credit_note_number,
                crn.order_id,
                c,
                crn.business_date,
                -crn.gross,
                crn.gross,
                {"returned": crn.gross},
                [
                    ("sales_returns", crn.net, ZERO),
                    ("tax_payable", crn.tax, ZERO),
                    (f"ar:{c}", ZERO, crn.gross),
                ],
            )
        case OrderCancelled() as cnl if cnl.was_confirmed:
            c = cnl.customer_id
            return Posting(
                event,
                "cancellation",
                cnl.order_id,
                cnl.invoice_number,
                cnl.order_id,
                c,
                cnl.business_date,
                -cnl.reversed_gross,
                cnl.reversed_gross,
                {"invoiced": -cnl.reversed_gross},
                [
                    ("revenue", cnl.reversed_net, ZERO),
                    ("tax_payable", cnl.reversed_tax, ZERO),
                    (f"ar:{c}", ZERO, cnl.reversed_gross),
                ],
            )
        case PaymentReceived() as pay:
            c = pay.customer_id
            return Posting(
                event,
                "payment",
                pay.payment_id,
                pay.number,
                None,
                c,
                pay.business_date,
                -pay.amount,
                pay.amount,
                {"received": pay.amount},
                [(f"cash:{pay.method}", pay.amount, ZERO), (f"ar:{c}", ZERO, pay.amount)],
            )
        case PaymentRefunded() as ref:
            c = ref.customer_id
            return Posting(
                event,
                "refund",
                ref.refund_id,
                ref.payment_number,
                None,
                c,
                ref.business_date,
                ref.amount,
                ref.amount,
                {"refunded": ref.amount},
                [(f"ar:{c}", ref.amount, ZERO), (f"cash:{ref.method}", ZERO, ref.amount)],
            )
    return None


class PeriodBook:
    """Which period a document dated into `period` is posted to (late ones move forward).

    Periods close in order, so a closed period closes the months before it too: a document
    dated into an earlier month that was never closed (it was empty when the later one
    closed) is late as well, and moves past the latest closed period. A month before a
    `stale` one was reopened, and takes documents."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses
        self._posting: dict[str, str] = {}  # dated -> posted into, until a status changes

    def set_status(self, period: str, status: str) -> None:
        self.statuses[period] = status
        self._posting.clear()

    def posting_period(self, dated: str) -> str:
        posted = self._posting.get(dated)
        if posted is None:
            posted = self._posting[dated] = self._posting_period(dated)
        return posted

    def _posting_period(self, dated: str) -> str:
        period = dated
        while self.statuses.get(period) == "closed":
            period = str(Period.parse(period).next())
        if period != dated or self.statuses.get(dated, "open") != "open":
            return period
        # An open month: was a later one closed?
        latest = max((p for p, s in self.statuses.items() if s == "closed"), default=None)
        if latest is None or latest < dated:
            return period
        return self._posting_period(latest)
