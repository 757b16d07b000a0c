"""Random months of documents as raw events, with what they must add up to, computed the
straightforward way, for checking the closing service against an independent recomputation."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

from hypothesis import strategies as st

from shared import ageing
from shared.events.closing import ControlTotal, PeriodCutoff
from shared.events.envelope import EventPayload
from shared.events.orders import (
    Instalment,
    OrderCancelled,
    OrderConfirmed,
    OrderFacts,
    OrderLine,
    OrderReturned,
    ReturnedLine,
)
from shared.events.payments import (
    AllocationState,
    PaymentAllocated,
    PaymentReceived,
    PaymentRefunded,
)
from shared.ids import new_id
from shared.periods import Period

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MOVES = ("invoiced", "returned", "received", "refunded")


@dataclass
class InvoiceFacts:
    """What ageing needs of one invoice: its instalments and what reduced it, dated."""

    customer: UUID
    day: date
    gross: Decimal
    instalments: list[tuple[date, Decimal]]
    credits: list[tuple[date, Decimal]] = field(default_factory=list)
    allocations: list[tuple[date, Decimal]] = field(default_factory=list)

    def on(self, end: date) -> ageing.Invoice:
        """The invoice as ageing sees it at `end`: what was allocated and credited by then."""
        return ageing.Invoice(
            instalments=[ageing.Instalment(due, amount) for due, amount in self.instalments],
            allocated=sum((a for d, a in self.allocations if d <= end), ZERO),
            credited=sum((a for d, a in self.credits if d <= end), ZERO),
        )


def cents(n: int) -> Decimal:
    return (Decimal(n) / 100).quantize(CENT)


@dataclass
class World:
    months: list[str]
    customers: list[UUID]
    events: list[tuple[EventPayload, str, str, date | None]] = field(default_factory=list)
    moves: dict[tuple[str, UUID], dict[str, Decimal]] = field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys(MOVES, ZERO))
    )
    controls: dict[tuple[str, str], list] = field(
        default_factory=lambda: defaultdict(lambda: [0, ZERO])
    )
    invoices: dict[UUID, InvoiceFacts] = field(default_factory=dict)

    def add(self, payload: EventPayload, source: str, customer: UUID, day: date) -> None:
        self.events.append((payload, source, str(customer), day))

    def move(self, day: date, customer: UUID, column: str, amount: Decimal) -> None:
        self.moves[(str(Period.of(day)), customer)][column] += amount

    def control(self, day: date, kind: str, amount: Decimal) -> None:
        entry = self.controls[(str(Period.of(day)), kind)]
        entry[0] += 1
        entry[1] += amount

    def expected_balances(self) -> dict[str, dict[UUID, dict[str, Decimal]]]:
        """Per month and customer: opening, the four movements and closing, recomputed."""
        result: dict[str, dict[UUID, dict[str, Decimal]]] = {}
        closing = dict.fromkeys(self.customers, ZERO)
        for month in self.months:
            result[month] = {}
            for c in self.customers:
                m = self.moves.get((month, c), dict.fromkeys(MOVES, ZERO))
                end = closing[c] + m["invoiced"] - m["returned"] - m["received"] + m["refunded"]
                result[month][c] = {"opening": closing[c], **m, "closing": end}
                closing[c] = end
        return result

    def expected_ageing(self, month: str, customer: UUID, closing: Decimal) -> dict[str, Decimal]:
        """The customer's closing balance by how late its open instalments are at month end:
        spare credit (unallocated payments) pays the oldest open instalments first."""
        end = Period.parse(month).last_day
        return ageing.age_customer(
            (
                invoice.on(end)
                for invoice in self.invoices.values()
                if invoice.customer == customer and invoice.day <= end
            ),
            closing=closing,
            on=end,
        )

    def cutoffs(
        self, month: str, close_id: UUID
    ) -> list[tuple[EventPayload, str, str, date | None]]:
        now = datetime.now(UTC)
        out: list[tuple[EventPayload, str, str, date | None]] = []
        for source, kinds in (
            ("orders", ("invoice", "credit_note", "cancellation")),
            ("payments", ("payment", "refund")),
        ):
            totals = {
                k: ControlTotal(
                    count=self.controls[(month, k)][0], amount=self.controls[(month, k)][1]
                )
                for k in kinds
            }
            out.append(
                (
                    PeriodCutoff(
                        period=month,
                        close_id=close_id,
                        source=source,
                        control_totals=totals,
                        locked_at=now,
                    ),
                    source,
                    "period-control",
                    None,
                )
            )
        return out


@st.composite
def worlds(draw: st.DrawFn, months: list[str]) -> World:
    customers = [new_id() for _ in range(draw(st.integers(1, 3)))]
    world = World(months=months, customers=customers)
    day_of = st.tuples(st.integers(0, len(months) - 1), st.integers(1, 28))

    def to_date(m: int, d: int) -> date:
        return date(int(months[m][:4]), int(months[m][5:7]), d)

    invoices = []
    for _ in range(draw(st.integers(0, 6))):
        c = draw(st.sampled_from(customers))
        m, d = draw(day_of)
        day = to_date(m, d)
        net = cents(draw(st.integers(1, 500_000)))
        rate = draw(st.sampled_from([ZERO, Decimal("0.06"), Decimal("0.13")]))
        tax = (net * rate).quantize(CENT, rounding=ROUND_HALF_UP)
        gross = net + tax
        due = day + timedelta(days=draw(st.sampled_from([0, 30, 60])))
        instalments = []
        if draw(st.booleans()) and gross >= Decimal("0.02"):
            first = (gross / 2).quantize(CENT)
            instalments = [
                Instalment(due_date=due, amount=first),
                Instalment(due_date=due + timedelta(days=45), amount=gross - first),
            ]
        order_id = new_id()
        line = OrderLine(
            line_no=1,
            sku="SKU",
            name="Thing",
            category="c",
            quantity=Decimal(1),
            unit_price=net,
            discount=ZERO,
            tax_rate=rate,
            net=net,
            tax=tax,
            gross=gross,
        )
        facts = OrderFacts(
            order_id=order_id,
            number=f"SO-{order_id.hex[:6]}",
            customer_id=c,
            customer_name="x",
            region=None,
            segment=None,
            channel="pos",
            salesperson=None,
            created_by="t",
            lines=[line],
            net=net,
            tax=tax,
            gross=gross,
        )
        world.add(
            OrderConfirmed(
                order=facts,
                invoice_number=f"INV-{order_id.hex[:8]}",
                business_date=day,
                due_date=due,
                instalments=instalments,
                confirmed_at=datetime.now(UTC),
            ),
            "orders",
            c,
            day,
        )
        world.move(day, c, "invoiced", gross)
        world.control(day, "invoice", gross)
        world.invoices[order_id] = InvoiceFacts(
            c, day, gross, [(i.due_date, i.amount) for i in instalments] or [(due, gross)]
        )
        invoices.append((order_id, c, day, net, tax, gross, m))
        returned_net, returned_tax = ZERO, ZERO
        later = st.tuples(st.integers(m, len(months) - 1), st.integers(d, 28))
        if draw(st.booleans()):
            rm, rd = draw(later)
            rday = to_date(rm, rd)
            share = Decimal(draw(st.integers(1, 100))) / 100
            returned_net = (net * share).quantize(CENT)
            returned_tax = (tax * share).quantize(CENT)
            rgross = returned_net + returned_tax
            world.add(
                OrderReturned(
                    credit_note_id=new_id(),
                    credit_note_number=f"CRN-{order_id.hex[:8]}",
                    order_id=order_id,
                    customer_id=c,
                    business_date=rday,
                    lines=[
                        ReturnedLine(
                            line_no=1,
                            sku="SKU",
                            category="c",
                            quantity=Decimal(1),
                            net=returned_net,
                            tax=returned_tax,
                            gross=rgross,
                        )
                    ],
                    net=returned_net,
                    tax=returned_tax,
                    gross=rgross,
                    reason=None,
                ),
                "orders",
                c,
                rday,
            )
            world.move(rday, c, "returned", rgross)
            world.invoices[order_id].credits.append((rday, rgross))
            world.control(rday, "credit_note", rgross)
            m, d = rm, rd
        if draw(st.integers(0, 4)) == 0:
            cm, cd = draw(st.tuples(st.integers(m, len(months) - 1), st.integers(d, 28)))
            cday = to_date(cm, cd)
            rnet, rtax = net - returned_net, tax - returned_tax
            world.add(
                OrderCancelled(
                    order_id=order_id,
                    number="SO",
                    customer_id=c,
                    was_confirmed=True,
                    invoice_number=f"INV-{order_id.hex[:8]}",
                    business_date=cday,
                    reversed_net=rnet,
                    reversed_tax=rtax,
                    reversed_gross=rnet + rtax,
                    reason=None,
                ),
                "orders",
                c,
                cday,
            )
            world.move(cday, c, "invoiced", -(rnet + rtax))
            world.invoices[order_id].credits.append((cday, rnet + rtax))
            world.control(cday, "cancellation", rnet + rtax)

    for _ in range(draw(st.integers(0, 6))):
        c = draw(st.sampled_from(customers))
        m, d = draw(day_of)
        day = to_date(m, d)
        amount = cents(draw(st.integers(1, 600_000)))
        method = draw(st.sampled_from(["cash", "card", "bank_transfer"]))
        payment_id = new_id()
        targets = [inv for inv in invoices if inv[1] == c and inv[2] <= day]
        allocations: list[AllocationState] = []
        if bool(targets) and draw(st.booleans()):
            inv = draw(st.sampled_from(targets))
            part = min(amount, inv[5])
            allocations.append(
                AllocationState(
                    allocation_id=new_id(), order_id=inv[0], amount=part, status="applied"
                )
            )
        world.add(
            PaymentReceived(
                payment_id=payment_id,
                number=f"PAY-{payment_id.hex[:8]}",
                customer_id=c,
                amount=amount,
                method=method,
                received_at=datetime(day.year, day.month, day.day, 4, tzinfo=UTC),
                business_date=day,
                reference=None,
                allocations=allocations,
            ),
            "payments",
            c,
            day,
        )
        world.move(day, c, "received", amount)
        world.control(day, "payment", amount)
        for a in allocations:
            world.invoices[a.order_id].allocations.append((day, a.amount))
            world.add(
                PaymentAllocated(
                    allocation_id=a.allocation_id,
                    payment_id=payment_id,
                    payment_number="PAY",
                    customer_id=c,
                    order_id=a.order_id,
                    amount=a.amount,
                    business_date=day,
                ),
                "payments",
                c,
                day,
            )
        if draw(st.integers(0, 3)) == 0:
            fm, fd = draw(st.tuples(st.integers(m, len(months) - 1), st.integers(d, 28)))
            fday = to_date(fm, fd)
            refund = cents(draw(st.integers(1, int(amount * 100))))
            world.add(
                PaymentRefunded(
                    refund_id=new_id(),
                    payment_id=payment_id,
                    payment_number="PAY",
                    customer_id=c,
                    amount=refund,
                    method=method,
                    business_date=fday,
                    reason=None,
                    released_allocations=[],
                ),
                "payments",
                c,
                fday,
            )
            world.move(fday, c, "refunded", refund)
            world.control(fday, "refund", refund)
    return world
