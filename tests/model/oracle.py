"""What the books must read, worked out from the specification alone (SPEC §2-§6) for the
documents a test sent: orders with their approvals, credit holds, returns and cancellation;
payments with their allocations, pending ones included, and refunds; closed months.

Nothing here reads the services' code or data: it is the independent side of the comparison.
"""

from __future__ import annotations

import calendar
import itertools
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tests.support.totals import LineTotals

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
THRESHOLDS = (Decimal(10000), Decimal(100000))
BUCKETS = ("current", "d1_30", "d31_60", "d61_90", "over_90")
_sequence = itertools.count(1)


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_end(month: str) -> date:
    year, number = int(month[:4]), int(month[5:])
    return date(year, number, calendar.monthrange(year, number)[1])


def bucket_of(days_late: int) -> str:
    """SPEC §5's ageing buckets (kept here rather than taken from the code under test)."""
    for bucket, most in (("current", 0), ("d1_30", 30), ("d31_60", 60), ("d61_90", 90)):
        if days_late <= most:
            return bucket
    return "over_90"


@dataclass
class Customer:
    id: str
    terms: int
    limit: Decimal | None


@dataclass
class Line:
    sku: str
    quantity: int
    price: Decimal
    rate: Decimal
    returned: int = 0

    @property
    def net(self) -> Decimal:
        return money(self.quantity * self.price)

    @property
    def tax(self) -> Decimal:
        return money(self.net * self.rate)


@dataclass
class Order(LineTotals):
    id: str
    customer: str
    lines: list[Line]
    day: date
    instalments: list[tuple[date, Decimal]]  # as sent; empty: the gross on the due date
    status: str = "submitted"
    approvals_needed: int = 0
    approvers: list[str] = field(default_factory=list)
    due: date | None = None
    credited: Decimal = ZERO
    credited_net: Decimal = ZERO
    credited_tax: Decimal = ZERO
    credits: list[tuple[date, Decimal, Decimal]] = field(default_factory=list)  # day, net, gross
    cancelled_on: date | None = None
    reversed_net: Decimal = ZERO
    reversed_gross: Decimal = ZERO
    was_confirmed: bool = False

    @property
    def receivable(self) -> bool:
        return self.status in ("confirmed", "fulfilled")


@dataclass
class Allocation:
    order: str
    amount: Decimal
    status: str  # applied | pending | released
    seq: int = field(default_factory=lambda: next(_sequence))


@dataclass
class Payment:
    id: str
    customer: str
    amount: Decimal
    day: date
    refunded: Decimal = ZERO
    refunds: list[tuple[date, Decimal]] = field(default_factory=list)
    allocations: list[Allocation] = field(default_factory=list)

    def total(self, status: str) -> Decimal:
        return sum((a.amount for a in self.allocations if a.status == status), ZERO)

    @property
    def allocated(self) -> Decimal:
        return self.total("applied") + self.total("pending")

    @property
    def unapplied(self) -> Decimal:
        return self.amount - self.refunded - self.allocated


