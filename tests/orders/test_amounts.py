"""Amounts: half-up per line, totals as sums of rounded lines, credit notes that never exceed
the invoice — checked on the pure arithmetic and through the API."""

from __future__ import annotations

from decimal import Decimal

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.orders.domain import approvals_needed, price_line, return_amounts, totals
from shared.money import round_money
from tests.orders.factories import POS, get_order, make_order, make_product, ok

D = Decimal

quantities = st.decimals(min_value=D("0.001"), max_value=D("1000"), places=3)
prices = st.decimals(min_value=D("0"), max_value=D("10000"), places=2)
rates = st.sampled_from([D("0"), D("0.03"), D("0.06"), D("0.09"), D("0.13"), D("0.1234")])


@st.composite
def lines(draw: st.DrawFn) -> tuple[D, D, D, D]:
    quantity, price, rate = draw(quantities), draw(prices), draw(rates)
    amount = round_money(quantity * price)
    discount = draw(st.decimals(min_value=D("0"), max_value=amount, places=2))
    return quantity, price, discount, rate


@given(st.lists(lines(), min_size=1, max_size=8))
def test_totals_are_sums_of_lines_rounded_half_up(specs: list[tuple[D, D, D, D]]) -> None:
    priced = [price_line(quantity=q, unit_price=p, discount=d, tax_rate=r) for q, p, d, r in specs]
    for line, (q, p, d, r) in zip(priced, specs, strict=True):
        assert line.net == (q * p - d).quantize(D("0.01"), rounding="ROUND_HALF_UP")
        assert line.tax == (line.net * r).quantize(D("0.01"), rounding="ROUND_HALF_UP")
        assert line.gross == line.net + line.tax
        assert line.net >= 0
    total = totals(priced)
    assert total.net == sum(line.net for line in priced)
    assert total.tax == sum(line.tax for line in priced)
    assert total.gross == total.net + total.tax == sum(line.gross for line in priced)


