"""Amounts through the API: half-up per line, totals as sums of rounded lines, credit notes
that never exceed the invoice (tests/unit/test_orders_pricing.py checks the arithmetic)."""

from __future__ import annotations

from decimal import Decimal

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.orders.schemas import OrderPublic
from shared.money import round_money
from tests.orders.factories import POS, get_order, make_order, make_product, ok

D = Decimal


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


async def test_the_answer_built_from_memory_is_the_order_as_stored_and_validated(
    client: httpx.AsyncClient,
) -> None:
    """Order entry answers from what it wrote, without validating its own values again: the
    answer must be what reading the order back gives, and what validation would make of it."""
    half = await make_product(client, unit_price="0.05", tax_rate="0.10")
    odd = await make_product(client, unit_price="3.35", tax_rate="0.0625")
    lines = [
        {"sku": half["sku"], "quantity": "1.500"},
        {"sku": odd["sku"], "quantity": "2", "unit_price": "7", "discount": "0.99"},
    ]
    for submit in (False, True):
        order = await make_order(client, lines=lines, submit=submit)
        validated = OrderPublic.model_validate(order).model_dump(mode="json")
        assert order == validated
        stored = await get_order(client, order["id"])
        assert order == stored
        assert [line["quantity"] for line in order["lines"]] == ["1.5", "2"]
        assert [line["tax_rate"] for line in order["lines"]] == ["0.1", "0.0625"]


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
