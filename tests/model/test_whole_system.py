"""A model-based test of the whole system: hypothesis drives every service over HTTP (all four
on one app, postgres transport, its consumers running) with random sequences of customers,
orders (approvals, credit holds, rejections, cancellations, fulfilment, returns,
instalments), payments (allocations, pending ones to orders not yet known or not yet
confirmed, refunds) and month closes and reopens. After the events are drained, every
figure of every service must equal what tests/model/oracle.py works out from the
specification alone.

Each example starts from an empty database (closed months are global state). The budget is
bounded for CI; SALESBOOK_MODEL_EXAMPLES and SALESBOOK_MODEL_STEPS run it longer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from shared.config import Settings
from tests.conftest import TEST_SECRET, auth, migrate_all
from tests.model.harness import Loop, System
from tests.model.oracle import (
    BUCKETS,
    ZERO,
    Books,
    Customer,
    Line,
    Order,
    Payment,
    Refused,
    money,
    month_end,
    month_of,
)

SALES, POS, FINANCE = auth("sales", "sam"), auth("pos", "till"), auth("finance", "fay")
ADMIN, ANALYST = auth("admin", "root"), auth("analyst", "al")
APPROVERS = {"ann": auth("approver", "ann"), "bob": auth("approver", "bob")}
EXAMPLES = int(os.environ.get("SALESBOOK_MODEL_EXAMPLES", "6"))
STEPS = int(os.environ.get("SALESBOOK_MODEL_STEPS", "30"))
PRODUCTS = {
    # Whole cents of tax per unit, so every rounding rule gives the same amounts.
    "P1": (Decimal("100.00"), Decimal("0.13")),
    "P2": (Decimal("50.00"), Decimal("0.06")),
    "P3": (Decimal("12.50"), Decimal("0.08")),
}
# Fulfilled orders too: the service must refuse those (409), as the model does.
CANCELLABLE = ("submitted", "confirmed", "fulfilled")
METHODS = ("cash", "card", "alipay", "wechat", "bank_transfer", "other")


def D(value: Any) -> Decimal:
    return Decimal(str(value))


def cents(n: int) -> Decimal:
    return money(Decimal(n) / 100)


def body(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in statuses, (
        f"{response.request.method} {response.request.url.path}: {response.status_code} "
        f"{response.text[:600]}"
    )
    return response.json()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


@pytest.fixture(scope="module")
def database(own_database: str, loop: Loop) -> str:
    return loop.run(migrate_all(own_database))


def machine(url: str, loop: Loop, app_settings: Settings) -> type:
    class WholeSystem(RuleBasedStateMachine):
        """The test's side: a Books model and the running system, kept in step."""

        def __init__(self) -> None:
            super().__init__()
            self.system = System(loop, url, app_settings)
            today = datetime.now(app_settings.zone).date()
            first = today.replace(day=1)
            months: list[str] = []
            for _ in range(3):
                first = (first - timedelta(days=1)).replace(day=1)
                months.insert(0, month_of(first))
            self.books = Books(months=months, today=today)
            try:
                for sku, (price, rate) in PRODUCTS.items():
                    product = {"sku": sku, "name": sku, "category": "c", "unit_price": str(price)}
                    product["tax_rate"] = str(rate)
                    self.call("POST", "/v1/products", SALES, 201, json=product)
            except BaseException:
                self.system.close()  # teardown runs only for a machine that was made
                raise

        # --- plumbing ----------------------------------------------------------------------

        def call(self, method: str, path: str, who: dict, *statuses: int, **kw: Any) -> Any:
            return body(self.system.request(method, path, headers=who, **kw), *statuses)

        def refused_or(self, error: Refused | None, response: httpx.Response, ok: int) -> Any:
            if error is not None:
                assert response.status_code == error.status, (
                    f"expected {error}, got {response.status_code} {response.text[:600]}"
                )
                return None
            return body(response, ok)

        def open_days(self, data: st.DataObject, after: date | None = None) -> date:
            """A day, in a month the sources have not locked, not before `after`."""
            books = self.books
            candidates = [
                d
                for m in [*books.months, month_of(books.today)]
                if not books.locked(m)
                for d in (date(int(m[:4]), int(m[5:]), n) for n in (1, 9, 17, 28))
                if d <= books.today and (after is None or d >= after)
            ]
            if after is not None and after not in candidates and not books.locked(month_of(after)):
                candidates.append(after)
            candidates.append(books.today)
            candidates = sorted(set(candidates))
            return data.draw(st.sampled_from(candidates))

        def orders_where(self, *statuses: str) -> list[Order]:
            return [o for o in self.books.orders.values() if o.status in statuses]

        # --- customers and orders ----------------------------------------------------------

        @initialize(data=st.data())
        def first_customer(self, data: st.DataObject) -> None:
            self.add_customer(data)

        @rule(data=st.data())
        def add_customer(self, data: st.DataObject) -> None:
            terms = data.draw(st.sampled_from([0, 30, 45]), label="terms")
            limit = data.draw(st.sampled_from([None, None, "2000.00", "6000.00"]), label="limit")
            sent = {"name": f"c{len(self.books.customers)}", "payment_terms_days": terms}
            if limit:
                sent["credit_limit"] = limit
            made = self.call("POST", "/v1/customers", SALES, 201, json=sent)
            self.books.customers[made["id"]] = Customer(
                made["id"], terms, D(limit) if limit else None
            )

        @rule(data=st.data())
        def change_customer(self, data: st.DataObject) -> None:
            """New terms and limit: they count for orders confirmed from now on."""
            customer = data.draw(st.sampled_from(list(self.books.customers.values())))
            terms = data.draw(st.sampled_from([0, 30, 45]), label="terms")
            limit = data.draw(st.sampled_from([None, "2000.00", "6000.00"]), label="limit")
            sent = {"payment_terms_days": terms, "credit_limit": limit}
            self.call("PATCH", f"/v1/customers/{customer.id}", SALES, 200, json=sent)
            customer.terms, customer.limit = terms, D(limit) if limit else None

        def draw_order(self, data: st.DataObject) -> tuple[Customer, list[Line], date, dict]:
            customer = data.draw(st.sampled_from(list(self.books.customers.values())))
            skus = data.draw(st.lists(st.sampled_from(sorted(PRODUCTS)), min_size=1, max_size=2))
            lines = []
            for sku in skus:
                size = data.draw(st.integers(0, 19), label="size") if sku == "P1" else 9
                # Above the first approval threshold now and then, above the second rarely.
                quantity = data.draw(
                    st.integers(890, 900)
                    if size == 0
                    else st.integers(85, 95)
                    if size < 4
                    else st.integers(1, 12)
                )
                lines.append(Line(sku, quantity, *PRODUCTS[sku]))
            day = self.open_days(data)
            sent: dict[str, Any] = {
                "customer_id": customer.id,
                "channel": "pos",
                "salesperson": "sam",
                "lines": [{"sku": line.sku, "quantity": str(line.quantity)} for line in lines],
                "business_date": day.isoformat(),
                "submit": True,
            }
            return customer, lines, day, sent

        def instalments(self, data: st.DataObject, gross: Decimal, day: date) -> list:
            parts = data.draw(st.sampled_from([0, 0, 2, 3]), label="instalments")
            if not parts:
                return []
            each = money(gross / parts)
            amounts = [each] * (parts - 1) + [gross - each * (parts - 1)]
            return [(day + timedelta(days=20 * (n + 1)), a) for n, a in enumerate(amounts)]

        def place(self, data: st.DataObject) -> Order:
            customer, lines, day, sent = self.draw_order(data)
            order = Order("", customer.id, lines, day, [])
            order.instalments = self.instalments(data, order.gross, day)
            if order.instalments:
                sent["instalments"] = [
                    {"due_date": d.isoformat(), "amount": str(a)} for d, a in order.instalments
                ]
            response = self.system.request("POST", "/v1/orders", headers=POS, json=sent)
            if response.status_code == 409 and "order_id" in response.json():
                order.id = response.json()["order_id"]  # held by the credit limit
                confirmed = self.books.submit(order)
                assert not confirmed and order.approvals_needed == 1, response.text
                return order
            made = body(response, 201)
            order.id = made["id"]
            confirmed = self.books.submit(order)
            held = self.books.customers[customer.id].limit is not None and order.approvals_needed
            assert made["status"] == ("confirmed" if confirmed else "submitted"), (made, held)
            return order

        @rule(data=st.data())
        def place_order(self, data: st.DataObject) -> None:
            self.system.drain()
            self.place(data)

        @precondition(lambda self: self.orders_where("submitted"))
        @rule(data=st.data())
        def approve(self, data: st.DataObject) -> None:
            self.system.drain()
            order = data.draw(st.sampled_from(self.orders_where("submitted")))
            approver = data.draw(st.sampled_from(sorted(APPROVERS)))
            try:
                confirmed = self.books.approve(order, approver)
                error = None
            except Refused as refused:
                confirmed, error = False, refused
            response = self.system.request(
                "POST", f"/v1/orders/{order.id}/approve", headers=APPROVERS[approver], json={}
            )
            made = self.refused_or(error, response, 200)
            if made:
                assert made["status"] == ("confirmed" if confirmed else "submitted"), made

        @precondition(lambda self: self.orders_where("submitted"))
        @rule(data=st.data())
        def reject(self, data: st.DataObject) -> None:
            self.system.drain()
            order = data.draw(st.sampled_from(self.orders_where("submitted")))
            self.books.reject(order)
            self.call(
                "POST",
                f"/v1/orders/{order.id}/reject",
                APPROVERS["ann"],
                200,
                json={"reason": "no"},
            )

        @precondition(lambda self: self.orders_where(*CANCELLABLE))
        @rule(data=st.data())
        def cancel(self, data: st.DataObject) -> None:
            self.system.drain()
            order = data.draw(
                st.sampled_from(self.orders_where("submitted", "confirmed", "fulfilled"))
            )
            try:
                self.books.cancel(order)
                error = None
            except Refused as refused:
                error = refused
            response = self.system.request(
                "POST", f"/v1/orders/{order.id}/cancel", headers=SALES, json={"reason": "gone"}
            )
            self.refused_or(error, response, 200)

        @precondition(lambda self: self.orders_where("confirmed"))
        @rule(data=st.data())
        def fulfil(self, data: st.DataObject) -> None:
            self.system.drain()
            order = data.draw(st.sampled_from(self.orders_where("confirmed")))
            self.books.fulfil(order)
            self.call("POST", f"/v1/orders/{order.id}/fulfil", SALES, 200, json={})

        def returnable(self) -> list[Order]:
            return [
                o
                for o in self.orders_where("confirmed", "fulfilled")
                if any(line.returned < line.quantity for line in o.lines)
            ]

        @precondition(lambda self: self.returnable())
        @rule(data=st.data())
        def give_back(self, data: st.DataObject) -> None:
            self.system.drain()
            order = data.draw(st.sampled_from(self.returnable()))
            line = data.draw(st.sampled_from([x for x in order.lines if x.returned < x.quantity]))
            quantity = data.draw(st.integers(1, line.quantity - line.returned))
            day = self.open_days(data, after=order.day)
            if day < order.day:
                return
            sku_lines = [x for x in order.lines if x.sku == line.sku]
            line_no = order.lines.index(line) + 1
            sent: dict[str, Any] = {"sku": line.sku, "quantity": str(quantity)}
            if len(sku_lines) > 1:
                sent["line_no"] = line_no
            gross = self.books.give_back(order, line, quantity, day)
            made = self.call(
                "POST",
                f"/v1/orders/{order.id}/returns",
                POS,
                201,
                json={"lines": [sent], "business_date": day.isoformat()},
            )
            assert D(made["gross"]) == gross, made

        # --- payments ----------------------------------------------------------------------

        def draw_allocations(self, data: st.DataObject, customer: str) -> list:
            mine = [o for o in self.books.orders.values() if o.customer == customer]
            if not data.draw(st.integers(0, 9), label="others"):
                mine = list(self.books.orders.values())  # another customer's: 409
            if not mine:
                return []
            chosen = data.draw(
                st.lists(st.sampled_from(mine), max_size=2, unique_by=lambda o: o.id)
            )
            requests = []
            for order in chosen:
                top = self.books.open_amount(order) if order.receivable else order.gross
                top_cents = max(int(top * 100), 1)
                amount = cents(data.draw(st.integers(1, top_cents + top_cents // 10 + 1)))
                requests.append((order.id, amount))
            return requests

        def receive(self, data: st.DataObject, customer: str, requests: list, known: set[str]):
            books = self.books
            extra = cents(data.draw(st.integers(0, 300000), label="extra"))
            amount = sum((a for _, a in requests), ZERO) + extra
            if amount <= ZERO:
                amount = Decimal("10.00")
            day = self.open_days(data)
            sent: dict[str, Any] = {
                "customer_id": customer,
                "amount": str(amount),
                "method": data.draw(st.sampled_from(METHODS)),
                "allocations": [{"order_id": o, "amount": str(a)} for o, a in requests],
            }
            if day != books.today:
                sent["received_at"] = f"{day.isoformat()}T12:00:00+08:00"
            else:
                day = books.today
            payment = Payment("", customer, amount, day)
            try:
                books.receive(payment, requests, known)
                error = None
            except Refused as refused:
                error = refused
            response = self.system.request("POST", "/v1/payments", headers=POS, json=sent)
            made = self.refused_or(error, response, 201)
            if made:
                # The model keyed it before the id was known.
                del books.payments[payment.id]
                payment.id = made["id"]
                books.payments[payment.id] = payment
                states = sorted(a["status"] for a in made["allocations"])
                assert states == sorted(a.status for a in payment.allocations), (made, payment)

        @rule(data=st.data())
        def pay(self, data: st.DataObject) -> None:
            self.system.drain()
            customer = data.draw(st.sampled_from(list(self.books.customers)))
            requests = self.draw_allocations(data, customer)
            self.receive(data, customer, requests, set(self.books.orders))

        @rule(data=st.data())
        def pay_before_the_order_is_known(self, data: st.DataObject) -> None:
            """A till takes the money for an order the payments service has not heard of yet:
            the allocation waits as pending and is checked when the order arrives."""
            self.system.drain()
            known = set(self.books.orders)
            with self.system.paused("payments.orders", "payments", "orders"):
                order = self.place(data)
                top = max(int(order.gross * 100), 1)
                amount = cents(data.draw(st.integers(1, top + top // 10 + 1)))
                self.receive(data, order.customer, [(order.id, amount)], known)
            self.system.drain()
            self.books.arrive(order)

        def with_unapplied(self) -> list[Payment]:
            return [p for p in self.books.payments.values() if p.unapplied > ZERO]

        @precondition(lambda self: self.with_unapplied())
        @rule(data=st.data())
        def allocate_later(self, data: st.DataObject) -> None:
            self.system.drain()
            payment = data.draw(st.sampled_from(self.with_unapplied()))
            requests = self.draw_allocations(data, payment.customer)[:1]
            if not requests:
                return
            try:
                self.books.allocate(payment, requests, set(self.books.orders))
                error = None
            except Refused as refused:
                error = refused
            ((order_id, amount),) = requests
            response = self.system.request(
                "POST",
                f"/v1/payments/{payment.id}/allocations",
                headers=POS,
                json={"order_id": order_id, "amount": str(amount)},
            )
            if error is not None:
                assert response.status_code == error.status, response.text[:600]
            else:
                assert response.status_code in (200, 201), response.text[:600]

        def refundable(self) -> list[Payment]:
            return [p for p in self.books.payments.values() if p.amount > p.refunded]

        @precondition(lambda self: self.refundable())
        @rule(data=st.data())
        def refund(self, data: st.DataObject) -> None:
            self.system.drain()
            payment = data.draw(st.sampled_from(self.refundable()))
            top = int((payment.amount - payment.refunded) * 100)
            amount = cents(data.draw(st.integers(1, top)))
            day = self.open_days(data, after=payment.day)
            if day < payment.day:
                return
            try:
                self.books.refund(payment, amount, day)
                error = None
            except Refused as refused:
                error = refused
            response = self.system.request(
                "POST",
                f"/v1/payments/{payment.id}/refunds",
                headers=FINANCE,
                json={"amount": str(amount), "reason": "back", "business_date": day.isoformat()},
            )
            self.refused_or(error, response, 201)

        # --- closing -----------------------------------------------------------------------

        def next_to_close(self) -> str | None:
            books = self.books
            return next((m for m in books.months if books.period_status.get(m) != "closed"), None)

        @precondition(lambda self: self.next_to_close())
        @rule()
        def close_month(self) -> None:
            month = self.next_to_close()
            assert month
            self.system.drain()
            self.call("POST", f"/v1/closing/periods/{month}/close", FINANCE, 202)
            deadline = time.monotonic() + 30
            while True:
                period = self.call("GET", f"/v1/closing/periods/{month}", FINANCE, 200)
                if period["status"] == "closed":
                    break
                assert time.monotonic() < deadline, f"{month} did not close: {period}"
                time.sleep(0.05)
            self.books.close(month)
            self.check_closed(month)

        @precondition(lambda self: any(s == "closed" for s in self.books.period_status.values()))
        @rule(data=st.data())
        def reopen_month(self, data: st.DataObject) -> None:
            closed = [m for m, s in sorted(self.books.period_status.items()) if s == "closed"]
            month = data.draw(st.sampled_from(closed))
            self.system.drain()
            self.call(
                "POST", f"/v1/closing/periods/{month}/reopen", ADMIN, 200, json={"reason": "late"}
            )
            self.books.reopen(month)
            self.system.drain()

        @precondition(lambda self: any(self.books.locked(m) for m in self.books.months))
        @rule(data=st.data())
        def date_into_a_locked_month(self, data: st.DataObject) -> None:
            locked = [m for m in self.books.months if self.books.locked(m)]
            month = data.draw(st.sampled_from(locked))
            customer = next(iter(self.books.customers))
            sent = {
                "customer_id": customer,
                "amount": "1.00",
                "method": "cash",
                "received_at": f"{month}-10T12:00:00+08:00",
            }
            response = self.system.request("POST", "/v1/payments", headers=POS, json=sent)
            assert response.status_code == 409 and month in response.text, response.text

        # --- the comparison ----------------------------------------------------------------

        def check_closed(self, month: str) -> None:
            expected = self.books.closed[month]
            for customer, want in expected.items():
                page = self.call(
                    "GET",
                    f"/v1/closing/periods/{month}/balances",
                    FINANCE,
                    200,
                    params={"customer_id": customer},
                )
                got = page["items"][0] if page["items"] else None
                if got is None:
                    assert all(v == ZERO for k, v in want.items() if k != "ageing"), (month, want)
                    assert all(v == ZERO for v in want["ageing"].values()), (month, want)
                    continue
                for k in ("opening", "invoiced", "returned", "received", "refunded", "closing"):
                    assert D(got[k]) == want[k], (month, customer, k, got, want)
                for k in BUCKETS:
                    assert D(got["ageing"][k]) == want["ageing"][k], (month, customer, got, want)
            verified = self.call("GET", f"/v1/closing/periods/{month}/verify", FINANCE, 200)
            assert verified["ok"], verified

        @rule()
        def check(self) -> None:
            self.system.drain()
            books = self.books
            for order in books.orders.values():
                got = self.call("GET", f"/v1/orders/{order.id}", SALES, 200)
                want = (order.status, books.paid(order), order.credited, books.outstanding(order))
                have = (got["status"], D(got["paid"]), D(got["credited"]), D(got["outstanding"]))
                assert have == want, (order, got)
            for payment in books.payments.values():
                got = self.call("GET", f"/v1/payments/{payment.id}", SALES, 200)
                amount, allocated = D(got["amount"]), D(got["allocated"])
                unapplied, refunded = D(got["unapplied"]), D(got["refunded"])
                assert amount == allocated + unapplied + refunded, got
                figures = (payment.amount, payment.allocated, payment.unapplied, payment.refunded)
                assert (amount, allocated, unapplied, refunded) == figures, (payment, got)
                for status in ("applied", "pending", "released"):
                    total = sum(
                        (D(a["amount"]) for a in got["allocations"] if a["status"] == status), ZERO
                    )
                    assert total == payment.total(status), (status, payment, got)
            for month in books.months:
                status = self.call("GET", f"/v1/closing/periods/{month}", FINANCE, 200)["status"]
                assert status == books.period_status.get(month, "open"), (month, status)
                if status == "closed":
                    self.check_closed(month)
            self.check_statements()
            self.check_analytics()
            # A pending allocation that failed its check when its order came is reported to
            # finance, in the month it was released (today's).
            month = month_of(books.today)
            report = self.call("GET", f"/v1/closing/periods/{month}/reconciliation", FINANCE, 200)
            failed = sorted((f["document"], D(f["amount"])) for f in report["failed_allocations"])
            assert failed == sorted(books.failed), (report["failed_allocations"], books.failed)

        def active(self) -> list[str]:
            """Customers with a document the ledger has seen."""
            books = self.books
            return sorted(
                {o.customer for o in books.orders.values() if o.was_confirmed}
                | {p.customer for p in books.payments.values()}
            )

        def check_statements(self) -> None:
            books = self.books
            start = f"{books.months[0]}-01"
            settled = None
            for month in books.months:
                if books.period_status.get(month) != "closed":
                    break
                settled = month
            for customer in self.active():
                got = self.call(
                    "GET",
                    f"/v1/closing/customers/{customer}/statement",
                    FINANCE,
                    200,
                    params={"from": start, "to": books.today.isoformat()},
                )
                assert D(got["opening"]) == ZERO, got
                assert D(got["closing"]) == books.balance(customer, books.today), (customer, got)
                running = ZERO
                for line in got["lines"]:
                    running += D(line["debit"]) - D(line["credit"])
                    assert D(line["balance"]) == running, got
                assert running == D(got["closing"]), got
                for month in books.months:
                    # Each closed month's statement opens and ends where its balances do.
                    row = books.closed.get(month, {}).get(customer)
                    if books.period_status.get(month) != "closed" or row is None:
                        continue
                    got = self.call(
                        "GET",
                        f"/v1/closing/customers/{customer}/statement",
                        FINANCE,
                        200,
                        params={"from": f"{month}-01", "to": str(month_end(month))},
                    )
                    have = (D(got["opening"]), D(got["closing"]))
                    assert have == (row["opening"], row["closing"]), (customer, month, got, row)
                if settled:
                    end = month_end(settled)
                    got = self.call(
                        "GET",
                        f"/v1/closing/customers/{customer}/statement",
                        FINANCE,
                        200,
                        params={"from": start, "to": end.isoformat()},
                    )
                    # A customer that came after the close has nothing dated before it.
                    row = books.closed[settled].get(customer)
                    want = row["closing"] if row else books.balance(customer, end)
                    assert D(got["closing"]) == want, (customer, settled, got)

        def check_ageing(self, on: date) -> None:
            """Analytics' open invoice amounts of every customer as they stood at `on`."""
            books = self.books
            ageing = self.call(
                "GET", "/v1/analytics/ar-ageing", ANALYST, 200, params={"as_of": str(on)}
            )
            rows = {r["customer_id"]: r for r in ageing["rows"]}
            for customer in books.customers:
                want = books.invoice_ageing(customer, on)
                got = rows.get(customer)
                have = {k: D(got[k]) if got else ZERO for k in BUCKETS}
                assert have == want, (on, customer, got, want)

        def sales(self, customer: str, group_by: str) -> list[dict]:
            params = {
                "from": f"{self.books.months[0]}-01",
                "to": str(self.books.today),
                "group_by": group_by,
                "customer_id": customer,
            }
            return self.call("GET", "/v1/analytics/sales", ANALYST, 200, params=params)["rows"]

        def check_analytics(self) -> None:
            books = self.books
            self.check_ageing(books.today)
            # As each month stood at its end: what was allocated, released, returned and
            # cancelled by then, each on its own date.
            for month in books.months:
                self.check_ageing(month_end(month))
            for customer in books.customers:
                if not any(
                    o.customer == customer and o.was_confirmed for o in books.orders.values()
                ):
                    continue
                want = books.lifetime(customer)
                got = self.call("GET", f"/v1/analytics/customers/{customer}/lifetime", ANALYST, 200)
                have = {k: (got[k] if k == "orders" else D(got[k])) for k in want}
                assert have == want, (customer, got, want)
                (row,) = self.sales(customer, "customer")
                assert D(row["revenue"]) == want["revenue"], (customer, row, want)
                assert D(row["net"]) == want["net_sales"], (customer, row, want)
                assert row["orders"] == want["orders"], (customer, row, want)
                monthly = self.sales(customer, "month")
                have_months = {
                    r["key"][:7]: {
                        "net": D(r["net"]),
                        "gross": D(r["gross"]),
                        "orders": r["orders"],
                        "returns": D(r["returns"]),
                    }
                    for r in monthly
                }
                want_months = books.monthly_sales(customer)
                for month in set(have_months) | set(want_months):
                    zero = {"net": ZERO, "gross": ZERO, "orders": 0, "returns": ZERO}
                    assert have_months.get(month, zero) == want_months.get(month, zero), (
                        customer,
                        month,
                        monthly,
                        want_months,
                    )

        def teardown(self) -> None:
            try:
                self.check()
            finally:
                self.system.close()

    return WholeSystem


def test_the_books_agree_with_the_model_everywhere(database: str, loop: Loop, tmp_path) -> None:
    app_settings = Settings(
        secret_key=TEST_SECRET,
        data_dir=tmp_path,
        consumer_poll_seconds=0.2,
        # One request at a time: a small pool leaves the shared server's connections to others.
        db_pool_size=5,
        db_max_overflow=5,
        _env_file=None,
    )
    run_state_machine_as_test(
        machine(database, loop, app_settings),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            # Shrinking a failure takes minutes here; the failing steps are printed whole.
            phases=[Phase.explicit, Phase.generate]
            + ([Phase.shrink] if os.environ.get("SALESBOOK_MODEL_SHRINK") else []),
        ),
    )