@st.composite
def returns_of_a_line(draw: st.DrawFn) -> tuple[D, D, D, list[D]]:
    quantity, price, discount, rate = draw(lines())
    line = price_line(quantity=quantity, unit_price=price, discount=discount, tax_rate=rate)
    steps = draw(st.lists(st.integers(1, 1000), min_size=1, max_size=6))
    # Cut the quantity into returns at random points, to the last unit (in 0.001 steps).
    units = int(quantity * 1000)
    cuts = sorted({min(units, s * units // 1000) for s in steps} | {units})
    pieces = [D(b - a) / 1000 for a, b in zip([0, *cuts], cuts, strict=False) if b > a]
    return line.quantity, line.net, line.tax, pieces


@given(returns_of_a_line())
def test_returns_never_exceed_the_line_and_the_last_takes_the_remainder(
    case: tuple[D, D, D, list[D]],
) -> None:
    quantity, net, tax, pieces = case
    returned_q, returned_net, returned_tax = D(0), D("0.00"), D("0.00")
    for piece in pieces:
        amounts = return_amounts(
            quantity=quantity,
            net=net,
            tax=tax,
            returned_quantity=returned_q,
            returned_net=returned_net,
            returned_tax=returned_tax,
            returning=piece,
        )
        assert amounts.net >= 0 and amounts.tax >= 0
        returned_q += piece
        returned_net += amounts.net
        returned_tax += amounts.tax
        assert returned_net <= net and returned_tax <= tax
    assert returned_q == quantity
    assert (returned_net, returned_tax) == (net, tax)


def test_approvals_needed_per_threshold() -> None:
    thresholds = [D("10000"), D("100000")]
    assert approvals_needed(D("10000.00"), thresholds) == 0
    assert approvals_needed(D("10000.01"), thresholds) == 1
    assert approvals_needed(D("100000.00"), thresholds) == 1
    assert approvals_needed(D("100000.01"), thresholds) == 2


async def test_line_rounding_half_up_and_totals_summed_per_line(client: httpx.AsyncClient) -> None:
    half = await make_product(client, unit_price="0.05", tax_rate="0.10")  # tax 0.005 each
    third = await make_product(client, unit_price="3.35", tax_rate="0.13")
    order = await make_order(
        client,
        lines=[
            {"sku": half["sku"], "quantity": "1"},
            {"sku": half["sku"], "quantity": "1"},
            {"sku": half["sku"], "quantity": "1"},
            # 0.3 × 3.35 = 1.005 → 1.01; tax 0.1313 → 0.13
            {"sku": third["sku"], "quantity": "0.3"},
            # override and discount: 2 × 7.00 − 0.99 = 13.01; tax 1.6913 → 1.69
            {"sku": third["sku"], "quantity": "2", "unit_price": "7", "discount": "0.99"},
        ],
    )
    got = [(line["net"], line["tax"], line["gross"]) for line in order["lines"]]
    assert got == [
        ("0.05", "0.01", "0.06"),
        ("0.05", "0.01", "0.06"),
        ("0.05", "0.01", "0.06"),
        ("1.01", "0.13", "1.14"),
        ("13.01", "1.69", "14.70"),
    ]
    # Sums of rounded lines: tax 0.03 from the three small lines, not round(0.015) = 0.02.
    assert (order["net"], order["tax"], order["gross"]) == ("14.17", "1.85", "16.02")
    assert order["lines"][4]["unit_price"] == "7.00"
    assert order["lines"][4]["discount"] == "0.99"
    assert order["lines"][3]["tax_rate"] == "0.13"


async def test_last_return_takes_the_exact_remainder(client: httpx.AsyncClient) -> None:
    product = await make_product(client, unit_price="0.10", tax_rate="0.13")
    order = await make_order(client, lines=[{"sku": product["sku"], "quantity": "3"}], submit=True)
    assert (order["net"], order["tax"], order["gross"]) == ("0.30", "0.04", "0.34")
    notes = []
    for _ in range(3):
        response = await client.post(
            f"/v1/orders/{order['id']}/returns",
            json={"lines": [{"sku": product["sku"], "quantity": "1"}]},
            headers=POS,
        )
        notes.append(ok(response, 201))
    assert [n["tax"] for n in notes] == ["0.01", "0.02", "0.01"]  # cumulative rounding
    assert sum(D(n["gross"]) for n in notes) == D("0.34")
    final = await get_order(client, order["id"])
    assert final["credited"] == "0.34"
    assert final["outstanding"] == "0.00"


line_specs = st.lists(
    st.tuples(
        st.decimals(min_value=D("0.001"), max_value=D("20"), places=3),
        st.decimals(min_value=D("0.01"), max_value=D("150"), places=2),
        st.sampled_from(["0", "0.06", "0.13"]),
        st.integers(0, 100),  # discount as a percentage of the line amount
        st.integers(1, 3),  # how many returns the line is cut into
    ),
    min_size=1,
    max_size=3,
)


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=line_specs)
async def test_api_totals_and_credit_notes_never_exceed_the_invoice(
    client: httpx.AsyncClient, specs: list[tuple[D, D, str, int, int]]
) -> None:
    body_lines = []
    for quantity, price, rate, discount_pct, _ in specs:
        product = await make_product(client, unit_price=str(price), tax_rate=rate)
        discount = round_money(quantity * price * discount_pct / 100)
        discount = min(discount, quantity * price).quantize(D("0.01"), rounding="ROUND_DOWN")
        body_lines.append(
            {"sku": product["sku"], "quantity": str(quantity), "discount": str(discount)}
        )
    order = await make_order(client, lines=body_lines, submit=True)
    assert order["status"] == "confirmed"
    assert D(order["net"]) == sum(D(line["net"]) for line in order["lines"])
    assert D(order["tax"]) == sum(D(line["tax"]) for line in order["lines"])
    assert D(order["gross"]) == sum(D(line["gross"]) for line in order["lines"])

    # Return every line in 1-3 pieces; the credit notes add up to the invoice exactly.
    rounds = max(cuts for *_, cuts in specs)
    for r in range(rounds):
        returning = []
        for line, (quantity, *_, cuts) in zip(order["lines"], specs, strict=True):
            if r >= cuts:
                continue
            piece = (quantity / cuts).quantize(D("0.001"), rounding="ROUND_DOWN")
            if r == cuts - 1:
                piece = quantity - piece * (cuts - 1)
            if piece > 0:
                returning.append(
                    {"sku": line["sku"], "line_no": line["line_no"], "quantity": str(piece)}
                )
        if returning:
            response = await client.post(
                f"/v1/orders/{order['id']}/returns", json={"lines": returning}, headers=POS
            )
            ok(response, 201)
            current = await get_order(client, order["id"])
            assert D(current["credited"]) <= D(current["gross"])
    final = await get_order(client, order["id"])
    assert final["credited"] == final["gross"]
    assert sum(D(n["net"]) for n in final["credit_notes"]) == D(final["net"])
    assert sum(D(n["tax"]) for n in final["credit_notes"]) == D(final["tax"])
