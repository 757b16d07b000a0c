"""Order arithmetic without a database: half-up per line, totals as sums of rounded lines,
returns that never exceed the line, approvals per threshold."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.orders.domain import approvals_needed, price_line, return_amounts, totals
from shared.money import round_money

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
