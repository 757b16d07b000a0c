"""A month of sales driven through the HTTP API the way tills, the sales team, approvers and
finance use it, every document also written down in the test's own book."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from tests.conftest import auth
from tests.e2e.book import Book, Order, Product
from tests.e2e.cluster import Api

SALES, POS, FINANCE = auth("sales", "sam"), auth("pos", "till"), auth("finance", "fay")
ANN, ART = auth("approver", "ann"), auth("approver", "art")
PRODUCTS = (
    Product("P1", "pumps", Decimal("100.00"), Decimal("0.13")),
    Product("P2", "pipes", Decimal("50.00"), Decimal("0.06")),
    Product("P3", "valves", Decimal("12.35"), Decimal("0.13")),
    Product("P4", "seals", Decimal("7.77"), Decimal("0.09")),
)
METHODS = ("cash", "card", "alipay", "wechat", "bank_transfer")


def lines(*quantities: tuple[str, str]) -> list[dict[str, str]]:
    return [{"sku": sku, "quantity": quantity} for sku, quantity in quantities]


@dataclass
class Desk:
    """Enters documents dated into `month` and books each one as it is accepted."""

    api: Api
    book: Book
    month: date

    def on(self, day: int) -> str:
        return str(self.month.replace(day=day))

    async def customer(self, name: str, terms: int) -> str:
        body = {"name": name, "payment_terms_days": terms}
        return (await self.api.post("/v1/customers", body, headers=SALES))["id"]

    async def product(self, product: Product) -> None:
        body = {
            "sku": product.sku,
            "name": f"{product.category} {product.sku}",
            "category": product.category,
            "unit_price": str(product.unit_price),
            "tax_rate": str(product.tax_rate),
        }
        await self.api.post("/v1/products", body, headers=SALES)
        self.book.products[product.sku] = product

    async def order(
        self,
        customer_id: str,
        ordered: list[dict[str, str]],
        day: int,
        *,
        submit: bool = True,
        status: str = "confirmed",
        request_id: str | None = None,
    ) -> str:
        """A till order (submitted at once), or a draft with `submit=False`."""
        body = {
            "customer_id": customer_id,
            "channel": "pos" if submit else "phone",
            "salesperson": "sam",
            "lines": ordered,
            "business_date": self.on(day),
            "submit": submit,
        }
        headers = POS | ({"X-Request-ID": request_id} if request_id else {})
        answer = await self.api.post("/v1/orders", body, headers=headers)
        order = Order(answer["id"], customer_id, self.book.price(ordered))
        assert (answer["net"], answer["tax"], answer["gross"]) == tuple(
            str(amount) for amount in (order.net, order.tax, order.gross)
        )
        self.book.enter(order)
        self._booked(answer if submit else None, status)
        return order.order_id

    async def submit(self, order_id: str) -> None:
        self._booked(
            await self.api.post(f"/v1/orders/{order_id}/submit", headers=SALES, status=200)
        )

    async def approve(
        self, order_id: str, approver: dict[str, str], status: str = "confirmed"
    ) -> None:
        answer = await self.api.post(f"/v1/orders/{order_id}/approve", headers=approver, status=200)
        assert answer["status"] == status, answer
        if status == "confirmed":
            self.book.confirm(order_id)

    async def reject(self, order_id: str) -> None:
        answer = await self.api.post(
            f"/v1/orders/{order_id}/reject", {"reason": "price"}, headers=ANN, status=200
        )
        assert answer["status"] == "rejected"

    async def fulfil(self, order_id: str) -> None:
        answer = await self.api.post(f"/v1/orders/{order_id}/fulfil", headers=SALES, status=200)
        assert answer["status"] == "fulfilled"

    async def cancel(self, order_id: str) -> None:
        body = {"reason": "customer changed their mind"}
        answer = await self.api.post(
            f"/v1/orders/{order_id}/cancel", body, headers=SALES, status=200
        )
        assert answer["status"] == "cancelled"
        self.book.cancel(order_id)

    async def give_back(self, order_id: str, sku: str, quantity: str, day: int) -> None:
        body = {"lines": lines((sku, quantity)), "business_date": self.on(day)}
        note = await self.api.post(f"/v1/orders/{order_id}/returns", body, headers=POS)
        assert note["gross"] == str(self.book.give_back(order_id, sku, Decimal(quantity)))

    async def pay(
        self, customer_id: str, amount: str, day: int, allocations: dict[str, str], method: str
    ) -> str:
        body = {
            "customer_id": customer_id,
            "amount": amount,
            "method": method,
            "received_at": f"{self.on(day)}T10:00:00+08:00",
            "allocations": [{"order_id": o, "amount": a} for o, a in allocations.items()],
        }
        answer = await self.api.post("/v1/payments", body, headers=POS)
        self.book.receive(customer_id, Decimal(amount), _amounts(allocations))
        return answer["id"]

    async def allocate(self, payment_id: str, order_id: str, amount: str) -> None:
        body = {"order_id": order_id, "amount": amount}
        await self.api.post(f"/v1/payments/{payment_id}/allocations", body, headers=FINANCE)
        self.book.allocate({order_id: Decimal(amount)})

    async def refund(self, payment_id: str, customer_id: str, amount: str, day: int) -> None:
        body = {"amount": amount, "reason": "goodwill", "business_date": self.on(day)}
        answer = await self.api.post(f"/v1/payments/{payment_id}/refunds", body, headers=FINANCE)
        assert all(a["status"] != "released" for a in answer["allocations"]), answer
        self.book.refund(customer_id, Decimal(amount))

    def gross(self, order_id: str) -> str:
        return str(self.book.orders[order_id].gross)

    def _booked(self, answer: dict | None, status: str = "confirmed") -> None:
        if answer is None:
            return
        assert answer["status"] == status, answer
        self.book.submit(answer["id"])
        if status == "confirmed":
            self.book.confirm(answer["id"])


def _amounts(allocations: dict[str, str]) -> dict[str, Decimal]:
    return {order_id: Decimal(amount) for order_id, amount in allocations.items()}


async def business_day(desk: Desk, request_id: str) -> list[str]:
    """Catalogue, orders through every path, returns, payments and refunds; the customers."""
    east = await desk.customer("华东贸易有限公司", 30)
    north = await desk.customer("Bob Co", 0)
    south = await desk.customer("Carol Trading", 15)
    west = await desk.customer("Dan Stores", 30)
    for product in PRODUCTS:
        await desk.product(product)

    body = [{"sku": "P1", "quantity": "3", "discount": "10.00"}]
    discounted = await desk.order(east, body, 2, request_id=request_id)
    pipes = await desk.order(north, lines(("P2", "7"), ("P3", "11")), 3)
    valves = await desk.order(south, lines(("P3", "13"), ("P4", "5")), 4)
    await desk.order(east, lines(("P4", "9")), 5)
    phoned = await desk.order(west, lines(("P2", "4"), ("P4", "3")), 6, submit=False)
    await desk.submit(phoned)
    # Gross above 10000 waits for one approver, above 100000 for two.
    big = await desk.order(north, lines(("P1", "100")), 8, status="submitted")
    await desk.approve(big, ANN)
    bigger = await desk.order(south, lines(("P1", "1000")), 8, status="submitted")
    await desk.approve(bigger, ANN, status="submitted")
    await desk.approve(bigger, ART)
    refused = await desk.order(west, lines(("P1", "200")), 9, status="submitted")
    await desk.reject(refused)
    dropped = await desk.order(east, lines(("P2", "2")), 9)  # cancelled today, not in the month
    await desk.cancel(dropped)
    await desk.fulfil(valves)

    await desk.give_back(discounted, "P1", "1", 12)
    await desk.give_back(bigger, "P1", "10", 13)

    await desk.pay(east, "200.00", 14, {discounted: "200.00"}, "wechat")
    await desk.pay(north, desk.gross(pipes), 14, {pipes: desk.gross(pipes)}, "alipay")
    await desk.pay(north, "5000.00", 15, {big: "5000.00"}, "card")
    allocated = {valves: desk.gross(valves), bigger: "100000.00"}
    transfer = await desk.pay(south, "120000.00", 16, allocated, "bank_transfer")
    await desk.allocate(transfer, bigger, "10000.00")
    await desk.refund(transfer, south, "5000.00", 18)  # within the credit left unapplied
    deposit = await desk.pay(west, "500.00", 17, {}, "cash")
    await desk.refund(deposit, west, "120.00", 19)
    return [east, north, south, west]


async def till_rush(
    desk: Desk, customers: list[str], count: int, *, lanes: int, sold: Callable[[int], None]
) -> None:
    """`count` till sales, each paid in full at once, from `lanes` tills side by side;
    `sold(n)` hears of every sale completed."""
    done = 0

    async def lane(first: int) -> None:
        nonlocal done
        for n in range(first, count, lanes):
            customer = customers[n % len(customers)]
            ordered = lines(("P3", str(n % 5 + 1)), ("P4", str(n % 3 + 1)))
            order_id = await desk.order(customer, ordered, 21 + n % 8)
            gross = desk.gross(order_id)
            await desk.pay(customer, gross, 21 + n % 8, {order_id: gross}, METHODS[n % 5])
            done += 1
            sold(done)

    await asyncio.gather(*(lane(first) for first in range(lanes)))