class Refused(Exception):
    """The request must be refused with this status."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(f"{status}: {why}")
        self.status = status


@dataclass
class Books:
    months: list[str]  # the months the test may close, oldest first
    today: date
    customers: dict[str, Customer] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)
    # Receivable moves per order for ageing: (day, amount paid by allocation, + or -).
    paid_moves: dict[str, list[tuple[date, Decimal]]] = field(default_factory=dict)
    period_status: dict[str, str] = field(default_factory=dict)
    reopened: set[str] = field(default_factory=set)  # months reopened and not closed since
    # Pending allocations that failed their check when the order came: (order, amount).
    failed: list[tuple[str, Decimal]] = field(default_factory=list)
    closed: dict[str, dict[str, dict]] = field(default_factory=dict)  # month -> balances

    # --- reading ---------------------------------------------------------------------------

    def paid(self, order: Order) -> Decimal:
        return sum(
            (
                a.amount
                for p in self.payments.values()
                for a in p.allocations
                if a.order == order.id and a.status == "applied"
            ),
            ZERO,
        )

    def open_amount(self, order: Order) -> Decimal:
        return order.gross - order.credited - self.paid(order)

    def outstanding(self, order: Order) -> Decimal:
        return self.open_amount(order) if order.receivable else ZERO

    def locked(self, month: str) -> bool:
        """Closed to documents: its own close, or a later month's (months close in order, so
        a lock closes the months before it), unless it was reopened."""
        if self.period_status.get(month, "open") in ("closed", "stale"):
            return True
        return month not in self.reopened and any(
            later > month and status in ("closed", "stale")
            for later, status in self.period_status.items()
        )

    def open_receivable(self, customer: str, excluding: str | None = None) -> Decimal:
        return sum(
            (
                self.open_amount(o)
                for o in self.orders.values()
                if o.customer == customer and o.receivable and o.id != excluding
            ),
            ZERO,
        )

    # --- orders ----------------------------------------------------------------------------

    def submit(self, order: Order) -> bool:
        """Record a submitted order; True when it is confirmed at once. A credit hold of an
        order that would have been confirmed at once is answered 409 (still recorded)."""
        customer = self.customers[order.customer]
        needed = sum(1 for t in THRESHOLDS if order.gross > t)
        held = customer.limit is not None and (
            self.open_receivable(customer.id) + order.gross > customer.limit
        )
        order.approvals_needed = max(needed, 1) if held else needed
        self.orders[order.id] = order
        if order.approvals_needed == 0:
            self.confirm(order)
            return True
        return False

    def approve(self, order: Order, approver: str) -> bool:
        """One approval; True when it was the last one needed and confirmed the order."""
        if order.status != "submitted":
            raise Refused(409, f"order is {order.status}")
        if approver in order.approvers:
            raise Refused(409, "approved by this approver already")
        if len(order.approvers) + 1 < order.approvals_needed:
            order.approvers.append(approver)
            return False
        self.confirm(order)  # refused as a whole while the order's month is locked
        order.approvers.append(approver)
        return True

    def confirm(self, order: Order) -> None:
        if self.locked(month_of(order.day)):
            raise Refused(409, f"{order.day} is in a locked month")
        order.status = "confirmed"
        order.was_confirmed = True
        order.due = order.day + timedelta(days=self.customers[order.customer].terms)
        # Allocations waiting for this order are checked now, oldest first.
        for payment, allocation in self.allocations_to(order, "pending"):
            if allocation.amount <= self.open_amount(order):
                allocation.status = "applied"
                self.paid_moves.setdefault(order.id, []).append((payment.day, allocation.amount))
            else:
                self.failed.append((order.id, allocation.amount))
                self.release(payment, allocation, allocation.amount, day=self.today)

    def allocations_to(self, order: Order, *statuses: str) -> list[tuple[Payment, Allocation]]:
        return self.allocations_to_id(order.id, *statuses)

    def allocations_to_id(self, order_id: str, *statuses: str) -> list[tuple[Payment, Allocation]]:
        found = [
            (p, a)
            for p in self.payments.values()
            for a in p.allocations
            if a.order == order_id and a.status in statuses
        ]
        return sorted(found, key=lambda pa: pa[1].seq)

    def reject(self, order: Order) -> None:
        if order.status != "submitted":
            raise Refused(409, f"order is {order.status}")
        order.status = "rejected"
        self.release_all(order)

    def cancel(self, order: Order) -> None:
        if order.status not in ("submitted", "confirmed"):
            raise Refused(409, f"order is {order.status}")
        if order.status == "confirmed":
            order.reversed_net = order.net - order.credited_net
            order.reversed_gross = order.gross - order.credited
        order.cancelled_on = self.today
        order.status = "cancelled"
        self.release_all(order)

    def release_all(self, order: Order) -> None:
        """An order that ended gives back what was allocated to it; an allocation still
        pending failed its check (the order must not be cancelled or rejected)."""
        for payment, allocation in self.allocations_to(order, "pending", "applied"):
            if allocation.status == "pending":
                self.failed.append((order.id, allocation.amount))
            self.release(payment, allocation, allocation.amount, day=self.today)

    def fulfil(self, order: Order) -> None:
        if order.status != "confirmed":
            raise Refused(409, f"order is {order.status}")
        order.status = "fulfilled"

    def give_back(self, order: Order, line: Line, quantity: int, day: date) -> Decimal:
        """A credit note for `quantity` units of `line`: its gross; the newest allocations
        the order can no longer carry go back to their payments' unapplied credit."""
        if not order.receivable:
            raise Refused(409, f"order is {order.status}")
        if quantity > line.quantity - line.returned:
            raise Refused(422, "more than is returnable")
        if self.locked(month_of(day)):
            raise Refused(409, f"{day} is in a locked month")
        line.returned += quantity
        net = money(quantity * line.price)
        tax = money(net * line.rate)
        order.credited += net + tax
        order.credited_net += net
        order.credited_tax += tax
        order.credits.append((day, net, net + tax))
        excess = -self.open_amount(order)
        for payment, allocation in reversed(self.allocations_to(order, "applied")):
            if excess <= ZERO:
                break
            part = min(allocation.amount, excess)
            self.release(payment, allocation, part, day=day)
            excess -= part
        return net + tax

    # --- payments --------------------------------------------------------------------------

    def check_allocation(
        self, payment: Payment, order_id: str, amount: Decimal, waiting: Decimal = ZERO
    ) -> str:
        """The state a new allocation starts in, or Refused: an order not yet known to
        payments (or known but not yet confirmed) waits as pending; a known one takes no
        more than its gross less what pending allocations (`waiting`) ask of it."""
        order = self.orders.get(order_id)
        if order is None:
            return "pending"
        if order.customer != payment.customer:
            raise Refused(409, "another customer's order")
        if order.status in ("cancelled", "rejected"):
            raise Refused(409, f"order is {order.status}")
        if order.receivable:
            if amount > self.open_amount(order):
                raise Refused(409, "above what the order has open")
            return "applied"
        if amount > self.open_amount(order) - waiting:
            raise Refused(409, "above what the order could take")
        return "pending"

    def allocate(self, payment: Payment, requests: list[tuple[str, Decimal]], known: set[str]):
        """Allocate on a payment; `known` are the orders the payments service has heard of."""
        if sum((a for _, a in requests), ZERO) > payment.unapplied:
            raise Refused(409, "above the payment's unapplied credit")
        saved = list(payment.allocations)
        try:
            made = self._allocations(payment, requests, known)
        except Refused:
            payment.allocations[:] = saved
            raise
        for allocation in made:
            if allocation.status == "applied":
                self.paid_moves.setdefault(allocation.order, []).append(
                    (payment.day, allocation.amount)
                )
            else:
                payment.allocations.append(allocation)
        payment.allocations.sort(key=lambda a: a.seq)

    def _allocations(
        self, payment: Payment, requests: list[tuple[str, Decimal]], known: set[str]
    ) -> list[Allocation]:
        made: list[Allocation] = []
        for order_id, amount in requests:
            # Pending allocations of the payer's own (another's never apply and take no room).
            waiting = sum(
                (
                    a.amount
                    for p, a in self.allocations_to_id(order_id, "pending")
                    if p.customer == payment.customer
                ),
                ZERO,
            ) + sum((a.amount for a in made if a.order == order_id and a.status == "pending"), ZERO)
            status = self.check_allocation(
                payment, order_id if order_id in known else "", amount, waiting
            )
            allocation = Allocation(order=order_id, amount=amount, status=status)
            made.append(allocation)
            if status == "applied":
                # Counted at once, so a second request line to the same order sees it.
                payment.allocations.append(allocation)
        return made

    def receive(self, payment: Payment, requests: list[tuple[str, Decimal]], known: set[str]):
        if self.locked(month_of(payment.day)):
            raise Refused(409, f"{payment.day} is in a locked month")
        if sum((a for _, a in requests), ZERO) > payment.amount:
            raise Refused(409, "allocations above the payment")
        self.payments[payment.id] = payment
        try:
            self.allocate(payment, requests, known)
        except Refused:
            del self.payments[payment.id]
            raise

    def arrive(self, order: Order) -> None:
        """An order the payments service had not heard of reaches it: its pending
        allocations are checked as a confirmed order's are (or wait for confirmation)."""
        if order.receivable:
            for payment, allocation in self.allocations_to(order, "pending"):
                if allocation.amount <= self.open_amount(order):
                    allocation.status = "applied"
                    self.paid_moves.setdefault(order.id, []).append(
                        (payment.day, allocation.amount)
                    )
                else:
                    self.failed.append((order.id, allocation.amount))
                    self.release(payment, allocation, allocation.amount, day=self.today)

    def refund(self, payment: Payment, amount: Decimal, day: date) -> None:
        if amount > payment.amount - payment.refunded:
            raise Refused(409, "above what is refundable")
        if self.locked(month_of(day)):
            raise Refused(409, f"{day} is in a locked month")
        to_release = amount - min(payment.unapplied, amount)
        live = [a for a in payment.allocations if a.status != "released"]
        for allocation in sorted(live, key=lambda a: a.seq, reverse=True):
            if to_release <= ZERO:
                break
            part = min(allocation.amount, to_release)
            self.release(payment, allocation, part, day=day)
            to_release -= part
        payment.refunded += amount
        payment.refunds.append((day, amount))

    def release(self, payment: Payment, allocation: Allocation, part: Decimal, *, day: date):
        """Give `part` of an allocation back to its payment's unapplied credit."""
        if allocation.status == "applied":
            self.paid_moves.setdefault(allocation.order, []).append((day, -part))
        payment.allocations.append(
            Allocation(order=allocation.order, amount=part, status="released", seq=allocation.seq)
        )
        allocation.amount -= part
        if allocation.amount == ZERO:
            payment.allocations.remove(allocation)

    # --- the ledger ------------------------------------------------------------------------

    def moves(self, customer: str, start: date, end: date) -> dict[str, Decimal]:
        """invoiced, returned, received, refunded of documents dated in [start, end]."""
        result = dict.fromkeys(("invoiced", "returned", "received", "refunded"), ZERO)
        for o in self.orders.values():
            if o.customer != customer:
                continue
            if o.was_confirmed and start <= o.day <= end:
                result["invoiced"] += o.gross
            if o.cancelled_on and o.was_confirmed and start <= o.cancelled_on <= end:
                result["invoiced"] -= o.reversed_gross
            for day, _, gross in o.credits:
                if start <= day <= end:
                    result["returned"] += gross
        for p in self.payments.values():
            if p.customer != customer:
                continue
            if start <= p.day <= end:
                result["received"] += p.amount
            for day, amount in p.refunds:
                if start <= day <= end:
                    result["refunded"] += amount
        return result

    def balance(self, customer: str, end: date) -> Decimal:
        m = self.moves(customer, date(2000, 1, 1), end)
        return m["invoiced"] - m["returned"] - m["received"] + m["refunded"]

    def open_instalments(self, customer: str, end: date) -> list[tuple[date, Decimal]]:
        """(due date, open amount) of the customer's invoices at the end of `end`: payments
        applied by allocation pay each invoice's oldest instalments first, credit notes and
        cancellation take back its newest."""
        items: list[tuple[date, Decimal]] = []
        for o in self.orders.values():
            if o.customer != customer or not o.was_confirmed or o.day > end:
                continue
            assert o.due is not None
            plan = sorted(o.instalments) if o.instalments else [(o.due, o.gross)]
            paid = sum((a for d, a in self.paid_moves.get(o.id, []) if d <= end), ZERO)
            paid = max(min(paid, o.gross), ZERO)
            credited = sum((g for d, _, g in o.credits if d <= end), ZERO)
            if o.cancelled_on and o.cancelled_on <= end:
                credited += o.reversed_gross
            left: list[list[Any]] = []
            for due, amount in plan:
                part = min(amount, paid)
                paid -= part
                left.append([due, amount - part])
            for item in reversed(left):
                part = min(item[1], credited)
                credited -= part
                item[1] -= part
            items.extend((due, amount) for due, amount in left if amount)
        return sorted(items, key=lambda i: i[0])

    def ledger_ageing(self, customer: str, end: date, closing: Decimal) -> dict[str, Decimal]:
        """A closing balance by age: open instalments, with credit not allocated to any
        invoice paying the oldest first; nothing is aged for a balance in the customer's
        favour."""
        ageing = dict.fromkeys(BUCKETS, ZERO)
        if closing <= ZERO:
            return ageing
        items = self.open_instalments(customer, end)
        spare = max(sum((a for _, a in items), ZERO) - closing, ZERO)
        for due, amount in items:
            part = min(amount, spare)
            spare -= part
            ageing[bucket_of((end - due).days)] += amount - part
        ageing["current"] += closing - sum(ageing.values(), ZERO)
        return ageing

    def invoice_ageing(self, customer: str, on: date) -> dict[str, Decimal]:
        """What the customer's invoices still have open on `on`, by age (no spare credit)."""
        ageing = dict.fromkeys(BUCKETS, ZERO)
        for due, amount in self.open_instalments(customer, on):
            ageing[bucket_of((on - due).days)] += amount
        return ageing

    def period_balances(self, month: str) -> dict[str, dict]:
        start = date(int(month[:4]), int(month[5:]), 1)
        end = month_end(month)
        rows = {}
        for c in self.customers:
            m = self.moves(c, start, end)
            opening = self.balance(c, start - timedelta(days=1))
            closing = opening + m["invoiced"] - m["returned"] - m["received"] + m["refunded"]
            rows[c] = {
                "opening": opening,
                **m,
                "closing": closing,
                "ageing": self.ledger_ageing(c, end, closing),
            }
        return rows

    def close(self, month: str) -> None:
        self.period_status[month] = "closed"
        # The months before it that were reopened are closed with it again.
        self.reopened = {m for m in self.reopened if m >= month}
        self.closed[month] = self.period_balances(month)

    def reopen(self, month: str) -> None:
        self.period_status[month] = "open"
        self.reopened.add(month)
        for later in self.months:
            if later > month and self.period_status.get(later) == "closed":
                self.period_status[later] = "stale"

    # --- analytics -------------------------------------------------------------------------

    def lifetime(self, customer: str) -> dict[str, Decimal | int]:
        kept = [o for o in self.orders.values() if o.customer == customer and o.was_confirmed]
        net = sum((o.net - o.reversed_net for o in kept), ZERO)
        returns_net = sum((o.credited_net for o in kept), ZERO)
        invoiced = sum((o.gross for o in kept), ZERO)
        paid = sum(
            (a for o in kept for _, a in self.paid_moves.get(o.id, [])),
            ZERO,
        )
        credits = sum((o.credited + o.reversed_gross for o in kept), ZERO)
        return {
            "orders": sum(1 for o in kept if o.status != "cancelled"),
            "net_sales": net,
            "returns_net": returns_net,
            "revenue": net - returns_net,
            "invoiced": invoiced,
            "paid": paid,
            "outstanding": invoiced - credits - paid,
        }

    def monthly_sales(self, customer: str) -> dict[str, dict[str, Decimal | int]]:
        """Per month: net and gross invoiced less what cancellations reversed (on the day
        of the cancellation), orders confirmed less cancelled, returns (credit-note gross)."""
        months: dict[str, dict[str, Decimal | int]] = {}

        def at(day: date) -> dict[str, Decimal | int]:
            return months.setdefault(
                month_of(day), {"net": ZERO, "gross": ZERO, "orders": 0, "returns": ZERO}
            )

        for o in self.orders.values():
            if o.customer != customer or not o.was_confirmed:
                continue
            row = at(o.day)
            row["net"] += o.net
            row["gross"] += o.gross
            row["orders"] += 1
            for day, _, gross in o.credits:
                at(day)["returns"] += gross
            if o.cancelled_on:
                row = at(o.cancelled_on)
                row["net"] -= o.reversed_net
                row["gross"] -= o.reversed_gross
                row["orders"] -= 1
        return months
