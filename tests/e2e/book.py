"""The test's own account of what it sent, and every figure the services must report for it,
worked out here from the quantities, prices and amounts the test chose (SPEC §2 rounding),
never from what a service answered."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from tests.support.totals import LineTotals

ZERO = Decimal("0.00")
MOVEMENTS = ("invoiced", "returned", "received", "refunded")
BALANCE = ("opening", *MOVEMENTS, "closing")
SALES = ("net", "tax", "gross", "orders", "units", "returns", "cancellations", "revenue")
KPIS = (
    "revenue",
    "orders",
    "net_sales",
    "returns_net",
    "submitted",
    "confirmed",
    "receivables_open",
)
LIFETIME = ("invoiced", "paid", "outstanding")


def money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


@dataclass(frozen=True)
class Product:
    sku: str
    category: str
    unit_price: Decimal
    tax_rate: Decimal


@dataclass
class Line:
    sku: str
    quantity: Decimal
    net: Decimal
    tax: Decimal

    @classmethod
    def priced(cls, product: Product, quantity: Decimal, discount: Decimal = ZERO) -> Line:
        net = money(quantity * product.unit_price - discount)
        return cls(product.sku, quantity, net, money(net * product.tax_rate))


@dataclass
class Order(LineTotals):
    order_id: str
    customer_id: str
    lines: list[Line]
    confirmed: bool = False
    cancelled: bool = False
    credited_net: Decimal = ZERO
    credited_tax: Decimal = ZERO
    paid: Decimal = ZERO

    @property
    def units(self) -> Decimal:
        return sum((line.quantity for line in self.lines), Decimal(0))

    @property
    def credited(self) -> Decimal:
        return self.credited_net + self.credited_tax

    @property
    def open(self) -> Decimal:
        """What the invoice still asks for."""
        if not self.confirmed or self.cancelled:
            return ZERO
        return self.gross - self.credited - self.paid


@dataclass
class Book:
    """Documents of one month, plus cancellations dated whenever they happen."""

    products: dict[str, Product] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    submitted: int = 0
    movements: dict[str, dict[str, Decimal]] = field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys(MOVEMENTS, ZERO))
    )

    def price(self, lines: list[dict[str, str]]) -> list[Line]:
        return [
            Line.priced(
                self.products[line["sku"]],
                Decimal(line["quantity"]),
                Decimal(line.get("discount", "0")),
            )
            for line in lines
        ]

    def enter(self, order: Order) -> None:
        self.orders[order.order_id] = order

    def submit(self, order_id: str) -> None:
        assert order_id in self.orders
        self.submitted += 1

    def confirm(self, order_id: str) -> None:
        order = self.orders[order_id]
        order.confirmed = True
        self.movements[order.customer_id]["invoiced"] += order.gross

    def cancel(self, order_id: str) -> None:
        """A cancellation is dated the day it is made, after the month: the month's ledger
        keeps the invoice, the read models reverse it. Only an order with nothing returned
        or paid is cancelled here, so the whole invoice is reversed."""
        order = self.orders[order_id]
        assert order.credited == order.paid == ZERO
        order.cancelled = True

    def give_back(self, order_id: str, sku: str, quantity: Decimal) -> Decimal:
        """A return of part of the order's line of `sku`; its credit note's gross."""
        order = self.orders[order_id]
        line = next(line for line in order.lines if line.sku == sku)
        net = money(line.net * quantity / line.quantity)
        tax = money(line.tax * quantity / line.quantity)
        order.credited_net += net
        order.credited_tax += tax
        self.movements[order.customer_id]["returned"] += net + tax
        return net + tax

    def receive(self, customer_id: str, amount: Decimal, allocations: dict[str, Decimal]) -> None:
        self.movements[customer_id]["received"] += amount
        self.allocate(allocations)

    def allocate(self, allocations: dict[str, Decimal]) -> None:
        for order_id, amount in allocations.items():
            self.orders[order_id].paid += amount

    def refund(self, customer_id: str, amount: Decimal) -> None:
        self.movements[customer_id]["refunded"] += amount

    # --- what the services must report --------------------------------------------------

    def balances(self) -> dict[str, dict[str, Decimal]]:
        """The closed month per customer (no earlier month holds documents)."""
        result = {}
        for customer_id, moved in self.movements.items():
            closing = moved["invoiced"] - moved["returned"] - moved["received"] + moved["refunded"]
            result[customer_id] = {"opening": ZERO, **moved, "closing": closing}
        return result

    def sales(self) -> dict[str, dict[str, Decimal]]:
        """Sales per customer over the month and the days up to the cancellations."""
        rows: dict[str, dict[str, Decimal]] = defaultdict(lambda: dict.fromkeys(SALES, ZERO))
        for order in self.orders.values():
            if order.confirmed:
                _add_sale(rows[order.customer_id], order)
        return dict(rows)

    def kpis(self) -> dict[str, Decimal]:
        sales = self.sales().values()
        total = {name: sum((row[name] for row in sales), ZERO) for name in ("revenue", "orders")}
        confirmed = [o for o in self.orders.values() if o.confirmed]
        return total | {
            "net_sales": sum((row["net"] for row in sales), ZERO),
            "returns_net": sum((o.credited_net for o in confirmed), ZERO),
            "submitted": Decimal(self.submitted),
            "confirmed": Decimal(len(confirmed)),
            "receivables_open": sum((o.open for o in confirmed), ZERO),
        }

    def lifetime(self, customer_id: str) -> dict[str, Decimal]:
        mine = [o for o in self.orders.values() if o.customer_id == customer_id and o.confirmed]
        return {
            "invoiced": sum((o.gross for o in mine), ZERO),
            "paid": sum((o.paid for o in mine), ZERO),
            "outstanding": sum((o.open for o in mine), ZERO),
        }


def _add_sale(row: dict[str, Decimal], order: Order) -> None:
    for name in ("net", "tax", "gross", "units"):
        row[name] += getattr(order, name)
    row["orders"] += 1
    row["returns"] += order.credited
    row["revenue"] += order.net - order.credited_net
    if order.cancelled:  # nothing was returned from it (see Book.cancel)
        for name in ("net", "tax", "gross", "units"):
            row[name] -= getattr(order, name)
        row["orders"] -= 1
        row["cancellations"] += order.gross
        row["revenue"] -= order.net
